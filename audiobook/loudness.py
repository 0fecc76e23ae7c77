"""Loudness (ITU-R BS.1770-4) and true peak of a mono stream, measured block by block.

The chapter assembly measures each chapter while it is joined, then sets its gain from
the integrated loudness and limits it when the true peak would go over the ceiling.
"""

from __future__ import annotations

import numpy as np

from .files import SAMPLE_RATE


class LoudnessMeter:
    """Integrated loudness (LUFS) and true peak (dBTP) of a mono stream fed block by block.

    Only one number per 100 ms is kept, so hours of audio cost kilobytes.
    """

    def __init__(self, sr: int = SAMPLE_RATE):
        self.sr = sr
        self._filters = _k_weighting(sr)
        self._state = [np.zeros(2) for _ in self._filters]
        self._step = int(round(0.1 * sr))
        self._rest = np.zeros(0)
        self._energies: list[np.ndarray] = []
        self._history = np.zeros(16, dtype=np.float32)  # context for oversampling across blocks
        self._true_peak = 0.0

    def add(self, block: np.ndarray) -> None:
        """Feed the next samples of the stream."""
        block = np.asarray(block, dtype=np.float32)
        if len(block) == 0:
            return
        from scipy.signal import lfilter  # imported on first use: scipy.signal costs a second at every start

        y = block.astype(np.float64)
        for i, (b, a) in enumerate(self._filters):
            y, self._state[i] = lfilter(b, a, y, zi=self._state[i])
        sq = np.concatenate([self._rest, y * y])
        whole = len(sq) // self._step * self._step
        if whole:
            self._energies.append(sq[:whole].reshape(-1, self._step).mean(axis=1))
        self._rest = sq[whole:]
        self._track_peak(block)

    def _track_peak(self, block: np.ndarray) -> None:
        peak = float(np.max(np.abs(block)))
        # intersample peaks exceed the sample peak by at most ~3 dB: oversample only when it matters
        if peak * 1.5 > self._true_peak:
            from scipy.signal import resample_poly

            x = np.concatenate([self._history, block])
            over = resample_poly(x, 4, 1)
            self._true_peak = max(self._true_peak, peak, float(np.max(np.abs(over))))
        self._history = np.concatenate([self._history, block])[-16:]

    def integrated(self) -> float:
        """Gated integrated loudness in LUFS (``-inf`` for silence)."""
        e = np.concatenate(self._energies) if self._energies else np.zeros(0)
        if len(e) < 4:  # shorter than one 400 ms block: plain mean, ungated
            total = np.concatenate([e * self._step, self._rest]).sum() / max(1, len(e) * self._step + len(self._rest))
            return -0.691 + 10 * np.log10(total) if total > 0 else float("-inf")
        blocks = (e[:-3] + e[1:-2] + e[2:-1] + e[3:]) / 4  # 400 ms blocks, 75 % overlap
        with np.errstate(divide="ignore"):
            lk = -0.691 + 10 * np.log10(blocks)
        kept = blocks[lk > -70.0]
        if len(kept) == 0:
            return float("-inf")
        relative = -0.691 + 10 * np.log10(kept.mean()) - 10.0
        with np.errstate(divide="ignore"):
            kept = kept[-0.691 + 10 * np.log10(kept) > relative]
        return float(-0.691 + 10 * np.log10(kept.mean()))

    def true_peak_db(self) -> float:
        """Highest 4x-oversampled peak in dBTP (``-inf`` for silence)."""
        return 20 * np.log10(self._true_peak) if self._true_peak > 0 else float("-inf")


def _k_weighting(sr: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """BS.1770 K-weighting (high shelf, then high pass) as biquads for any sample rate."""
    # the standard gives coefficients for 48 kHz only; these are its analogue prototypes
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = np.tan(np.pi * f0 / sr)
    vh = 10 ** (gain_db / 20)
    vb = vh ** 0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = (
        np.array([(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0]),
        np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]),
    )
    f0, q = 38.13547087602444, 0.5003270373238773
    k = np.tan(np.pi * f0 / sr)
    a0 = 1 + k / q + k * k
    highpass = (np.array([1.0, -2.0, 1.0]), np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]))
    return [shelf, highpass]
