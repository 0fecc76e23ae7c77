"""Joining chunk audio into chapters, with pauses, and writing audio files."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import AudiobookError

SAMPLE_RATE = 24000  # Qwen3-TTS 12 Hz tokenizer output rate


@dataclass(frozen=True)
class Pauses:
    """Silence added after a chunk, in milliseconds, by what follows it."""

    chunk_ms: int = 250
    paragraph_ms: int = 600
    title_ms: int = 1000
    chapter_ms: int = 2000

    @classmethod
    def from_settings(cls, s) -> "Pauses":
        return cls(s.pause_chunk_ms, s.pause_paragraph_ms, s.pause_title_ms, s.pause_chapter_ms)

    def after(self, chunk) -> int:
        """Pause after ``chunk`` inside its chapter (the chapter gap is added between files)."""
        if chunk.chapter_end:
            return 0
        if chunk.is_title:
            return self.title_ms
        if chunk.paragraph_end:
            return self.paragraph_ms
        return self.chunk_ms


def silence(ms: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    return np.zeros(int(round(sr * ms / 1000)), dtype=np.float32)


def join_chunks(chunks, wavs: list[np.ndarray], pauses: Pauses, sr: int = SAMPLE_RATE) -> np.ndarray:
    """One chapter's audio: each chunk's wav followed by the pause its position asks for."""
    parts: list[np.ndarray] = []
    for chunk, wav in zip(chunks, wavs):
        parts.append(np.asarray(wav, dtype=np.float32).reshape(-1))
        parts.append(silence(pauses.after(chunk), sr))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def write_wav(path: str | Path, wav: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    """Write a mono wav atomically; a failed write leaves no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".wav", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, np.asarray(wav, dtype=np.float32), sr, subtype="PCM_16")
        os.replace(tmp, path)
    except Exception as e:
        Path(tmp).unlink(missing_ok=True)
        raise AudiobookError(f"Could not write {path.name}: {e}.") from None
    return path


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    wav, sr = sf.read(str(path), dtype="float32", always_2d=False)
    if wav.ndim > 1:
        wav = wav.mean(axis=1)
    return wav, sr


def safe_filename(name: str, max_len: int = 80) -> str:
    """A file name that every OS accepts, keeping letters of any script readable."""
    bad = '<>:"/\\|?*\0'
    cleaned = "".join("_" if (c in bad or ord(c) < 32) else c for c in name).strip(" .")
    return (cleaned[:max_len].rstrip(" .") or "untitled")
