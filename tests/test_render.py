"""The render loop: checks, batching, OOM split, stop/resume, edits, background job, kill test."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import pytest
import torch

from audiobook import manifest as mf
from audiobook.books import Book, Chapter
from audiobook.errors import AudiobookError
from audiobook.batching import RECOVER_AFTER_BATCHES, BatchSizer, order_for_batches
from audiobook.render import RenderOptions, RenderResult, batch_log_line, render_events
from audiobook.take_length import QualityLimits, SpeakingRate, check_take, take_badness
from audiobook.settings import Settings
from audiobook.files import SAMPLE_RATE
from audiobook.tts import Narrator

ROOT = Path(__file__).resolve().parent.parent
RYAN = Narrator(kind="preset", speaker="ryan")
S_PER_CHAR = 0.06


WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def line(c, i):
    """Sentence ``i`` of chapter ``c``: no digits, which the text normaliser would spell out."""
    return f"The {WORDS[c]} chapter has its {WORDS[i]} line of narration."


def book(n_chapters=3, sentences=5, title="Book"):
    chapters = []
    for c in range(n_chapters):
        text = " ".join(line(c, i) for i in range(sentences))
        chapters.append(Chapter(f"Part {c + 1}", text))
    return Book(title, chapters, language="en")


def settings(**kw):
    base = dict(device="cpu", max_new_tokens=200, batch_size=3, chunk_chars=60, make_m4b=False,
                duration_outlier_factor=3.0, max_retries=2)
    return Settings(**{**base, **kw})


class FakeTTS:
    """Stands in for tts.TTS: wavs 0.06 s per character; can run out of memory or run away."""

    def __init__(self, oom_above=None, runaway=(), runaway_takes=99, max_new_tokens=200):
        self.calls: list[tuple[list[str], int]] = []
        self.oom_above = oom_above
        self.runaway = set(runaway)
        self.runaway_takes = runaway_takes  # a runaway text runs away this many times, then behaves
        self.cap_s = (max_new_tokens - 1) / 12.5
        self.seen: dict[str, int] = {}

    def narrate(self, narrator, texts, language, opts, prompt=None):
        if self.oom_above is not None and len(texts) > self.oom_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.calls.append((list(texts), opts.seed))
        out = []
        for t in texts:
            self.seen[t] = self.seen.get(t, 0) + 1
            seconds = self.cap_s if t in self.runaway and self.seen[t] <= self.runaway_takes else S_PER_CHAR * len(t)
            out.append(np.full(int(seconds * SAMPLE_RATE), 0.1, dtype=np.float32))
        return out

    def texts(self):
        return [t for texts, _ in self.calls for t in texts]

    def clone_prompt(self, *a, **k):  # pragma: no cover - preset narrators need none
        raise AssertionError("no clone prompt for a preset narrator")


def run(b, s, out, tts, stop=lambda: False, **options):
    result = RenderResult(out_dir=out)
    progress = list(render_events(b, RYAN, s, out, tts, result, stop, RenderOptions(**options)))
    return result, progress


# ---- the checks, with synthetic durations ----------------------------------------------------


LIMITS = QualityLimits.from_settings(Settings(max_new_tokens=200, runaway_margin_s=2.0, duration_outlier_factor=3.0))
TEXT = "x" * 100


def test_runaway_limit_comes_from_max_new_tokens():
    assert LIMITS.runaway_s == pytest.approx(199 / 12.5 - 2.0)


@pytest.mark.parametrize("duration, median, expected", [
    (6.0, 0.06, ""),  # on pace
    (6.0, None, ""),  # no pace known yet
    (15.92, None, "ran to the length limit"),  # a never-ending take: max_new_tokens - 1 frames
    (14.0, 0.06, "ran to the length limit"),  # within the margin of the cap
    (13.0, 0.02, "too long for its text"),  # 0.13 s/char against 0.02 * 3
    (1.5, 0.06, "too short for its text"),  # 0.015 s/char against 0.06 / 3
    (2.5, 0.06, ""),  # inside the factor
    (0.0, 0.06, "no audio"),
])
def test_check_take(duration, median, expected):
    reason = check_take(duration, TEXT, LIMITS, median)
    assert (expected in reason) if expected else reason == ""


def test_short_texts_are_not_judged_by_pace():
    assert check_take(3.0, "Chapter one.", LIMITS, 0.06) == ""  # 0.25 s/char, but a title
    assert "length limit" in check_take(15.0, "Chapter one.", LIMITS, 0.06)


def test_badness_prefers_the_take_closest_to_the_pace():
    good, long, runaway = (take_badness(d, TEXT, LIMITS, 0.06) for d in (6.5, 13.0, 15.9))
    assert good < long < runaway
    assert take_badness(0.0, TEXT, LIMITS, 0.06) > runaway


def test_speaking_rate_median_needs_enough_samples():
    rate = SpeakingRate()
    for d in (1.0, 2.0, 3.0, 4.0):
        rate.add(d * 2, "y" * 200)
    assert rate.median() is None
    rate.add(100.0, "y" * 200)
    rate.add(5.0, "short")  # titles do not count
    assert rate.median() == pytest.approx(6.0 / 200)


def test_batch_sizer_halves_then_grows_back():
    sizer = BatchSizer(8)
    assert "batch of 8" in sizer.shrink(8) and sizer.current == 4
    sizer.shrink(4)
    assert sizer.current == 2
    messages = [sizer.batch_done() for _ in range(RECOVER_AFTER_BATCHES)]
    assert sizer.current == 4 and messages[-1] == "Trying batches of 4 again." and not any(messages[:-1])
    for _ in range(RECOVER_AFTER_BATCHES):
        sizer.batch_done()
    assert sizer.current == 8
    assert sizer.batch_done() == ""


def test_a_stream_counts_each_slot_count_of_takes_as_one_calm_batch():
    sizer = BatchSizer(4)
    sizer.shrink(4)
    assert sizer.current == 2
    # Takes end one or a few at a time: RECOVER_AFTER_BATCHES rounds of 2 slots' worth, then 4 again.
    messages = [sizer.takes_done(1, 2) for _ in range(2 * RECOVER_AFTER_BATCHES)]
    assert sizer.current == 4 and messages[-1] == "Trying batches of 4 again." and not any(messages[:-1])
    assert sizer.takes_done(100, 4) == "" and sizer.current == 4  # at the wanted size nothing changes
    sizer.shrink(4)
    sizer.takes_done(2 * RECOVER_AFTER_BATCHES - 1, 2)
    sizer.shrink(2)  # running out again starts the count afresh
    assert sizer.current == 1 and sizer.takes_done(RECOVER_AFTER_BATCHES - 1, 1) == "" and sizer.current == 1


def test_length_order_groups_similar_lengths_and_book_order_keeps_reading_order():
    texts = {str(i): "w" * n for i, n in enumerate([5, 80, 6, 79, 7, 81, 8, 82])}
    ids = list(texts)
    assert order_for_batches(ids, texts, "book", 2) == ids
    by_length = order_for_batches(ids, texts, "length", 2)
    assert sorted(by_length) == sorted(ids)
    batches = [by_length[i : i + 2] for i in range(0, 8, 2)]
    spreads = [abs(len(texts[a]) - len(texts[b])) for a, b in batches]
    assert max(spreads) <= 2


def test_batch_log_line():
    assert batch_log_line(5, 81.59) == "Batch (5 chunks) done in 81.59s (16.32s/chunk)"
    assert batch_log_line(1, 2.0) == "Batch (1 chunk) done in 2.00s (2.00s/chunk)"


# ---- the loop, with a fake model -------------------------------------------------------------


def test_render_writes_chunks_manifest_and_chapters_then_resumes_with_nothing_to_do(tmp_path):
    b, s, tts = book(), settings(), FakeTTS()
    result, progress = run(b, s, tmp_path, tts)
    m = mf.load_manifest(tmp_path)
    assert m.count(mf.DONE) == len(m.chunks) == result.chunks == result.generated
    assert len(tts.texts()) == len(m.chunks)  # every chunk generated exactly once
    assert all((tmp_path / st.file).is_file() for st in m.chunks.values())
    assert [f.name for f in result.chapter_files] == ["01 - Part 1.wav", "02 - Part 2.wav", "03 - Part 3.wav"]
    assert result.complete and not result.failed and not result.suspect
    assert sum(1 for line in result.log if line.startswith("Batch (")) == result.batches
    last = progress[-1]
    assert last.chunks_done == last.chunks_total and last.eta_s == 0.0 and last.x_real_time > 0
    assert [p.chunks_done for p in progress] == sorted(p.chunks_done for p in progress)

    again, _ = run(b, s, tmp_path, tts2 := FakeTTS())
    assert tts2.calls == [] and again.generated == 0 and again.reused == result.chunks
    assert again.chapter_files == result.chapter_files


def test_results_go_back_to_book_order_whatever_the_batch_order(tmp_path):
    b = book(n_chapters=1, sentences=6)
    b.chapters[0].text = "Short. A much longer sentence that takes a good while to say. Mid length line here. Hi."
    tts_l, tts_b = FakeTTS(), FakeTTS()
    by_length, _ = run(b, settings(batch_order="length"), tmp_path / "l", tts_l)
    in_order, _ = run(b, settings(batch_order="book"), tmp_path / "b", tts_b)
    # The two orders really asked the model for the same chunks in different orders.
    assert tts_l.texts() != tts_b.texts() and sorted(tts_l.texts()) == sorted(tts_b.texts())
    ml, mb = mf.load_manifest(tmp_path / "l"), mf.load_manifest(tmp_path / "b")
    assert ml.chapter_ids(0) == mb.chapter_ids(0)
    cues = [c[2] for c in ml.chapters[0].audio["cues"]]
    assert cues == [ml.chunks[i].text for i in ml.chapter_ids(0)]
    for out, m in ((tmp_path / "l", ml), (tmp_path / "b", mb)):
        for i in m.chapter_ids(0):  # each chunk file holds its own take: the fake's length for its text
            st = m.chunks[i]
            assert sf.info(str(out / st.file)).frames == int(S_PER_CHAR * len(st.text) * SAMPLE_RATE), st.text


@pytest.mark.parametrize("batch_size, fits", [(2, 1), (5, 2), (8, 3), (20, 1)])
def test_out_of_memory_splits_batches_and_every_chunk_ends_done(tmp_path, batch_size, fits):
    b, tts = book(n_chapters=2, sentences=8), FakeTTS(oom_above=fits)
    result, _ = run(b, settings(batch_size=batch_size), tmp_path, tts)
    m = mf.load_manifest(tmp_path)
    assert m.count(mf.DONE) == len(m.chunks) and not result.failed
    assert max(len(texts) for texts, _ in tts.calls) <= fits
    assert sorted(tts.texts()) == sorted(st.text for st in m.chunks.values())  # nothing twice, nothing lost
    first = min(batch_size, result.chunks)
    assert any(line.startswith(f"Out of GPU memory with a batch of {first}") for line in result.log)
    assert len(result.chapter_files) == 2


def test_a_single_chunk_out_of_memory_is_failed_reported_and_its_chapter_held_back(tmp_path):
    b, s = book(n_chapters=2, sentences=4), settings(batch_size=2)
    result, _ = run(b, s, tmp_path, FakeTTS(oom_above=0))
    assert len(result.failed) == len(result.chunks and mf.load_manifest(tmp_path).chunks)
    assert result.failed[0].text and "memory" in result.failed[0].reason
    assert result.chapter_files == [] and len(result.skipped_chapters) == 2 and not result.complete
    # The next render tries failed chunks again; now they fit.
    again, _ = run(b, s, tmp_path, FakeTTS())
    assert again.complete and len(again.chapter_files) == 2 and again.generated == result.chunks


def test_allow_incomplete_assembles_a_chapter_without_its_failed_chunk(tmp_path):
    b, s = book(n_chapters=1, sentences=4), settings(batch_size=1)

    class FailOne(FakeTTS):
        def narrate(self, narrator, texts, language, opts, prompt=None):
            if line(0, 2) in texts:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
            return super().narrate(narrator, texts, language, opts, prompt)

    held, _ = run(b, s, tmp_path, FailOne())
    assert held.chapter_files == [] and len(held.failed) == 1
    made, _ = run(b, s, tmp_path, FailOne(), allow_incomplete=True)
    assert len(made.chapter_files) == 1 and len(made.failed) == 1
    assert mf.load_manifest(tmp_path).chapters[0].audio["missing_chunks"]


def test_runaway_chunk_is_retaken_with_other_seeds_then_kept_as_suspect(tmp_path):
    b = book(n_chapters=1, sentences=6)
    bad = line(0, 3)
    tts = FakeTTS(runaway={bad})
    result, _ = run(b, settings(max_retries=2), tmp_path, tts)
    seeds = [seed for texts, seed in tts.calls if bad in texts]
    assert len(seeds) == 3 and len(set(seeds)) == 3  # first take and two retakes, each with its own seed
    assert [r.text for r in result.suspect] == [bad] and "length limit" in result.suspect[0].reason
    m = mf.load_manifest(tmp_path)
    st = next(s for s in m.chunks.values() if s.text == bad)
    assert st.status == mf.SUSPECT and st.attempts == 3 and (tmp_path / st.file).is_file()
    assert len(result.chapter_files) == 1  # a suspect chunk is kept, and listed
    again, _ = run(b, settings(max_retries=2), tmp_path, FakeTTS())
    assert again.generated == 0 and [r.text for r in again.suspect] == [bad]


def test_a_retake_that_passes_is_kept_as_done(tmp_path):
    b = book(n_chapters=1, sentences=3)
    bad = line(0, 1)
    result, _ = run(b, settings(), tmp_path, FakeTTS(runaway={bad}, runaway_takes=1))
    st = next(s for s in mf.load_manifest(tmp_path).chunks.values() if s.text == bad)
    assert st.status == mf.DONE and st.attempts == 2 and st.duration_s == pytest.approx(S_PER_CHAR * len(bad), abs=0.01)
    assert not result.suspect


def test_stop_ends_after_the_batch_in_flight_and_render_again_continues(tmp_path):
    b, s = book(n_chapters=3, sentences=5), settings(batch_size=2)
    first = FakeTTS()
    result, progress = run(b, s, tmp_path, first, stop=lambda: len(first.calls) >= 2)
    assert result.stopped and len(first.calls) == 2 and not result.complete
    assert "Render again to continue" in progress[-1].message
    m = mf.load_manifest(tmp_path)
    assert m.count(mf.DONE) == 4
    second = FakeTTS()
    again, _ = run(b, s, tmp_path, second)
    assert again.complete and again.reused == 4
    assert not set(first.texts()) & set(second.texts())
    assert sorted(first.texts() + second.texts()) == sorted(st.text for st in m.chunks.values())


def test_editing_one_chapter_renders_only_its_changed_chunks_and_pauses_render_nothing(tmp_path):
    b, s = book(), settings()
    run(b, s, tmp_path, FakeTTS())
    chapter_file = tmp_path / "02 - Part 2.wav"
    before = chapter_file.stat().st_mtime_ns
    b.chapters[1].text = b.chapters[1].text.replace(line(1, 4), "The bravo chapter has a changed last line.")
    tts = FakeTTS()
    result, _ = run(b, s, tmp_path, tts)
    assert tts.texts() == ["The bravo chapter has a changed last line."]
    assert chapter_file.stat().st_mtime_ns != before and result.complete
    third = tmp_path / "03 - Part 3.wav"
    before3 = third.stat().st_mtime_ns
    tts = FakeTTS()
    run(b, settings(pause_chunk_ms=700), tmp_path, tts)
    assert tts.calls == [] and third.stat().st_mtime_ns != before3  # re-assembled, not re-rendered


def test_changing_the_voice_renders_everything_again(tmp_path):
    b, s = book(n_chapters=1), settings()
    run(b, s, tmp_path, FakeTTS())
    tts = FakeTTS()
    result = RenderResult(out_dir=tmp_path)
    list(render_events(b, Narrator(kind="preset", speaker="vivian"), s, tmp_path, tts, result))
    assert result.reused == 0 and len(tts.texts()) == result.chunks


def test_redo_one_chunk_or_one_chapter(tmp_path):
    b, s = book(), settings()
    run(b, s, tmp_path, FakeTTS())
    m = mf.load_manifest(tmp_path)
    target = m.chapters[2].chunks[1].id
    tts = FakeTTS()
    result, _ = run(b, s, tmp_path, tts, redo_chunks=(target,))
    assert tts.texts() == [m.chunks[target].text] and result.complete
    assert mf.load_manifest(tmp_path).chunks[target].attempts == 2
    tts = FakeTTS()
    run(b, s, tmp_path, tts, redo_chapters=(2,))
    assert sorted(tts.texts()) == sorted({m.chunks[i].text for i in m.chapter_ids(1)})
    with pytest.raises(AudiobookError, match="no chapter 9"):
        run(b, s, tmp_path, FakeTTS(), redo_chapters=(9,))


def test_corrupt_manifest_then_rebuild_regenerates_nothing(tmp_path):
    b, s = book(), settings()
    run(b, s, tmp_path, FakeTTS())
    path = mf.manifest_path(tmp_path)
    path.write_text(path.read_text()[:100])
    with pytest.raises(AudiobookError, match="damaged"):
        run(b, s, tmp_path, FakeTTS())
    tts = FakeTTS()
    result, _ = run(b, s, tmp_path, tts, rebuild=True)
    assert tts.calls == [] and result.complete and len(result.chapter_files) == 3
    assert list(tmp_path.glob("manifest.json.broken-*"))


def test_book_files_are_written_once_complete(tmp_path):
    b, s = book(n_chapters=2, sentences=2, title="Tiny Book"), settings(make_m4b=True)
    result, _ = run(b, s, tmp_path, FakeTTS())
    assert tmp_path / "Tiny Book.m4b" in result.book_files
    again, _ = run(b, s, tmp_path, FakeTTS())
    assert again.book_files == result.book_files


# ---- real tiny checkpoints -----------------------------------------------------------------


def backend_for(root, models_dir, **kw):
    from backend import Backend

    b = Backend(root=root, settings_path=root / "user_settings.json", models_dir=str(models_dir))
    b.apply_settings(b.settings.updated(**{**dict(device="cpu", max_new_tokens=64, batch_size=3, chunk_chars=60,
                                           make_m4b=False, duration_outlier_factor=20.0, runaway_margin_s=0.0), **kw}))
    return b


@pytest.mark.parametrize("engine", ["qwen_tts", "fast"])
def test_tiny_model_render_and_oom_injection(tmp_path, tiny_models_dir, engine):
    be = backend_for(tmp_path, tiny_models_dir, batch_size=4, engine=engine)
    real = be.tts.narrate
    widths, texts_per_call = [], []

    def narrate(narrator, texts, *a, **k):  # a GPU that decodes two chunks at a time
        width = k.get("slots") or len(texts)  # the fast engine's memory follows its slots
        widths.append(width)
        texts_per_call.append(len(texts))
        if width > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real(narrator, texts, *a, **k)

    be.tts.narrate = narrate
    result = be.render(book(n_chapters=2, sentences=3), RYAN, out_dir=tmp_path / "out")
    assert result.complete and len(result.chapter_files) == 2 and widths[0] == 4
    assert mf.load_manifest(tmp_path / "out").count(*mf.KEPT) == result.chunks  # random weights may run away (suspect)
    if engine == "fast":  # the stream builds prompts for as many texts as its session has slots
        # (out of memory, the slot count halves and the lost takes are fed again first; every later call is smaller)
        assert texts_per_call[0] == 4 and max(widths[1:]) == 2 and max(texts_per_call[1:]) <= 2


def test_runaway_tiny_model_marks_chunks_suspect(tmp_path):
    from audiobook.tiny import build_tiny_models

    build_tiny_models(tmp_path / "models", names=["Qwen3-TTS-12Hz-1.7B-CustomVoice"], runaway=True)
    be = backend_for(tmp_path, tmp_path / "models", max_new_tokens=64, max_retries=1, batch_size=4)
    result = be.render(book(n_chapters=1, sentences=2), RYAN, out_dir=tmp_path / "out")
    m = mf.load_manifest(tmp_path / "out")
    assert m.count(mf.SUSPECT) == len(m.chunks) == len(result.suspect)
    assert all(st.attempts == 2 for st in m.chunks.values())
    assert all("length limit" in r.reason and r.text for r in result.suspect)
    assert len(result.chapter_files) == 1


def test_background_render_refuses_a_second_stops_and_continues(tmp_path, tiny_models_dir):
    # qwen_tts's own loop: one batch of two chunks a call, so a stop lands between calls.
    be = backend_for(tmp_path, tiny_models_dir, batch_size=2, engine="qwen_tts")
    b = book(n_chapters=2, sentences=4)
    real = be.tts.narrate

    def slow(*a, **k):  # slow enough that the stop lands mid-render
        time.sleep(0.3)
        return real(*a, **k)

    be.tts.narrate = slow
    state = be.start_render(b, RYAN, out_dir=tmp_path / "out")
    assert state.running
    with pytest.raises(AudiobookError, match="already running"):
        be.start_render(b, RYAN, out_dir=tmp_path / "out")
    with pytest.raises(AudiobookError, match="already running"):
        be.render(b, RYAN, out_dir=tmp_path / "out")
    deadline = time.time() + 120
    while be.render_state().chunks_done < 2 and time.time() < deadline:
        time.sleep(0.05)
    be.stop_render()
    state = be.wait_render(120)
    assert not state.running and state.stopped and state.finished and not state.error
    assert 0 < state.chunks_done < state.chunks_total
    assert any(line.startswith("Batch (") for line in state.log)
    be.start_render(b, RYAN, out_dir=tmp_path / "out")
    state = be.wait_render(300)
    assert state.finished and not state.stopped and state.chunks_done == state.chunks_total
    assert len(state.chapter_files) == 2 and state.failed == []


def test_background_render_reports_errors_as_a_sentence(tmp_path, tiny_models_dir):
    be = backend_for(tmp_path, tiny_models_dir)
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{broken")
    be.start_render(book(n_chapters=1, sentences=1), RYAN, out_dir=out)
    state = be.wait_render(60)
    assert not state.running and not state.finished and "damaged" in state.error


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from backend import Backend
    from audiobook.books import load_book
    from audiobook.tts import Narrator
    be = Backend(root={tmp!r}, settings_path={tmp!r} + "/user_settings.json", models_dir={models!r})
    be.apply_settings(be.settings.updated(device="cpu", max_new_tokens=64, batch_size=2, chunk_chars=60,
                                  make_m4b=False, duration_outlier_factor=20.0, runaway_margin_s=0.0))
    real = be.tts.narrate
    def slow(*a, **k):
        time.sleep(0.4)  # the kill must land mid-render
        return real(*a, **k)
    be.tts.narrate = slow
    be.render(load_book({book!r}), Narrator(kind="preset", speaker="ryan"), out_dir={out!r})
""")


@pytest.mark.slow
def test_kill_mid_render_then_resume_generates_no_finished_chunk_twice(tmp_path, tiny_models_dir):
    b = book(n_chapters=3, sentences=4)
    book_path = tmp_path / "book.json"
    book_path.write_text(json.dumps(b.to_dict()))
    out = tmp_path / "out"
    script = KILL_SCRIPT.format(root=str(ROOT), tmp=str(tmp_path), models=str(tiny_models_dir),
                                book=str(book_path), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 420  # a hang guard: a loaded machine can take minutes to load and render
    try:
        while time.time() < deadline:
            m = mf.load_manifest(out) if mf.manifest_path(out).exists() else None
            if m is not None and m.count(mf.DONE) >= 2:  # one batch of two is on disk
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    killed = mf.load_manifest(out)
    done_before = {i for i, st in killed.chunks.items() if st.status == mf.DONE}
    files_before = {p.name: p.stat().st_mtime_ns for p in (out / "chunks").glob("*.wav")}
    assert 2 <= len(done_before) < len(killed.chunks)

    be = backend_for(tmp_path, tiny_models_dir, batch_size=2)
    real, generated = be.tts.narrate, []

    def record(narrator, texts, *a, **k):
        generated.extend(texts)
        return real(narrator, texts, *a, **k)

    be.tts.narrate = record
    result = be.render(b, RYAN, out_dir=out)
    assert result.complete
    final = mf.load_manifest(out)
    assert not {final.chunks[i].text for i in done_before} & set(generated)
    for name, mtime in files_before.items():  # every take on disk at the kill was kept, not redone
        assert (out / "chunks" / name).stat().st_mtime_ns == mtime
    left = {st.text for i, st in final.chunks.items() if st.file.rsplit("/", 1)[-1] not in files_before}
    assert set(generated) == left  # retakes of unfinished chunks may repeat; nothing else is generated

    clean = be.render_plan(b, RYAN, out_dir=tmp_path / "clean")
    assert [[r.id for r in ch.chunks] for ch in final.chapters] == [[r.id for r in ch.chunks] for ch in clean.chapters]
    assert final.count(mf.DONE, mf.SUSPECT) == len(final.chunks)
    assert [f.name for f in result.chapter_files] == ["01 - Part 1.wav", "02 - Part 2.wav", "03 - Part 3.wav"]


def test_pronunciation_dictionary_from_settings_changes_only_the_words_it_names(tmp_path):
    from audiobook.render import plan_book

    b = Book("Names", [Chapter("One", "Hermione waved. The train left."), Chapter("Two", "Nobody else came.")])
    narrator = Narrator(kind="preset", speaker="ryan")
    plain = plan_book(b, narrator, settings(), tmp_path / "out")
    words = tmp_path / "say.json"
    words.write_text(json.dumps({"Hermione": "Her-my-oh-nee"}))
    spoken = plan_book(b, narrator, settings(pronunciations_file=str(words)), tmp_path / "out")
    texts = [s.text for s in spoken.chunks.values()]
    assert any("Her-my-oh-nee waved." in t for t in texts) and not any("Hermione" in t for t in texts)
    # Chunks without the word keep their ids, so a resume re-renders only what changed.
    assert len(set(plain.chunks) & set(spoken.chunks)) == len(plain.chunks) - 1

    words.write_text("{not json")
    with pytest.raises(AudiobookError, match="not valid JSON"):
        plan_book(b, narrator, settings(pronunciations_file=str(words)), tmp_path / "out")
