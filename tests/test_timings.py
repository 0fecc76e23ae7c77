"""Sentence timings (timings.json), sentence subtitles and karaoke files."""

import json
import re

import numpy as np
import pytest

from audiobook import manifest as mf
from audiobook.books import Book, Chapter
from audiobook.files import SAMPLE_RATE
from audiobook.render import RenderOptions, RenderResult, render_events
from audiobook.settings import Settings
from audiobook.subtitles import CUE_CHARS, LINE_CHARS, Cue, Word, readable_cues, split_readable, write_ass, write_karaoke_vtt
from audiobook.text import split_sentences
from audiobook.timings import TIMINGS_FILE, _boundaries, chapter_levels, find_pauses, load_timings
from audiobook.tts import Narrator

S_PER_CHAR = 0.05
GAP_S = 0.4  # the silence our fake narrator leaves between sentences


class PausingTTS:
    """Speaks each sentence as a tone, with a real pause between sentences, like a narrator."""

    def __init__(self, s_per_char=S_PER_CHAR):
        self.s_per_char = s_per_char

    def narrate(self, narrator, texts, language, opts, prompt=None, **kw):
        out = []
        for text in texts:
            parts = []
            for k, s in enumerate(split_sentences(text, "en")):
                if k:
                    parts.append(np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32))
                n = int(self.s_per_char * len(s) * SAMPLE_RATE)
                parts.append((0.3 * np.sin(np.arange(n) * 2 * np.pi * 220 / SAMPLE_RATE)).astype(np.float32))
            out.append(np.concatenate(parts))
        return out


def book():
    # Sentences of very different lengths, so a split by characters alone misses the pauses.
    text = ("Hi there. This sentence is much longer than the one before it. Short again.\n\n"
            "A second paragraph, long enough to need a clause break for subtitles, because it goes on and on and on. Yes.")
    return Book("Timed", [Chapter("One", text), Chapter("Two", "Only one line here. And another one.")], language="en")


def render(tmp_path, **kw):
    s = Settings(**{**dict(device="cpu", max_new_tokens=2000, chunk_chars=200, make_m4b=False, verify="off",
                           duration_outlier_factor=20.0), **kw})
    result = RenderResult(out_dir=tmp_path)
    list(render_events(book(), Narrator(kind="preset", speaker="ryan"), s, tmp_path, PausingTTS(), result,
                       options=RenderOptions()))
    return result


def test_render_times_every_sentence_at_the_real_pauses(tmp_path):
    result = render(tmp_path)
    assert result.complete
    data = json.loads((tmp_path / TIMINGS_FILE).read_text())
    assert data["format"] == "audiobook-timings" and set(data["chapters"]) == {"1", "2"}
    m = mf.load_manifest(tmp_path)
    timings = load_timings(tmp_path)
    for n, t in timings.items():
        assert t.assembled == m.chapters[n - 1].assembled
        starts = [s.start for s in t.sentences]
        assert starts == sorted(starts)
        assert all(a.end <= b.start + 1e-6 for a, b in zip(t.sentences, t.sentences[1:]))
        assert abs(t.sentences[-1].end - t.duration) < 0.01
    one = timings[1]
    texts = [s.text for s in one.sentences]
    assert texts[0] == "One" and one.sentences[0].title
    assert texts[1:] == ["Hi there.", "This sentence is much longer than the one before it.", "Short again.",
                         "A second paragraph, long enough to need a clause break for subtitles, because it goes on and on and on.",
                         "Yes."]
    # Inside a chunk each boundary sits in the pause the narrator left (a split by characters would not).
    levels = chapter_levels(tmp_path / one.file, one.duration)
    inner = [b.start for a, b in zip(one.sentences, one.sentences[1:]) if a.chunk == b.chunk]
    assert len(inner) == 3
    for t in inner:
        frame = int(t / 0.01)
        assert levels[frame - 5 : frame + 5].max() < -50  # silence on both sides of the boundary


def test_sentence_subtitles_are_short_in_order_and_inside_the_chapter(tmp_path):
    render(tmp_path)
    timings = load_timings(tmp_path)
    for n, t in timings.items():
        srt = (tmp_path / t.file).with_suffix(".srt").read_text()
        vtt = (tmp_path / t.file).with_suffix(".vtt").read_text()
        assert vtt.startswith("WEBVTT")
        times = [(_secs(a), _secs(b)) for a, b in re.findall(r"(\S+) --> (\S+)", srt)]
        assert times and all(s <= e for s, e in times) and times == sorted(times)
        assert all(b[0] >= a[1] - 0.0015 for a, b in zip(times, times[1:]))
        assert times[-1][1] <= t.duration + 0.001
        blocks = [b.split("\n")[2:] for b in srt.strip().split("\n\n")]
        assert len(blocks) >= len(t.sentences)  # a cue per sentence at least (long ones cut at clauses)
        for text in re.split(r"\n\n", vtt.strip())[1:]:
            lines = text.split("\n")[2:]
            assert len(lines) <= 2 and all(len(x) <= LINE_CHARS for x in lines)


def test_a_chapter_assembled_again_is_timed_again(tmp_path):
    render(tmp_path)
    before = json.loads((tmp_path / TIMINGS_FILE).read_text())["chapters"]["1"]["assembled"]
    render(tmp_path, pause_chunk_ms=900)
    after = json.loads((tmp_path / TIMINGS_FILE).read_text())["chapters"]["1"]["assembled"]
    assert before != after == mf.load_manifest(tmp_path).chapters[0].assembled


def test_whisper_times_place_the_boundaries():
    parts = ["Aaaa aaaa.", "Bbbb bbbb."]  # equal length: by characters alone the boundary is at 5 s
    levels = np.full(1000, -20.0)  # no pause anywhere
    anchors = [(0.0, 0.0), (0.5, 2.0), (1.0, 10.0)]  # Whisper heard the first sentence end at 2 s
    assert _boundaries(parts, 0.0, 10.0, anchors, levels) == [0.0, 2.0, 10.0]
    assert _boundaries(parts, 0.0, 10.0, [], levels) == [0.0, 5.0, 10.0]


def test_pauses_are_found_inside_a_chunk_but_not_at_its_edges():
    levels = np.full(300, -20.0)
    levels[:10] = levels[100:130] = levels[290:] = -90.0
    assert find_pauses(levels, 0.0, 3.0) == pytest.approx([1.15])


def test_long_sentences_are_cut_at_clauses_into_two_line_cues():
    text = ("When the long sentence reaches the end of its first clause, it stops for breath; "
            "then it goes on with a second clause, and a third one, until the reader has had enough.")
    pieces = split_readable(text)
    assert all(len(p) <= CUE_CHARS for p in pieces) and " ".join(pieces) == text
    assert pieces[0].endswith(";")
    cues = readable_cues([Cue(10.0, 20.0, text)])
    assert cues[0].start == 10.0 and cues[-1].end == 20.0
    assert all(a.end == b.start for a, b in zip(cues, cues[1:]))


def test_karaoke_files_time_every_word(tmp_path):
    words = [Word(1.0, 1.4, "Hello"), Word(1.6, 2.0, "world.")]
    vtt = write_karaoke_vtt(tmp_path / "k.vtt", [(Cue(1.0, 2.0, "Hello world."), words)]).read_text()
    assert "00:00:01.000 --> 00:00:02.000" in vtt and "<c>Hello</c> <00:00:01.600><c>world.</c>" in vtt
    ass = write_ass(tmp_path / "k.ass", [(Cue(1.0, 2.0, "Hello world."), words)], "T").read_text()
    assert "Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,{\\k40}Hello {\\k20}{\\k40}world." in ass


def _secs(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_whisper_segments_are_moved_by_the_silence_trimmed_off_the_take(tmp_path):
    from types import SimpleNamespace

    from audiobook.audio import TRIM_MARGIN_MS, write_wav
    from audiobook.timings import _whisper_anchors

    # The take starts with 1 s of silence, which assembly trims down to its margin; Whisper's times
    # count from the take's start, so they move back by what was trimmed.
    tone = (0.3 * np.sin(np.arange(2 * SAMPLE_RATE) * 2 * np.pi * 220 / SAMPLE_RATE)).astype(np.float32)
    write_wav(tmp_path / "take.wav", np.concatenate([np.zeros(SAMPLE_RATE, dtype=np.float32), tone]))
    state = SimpleNamespace(file="take.wav", segments=[{"start": 1.0, "end": 2.0, "text": "Aaaa aaaa."},
                                                       {"start": 2.0, "end": 3.0, "text": "Bbbb bbbb."}])
    anchors = _whisper_anchors(state, tmp_path, 10.0, 12.04)
    shift = 1.0 - TRIM_MARGIN_MS / 1000  # the first kept sample of the take is at 0.96 s
    times = dict(anchors)
    assert times[0.5] == pytest.approx(10.0 + 2.0 - shift, abs=0.01)
    assert anchors[0] == (0.0, 10.0) and anchors[-1][1] == pytest.approx(12.04)


def test_word_times_go_to_their_sentences_and_make_karaoke_files(tmp_path):
    from audiobook.timings import time_chapter

    render(tmp_path)
    m = mf.load_manifest(tmp_path)
    ref = m.chapters[1].chunks[1]  # "Only one line here. And another one." (after the title)
    state = m.chunks[ref.id]
    assert state.text == "Only one line here. And another one."
    # Whisper's word times, in the take's own time (from its start, before the trim).
    words = [("Only", 0.0, 0.2), ("one", 0.2, 0.4), ("line", 0.4, 0.6), ("here.", 0.6, 0.9),
             ("And", 1.3, 1.5), ("another", 1.5, 1.7), ("one.", 1.7, 1.95)]
    state.segments = [{"start": 0.0, "end": 1.95, "text": state.text,
                       "words": [{"word": w, "start": s, "end": e} for w, s, e in words]}]
    mf.save_manifest(m, tmp_path)
    timed = time_chapter(tmp_path, mf.load_manifest(tmp_path), 1)
    assert timed.source == "whisper"
    body = [s for s in timed.sentences if not s.title]
    assert [[w.text for w in s.words] for s in body] == [["Only", "one", "line", "here."], ["And", "another", "one."]]
    assert all(a.start <= b.start for a, b in zip(body[0].words, body[0].words[1:]))
    audio = tmp_path / timed.file
    karaoke = audio.with_suffix(".karaoke.vtt").read_text()
    assert "<c>Only</c>" in karaoke and "<c>another</c>" in karaoke
    assert "\\k" in audio.with_suffix(".ass").read_text()
