"""A voice-like test clip made of tones, never a recording of a person."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def tone_clip(path: Path, seed: int) -> Path:
    """A few seconds of harmonic bursts (never a recording of a person); ``seed`` makes each voice differ."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(24):
        t = np.arange(int(rng.uniform(0.1, 0.2) * 24000)) / 24000
        f0 = rng.uniform(90, 260)
        parts += [np.hanning(len(t)) * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3)) * 0.2,
                  np.zeros(int(rng.uniform(0.03, 0.1) * 24000))]
    sf.write(str(path), np.concatenate(parts).astype(np.float32), 24000)
    return path
