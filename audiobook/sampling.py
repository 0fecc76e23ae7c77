"""Picking codes from logits: greedy, or sampled with Hugging Face's warpers, from counter-based streams.

A sampled pick is ``argmax(logits / temperature + G)`` over the codes that top-k and top-p
keep, with ``G`` Gumbel noise: the Gumbel-max form of multinomial sampling, which draws
every code with its warped softmax probability and which a CUDA graph records like any
other operator (no host check, no data-dependent shape). The noise is hashed from a key
per row (``draw_keys``: the take's seed, the frame, the codebook) and the code's index, so
a take's draws depend only on its own seed and where it is. All of a step's noise (the
first codebook's and the 15 code-predictor groups') is made in one pass (``step_noise``),
and each pick is then a handful of operators:

- top-k: one ``topk``; the noise of the kept codes, one ``gather``; their sum, argmax and the
  code behind it (five operators in all);
- top-p, when below 1: a softmax over the kept codes, and a cumulative sum that drops the
  least likely ones whose mass stays within ``1 - top_p`` (Hugging Face's rule);
- the temperature multiplies the noise (``argmax(l / T + G) = argmax(l + T * G)``), made once.
"""

from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF
_MIX = 0x45D9F3B  # an odd multiplier below 2**31: products of 32-bit values stay inside int64
_GROUP = 0x9E3779B  # spreads the codebook index over the key
_INDEX = 0x27D4EB2D  # spreads the code index over the noise


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash of int64 tensors holding values in [0, 2**32), with tensor ops only."""
    x = x ^ (x >> 16)
    x = (x * _MIX) & _MASK32
    x = x ^ (x >> 16)
    x = (x * _MIX) & _MASK32
    return x ^ (x >> 16)


def draw_keys(seed: torch.Tensor, frame: torch.Tensor, group: int | torch.Tensor) -> torch.Tensor:
    """One random-stream key per row from (seed, frame index, codebook index), as int64.

    ``group`` is an int or a tensor of codebook indices that broadcasts with ``seed`` and
    ``frame`` (``[S, 1]`` against ``[16]`` makes every codebook's key at once). Counter-based
    randomness: a take's draws depend only on its own seed and on where it is, never on its
    slot, its neighbours or what the process drew before.
    """
    k = _mix32(seed & _MASK32)
    k = _mix32(k ^ (frame & _MASK32))
    return _mix32(k ^ ((group * _GROUP) & _MASK32))


def gumbel(keys: torch.Tensor, n: int) -> torch.Tensor:
    """Gumbel(0, 1) noise ``[*keys.shape, n]`` hashed from each key and the code index."""
    idx = torch.arange(n, device=keys.device, dtype=torch.long) * _INDEX
    h = _mix32((keys[..., None] + idx) & _MASK32)
    h = _mix32(h ^ keys[..., None])
    u = ((h >> 8).float() + 0.5) * (1.0 / (1 << 24))  # uniform in (0, 1), never 0 or 1
    return -torch.log(-torch.log(u))


def step_noise(seed: torch.Tensor, step: torch.Tensor, first: int, groups: int, width: int,
               temperatures: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """A decode step's noise, made at once: the first codebook's ``[S, first]`` and the groups' ``[S, groups, width]``.

    The first codebook draws at frame ``step + 1`` with codebook index 0 (the next frame's first
    code); code-predictor group ``g`` draws at frame ``step`` with index ``g``. Each is scaled by
    its temperature (the talker's, the code predictor's).
    """
    frames = torch.cat([step[:, None] + 1, step[:, None].expand(-1, groups)], 1)  # [S, 1 + groups]
    keys = draw_keys(seed[:, None], frames, torch.arange(groups + 1, device=seed.device))
    noise = gumbel(keys, max(first, width))
    t_first, t_groups = temperatures
    return noise[:, 0, :first] * t_first, noise[:, 1:, :width] * t_groups


def pick(logits: torch.Tensor, noise: torch.Tensor, top_k: int, top_p: float, temperature: float) -> torch.Tensor:
    """Sampled codes ``[S]`` from ``logits [S, V]`` with ``noise`` = temperature * Gumbel ``[S, V]`` (``step_noise``).

    Hugging Face's order: temperature, then top-k (the ``top_k`` largest), then top-p over what
    top-k kept (the least likely codes whose probabilities sum to at most ``1 - top_p`` go; the
    most likely always stays).
    """
    vocab = logits.shape[-1]
    k = min(top_k, vocab) if top_k > 0 else vocab
    if k == vocab and top_p >= 1.0:
        return (logits + noise).argmax(-1)
    if k < vocab:
        kept, idx = torch.topk(logits, k)
    else:
        kept, idx = torch.sort(logits, -1, descending=True)
    if top_p < 1.0:
        probs = (kept.float() / temperature).softmax(-1)
        # Hugging Face drops a code when it and every less likely one hold at most 1 - top_p,
        # that is when the codes more likely than it hold at least top_p.
        kept = kept.masked_fill(probs.cumsum(-1) - probs >= top_p, float("-inf"))
    best = (kept + noise.gather(-1, idx)).argmax(-1, keepdim=True)
    return idx.gather(-1, best)[:, 0]


def choose(logits: torch.Tensor, sample: bool, temperature: float, top_k: int, top_p: float,
           keys: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy or sampled pick per row, with Hugging Face's warpers in its order.

    The noise is ``noise`` (already scaled by the temperature), else hashed from ``keys``
    (``draw_keys``: each row its own stream), else drawn from torch's generator.
    """
    if not sample:
        return logits.argmax(-1)
    if noise is None:
        if keys is not None:
            noise = gumbel(keys, logits.shape[-1])
        else:
            noise = -torch.empty(logits.shape, device=logits.device).exponential_().clamp_min_(1e-20).log()
        noise = noise * temperature
    return pick(logits, noise, top_k, top_p, temperature)
