"""Reviewing a rendered book: its chunks with their check scores, and fixing one chunk.

Everything here reads and writes the book's folder (``manifest.json``, ``book.json``,
``chunks/``); the render loop does the generating and assembling, so a fix is a render
in which only the fixed chunk is pending.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from . import manifest as mf
from .errors import AudiobookError
from .text import normalize

# Settings that belong to this machine or this process, not to the render: a fix takes
# them from the current settings and everything else (the checks included) from the render it fixes.
RUNTIME_SETTINGS = ("device", "dtype", "attention_mode", "engine", "batch_size", "batch_order", "models_dir",
                    "output_dir", "voices_dir")


@dataclass(frozen=True)
class ReviewRow:
    """One chunk as the review lists it (the ``review --json`` record)."""

    id: str
    chapter: int  # 1-based
    index: int  # 1-based place in the chapter
    text: str
    status: str
    wer: float | None
    transcript: str | None
    voice_similarity: float | None
    duration_s: float
    attempts: int
    reason: str = ""
    file: str = ""  # the take's audio, relative to the book folder
    edited: bool = False
    speaker: str = ""  # who says it (a cast's character, "dialogue" or "narrator")
    voice: str = ""  # the voice that read it
    rule: str = ""  # the check rule that flagged its take (``check.RULES`` or "voice"); "" when none did
    book_text: str = ""  # what the book says there, which the transcript was compared with ("": as text)
    segments: list | None = None  # Whisper's timed segments of the take

    @property
    def why(self) -> str:
        """Why it is flagged, in words: the rule and its reason ("skip: skipped 'the bells ... noon'")."""
        if not self.reason:
            return ""
        return f"{self.rule}: {self.reason}" if self.rule else self.reason

    @property
    def flagged(self) -> bool:
        return self.status in mf.FLAGGED

    def to_dict(self) -> dict:
        return asdict(self)


def load_render(out_dir: str | Path) -> mf.Manifest:
    """The manifest of a rendered book; AudiobookError when the folder holds none."""
    m = mf.load_manifest(out_dir)
    if m is None:
        raise AudiobookError(f"There is no render in {out_dir}: it holds no {mf.MANIFEST_FILE}; render the book first.")
    return m


def review_rows(out_dir: str | Path, flagged: bool = False, chapter: int | None = None) -> list[ReviewRow]:
    """Every chunk of the book in reading order (each id once, at its first place).

    ``flagged`` keeps suspect and failed chunks; ``chapter`` (1-based) one chapter.
    """
    m = load_render(out_dir)
    edited = set(m.edits.values())
    rows, seen = [], set()
    for ci, ch in enumerate(m.chapters):
        if chapter is not None and ci + 1 != chapter:
            continue
        for ref in ch.chunks:
            if ref.id in seen:
                continue
            seen.add(ref.id)
            s = m.chunks[ref.id]
            row = ReviewRow(ref.id, ci + 1, ref.index + 1, s.text, s.status, s.wer, s.transcript, s.voice_similarity,
                            round(s.duration_s, 3), s.attempts, s.error, s.file if s.kept else "", s.text in edited,
                            s.speaker, s.voice, s.rule, s.book_text, s.segments)
            if not flagged or row.flagged:
                rows.append(row)
    return rows


def chapters_to_rebuild(out_dir: str | Path) -> list[int]:
    """The chapters (1-based) that a rebuild would assemble again: every chunk has a kept take and
    the chapter file is missing, or older than one of its chunks' audio (a fix since it was made)."""
    out_dir = Path(out_dir)
    m = load_render(out_dir)
    todo = []
    for ci, ch in enumerate(m.chapters):
        if m.chapter_missing(ci) != []:
            continue  # a chunk still pending or failed: a rebuild would not assemble it
        made = out_dir / ch.file if ch.file else None
        if made is None or not made.is_file():
            todo.append(ci + 1)
            continue
        takes = [out_dir / m.chunks[r.id].file for r in ch.chunks if m.chunks[r.id].file]
        if any(t.is_file() and t.stat().st_mtime_ns > made.stat().st_mtime_ns for t in takes):
            todo.append(ci + 1)
    return todo


def find_chunk(m: mf.Manifest, chunk: str) -> mf.ChunkState:
    if chunk not in m.chunks:
        raise AudiobookError(f"There is no chunk {chunk} in this render; `backend.py review` lists the chunk ids.")
    return m.chunks[chunk]


def accept_chunk(out_dir: str | Path, chunk: str) -> mf.ChunkState:
    """Keep a take despite its flags: its status becomes ``accepted`` (its audio is unchanged)."""
    m = load_render(out_dir)
    st = find_chunk(m, chunk)
    if not st.kept:
        raise AudiobookError(f"Chunk {chunk} has no audio to keep ({st.status}); re-roll or edit it instead.")
    st.status = mf.ACCEPTED
    mf.save_manifest(m, out_dir)
    return st


def edit_chunk(out_dir: str | Path, chunk: str, text: str) -> str:
    """Record new text for a chunk (it survives re-plans and resumes); return the new chunk's id.

    The text is made speakable the way the book's text is (numbers, abbreviations).
    """
    m = load_render(out_dir)
    st = find_chunk(m, chunk)
    language = (m.key.get("language") or "en")
    new = normalize(" ".join(text.split()), "en" if language == "auto" else language)
    if not new:
        raise AudiobookError("The new text is empty; type what the chunk should say.")
    original = next((o for o, e in m.edits.items() if e == st.text), st.text)
    if new == original:
        m.edits.pop(original, None)
    else:
        m.edits[original] = new
    mf.save_manifest(m, out_dir)
    return mf.chunk_id(new, mf.RenderKey(**m.key).digest())


def render_inputs(out_dir: str | Path, current_settings):
    """The book, narrator and settings that re-render chunks of this render without changing the others.

    Settings come from the render (so every other chunk keeps its id), except those of
    this machine (``RUNTIME_SETTINGS``), which come from ``current_settings``.
    """
    from .books import load_book
    from .render import BOOK_FILE
    from .settings import Settings
    from .tts import Narrator

    m = load_render(out_dir)
    book_path = Path(out_dir) / BOOK_FILE
    if not m.source or not book_path.is_file():
        raise AudiobookError(f"{out_dir} was rendered by an older version that kept no record of its book and voice; "
                             "render the book again once to fix single chunks.")
    book = load_book(book_path)
    narrator = Narrator(**m.source["narrator"])
    recorded = {k: v for k, v in m.source.get("settings", {}).items() if k in Settings.__dataclass_fields__}
    current = current_settings.to_dict()
    settings = Settings.from_dict({**current, **recorded, **{k: current[k] for k in RUNTIME_SETTINGS if k in current}})
    return book, narrator, settings


SAMPLE_CHARS_PER_SECOND = 15  # narration speaks about this many characters a second


def render_sample(book, narrator, settings, tts, chapter: int, seconds: float, out_path: str | Path, prompt=None) -> Path:
    """Speak the first chunks of ``chapter`` (1-based) worth about ``seconds`` in one batch; write one wav.

    The chunks are joined with the render's pauses, so the sample sounds like the chapter will.
    """
    import numpy as np

    from .audio import Pauses, write_wav
    from .render import _language, pronunciations_from_settings
    from .text import plan_chunks
    from .files import SAMPLE_RATE
    from .tts import GenerationOptions

    if not 1 <= chapter <= len(book.chapters):
        raise AudiobookError(f"There is no chapter {chapter}; this book has chapters 1 to {len(book.chapters)}.")
    if seconds <= 0:
        raise AudiobookError("A sample must last some seconds; give a length above 0.")
    language = _language(book, settings)
    chunks = plan_chunks([book.chapters[chapter - 1]], settings.chunk_chars, "en" if language == "auto" else language,
                         pronunciations=pronunciations_from_settings(settings))
    picked, chars = [], 0
    for c in chunks:
        if chars >= seconds * SAMPLE_CHARS_PER_SECOND:
            break
        picked.append(c)
        chars += len(c.text)
    if not picked:
        raise AudiobookError(f"Chapter {chapter} has no text to narrate.")
    wavs = tts.narrate(narrator, [c.text for c in picked], language, GenerationOptions.from_settings(settings),
                       prompt=prompt)
    pauses = Pauses.from_settings(settings)
    parts = []
    for c, w in zip(picked, wavs):
        parts += [np.asarray(w, dtype=np.float32), np.zeros(int(SAMPLE_RATE * pauses.after(c) / 1000), np.float32)]
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_wav(out, np.concatenate(parts))
