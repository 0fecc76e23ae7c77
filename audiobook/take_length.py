"""Is a take's length right for its text? The render's first check of every take, before Whisper hears it.

A take is suspect when it ran (nearly) to ``max_new_tokens`` (the model did not stop) or when
its seconds per character are far from the book's own pace (``SpeakingRate``, the running
median over the chunks that passed). ``take_badness`` ranks the takes of one chunk, so the
best of several is kept when none passes.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from .tts import FRAME_RATE

MIN_RATE_CHARS = 20  # shorter texts (titles) say too little about speaking rate to judge them
MIN_RATE_SAMPLES = 5  # passed chunks needed before the book's speaking rate is trusted


@dataclass(frozen=True)
class QualityLimits:
    """When a take is suspect: it ran to the token cap, or its length does not fit its text."""

    runaway_s: float  # a take at least this long ran (nearly) to max_new_tokens
    outlier_factor: float  # seconds per character this far from the book's median is wrong

    @classmethod
    def from_settings(cls, s) -> "QualityLimits":
        cap_s = (s.max_new_tokens - 1) / FRAME_RATE  # a never-ending take stops one frame short of the cap
        return cls(max(0.0, cap_s - s.runaway_margin_s), s.duration_outlier_factor)


def check_take(duration_s: float, text: str, limits: QualityLimits, median_s_per_char: float | None) -> str:
    """Why a take of ``text`` lasting ``duration_s`` is suspect, as a short phrase; "" when it passes."""
    if duration_s <= 0:
        return "no audio"
    if duration_s >= limits.runaway_s:
        return f"ran to the length limit ({duration_s:.1f}s): the model did not stop"
    if median_s_per_char and len(text) >= MIN_RATE_CHARS:
        rate = duration_s / len(text)
        if rate > median_s_per_char * limits.outlier_factor:
            return f"too long for its text ({duration_s:.1f}s, {rate / median_s_per_char:.1f}x the book's pace)"
        if rate < median_s_per_char / limits.outlier_factor:
            return f"too short for its text ({duration_s:.1f}s, {median_s_per_char / rate:.1f}x faster than the book's pace)"
    return ""


def take_badness(duration_s: float, text: str, limits: QualityLimits, median_s_per_char: float | None) -> float:
    """How far a take is from plausible (0 is fine); the best of several takes has the lowest."""
    if duration_s <= 0:
        return math.inf
    if duration_s >= limits.runaway_s:
        return 1e6 + duration_s
    if median_s_per_char and text:
        return abs(math.log(duration_s / len(text) / median_s_per_char))
    return 0.0


class SpeakingRate:
    """The running median of seconds per character over the book's passed chunks."""

    def __init__(self) -> None:
        self._rates: list[float] = []

    def add(self, duration_s: float, text: str) -> None:
        if duration_s > 0 and len(text) >= MIN_RATE_CHARS:
            bisect.insort(self._rates, duration_s / len(text))

    def median(self) -> float | None:
        n = len(self._rates)
        if n < MIN_RATE_SAMPLES:
            return None
        return self._rates[n // 2] if n % 2 else (self._rates[n // 2 - 1] + self._rates[n // 2]) / 2
