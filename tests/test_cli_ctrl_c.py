"""Ctrl-C on `backend.py render`: the first stops after the takes in flight and leaves a render to continue,
a second one quits at once (status 130), each with a sentence and no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audiobook import manifest as mf
from audiobook.cli.progress import QUIT_NOW, QUIT_STATUS, STOPPING

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = {"device": "cpu", "max_new_tokens": 64, "batch_size": 2, "chunk_chars": 60, "make_m4b": False,
            "verify": "off", "do_sample": False}


@pytest.fixture
def project(tmp_path):
    """A project folder with settings for a quick render and a book of about ninety chunks."""
    (tmp_path / "user_settings.json").write_text(json.dumps(SETTINGS))
    text = "\n".join(f"Chapter {c}\n\n" + " ".join(f"Sentence number {i} of chapter {c} is here." for i in range(30))
                     for c in (1, 2, 3))
    (tmp_path / "book.txt").write_text(text)
    return tmp_path


def start_render(project: Path, models: Path, name: str) -> tuple[subprocess.Popen, Path, Path]:
    out, log = project / name, project / f"{name}.log"
    env = {**os.environ, "AUDIOBOOK_ROOT": str(project), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "backend.py"), "render", str(project / "book.txt"), "--speaker",
                             "ryan", "--models-dir", str(models), "--output", str(out)],
                            cwd=project, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)  # no Ctrl-C of the terminal running pytest reaches it
    return proc, out, log


def wait_for(what, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until ``what()`` holds; fails if the render ends first (imports and the model load take seconds)."""
    end = time.monotonic() + timeout
    while not what():
        assert proc.poll() is None, f"the render ended (status {proc.returncode}) before the Ctrl-C"
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def kept_a_chunk(out: Path):
    return lambda: any((out / "chunks").glob("*.wav"))


def test_ctrl_c_stops_after_the_takes_in_flight_and_a_second_quits_at_once(project, tiny_models_dir):
    once, once_out, once_log = start_render(project, tiny_models_dir, "once")
    twice, twice_out, twice_log = start_render(project, tiny_models_dir, "twice")
    try:
        # Once: the sentence, then the render saves what is kept and ends on its own.
        wait_for(kept_a_chunk(once_out), once)
        once.send_signal(signal.SIGINT)
        # Twice: the second Ctrl-C after the first was heard.
        wait_for(kept_a_chunk(twice_out), twice)
        twice.send_signal(signal.SIGINT)
        wait_for(lambda: STOPPING in twice_log.read_text(), twice, timeout=60)
        twice.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        assert twice.wait(timeout=30) == QUIT_STATUS
        quit_s = time.monotonic() - t0

        assert once.wait(timeout=120) == 1, once_log.read_text()[-3000:]  # stopped: the book is not complete
    finally:
        for proc in (once, twice):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    said = once_log.read_text()
    assert STOPPING in said and "Stopped; run the same command again to continue." in said
    assert "Traceback" not in said and QUIT_NOW not in said
    m = mf.load_manifest(once_out)
    kept = [c for c in m.chunks.values() if c.status == mf.DONE]
    assert 0 < len(kept) < len(m.chunks)  # stopped part way, with what was kept saved
    assert all((once_out / c.file).is_file() for c in kept)

    said = twice_log.read_text()
    assert quit_s < 5, f"the second Ctrl-C took {quit_s:.1f}s to quit"
    assert said.rstrip().endswith(QUIT_NOW) and "Traceback" not in said
    m = mf.load_manifest(twice_out)  # whatever the quit cut off, the manifest on disk is whole
    assert all((twice_out / c.file).is_file() for c in m.chunks.values() if c.status == mf.DONE)
