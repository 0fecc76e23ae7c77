"""Subtitle files: SRT and WebVTT with cues short enough to read, and word-level (karaoke) WebVTT and ASS.

A cue is at most ``LINES`` lines of ``LINE_CHARS`` characters: a longer sentence is cut at
its clauses (then at spaces) and its time shared out by characters. Karaoke files need
word times (``Word``); without them only the sentence files are written.
"""

from __future__ import annotations

import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .files import atomic_output, disk_error
from .text import cut_at_clauses

LINE_CHARS = 42  # the broadcast norm for one subtitle line
LINES = 2
CUE_CHARS = LINE_CHARS * LINES
_CLAUSE_END = re.compile(r"[,;:\u2014\u2013、，；：](?=\s)|\s[\u2014\u2013]\s")


@dataclass(frozen=True)
class Cue:
    """One subtitle: some text and when it is heard, in seconds."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Word:
    """One spoken word and when it is heard, in seconds."""

    start: float
    end: float
    text: str


# ---- cutting sentences into readable cues ---------------------------------------------------


def split_readable(text: str, limit: int = CUE_CHARS) -> list[str]:
    """``text`` cut into pieces of at most ``limit`` characters: at the last clause end that fits
    (a comma, semicolon, colon or dash past a quarter of the piece), else at the last space."""
    return cut_at_clauses(" ".join(text.split()), limit, _CLAUSE_END)


def readable_cues(cues: Sequence[Cue], limit: int = CUE_CHARS) -> list[Cue]:
    """Every cue longer than ``limit`` characters cut at its clauses; the time is shared by characters."""
    out: list[Cue] = []
    for cue in cues:
        pieces = split_readable(cue.text, limit)
        if len(pieces) <= 1:
            out.append(Cue(cue.start, cue.end, " ".join(cue.text.split())))
            continue
        total = sum(len(p) for p in pieces)
        t = cue.start
        for i, p in enumerate(pieces):
            end = cue.end if i == len(pieces) - 1 else t + (cue.end - cue.start) * len(p) / total
            out.append(Cue(t, end, p))
            t = end
    return out


def _lines(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(" ".join(text.split()), width)) or "…"


# ---- SRT and WebVTT ----------------------------------------------------------------------------


def srt_time(seconds: float) -> str:
    """``HH:MM:SS,mmm`` as SRT writes time."""
    return _clock(seconds, ",")


def vtt_time(seconds: float) -> str:
    """``HH:MM:SS.mmm`` as WebVTT writes time."""
    return _clock(seconds, ".")


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def write_srt(path: str | os.PathLike, cues: Sequence[Cue], width: int = 70) -> Path:
    """Write cues as a SubRip file (atomically), lines wrapped at ``width``; returns its path."""
    lines: list[str] = []
    for i, cue in enumerate(cues, 1):
        lines += [str(i), f"{srt_time(cue.start)} --> {srt_time(cue.end)}", _lines(cue.text, width), ""]
    return _write(path, "\n".join(lines))


def write_vtt(path: str | os.PathLike, cues: Sequence[Cue], width: int = LINE_CHARS) -> Path:
    """Write cues as a WebVTT file (atomically); returns its path."""
    lines = ["WEBVTT", ""]
    for i, cue in enumerate(cues, 1):
        lines += [str(i), f"{vtt_time(cue.start)} --> {vtt_time(cue.end)}", _vtt_escape(_lines(cue.text, width)), ""]
    return _write(path, "\n".join(lines))


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("-->", "--&gt;")


# ---- word-level (karaoke) files --------------------------------------------------------------


def write_karaoke_vtt(path: str | os.PathLike, lines: Sequence[tuple[Cue, Sequence[Word]]]) -> Path:
    """WebVTT whose cues carry a timestamp before each word, so players colour words as they are said.

    ``lines`` pairs each cue (a sentence, or part of one) with its timed words.
    """
    out = ["WEBVTT", ""]
    for i, (cue, words) in enumerate(lines, 1):
        body = " ".join(
            (f"<{vtt_time(w.start)}>" if k and cue.start < w.start < cue.end else "") + f"<c>{_vtt_escape(w.text)}</c>"
            for k, w in enumerate(words)
        ) if words else _vtt_escape(cue.text)
        out += [str(i), f"{vtt_time(cue.start)} --> {vtt_time(cue.end)}", body, ""]
    return _write(path, "\n".join(out))


def write_ass(path: str | os.PathLike, lines: Sequence[tuple[Cue, Sequence[Word]]], title: str = "") -> Path:
    """An Advanced SubStation Alpha file with ``\\k`` karaoke timing on every word."""
    head = [
        "[Script Info]", f"Title: {_ass_escape(title) or 'Audiobook'}", "ScriptType: v4.00+", "PlayResX: 1280", "PlayResY: 720",
        "WrapStyle: 0", "", "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
        "Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, "
        "MarginR, MarginV, Encoding",
        "Style: Default,Arial,48,&H0000FFFF,&H00FFFFFF,&H00000000,&H80000000,0,0,0,0,100,100,0,0,1,2,1,2,40,40,40,1",
        "", "[Events]", "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    events = []
    for cue, words in lines:
        if words:
            parts, t = [], cue.start
            for w in words:
                if w.start > t:  # silence before the word: an empty syllable keeps the clock true
                    parts.append(f"{{\\k{_cs(w.start - t)}}}")
                parts.append(f"{{\\k{_cs(max(w.end, w.start) - max(w.start, t))}}}{_ass_escape(w.text)} ")
                t = max(t, w.end)
            text = "".join(parts).rstrip()
        else:
            text = _ass_escape(cue.text)
        events.append(f"Dialogue: 0,{_ass_time(cue.start)},{_ass_time(cue.end)},Default,,0,0,0,,{text}")
    return _write(path, "\n".join(head + events) + "\n")


def _cs(seconds: float) -> int:
    return max(0, int(round(seconds * 100)))


def _ass_time(seconds: float) -> str:
    cs = _cs(seconds)
    h, cs = divmod(cs, 360_000)
    m, cs = divmod(cs, 6000)
    s, cs = divmod(cs, 100)
    return f"{h:d}:{m:02d}:{s:02d}.{cs:02d}"


def _ass_escape(text: str) -> str:
    return " ".join(text.split()).replace("{", "(").replace("}", ")").replace("\\", "/")


def _write(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    try:
        with atomic_output(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as e:
        raise disk_error(path, e) from None
    return path
