"""Clip preparation: any audio file made into a clean reference clip to clone a voice from.

``load_clip`` decodes what ffmpeg reads to mono float32 at ``SAMPLE_RATE``; ``prepare_clip``
checks it (not audio, silent, clipped, too short or too long are one sentence each), trims
silence, picks the best 5-15 s window of a long clip and levels it. ``level_reference``
tidies a generated reference clip the same way without cutting its words.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import AudiobookError
from .files import SAMPLE_RATE, run_ffmpeg

# Clip limits, in seconds of sound after trimming silence.
MIN_CLIP_S = 3.0
BEST_MIN_S = 5.0
BEST_MAX_S = 15.0
MAX_WITH_TRANSCRIPT_S = 20.0  # a transcript fixes the words, so a longer clip cannot be cut
MAX_DECODE_S = 600  # read at most ten minutes of an uploaded file
CLIP_EXTENSIONS = (".wav", ".mp3", ".flac", ".m4a", ".ogg", ".webm", ".opus")

SILENT_PEAK = 10 ** (-60 / 20)  # -60 dBFS: nothing there
QUIET_RMS = 10 ** (-40 / 20)  # speech quieter than -40 dBFS is raised and reported
CLIPPED_LEVEL = 0.99
CLIPPED_FRACTION = 0.001  # more than 0.1% of samples at full scale sounds distorted
TARGET_PEAK = 10 ** (-1 / 20)
FRAME_S = 0.02
EDGE_MARGIN_S = 0.1


@dataclass
class Clip:
    """A reference clip ready to clone: mono float32 at 24 kHz, trimmed, levelled.

    ``source_s`` is the length of the file as read; ``warnings`` are sentences for the user.
    """

    wav: np.ndarray
    source_s: float
    start_s: float = 0.0  # where the kept part begins in the source
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.wav) / SAMPLE_RATE


def _looks_like_audio_container(head: bytes) -> bool:
    """Magic numbers of the audio formats ffmpeg reads (to tell a damaged clip from a non-audio file)."""
    return (
        head[:4] in (b"RIFF", b"fLaC", b"OggS", b"FORM", b"caff", b"\x1aE\xdf\xa3", b"0&\xb2u")
        or head[:3] == b"ID3"
        or head[4:8] == b"ftyp"
        or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)
    )


def load_clip(path: str | os.PathLike) -> np.ndarray:
    """Any audio file ffmpeg reads, as mono float32 at 24 kHz; AudiobookError for unreadable or non-audio files."""
    p = Path(path)
    name = p.name
    if not p.exists():
        raise AudiobookError(f"The clip {name} could not be found.")
    if not p.is_file():
        raise AudiobookError(f"The clip {name} is a folder, not an audio file.")
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
    except OSError as e:
        raise AudiobookError(f"The clip {name} could not be read ({e.strerror or e}).") from None
    if not head:
        raise AudiobookError(f"The clip {name} is empty; it is not an audio file.")
    proc = run_ffmpeg(["-t", str(MAX_DECODE_S), "-i", str(p), "-vn", "-map", "0:a:0",
                       "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "pipe:1"])
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode("utf-8", "replace")
        if "matches no streams" in err:
            raise AudiobookError(f"The file {name} has no sound in it; it is not an audio clip.")
        if not _looks_like_audio_container(head):
            raise AudiobookError(f"The file {name} is not audio; upload a wav, mp3, flac, m4a or ogg clip.")
        raise AudiobookError(f"The clip {name} is damaged or in a format that cannot be read; export it again as wav or mp3.")
    usable = len(proc.stdout) // 4 * 4
    return np.frombuffer(proc.stdout[:usable], dtype="<f4").astype(np.float32)


def _frame_rms(wav: np.ndarray) -> np.ndarray:
    n = int(SAMPLE_RATE * FRAME_S)
    frames = len(wav) // n
    if frames == 0:
        return np.zeros(0, dtype=np.float32)
    x = wav[: frames * n].reshape(frames, n).astype(np.float64)
    return np.sqrt((x * x).mean(axis=1))


def _active(rms: np.ndarray) -> np.ndarray:
    """Frames with sound: louder than -60 dBFS and within 35 dB of the loudest frame."""
    if rms.size == 0:
        return np.zeros(0, dtype=bool)
    return rms > max(SILENT_PEAK, float(rms.max()) * 10 ** (-35 / 20))


def trim_silence(wav: np.ndarray) -> tuple[np.ndarray, float]:
    """Cut leading and trailing silence (keeping a short margin); returns the clip and where it starts, in s."""
    active = _active(_frame_rms(wav))
    if not active.any():
        return wav[:0], 0.0
    n = int(SAMPLE_RATE * FRAME_S)
    margin = int(SAMPLE_RATE * EDGE_MARGIN_S)
    idx = np.flatnonzero(active)
    start = max(0, idx[0] * n - margin)
    end = min(len(wav), (idx[-1] + 1) * n + margin)
    return wav[start:end], start / SAMPLE_RATE


def best_window(wav: np.ndarray, min_s: float = BEST_MIN_S, max_s: float = BEST_MAX_S) -> tuple[int, int]:
    """The sample range of the ``min_s``-``max_s`` stretch with the most sound, cut at pauses when there are any."""
    rms = _frame_rms(wav)
    active = _active(rms)
    n = int(SAMPLE_RATE * FRAME_S)
    total = len(active)
    lo, hi = int(min_s / FRAME_S), int(max_s / FRAME_S)
    if total <= hi:
        return 0, len(wav)
    cum = np.concatenate([[0], np.cumsum(active)])
    pauses = np.flatnonzero(~active)
    starts = np.concatenate([[0], pauses])
    best, best_range = -1, (0, hi)
    for s in starts:
        # the latest pause that keeps the window within bounds, else the longest window allowed
        ends = pauses[(pauses >= s + lo) & (pauses <= s + hi)]
        e = int(ends[-1]) if ends.size else min(s + hi, total)
        score = int(cum[e] - cum[s]) * 2 + (1 if ends.size else 0)  # sound first, then a clean cut
        if score > best:
            best, best_range = score, (int(s), e)
    s, e = best_range
    return s * n, min(len(wav), e * n)


def prepare_clip(path: str | os.PathLike, has_transcript: bool) -> Clip:
    """Read a clip and make it a clean reference: checks, trim, best window, level.

    AudiobookError (one sentence) when the clip is not audio, unreadable, silent, clipped or shorter
    than ``MIN_CLIP_S`` seconds of sound, or, with a transcript, longer than ``MAX_WITH_TRANSCRIPT_S``.
    """
    name = Path(path).name
    wav = load_clip(path)
    source_s = len(wav) / SAMPLE_RATE
    if wav.size == 0 or source_s < 0.05:
        raise AudiobookError(f"The clip {name} holds no audio.")
    peak = float(np.abs(wav).max())
    if not np.isfinite(peak) or peak < SILENT_PEAK:
        raise AudiobookError(f"The clip {name} is silent; record or choose a clip where the voice can be heard.")
    clipped = float(np.mean(np.abs(wav) >= CLIPPED_LEVEL))
    if clipped > CLIPPED_FRACTION:
        raise AudiobookError(
            f"The clip {name} is clipped (distorted: {clipped:.1%} of it hits full volume); "
            "record it again a little quieter."
        )
    wav, start_s = trim_silence(wav)
    warnings: list[str] = []
    dur = len(wav) / SAMPLE_RATE
    if dur < MIN_CLIP_S:
        raise AudiobookError(
            f"The clip {name} is too short: {dur:.1f} s of sound; a voice needs at least {MIN_CLIP_S:.0f} s "
            f"({BEST_MIN_S:.0f}-{BEST_MAX_S:.0f} s is best)."
        )
    if dur > BEST_MAX_S:
        if has_transcript:
            if dur > MAX_WITH_TRANSCRIPT_S:
                raise AudiobookError(
                    f"The clip {name} has {dur:.0f} s of sound, too long to match its transcript; cut it to "
                    f"{BEST_MIN_S:.0f}-{BEST_MAX_S:.0f} s and type just those words, or leave the transcript out "
                    "and the best part is picked for you."
                )
            warnings.append(f"The clip is {dur:.0f} s long; {BEST_MIN_S:.0f}-{BEST_MAX_S:.0f} s clones best.")
        else:
            s, e = best_window(wav)
            wav, inner = trim_silence(wav[s:e])
            start_s += s / SAMPLE_RATE + inner
            warnings.append(
                f"The clip was {dur:.0f} s long; the {len(wav) / SAMPLE_RATE:.0f} s from {start_s:.1f} s on is used."
            )
            if len(wav) / SAMPLE_RATE < MIN_CLIP_S:  # pragma: no cover - the window is at least BEST_MIN_S
                raise AudiobookError(f"The clip {name} has no stretch of {MIN_CLIP_S:.0f} s of speech.")
    active = _active(_frame_rms(wav))
    speech_rms = float(np.sqrt(np.mean(_frame_rms(wav)[active] ** 2))) if active.any() else 0.0
    if speech_rms < QUIET_RMS:
        warnings.append("The clip is very quiet; it was raised in level, which also raises its noise.")
    wav = (wav * (TARGET_PEAK / max(float(np.abs(wav).max()), 1e-9))).astype(np.float32)
    return Clip(wav=wav, source_s=source_s, start_s=start_s, warnings=warnings)


def level_reference(wav: np.ndarray) -> np.ndarray:
    """A generated reference clip, trimmed of silence at its ends and peak-levelled (its words stay whole)."""
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    trimmed, _ = trim_silence(wav)
    if trimmed.size:
        wav = trimmed
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    return (wav * (TARGET_PEAK / peak)).astype(np.float32) if peak > SILENT_PEAK else wav
