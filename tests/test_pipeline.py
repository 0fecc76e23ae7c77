"""The render as a pipeline over one engine session: same book as the batch loop, Stop, kill -9 chaos."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from audiobook import manifest as mf
from audiobook.pipeline import frame_limit, chunk_seed
from audiobook.render import _Render
from tests.test_render import RYAN, backend_for, book

ROOT = Path(__file__).resolve().parent.parent


def _record(out: Path) -> dict:
    m = mf.load_manifest(out)
    return {i: (s.status, round(s.duration_s, 4)) for i, s in m.chunks.items()}


def test_the_stream_renders_the_book_the_batch_loop_renders(tmp_path, tiny_models_dir, monkeypatch):
    """Float32, greedy: chunk ids, statuses and durations equal between the pipeline and the batch loop."""
    b = book(n_chapters=2, sentences=4)
    kw = dict(engine="fast", do_sample=False, batch_size=3, max_retries=1)
    stream = backend_for(tmp_path / "s", tiny_models_dir, **kw)
    result = stream.render(b, RYAN, out_dir=tmp_path / "s" / "out")
    monkeypatch.setattr(_Render, "use_stream", False)
    loop = backend_for(tmp_path / "l", tiny_models_dir, **kw)
    reference = loop.render(b, RYAN, out_dir=tmp_path / "l" / "out")
    assert result.complete and reference.complete
    assert _record(tmp_path / "s" / "out") == _record(tmp_path / "l" / "out")
    assert [p.name for p in result.chapter_files] == [p.name for p in reference.chapter_files]
    import soundfile as sf

    for a, c in zip(result.chapter_files, reference.chapter_files):  # the same takes, so chapters of the same length
        assert sf.info(str(a)).frames == sf.info(str(c)).frames


def test_stop_admits_nothing_new_and_ends_within_the_takes_in_flight(tmp_path, tiny_models_dir):
    be = backend_for(tmp_path, tiny_models_dir, engine="fast", batch_size=2, max_retries=0)
    b = book(n_chapters=3, sentences=4)
    out = tmp_path / "out"
    captured, stop_at = [], []
    real = be.tts.capture

    def capture(narrator, texts, *a, **k):
        captured.extend(texts)
        return real(narrator, texts, *a, **k)

    be.tts.capture = capture

    def stop():
        done = mf.load_manifest(out) if mf.manifest_path(out).exists() else None
        if not stop_at and done is not None and done.count(mf.DONE, mf.SUSPECT) >= 2:
            stop_at.append((time.perf_counter(), len(captured)))
        return bool(stop_at)

    from audiobook.render import RenderOptions, RenderResult, render_events

    result = RenderResult(out_dir=out)
    list(render_events(b, RYAN, be.settings, out, be.tts, result, stop, RenderOptions()))
    ended = time.perf_counter()
    assert result.stopped and stop_at
    t_stop, admitted = stop_at[0]
    # What was admitted at the Stop is at most the slots and the one waiting group; nothing after.
    assert len(captured) <= admitted + 2  # a group being built as the Stop came
    assert ended - t_stop < 30  # the takes in flight end within their frame limits
    m = mf.load_manifest(out)
    kept = m.count(mf.DONE, mf.SUSPECT)
    assert 2 <= kept < len(m.chunks)
    files = {p.name for p in (out / "chunks").glob("*.wav")}
    assert len(files) == kept

    be.tts.capture = real
    again = be.render(b, RYAN, out_dir=out)
    assert again.complete and again.reused == kept


def test_frame_limits_and_seeds_come_from_the_chunk_alone():
    assert frame_limit("x" * 100, None, 3.0, 4096) == frame_limit("x" * 100, None, 3.0, 4096)
    assert frame_limit("x" * 100, 0.07, 3.0, 4096) < frame_limit("x" * 100, None, 3.0, 4096) <= 4095
    assert frame_limit("x" * 5000, None, 3.0, 4096) == 4095  # never above max_new_tokens - 1
    # Six times the book's pace, plus slack: a take the limit ends would fail the pace check anyway.
    assert frame_limit("x" * 100, 0.07, 3.0, 4096) == pytest.approx((100 * 0.07 * 6 + 8) * 12.5, abs=1)
    assert chunk_seed(1234, "abc", 0) == chunk_seed(1234, "abc", 0) != chunk_seed(1234, "abd", 0)
    assert chunk_seed(1234, "abc", 1) != chunk_seed(1234, "abc", 0)


CHAOS_SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    torch.set_num_threads(1)  # two threads on a shared machine spin against each other
    sys.path.insert(0, {root!r})
    from backend import Backend
    from audiobook.books import load_book
    from audiobook.stream import Session
    from audiobook.tts import Narrator
    log = os.open({takes!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    real = Session.step
    def step(self):
        done = real(self)
        for f in done:
            os.write(log, b"take\\n")
        return done
    Session.step = step
    be = Backend(root={tmp!r}, settings_path={tmp!r} + "/user_settings.json", models_dir={models!r})
    be.apply_settings(be.settings.updated(device="cpu", max_new_tokens=64, batch_size=3, chunk_chars=60, engine="fast",
                                  make_m4b=False, duration_outlier_factor=20.0, runaway_margin_s=0.0, max_retries=0))
    result = be.render(load_book({book!r}), Narrator(kind="preset", speaker="ryan"), out_dir={out!r})
    print("COMPLETE" if result.complete else "INCOMPLETE", flush=True)
""")


@pytest.mark.slow
@pytest.mark.timeout(1200)  # each run starts a Python with torch: seconds when idle, minutes on a loaded machine
def test_kill_9_at_random_moments_loses_at_most_the_takes_in_flight(tmp_path, tiny_models_dir):
    """kill -9 a render again and again: every run goes on where the last stopped; no chunk file is
    written twice, and each kill loses at most the slot count of finished takes."""
    b = book(n_chapters=2, sentences=5)
    book_path = tmp_path / "book.json"
    book_path.write_text(json.dumps(b.to_dict()))
    out, takes = tmp_path / "out", tmp_path / "takes.log"
    script = CHAOS_SCRIPT.format(root=str(ROOT), tmp=str(tmp_path), models=str(tiny_models_dir),
                                 book=str(book_path), out=str(out), takes=str(takes))
    rng = random.Random(19)
    files: dict[str, int] = {}  # chunk file -> inode of its one write
    kills, complete, start = 0, False, time.time()
    while not complete and time.time() - start < 900:  # a hang guard for a loaded machine
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if kills < 2:
            # Wait for the render to be under way (imports and model loading take seconds), then a random moment.
            base = takes.stat().st_size if takes.exists() else 0
            while proc.poll() is None and not (takes.exists() and takes.stat().st_size > base):
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.0))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
        stdout, stderr = proc.communicate(timeout=1000)
        complete = b"COMPLETE" in stdout and b"INCOMPLETE" not in stdout
        assert proc.returncode in (0, -signal.SIGKILL), stderr.decode()[-2000:]
        for p in (out / "chunks").glob("*.wav"):
            inode = p.stat().st_ino
            assert files.setdefault(p.name, inode) == inode, f"{p.name} was written twice"
    assert complete and kills >= 1
    m = mf.load_manifest(out)
    assert m.count(mf.DONE, mf.SUSPECT) == len(m.chunks)
    finished = takes.read_text().count("take")
    # Every finished take is a kept chunk (no retakes here), except those a kill caught between the
    # engine and the chunk file: at most the slot count per kill.
    assert len(m.chunks) <= finished <= len(m.chunks) + 3 * kills
