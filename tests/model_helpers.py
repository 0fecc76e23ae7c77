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


# The coordinate of the talker's hidden state that carries "the runaway speaker is in the prompt".
_MARK = 0


@contextlib.contextmanager
def speaker_never_ends(qwen_model, speaker: str):
    """Rewire a loaded CustomVoice model so a take whose prompt holds ``speaker`` never emits its end code,
    while every other speaker's takes end as usual. The weights are restored on exit.

    One coordinate of the talker's residual stream is kept for a mark: every embedding and every
    layer's output leave it at zero, except ``speaker``'s embedding row, which sets it. In the last
    layer one attention head attends evenly over the whole take (its queries are zero) and copies the
    mark, diluted by the length, into the mark coordinate at every position; there it outweighs
    everything else, and the end code's output row reads it with a large negative weight. Without
    the speaker the mark is zero and the end code's logit is what it was. Build an engine on the
    model after entering (the fused step copies the weights it is built from).
    """
    import torch

    talker = qwen_model.model.talker
    cfg = talker.config
    j = _MARK
    eos = cfg.codec_eos_token_id
    spk = cfg.spk_id[speaker.lower()]
    saved = {name: p.detach().clone() for name, p in talker.named_parameters()}
    heads, dim = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
    dim = getattr(cfg, "head_dim", None) or dim
    with torch.no_grad():
        emb = talker.model.codec_embedding.weight
        emb[:, j] = 0
        emb[spk, j] = 1.0
        fc2 = talker.text_projection.linear_fc2
        fc2.weight[j] = 0
        if fc2.bias is not None:
            fc2.bias[j] = 0
        for table in talker.code_predictor.model.codec_embedding:
            if table.weight.shape[1] == cfg.hidden_size:
                table.weight[:, j] = 0
        for layer in talker.model.layers:
            layer.self_attn.o_proj.weight[j] = 0
            layer.mlp.down_proj.weight[j] = 0
        last = talker.model.layers[-1]
        a = last.self_attn
        last.input_layernorm.weight[j] = 1.0
        a.q_proj.weight[:dim] = 0  # head 0: zero queries, so an even average over every position
        a.v_proj.weight[0] = 0  # kv head 0, dimension 0: the mark
        a.v_proj.weight[0, j] = 1.0
        a.o_proj.weight[j, 0] = 1e4  # back into the mark coordinate, loud enough to outweigh the rest
        talker.model.norm.weight[j] = 1.0
        head = talker.codec_head.weight
        head[:, j] = 0
        head[eos, j] = -100.0
    try:
        yield
    finally:
        with torch.no_grad():
            for name, p in talker.named_parameters():
                p.copy_(saved[name])
