"""When each sentence of a chapter is heard: ``timings.json`` beside the manifest, and the chapter's subtitles.

A chapter's chunks sit where assembly put them (the chunk cues in the manifest). Inside a
chunk, each sentence's share is first its share of the chunk's characters. Where Whisper
checked the take and left its segment (or word) times in the manifest, those times place
the sentences instead. Either way each boundary between two sentences then moves to the
nearest real pause in the chapter's audio (a run of silence), when there is one close by.
Word times exist only where Whisper was asked for them (the ``word_timings`` setting).

The timings of a chapter carry its assembly key, so a chapter assembled again is timed again.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import AudiobookError
from .files import SAMPLE_RATE, atomic_write_text, ffmpeg_command
from .subtitles import Cue, Word, readable_cues, write_ass, write_karaoke_vtt, write_srt, write_vtt
from .text import split_sentences

log = logging.getLogger(__name__)

TIMINGS_FILE = "timings.json"
TIMINGS_FORMAT = "audiobook-timings"
TIMINGS_VERSION = 1
FRAME_S = 0.01  # silence is found on 10 ms frames
PAUSE_MIN_S = 0.08  # shorter dips are inside words
SILENCE_FLOOR_DB = -60.0  # frames below this are always silence
SILENCE_RANGE_DB = 30.0  # ...and so are frames this far below the chunk's loud frames
SNAP_SHARE = 0.4  # a boundary moves at most this share of the shorter neighbouring sentence
SNAP_MIN_S = 0.4  # ...but always this far
MIN_SENTENCE_S = 0.05  # no sentence is timed shorter (unless its chunk is too short for them all)

_lock = threading.Lock()  # chapters may be timed from several threads; timings.json is one file


@dataclass
class Sentence:
    """One sentence (or a title) of a chapter and when it is heard, in seconds of the chapter's audio."""

    text: str
    start: float
    end: float
    chunk: int  # index of its chunk in the chapter
    title: bool = False
    words: list[Word] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text, "start": round(self.start, 3), "end": round(self.end, 3), "chunk": self.chunk}
        if self.title:
            d["title"] = True
        if self.words:
            d["words"] = [[w.text, round(w.start, 3), round(w.end, 3)] for w in self.words]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Sentence":
        words = [Word(float(s), float(e), str(t)) for t, s, e in d.get("words") or []]
        return cls(str(d["text"]), float(d["start"]), float(d["end"]), int(d["chunk"]), bool(d.get("title")), words)


@dataclass
class ChapterTimings:
    """The sentences of one assembled chapter (``number`` from 1) and the file they are timed in."""

    number: int
    title: str
    file: str  # the chapter's audio, relative to the book folder
    duration: float
    assembled: str  # the chapter's assembly key when it was timed
    sentences: list[Sentence]
    source: str = "text"  # "text": characters and pauses; "whisper": Whisper's segment or word times

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "title": self.title, "file": self.file, "duration": round(self.duration, 3),
                "assembled": self.assembled, "source": self.source, "sentences": [s.to_dict() for s in self.sentences]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ChapterTimings":
        return cls(int(d["number"]), str(d["title"]), str(d["file"]), float(d["duration"]), str(d["assembled"]),
                   [Sentence.from_dict(s) for s in d["sentences"]], str(d.get("source", "text")))

    def cues(self) -> list[Cue]:
        """Subtitle cues of at most two short lines: a sentence each, long ones cut at clauses."""
        return readable_cues([Cue(s.start, s.end, s.text) for s in self.sentences])

    @property
    def has_words(self) -> bool:
        return any(s.words for s in self.sentences)


# ---- timing one chapter ----------------------------------------------------------------------


def time_chapter(out_dir: str | Path, manifest, chapter: int) -> ChapterTimings | None:
    """Time the sentences of chapter ``chapter`` (0-based) from its assembled file and store them.

    Writes the entry in ``timings.json`` and the chapter's subtitles beside its audio: the
    ``.srt`` and ``.vtt`` with a cue per sentence, and with word times a karaoke ``.karaoke.vtt``
    and ``.ass``. Returns None when the chapter is not assembled.
    """
    out_dir = Path(out_dir)
    ch = manifest.chapters[chapter]
    if not ch.audio or not ch.file or not (out_dir / ch.file).is_file():
        return None
    timings = _measure(out_dir, manifest, chapter)
    with _lock:
        book = _read(out_dir)
        book[str(timings.number)] = timings.to_dict()
        _write(out_dir, book)
    write_chapter_subtitles(out_dir / ch.file, timings)
    return timings


def write_chapter_subtitles(audio_path: Path, timings: ChapterTimings) -> list[Path]:
    """The chapter's ``.srt`` and ``.vtt`` (and karaoke ``.karaoke.vtt`` and ``.ass`` with word times)."""
    cues = timings.cues()
    paths = [write_srt(audio_path.with_suffix(".srt"), cues), write_vtt(audio_path.with_suffix(".vtt"), cues)]
    if timings.has_words:
        lines = [(Cue(s.start, s.end, s.text), s.words) for s in timings.sentences]
        paths += [write_karaoke_vtt(audio_path.with_suffix(".karaoke.vtt"), lines),
                  write_ass(audio_path.with_suffix(".ass"), lines, timings.title)]
    return paths


def _measure(out_dir: Path, manifest, chapter: int) -> ChapterTimings:
    ch = manifest.chapters[chapter]
    audio = ch.audio
    missing = set(audio.get("missing_chunks") or [])
    refs = [r for r in ch.chunks if r.index not in missing]
    cues = [tuple(c) for c in audio.get("cues") or []]
    if len(cues) != len(refs):
        raise AudiobookError(f"Chapter {chapter + 1} ({ch.title}) was assembled by an older version; "
                             "assemble it again before timing its sentences.")
    duration = float(audio.get("samples", 0)) / SAMPLE_RATE
    levels = chapter_levels(out_dir / ch.file, duration)
    language = str(manifest.key.get("language") or "en")
    language = "en" if language == "auto" else language
    sentences: list[Sentence] = []
    whisper = False
    for ref, (start, end, _text) in zip(refs, cues):
        state = manifest.chunks[ref.id]
        parts = split_sentences(state.text, language) or [state.text]
        anchors = _whisper_anchors(state, out_dir, start, end)
        whisper = whisper or bool(anchors)
        bounds = _boundaries(parts, float(start), float(end), anchors, levels)
        words = _whisper_words(state, out_dir, start, end)
        for k, text in enumerate(parts):
            s, e = bounds[k], bounds[k + 1]
            mine = [w for w in words if s <= (w.start + w.end) / 2 < e or (k == len(parts) - 1 and (w.start + w.end) / 2 >= e)]
            sentences.append(Sentence(text, s, e, ref.index, ref.is_title, mine))
    return ChapterTimings(chapter + 1, ch.title, ch.file, duration, ch.assembled, sentences, "whisper" if whisper else "text")


def _boundaries(parts: Sequence[str], start: float, end: float, anchors: list[tuple[float, float]],
                levels: np.ndarray) -> list[float]:
    """Times where each sentence of a chunk starts, and where the last ends (``len(parts) + 1`` values)."""
    n = len(parts)
    if n == 1:
        return [start, end]
    lengths = np.array([max(1, len(p)) for p in parts], dtype=float)
    shares = np.concatenate([[0.0], np.cumsum(lengths) / lengths.sum()])
    if anchors:
        fx, ft = zip(*anchors)
        guess = list(np.interp(shares, fx, ft))
    else:
        guess = list(start + shares * (end - start))
    guess[0], guess[-1] = start, end
    pauses = find_pauses(levels, start, end)
    out = [start]
    for k in range(1, n):
        left = guess[k] - guess[k - 1]
        right = guess[k + 1] - guess[k]
        reach = max(SNAP_MIN_S, SNAP_SHARE * min(left, right))
        lo, hi = out[-1] + MIN_SENTENCE_S, end - MIN_SENTENCE_S * (n - k)
        near = [p for p in pauses if abs(p - guess[k]) <= reach and lo < p < hi]
        t = min(near, key=lambda p: abs(p - guess[k])) if near else guess[k]
        out.append(min(max(t, lo), hi) if hi > lo else out[-1] + (end - out[-1]) / (n - k + 1))
    out.append(end)
    return out


def chapter_levels(path: Path, duration: float) -> np.ndarray:
    """Loudness in dB of every 10 ms frame of a chapter's audio (decoded block by block)."""
    frame = int(round(SAMPLE_RATE * FRAME_S))
    dec = subprocess.Popen(ffmpeg_command(["-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "pipe:1"]),
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    levels: list[np.ndarray] = []
    rest = np.zeros(0, dtype=np.float32)
    try:
        while data := dec.stdout.read(4 * frame * 4096):
            wav = np.concatenate([rest, np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4")])
            whole = len(wav) // frame * frame
            levels.append(np.square(wav[:whole], dtype=np.float64).reshape(-1, frame).mean(axis=1))
            rest = wav[whole:]
    finally:
        dec.stdout.close()
        dec.wait()
    energy = np.concatenate(levels) if levels else np.zeros(0)
    return 10 * np.log10(np.maximum(energy, 1e-12))


def find_pauses(levels: np.ndarray, start: float, end: float) -> list[float]:
    """Middles of the runs of silence of at least ``PAUSE_MIN_S`` strictly inside ``start``..``end``."""
    a, b = int(start / FRAME_S), min(len(levels), int(end / FRAME_S))
    span = levels[a:b]
    if len(span) < 3:
        return []
    loud = float(np.percentile(span, 90))
    quiet = span < max(SILENCE_FLOOR_DB, loud - SILENCE_RANGE_DB)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    out = []
    for s, e in zip(edges[::2], edges[1::2]):
        if s == 0 or e == len(span):  # the margins at the chunk's ends are not between sentences
            continue
        if (e - s) * FRAME_S >= PAUSE_MIN_S:
            out.append(float((a + (s + e) / 2) * FRAME_S))
    return out


# ---- Whisper's times, where the check left them --------------------------------------------


def _segments(state) -> list[dict]:
    segs = getattr(state, "segments", None) or []
    return [s for s in segs if isinstance(s, dict) and "start" in s and "end" in s]


def _take_offset(state, out_dir: Path) -> float | None:
    """Seconds of the take cut off before the chunk's place in the chapter (its trimmed silence)."""
    from .audio import _load_chunk, trim_range

    try:
        wav = _load_chunk(out_dir / state.file, 0, 0)
    except AudiobookError:
        return None
    lo, _hi, _head, _tail = trim_range(wav)
    return lo / SAMPLE_RATE


def _whisper_anchors(state, out_dir: Path, start: float, end: float) -> list[tuple[float, float]]:
    """(share of the chunk's text, chapter time) points from Whisper's segment or word times."""
    segs = _segments(state)
    if not segs:
        return []
    offset = _take_offset(state, out_dir)
    if offset is None:
        return []
    pieces = [(str(w.get("word", w.get("text", ""))), float(w["start"]), float(w["end"]))
              for s in segs for w in (s.get("words") or []) if "start" in w and "end" in w]
    if not pieces:
        pieces = [(str(s.get("text", "")), float(s["start"]), float(s["end"])) for s in segs]
    total = sum(max(1, len(t.strip())) for t, _, _ in pieces)
    points, done = [(0.0, start)], 0
    for text, s, e in pieces:
        a = done / total
        done += max(1, len(text.strip()))
        points += [(a, start + s - offset), (done / total, start + e - offset)]
    points.append((1.0, end))
    fx, ft = [], []
    for x, t in sorted(points):
        t = min(max(t, start), end)
        if ft and t < ft[-1]:
            t = ft[-1]  # keep time running forward
        fx.append(x)
        ft.append(t)
    return list(zip(fx, ft))


def _whisper_words(state, out_dir: Path, start: float, end: float) -> list[Word]:
    segs = _segments(state)
    words = [w for s in segs for w in (s.get("words") or []) if "start" in w and "end" in w]
    if not words:
        return []
    offset = _take_offset(state, out_dir) or 0.0
    out = []
    for w in words:
        s = min(max(start + float(w["start"]) - offset, start), end)
        e = min(max(start + float(w["end"]) - offset, s), end)
        text = str(w.get("word", w.get("text", ""))).strip()
        if text:
            out.append(Word(s, e, text))
    return out


# ---- timings.json ------------------------------------------------------------------------


def timings_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / TIMINGS_FILE


def _read(out_dir: Path) -> dict[str, Any]:
    path = timings_path(out_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") == TIMINGS_FORMAT and data.get("version") == TIMINGS_VERSION:
            return dict(data["chapters"])
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        log.info("Timings in %s are unreadable; timing the chapters again", path, exc_info=True)
    return {}


def _write(out_dir: Path, chapters: dict[str, Any]) -> None:
    ordered = dict(sorted(chapters.items(), key=lambda kv: int(kv[0])))
    atomic_write_text(timings_path(out_dir), json.dumps(
        {"format": TIMINGS_FORMAT, "version": TIMINGS_VERSION, "chapters": ordered}, ensure_ascii=False, indent=1))


def load_timings(out_dir: str | Path) -> dict[int, ChapterTimings]:
    """The stored timings by chapter number (from 1); chapters never timed are absent."""
    out = {}
    for k, d in _read(Path(out_dir)).items():
        try:
            out[int(k)] = ChapterTimings.from_dict(d)
        except (ValueError, KeyError, TypeError):
            continue
    return out


def book_timings(out_dir: str | Path, manifest) -> dict[int, ChapterTimings]:
    """Timings of every assembled chapter, up to date: a chapter timed before its last assembly
    (or never) is timed now. Chapters that are not assembled are absent."""
    out_dir = Path(out_dir)
    stored = load_timings(out_dir)
    out = {}
    for ci, ch in enumerate(manifest.chapters):
        if not ch.audio or not ch.file or not (out_dir / ch.file).is_file():
            continue
        have = stored.get(ci + 1)
        if have is None or have.assembled != ch.assembled or have.file != ch.file:
            try:
                have = time_chapter(out_dir, manifest, ci)
            except AudiobookError as e:
                log.info("Chapter %d is not timed: %s", ci + 1, e)
                continue
        if have is not None:
            out[ci + 1] = have
    return out


def chapter_cues(out_dir: str | Path, manifest) -> dict[int, list[Cue]]:
    """Sentence cues of every assembled chapter (for the book's subtitles), by chapter number."""
    return {n: t.cues() for n, t in book_timings(out_dir, manifest).items()}
