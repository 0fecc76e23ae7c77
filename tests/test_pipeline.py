"""The render as a pipeline over one engine session: same book as the batch loop, Stop, kill -9 chaos."""

import contextlib
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
from audiobook.tts import Narrator
from tests.test_render import RYAN, WORDS, backend_for, book, line

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


ALICE = Narrator(kind="preset", speaker="vivian")


def _two_voice_book(chapters=2, alice_chars=50):
    """Chapters of narration (read by ryan) with one quoted line of Alice's (read by vivian) in each."""
    from audiobook.books import Book, Chapter
    from audiobook.dialogue import NARRATOR, Span

    out = []
    for c in range(chapters):
        said = '"' + " ".join(["Come", WORDS[c]] + ["here"] * ((alice_chars - 16) // 5)) + '."'
        spans = [Span(" ".join(line(c, i) for i in range(3)) + " ", NARRATOR), Span(said, "Alice"),
                 Span(" " + " ".join(line(c, i) for i in range(3, 5)), NARRATOR)]
        out.append(Chapter(f"Part {c + 1}", "".join(sp.text for sp in spans), spans))
    return Book("Two voices", out, language="en")


def _render_two_voices(be, b, out, stop=lambda: False):
    from audiobook.render import RenderOptions, RenderResult, render_events
    from audiobook.voicing import Voicing

    result = RenderResult(out_dir=out)
    voicing = Voicing(RYAN, {"Alice": ALICE})
    list(render_events(b, RYAN, be.settings, out, be.tts, result, stop, RenderOptions(), voicing=voicing))
    return result


def test_a_voice_that_never_ends_is_retaken_and_the_other_voice_renders_as_usual(tmp_path, tiny_models_dir):
    """One render, one stream, two voices of one checkpoint: vivian's takes never end, so each runs to its own
    frame limit, is taken again with another seed and ends suspect; ryan's chunks are kept as usual."""
    from tests.model_helpers import speaker_never_ends

    be = backend_for(tmp_path, tiny_models_dir, engine="fast", batch_size=3, max_retries=1, max_new_tokens=64)
    out = tmp_path / "out"
    b = _two_voice_book()
    together = []  # the voices holding the session's slots after each step
    real = be.tts.session

    def session(*a, **k):
        s = real(*a, **k)
        step = s.step

        def recorded():
            finished = step()
            together.append({r.tag.voice.speaker for r in s.in_flight()})
            return finished

        s.step = recorded
        return s

    be.tts.session = session
    with speaker_never_ends(be.tts.model("preset"), "vivian"):
        result = _render_two_voices(be, b, out)
    assert result.complete
    m = mf.load_manifest(out)
    alice = {i: s for i, s in m.chunks.items() if s.speaker == "Alice"}
    assert len(alice) == 2 and len(m.chunks) > 4
    for i, st in m.chunks.items():
        if i in alice:  # both takes ran to the frame limit (63 frames: 5.04 s), then the least bad was kept
            assert st.status == mf.SUSPECT and st.attempts == 2 and round(st.duration_s, 2) == 5.04
            assert "length limit" in st.error
        else:  # random weights: a ryan take may run long too, but ryan's end code comes
            assert st.status in (mf.DONE, mf.SUSPECT), (i, st)
    firsts = [st for i, st in m.chunks.items() if i not in alice and st.status == mf.DONE and st.attempts == 1]
    assert len(firsts) >= len(m.chunks) // 2
    assert {"ryan", "vivian"} in together  # both voices held the session's slots at once


def test_stop_with_a_runaway_in_flight_ends_within_one_takes_time(tmp_path, tiny_models_dir):
    """A Stop while a take that never ends holds a slot: the render drops it after one take's time (the median
    take so far, at least STOP_FLOOR_S) instead of running it to its frame limit, and keeps what is complete."""
    from audiobook import pipeline
    from tests.model_helpers import speaker_never_ends

    be = backend_for(tmp_path, tiny_models_dir, engine="fast", batch_size=3, max_retries=0, max_new_tokens=4000,
                     chunk_chars=400)
    out = tmp_path / "out"
    b = _two_voice_book(chapters=1, alice_chars=380)  # about 3,000 frames before a runaway ends: minutes here
    clocks, stop_at = [], []
    real_clock = pipeline.StreamRender.stop_clock

    def stop():
        if not stop_at and mf.manifest_path(out).exists() and mf.load_manifest(out).count(mf.DONE, mf.SUSPECT) >= 1:
            stop_at.append(time.perf_counter())
        return bool(stop_at)

    def clock(self):
        clocks.append(real_clock(self))
        return clocks[-1]

    pipeline.StreamRender.stop_clock = clock
    try:
        with speaker_never_ends(be.tts.model("preset"), "vivian"):
            result = _render_two_voices(be, b, out, stop)
    finally:
        pipeline.StreamRender.stop_clock = real_clock
    ended = time.perf_counter()
    assert result.stopped and stop_at and len(clocks) == 1
    assert pipeline.STOP_FLOOR_S <= clocks[0] < 30
    # The clock, then the kept takes' decode, checks and saves: well under the runaway's own minutes.
    assert ended - stop_at[0] < clocks[0] + 10
    m = mf.load_manifest(out)
    alice = [s for s in m.chunks.values() if s.speaker == "Alice"]
    assert [s.status for s in alice] == [mf.PENDING]  # dropped in flight: rendered next time
    assert any("dropped" in line for line in result.log)
    assert m.count(mf.DONE, mf.SUSPECT) >= 1


def test_out_of_memory_halves_the_slots_and_they_grow_back(tmp_path, tiny_models_dir, monkeypatch):
    """Out of memory with 4 slots: the stream goes on with 2, and after a calm stretch of takes tries 4 again."""
    from audiobook import batching
    from tests.model_helpers import out_of_memory_once

    monkeypatch.setattr(batching, "RECOVER_AFTER_BATCHES", 2)  # two calm rounds of the slots, then double
    be = backend_for(tmp_path, tiny_models_dir, engine="fast", batch_size=4, max_retries=0)
    failed, sessions = out_of_memory_once(be.tts, above=2)
    result = be.render(book(n_chapters=2, sentences=5), RYAN, out_dir=tmp_path / "out")
    assert result.complete and failed == [4]
    m = mf.load_manifest(tmp_path / "out")
    assert m.count(*mf.KEPT) == len(m.chunks) >= 8
    slots = sorted(set(sessions), key=sessions.index)
    assert slots == [2, 4], sessions  # halved, then doubled back to the configured batch size
    assert any("batches of 4 again" in line for line in result.log)


def test_frame_limits_and_seeds_come_from_the_chunk_alone():
    assert frame_limit("x" * 100, None, 3.0, 4096) == frame_limit("x" * 100, None, 3.0, 4096)
    assert frame_limit("x" * 100, 0.07, 3.0, 4096) < frame_limit("x" * 100, None, 3.0, 4096) <= 4095
    assert frame_limit("x" * 5000, None, 3.0, 4096) == 4095  # never above max_new_tokens - 1
    # Six times the book's pace, plus slack: a take the limit ends would fail the pace check anyway.
    assert frame_limit("x" * 100, 0.07, 3.0, 4096) == pytest.approx((100 * 0.07 * 6 + 8) * 12.5, abs=1)
    assert chunk_seed(1234, "abc", 0) == chunk_seed(1234, "abc", 0) != chunk_seed(1234, "abd", 0)
    assert chunk_seed(1234, "abc", 1) != chunk_seed(1234, "abc", 0)


CHAOS_SCRIPT = textwrap.dedent("""
    # Imports torch and loads the model once, then forks one render per line read: each run is a whole
    # process that the test kills with SIGKILL, without paying for Python, torch and the model again.
    import os, sys
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the tokenizer's threads do not survive a fork
    import torch
    torch.set_num_threads(1)  # two threads on a shared machine spin against each other
    sys.path.insert(0, {root!r})
    from backend import Backend
    from audiobook.books import load_book
    from audiobook.stream import Session
    from audiobook.tts import Narrator
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
    be.tts.model("preset")
    book = load_book({book!r})
    for run, _ in enumerate(sys.stdin):
        pid = os.fork()
        if pid == 0:
            log = os.open({takes!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            result = be.render(book, Narrator(kind="preset", speaker="ryan"), out_dir={out!r})
            with open({tmp!r} + f"/run-{{run}}.txt", "w") as fh:
                fh.write("COMPLETE" if result.complete else "INCOMPLETE")
            os._exit(0)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
""")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_at_random_moments_loses_at_most_the_takes_in_flight(tmp_path, tiny_models_dir):
    """kill -9 a render again and again: every run goes on where the last stopped; no chunk file is
    written twice, and each kill loses at most the slot count of finished takes."""
    b = book(n_chapters=2, sentences=4)
    book_path = tmp_path / "book.json"
    book_path.write_text(json.dumps(b.to_dict()))
    out, takes = tmp_path / "out", tmp_path / "takes.log"
    script = CHAOS_SCRIPT.format(root=str(ROOT), tmp=str(tmp_path), models=str(tiny_models_dir),
                                 book=str(book_path), out=str(out), takes=str(takes))
    rng = random.Random(19)
    files: dict[str, int] = {}  # chunk file -> inode of its one write
    kills, complete, start, pid = 0, False, time.time(), None
    server = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        for run in range(6):  # two runs killed, then one that completes (a few more if a kill came too late)
            server.stdin.write("go\n")
            server.stdin.flush()
            line = server.stdout.readline()
            assert line.strip().isdigit(), server.stderr.read()[-2000:] if server.poll() is not None else line
            pid = int(line)
            if kills < 2:
                # Wait for the render to be under way, then a random moment.
                base = takes.stat().st_size if takes.exists() else 0
                while time.time() - start < 500 and not (takes.exists() and takes.stat().st_size > base):
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 0.5))
                try:
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass  # it had already finished
            code = int(server.stdout.readline())
            assert code in (0, -signal.SIGKILL), code
            pid = None
            complete = code == 0 and (tmp_path / f"run-{run}.txt").read_text() == "COMPLETE"
            for p in (out / "chunks").glob("*.wav"):
                inode = p.stat().st_ino
                assert files.setdefault(p.name, inode) == inode, f"{p.name} was written twice"
            if complete:
                break
    finally:
        if pid is not None:  # a run still going when the test failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.kill()
        server.communicate(timeout=60)
    assert complete and kills >= 1
    m = mf.load_manifest(out)
    assert m.count(mf.DONE, mf.SUSPECT) == len(m.chunks)
    finished = takes.read_text().count("take")
    # Every finished take is a kept chunk (no retakes here), except those a kill caught between the
    # engine and the chunk file: at most the slot count per kill.
    assert len(m.chunks) <= finished <= len(m.chunks) + 3 * kills
