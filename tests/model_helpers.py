"""Helpers for tests that drive the tiny checkpoints."""

from __future__ import annotations

import contextlib

# An EOS row this small makes greedy items stop at different lengths (some at the cap).
EOS_SCALE = 0.3


@contextlib.contextmanager
def varied_lengths(qwen_model, scale: float = EOS_SCALE):
    """Shrink a loaded qwen_tts model's talker EOS row so greedy items end at different lengths.

    On the tiny checkpoints every item otherwise ends after a frame or two, so all lengths are
    equal and nothing about their order can be told. The row is restored on exit.
    """
    import torch

    head = qwen_model.model.talker.codec_head.weight
    eos = qwen_model.model.config.talker_config.codec_eos_token_id
    saved = head[eos].clone()
    with torch.no_grad():
        head.data[eos] = saved / saved.norm() * scale
    try:
        yield
    finally:
        with torch.no_grad():
            head.data[eos] = saved
