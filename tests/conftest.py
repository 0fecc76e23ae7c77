"""Shared pytest fixtures."""

import os

import pytest

# Child processes (the app, the command line, a render killed mid-way, workers) use one torch
# thread, as this process does: on a shared CPU extra threads spin-wait, and a tiny render that
# takes seconds alone takes minutes.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    """A folder holding all five tiny random Qwen3-TTS checkpoints and the tiny Whisper ones, built once a session.

    Under pytest-xdist the workers share one folder: the first builds it under a lock, the others
    find it complete (a rerun of the build keeps a complete folder).
    """
    import fcntl

    import torch

    from audiobook.tiny import build_tiny_models, build_tiny_whisper

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
