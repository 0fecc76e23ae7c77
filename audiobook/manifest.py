"""The render plan on disk and its state: ``output/<book>/manifest.json`` and ``chunks/<id>.wav``.

A chunk's id is a hash of its text and of everything else that changes its audio (the
narrator, the generation options, the checkpoint, the language), so its audio file is
found again after a crash, a reboot or an edit elsewhere in the book. The manifest is
the only state a resume needs; it is rewritten atomically after every batch.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import soundfile as sf

from .errors import AudiobookError
from .files import SAMPLE_RATE, atomic_write_bytes, atomic_write_text

MANIFEST_FILE = "manifest.json"
CHUNKS_DIR = "chunks"
MANIFEST_FORMAT = "audiobook-manifest"
MANIFEST_VERSION = 1
ID_LENGTH = 20  # hex digits of sha256: 80 bits, no collisions in any library of books

PENDING, DONE, FAILED, SUSPECT, ACCEPTED = "pending", "done", "failed", "suspect", "accepted"
STATUSES = (PENDING, DONE, FAILED, SUSPECT, ACCEPTED)
KEPT = (DONE, SUSPECT, ACCEPTED)  # statuses whose audio is on disk and goes into the chapter
FLAGGED = (FAILED, SUSPECT)  # what the Review tab and `review --flagged` list


# ---- ids ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderKey:
    """Everything besides a chunk's text that changes its audio.

    Pauses, loudness and output format are not here: they change only the assembly.
    """

    narrator: dict[str, Any]
    options: dict[str, Any]
    checkpoint: str  # the released checkpoint name, which holds the model size and kind
    language: str

    @classmethod
    def make(cls, narrator, options, model_size: str, language: str) -> "RenderKey":
        """Build from a ``tts.Narrator``, ``tts.GenerationOptions``, the model size and the language."""
        from .tts import checkpoint_name

        return cls(narrator.identity(), asdict(options), checkpoint_name(narrator.job, model_size), language or "auto")

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def chunk_id(text: str, key_digest: str) -> str:
    """The content address of one chunk: its text under one ``RenderKey.digest()``."""
    return hashlib.sha256(f"{key_digest}\n{text}".encode("utf-8")).hexdigest()[:ID_LENGTH]


# ---- the plan and its state -----------------------------------------------------------------


@dataclass(frozen=True)
class ChunkRef:
    """A chunk's place in a chapter; the same id can appear at several places."""

    id: str
    chapter: int
    index: int
    is_title: bool = False
    paragraph_end: bool = False
    chapter_end: bool = False
    turn_end: bool = False  # another speaker of the cast follows


@dataclass
class ChunkState:
    """One unique chunk of text and how far its audio has come."""

    id: str
    text: str
    status: str = PENDING
    file: str = ""  # relative to the book folder
    duration_s: float = 0.0
    attempts: int = 0  # takes generated so far, over all renders
    error: str = ""  # why it failed or is suspect
    seed: int | None = None  # the seed of the kept take
    speaker: str = ""  # who says it: "narrator", a character of the cast, or "dialogue"
    voice: str = ""  # the voice that reads it (a saved voice's or a built-in speaker's name)
    style: str = ""  # the style instruction it is read with
    wer: float | None = None  # word error rate of the kept take's transcript (None: not checked)
    transcript: str | None = None  # what the checking model heard in the kept take
    voice_similarity: float | None = None  # cosine similarity of its voice to the narrator's
    book_text: str = ""  # the book's words of it, before the pronunciation dictionary and numbers ("": as text)
    rule: str = ""  # the check rule that flagged the kept take ("" when none did)
    segments: list[dict] | None = None  # Whisper's timed segments of the kept take: {"start", "end", "text"}

    @property
    def kept(self) -> bool:
        return self.status in KEPT


@dataclass
class ChapterPlan:
    """One chapter: its chunks in order, and the file it was last assembled into."""

    title: str
    chunks: list[ChunkRef] = field(default_factory=list)
    file: str = ""  # relative to the book folder
    assembled: str = ""  # assembly key of that file; a change means assemble again
    audio: dict[str, Any] = field(default_factory=dict)  # what assembly reported (lengths, cues), for the book


@dataclass
class Manifest:
    """The render plan of one book with one voice and its state."""

    book: dict[str, Any]
    key: dict[str, Any]
    chapters: list[ChapterPlan] = field(default_factory=list)
    chunks: dict[str, ChunkState] = field(default_factory=dict)
    book_file: str = ""
    book_assembled: str = ""  # assembly key of the book files
    updated: float = 0.0
    edits: dict[str, str] = field(default_factory=dict)  # planned chunk text -> the user's edited text
    source: dict[str, Any] = field(default_factory=dict)  # the narrator and settings of the render, for fixes

    # ---- questions ----------------------------------------------------------------

    def ordered_ids(self) -> list[str]:
        """Every unique chunk id in reading order."""
        seen: dict[str, None] = {}
        for ch in self.chapters:
            for ref in ch.chunks:
                seen.setdefault(ref.id, None)
        return list(seen)

    def count(self, *statuses: str) -> int:
        return sum(1 for s in self.chunks.values() if s.status in statuses)

    def chapter_ids(self, chapter: int) -> list[str]:
        return [r.id for r in self.chapters[chapter].chunks]

    def chapter_has_failed(self, chapter: int) -> bool:
        return any(self.chunks[i].status == FAILED for i in self.chapter_ids(chapter))

    def chapter_missing(self, chapter: int) -> list[int] | None:
        """Is the chapter ready to assemble? None while any of its chunks is pending, else the
        indexes of its chunks that have no kept take (an empty list: every chunk is kept)."""
        refs = self.chapters[chapter].chunks
        if any(self.chunks[r.id].status == PENDING for r in refs):
            return None
        return [r.index for r in refs if not self.chunks[r.id].kept]

    # ---- conversion ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "updated": self.updated,
            "book": self.book,
            "key": self.key,
            "book_file": self.book_file,
            "book_assembled": self.book_assembled,
            "edits": self.edits,
            "source": self.source,
            "chapters": [
                {
                    "title": ch.title,
                    "file": ch.file,
                    "assembled": ch.assembled,
                    "audio": ch.audio,
                    "chunks": [
                        {"id": r.id, "is_title": r.is_title, "paragraph_end": r.paragraph_end, "chapter_end": r.chapter_end,
                         "turn_end": r.turn_end}
                        for r in ch.chunks
                    ],
                }
                for ch in self.chapters
            ],
            "chunks": {i: {k: v for k, v in asdict(s).items() if k != "id"} for i, s in self.chunks.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        """Parse a manifest; raise ValueError/KeyError/TypeError on anything malformed."""
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError("not a manifest")
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"version {data.get('version')!r}")
        chunks = {i: ChunkState(id=i, **s) for i, s in data["chunks"].items()}
        chapters = []
        for ci, ch in enumerate(data["chapters"]):
            refs = [ChunkRef(r["id"], ci, ri, bool(r["is_title"]), bool(r["paragraph_end"]), bool(r["chapter_end"]),
                             bool(r.get("turn_end", False)))
                    for ri, r in enumerate(ch["chunks"])]
            chapters.append(ChapterPlan(str(ch["title"]), refs, str(ch.get("file", "")), str(ch.get("assembled", "")),
                                        dict(ch.get("audio") or {})))
        for s in chunks.values():
            if s.status not in STATUSES:
                raise ValueError(f"status {s.status!r}")
        missing = {r.id for ch in chapters for r in ch.chunks} - set(chunks)
        if missing:
            raise ValueError(f"{len(missing)} chunks have no state")
        edits = {str(k): str(v) for k, v in dict(data.get("edits") or {}).items()}
        return cls(dict(data["book"]), dict(data["key"]), chapters, chunks, str(data.get("book_file", "")),
                   str(data.get("book_assembled", "")), float(data.get("updated", 0.0)), edits,
                   dict(data.get("source") or {}))


# ---- reading and writing --------------------------------------------------------------------


def manifest_path(book_dir: str | os.PathLike) -> Path:
    return Path(book_dir) / MANIFEST_FILE


def load_manifest(book_dir: str | os.PathLike) -> Manifest | None:
    """The manifest in ``book_dir``; None when there is none yet.

    A damaged one raises AudiobookError that names the way out: render again with
    rebuild, which recovers the finished chunks from their files.
    """
    path = manifest_path(book_dir)
    if not path.exists():
        return None
    try:
        return Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except OSError as e:
        raise AudiobookError(f"Could not read the render record {path}: {e.strerror}.") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise AudiobookError(
            f"The render record {path} is damaged ({type(e).__name__}: {e}); render again with 'rebuild' "
            f"to recover the finished chunks from {path.parent / CHUNKS_DIR}, or delete the record to start over."
        ) from None


def save_manifest(manifest: Manifest, book_dir: str | os.PathLike) -> Path:
    """Write the manifest atomically (temp file, fsync, rename)."""
    manifest.updated = time.time()
    path = manifest_path(book_dir)
    atomic_write_text(path, json.dumps(manifest.to_dict(), ensure_ascii=False, separators=(",", ":")))
    return path


def set_aside_manifest(book_dir: str | os.PathLike) -> Path | None:
    """Rename a (damaged) manifest out of the way, keeping it for inspection; return its new path."""
    path = manifest_path(book_dir)
    if not path.exists():
        return None
    aside = path.with_name(f"{MANIFEST_FILE}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    return aside


def chunk_file(chunk: str) -> str:
    """Where a chunk's audio lives, relative to the book folder."""
    return f"{CHUNKS_DIR}/{chunk}.wav"


def write_chunk_audio(book_dir: str | os.PathLike, chunk: str, wav: np.ndarray, sr: int = SAMPLE_RATE) -> str:
    """Write one chunk's audio atomically and durably; return its path relative to ``book_dir``."""
    buf = io.BytesIO()
    sf.write(buf, np.asarray(wav, dtype=np.float32).reshape(-1), sr, format="WAV", subtype="PCM_16")
    rel = chunk_file(chunk)
    atomic_write_bytes(Path(book_dir) / rel, buf.getvalue())
    return rel


def _file_duration(path: Path) -> float | None:
    """Seconds of audio in a chunk file, or None when it is missing or unreadable."""
    try:
        info = sf.info(str(path))
    except Exception:
        return None
    return info.frames / info.samplerate if info.samplerate else None


# ---- planning -------------------------------------------------------------------------------


def plan_manifest(
    book: dict[str, Any],
    titles: list[str],
    chunks: Iterable,
    key: RenderKey,
    book_dir: str | os.PathLike,
    previous: Manifest | None = None,
    redo: Iterable[str] = (),
    voice_of=None,
) -> Manifest:
    """The manifest for this book, voice and settings, keeping all work already done.

    ``chunks`` are ``text.Chunk`` objects in reading order; ``titles`` the chapter titles.
    A chunk keeps its state from ``previous`` when its id is unchanged and its audio file
    is there; a chunk with no state but a file on disk (a crash after the write, or a lost
    manifest) is adopted as done. Ids in ``redo`` become pending whatever they were.
    Chapter files stay recorded so that assembly can tell what changed. ``voice_of(chunk)``
    gives ``(key digest, voice name)`` of a chunk's speaker in a cast render: its id then
    hashes that voice and the chunk's style. The user's edits in
    ``previous`` replace the text of the chunks they were made on, so they survive a re-plan.
    """
    book_dir = Path(book_dir)
    digest = key.digest()
    redo = set(redo)
    old = previous.chunks if previous else {}
    edits = dict(previous.edits) if previous else {}
    chapters = [ChapterPlan(t) for t in titles]
    states: dict[str, ChunkState] = {}
    for c in chunks:
        planned = c.text
        if c.text in edits:
            c = replace(c, text=edits[c.text])
        chunk_digest, voice = voice_of(c) if voice_of else (digest, "")
        cid = chunk_id(c.text, chunk_digest)
        chapters[c.chapter].chunks.append(ChunkRef(cid, c.chapter, len(chapters[c.chapter].chunks), c.is_title,
                                                   c.paragraph_end, c.chapter_end, getattr(c, "turn_end", False)))
        if cid in states:
            continue
        states[cid] = _carry_state(cid, c.text, old.get(cid), book_dir, cid in redo)
        states[cid].speaker, states[cid].voice, states[cid].style = getattr(c, "speaker", ""), voice, getattr(c, "style", "")
        states[cid].book_text = "" if c.text != planned else getattr(c, "book_text", "")  # an edit is its own text
    unknown = redo - set(states)
    if unknown:
        raise AudiobookError(f"There is no chunk with id {sorted(unknown)[0]} in this book with this voice and these settings.")
    if previous:
        for new, was in zip(chapters, previous.chapters):
            new.file, new.assembled, new.audio = was.file, was.assembled, was.audio
    return Manifest(book=dict(book), key=asdict(key), chapters=chapters, chunks=states,
                    book_file=previous.book_file if previous else "",
                    book_assembled=previous.book_assembled if previous else "", edits=edits,
                    source=dict(previous.source) if previous else {})


def _carry_state(cid: str, text: str, was: ChunkState | None, book_dir: Path, redo: bool) -> ChunkState:
    attempts = was.attempts if was else 0
    if redo:
        # The old take is unwanted; removing it keeps a crash before the new take from reviving it.
        (book_dir / chunk_file(cid)).unlink(missing_ok=True)
        return ChunkState(cid, text, PENDING, attempts=attempts)
    if was is not None and was.status != PENDING:
        if not was.kept or (book_dir / was.file).is_file():
            return replace(was, id=cid, text=text)
        return ChunkState(cid, text, PENDING, attempts=attempts, error="its audio file was missing")
    rel = chunk_file(cid)
    duration = _file_duration(book_dir / rel)
    if duration is not None:
        return ChunkState(cid, text, DONE, rel, duration, max(attempts, 1), "")
    return ChunkState(cid, text, PENDING, attempts=attempts)
