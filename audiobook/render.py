"""The render loop: chunks of a book go to the model ``batch_size`` at a time; chapters come out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import audio
from .books import Book
from .errors import AudiobookError
from .text import Chunk, plan_chunks
from .tts import TTS, GenerationOptions, Narrator


@dataclass
class Progress:
    """One report from a running render (what the progress bar and log show)."""

    chunks_done: int
    chunks_total: int
    audio_s: float = 0.0
    elapsed_s: float = 0.0
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.chunks_done / self.chunks_total if self.chunks_total else 1.0

    @property
    def x_real_time(self) -> float:
        return self.audio_s / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        if not self.chunks_done or self.chunks_done >= self.chunks_total:
            return None if not self.chunks_done else 0.0
        return self.elapsed_s / self.chunks_done * (self.chunks_total - self.chunks_done)


@dataclass
class RenderResult:
    out_dir: Path
    chapter_files: list[Path] = field(default_factory=list)
    chunks: int = 0
    batches: int = 0
    audio_s: float = 0.0
    elapsed_s: float = 0.0
    log: list[str] = field(default_factory=list)


def batch_log_line(n: int, seconds: float) -> str:
    """The per-batch log line users know: ``Batch (5 chunks) done in 81.59s (16.32s/chunk)``."""
    return f"Batch ({n} chunk{'s' if n != 1 else ''}) done in {seconds:.2f}s ({seconds / max(n, 1):.2f}s/chunk)"


def render_events(
    book: Book,
    narrator: Narrator,
    settings,
    out_dir: Path,
    tts: TTS,
    result: RenderResult,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[Progress]:
    """Render ``book`` into ``out_dir``, yielding Progress after every batch; fills ``result``."""
    language = settings.language if settings.language != "auto" else (book.language or "auto")
    chunks = plan_chunks(book.chapters, settings.chunk_chars, language or "en")
    if not chunks:
        raise AudiobookError("This book has no text to narrate.")
    opts = GenerationOptions.from_settings(settings)
    prompt = None
    if narrator.kind != "preset":
        prompt = tts.clone_prompt(narrator.ref_audio, narrator.ref_text, narrator.x_vector_only)
    wavs: dict[tuple[int, int], np.ndarray] = {}
    start = time.perf_counter()
    result.chunks = len(chunks)
    for b in range(0, len(chunks), settings.batch_size):
        if should_stop():
            yield Progress(len(wavs), len(chunks), result.audio_s, time.perf_counter() - start, "Stopped.")
            return
        batch = chunks[b : b + settings.batch_size]
        t0 = time.perf_counter()
        out = tts.narrate(narrator, [c.text for c in batch], language, opts, prompt=prompt)
        for c, w in zip(batch, out):
            wavs[(c.chapter, c.index)] = w
            result.audio_s += len(w) / audio.SAMPLE_RATE
        line = batch_log_line(len(batch), time.perf_counter() - t0)
        result.batches += 1
        result.log.append(line)
        yield Progress(len(wavs), len(chunks), result.audio_s, time.perf_counter() - start, line)
    pauses = audio.Pauses.from_settings(settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    for ci, chapter in enumerate(book.chapters):
        members = [c for c in chunks if c.chapter == ci]
        if not members:
            continue
        joined = audio.join_chunks(members, [wavs[(c.chapter, c.index)] for c in members], pauses)
        name = f"{ci + 1:02d} - {audio.safe_filename(chapter.title)}.wav"
        result.chapter_files.append(audio.write_wav(out_dir / name, joined))
    result.elapsed_s = time.perf_counter() - start
