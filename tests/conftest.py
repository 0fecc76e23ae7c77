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
    """A folder holding all five tiny random Qwen3-TTS checkpoints and the tiny Whisper ones, built once a session.

    Under pytest-xdist the workers share one folder: the first builds it under a lock, the others
    find it complete (a rerun of the build keeps a complete folder).
    """
    import fcntl

    import torch

    from audiobook.tiny import build_tiny_models
    from audiobook.tiny_whisper import build_tiny_whisper

    # Tiny matmuls gain nothing from threads, and on a shared CPU extra threads
    # spin-wait: one thread is several times faster than two under load.
    torch.set_num_threads(1)
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        out = tmp_path_factory.mktemp("tiny-models")
    else:
        shared = tmp_path_factory.getbasetemp().parent  # the same for every worker of this run
        out = shared / "tiny-models"
    with open(out.parent / "tiny-models.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build_tiny_models(out)
        build_tiny_whisper(out)
    return out


@pytest.fixture(scope="module")
def ref_wav(tmp_path_factory):
    """Two seconds of quiet noise at 24 kHz: a clone prompt's reference recording."""
    import numpy as np
    import soundfile as sf

    path = tmp_path_factory.mktemp("ref") / "ref.wav"
    sf.write(path, np.random.default_rng(0).standard_normal(48000).astype(np.float32) * 0.1, 24000)
    return str(path)


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


@pytest.fixture(scope="module")
def cast_backend(tiny_models_dir, tmp_path_factory):
    """A Backend on the tiny 1.7B checkpoints with two saved voices ("Storyteller", "Alice voice") made of tones."""
    import soundfile as sf

    import backend as backend_module
    from audiobook.settings import SETTINGS_FILE
    from audiobook.voices import Voice
    from tests.tone import tone_clip

    root = tmp_path_factory.mktemp("cast-app")
    b = backend_module.Backend(root=root, settings_path=root / SETTINGS_FILE, models_dir=str(tiny_models_dir))
    b.apply_settings(b.settings.updated(device="cpu", max_new_tokens=64, batch_size=4, max_retries=0, make_m4b=False,
                                        do_sample=False, model_size="1.7B"))
    for name, seed in (("Storyteller", 1), ("Alice voice", 2)):
        clip = tone_clip(root / f"{seed}.wav", seed)
        voice = Voice(name=name, kind="cloned", reference_text="A line of the reference clip.")
        b.voices.save(voice, sf.read(str(clip), dtype="float32")[0])
    return b


@pytest.fixture
def no_network(monkeypatch):
    """Refuse every outgoing connection and record where it went (the list the test gets).

    Local connections (127.0.0.1, a Unix socket) are let through: a test's own server is not the network.
    """
    import socket

    tried = []
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and host not in ("127.0.0.1", "localhost", "::1"):
            tried.append(address)
            raise OSError(f"no network in this test (tried {address})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return tried


_TIMES_LOG = os.environ.get("AUDIOBOOK_TEST_TIMES")  # a file: one JSON line per test with its wall and CPU time


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With AUDIOBOOK_TEST_TIMES set, log each test's wall time and the CPU time it cost (this process and the
    children it waited for), setup and teardown included; ``bench/test_times.py`` sums them up. The CPU time
    barely depends on how loaded the machine is, so it estimates an idle run on a busy machine."""
    if not _TIMES_LOG:
        yield
        return
    import json
    import resource
    import time

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    wall0, cpu0 = time.perf_counter(), cpu()
    yield
    line = {"test": item.nodeid, "wall_s": round(time.perf_counter() - wall0, 2), "cpu_s": round(cpu() - cpu0, 2)}
    with open(_TIMES_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


# Modules whose wall time is longest (mostly waiting on Ray, app servers, a browser or subprocesses), longest
# first, as measured in one `make test`. `make test` hands whole modules to its workers in collection order
# (`--no-loadscope-reorder`: pytest-xdist would otherwise start the modules with the most tests first), so
# starting these first lets the short modules fill the gaps instead of one long module finishing alone at the end.
LONGEST_FIRST = (
    "test_workers.py", "test_browser.py", "test_render.py", "test_audio.py", "test_tiny.py", "test_doctor.py",
    "test_bench.py", "test_queue.py", "test_engine.py", "test_readalong.py", "test_backend.py", "test_review.py",
    "test_pipeline.py", "test_browser_review.py", "test_errors.py", "test_check.py", "test_voices.py",
    "test_voicing.py", "test_quiet.py", "test_browser_first_load.py", "test_browser_models.py",
    "test_engine_capture.py", "test_book_formats.py", "test_stream.py", "test_api.py", "test_model_lock.py",
    "test_cli_ctrl_c.py", "test_tts.py", "test_app.py", "test_models.py", "test_browser_readalong.py",
    "test_gpu_check.py", "test_text.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a module's own order is kept
