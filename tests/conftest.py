"""Shared pytest fixtures."""

import os
import tempfile

import pytest

# Child processes (the app, the command line, a render killed mid-way, workers) use one torch
# thread, as this process does: on a shared CPU extra threads spin-wait, and a tiny render that
# takes seconds alone takes minutes.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Pages read by OCR are cached for this test run (the app started by a test too), not in the user's cache.
os.environ.setdefault("AUDIOBOOK_OCR_CACHE", tempfile.mkdtemp(prefix="audiobook-test-ocr-"))


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    """A folder holding all five tiny random Qwen3-TTS checkpoints and the tiny Whisper ones, built once a session."""
    import torch

    from audiobook.tiny import build_tiny_models, build_tiny_whisper

    # Tiny matmuls gain nothing from threads, and on a shared CPU extra threads
    # spin-wait: one thread is several times faster than two under load.
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny-models")
    build_tiny_models(out)
    build_tiny_whisper(out)
    return out


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for every browser test of the session (Playwright's sync API allows one per thread)."""
    import tempfile

    from browser_helpers import CHROMIUM_ARGS, chromium_path

    exe = chromium_path()
    if exe is None:
        pytest.fail("Chromium is not installed; `make browser` installs Debian's chromium.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=exe, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 900}, accept_downloads=True,
        )
        yield context
        context.close()


@pytest.fixture
def chat_server():
    """A local OpenAI-compatible chat endpoint (tests/chat_server.py): set ``answer``, read ``requests``."""
    from tests.chat_server import ChatServer

    server = ChatServer()
    yield server
    server.close()
