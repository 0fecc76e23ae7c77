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


def out_of_memory_once(tts, above: int) -> tuple[list[int], list[int]]:
    """Make ``tts`` run out of memory once, on the first group of more than ``above`` takes it prepares.

    Returns two lists that fill as it runs: the size of the group that failed, and the slot
    count of every engine session made after it.
    """
    import torch

    real_capture, real_session = tts.capture, tts.session
    failed, sessions = [], []

    def capture(narrators, texts, *a, **k):
        if len(texts) > above and not failed:  # the first full group runs out of memory, later ones fit
            failed.append(len(texts))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real_capture(narrators, texts, *a, **k)

    def session(model, sampling, slots):
        sessions.append(slots)
        return real_session(model, sampling, slots)

    tts.capture, tts.session = capture, session
    return failed, sessions


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


# ---- the engine's tests: a tiny TTS and qwen_tts's prompts -------------------

# Texts of several lengths for the engine's tests (the first three: a short, a middle and a long one).
ENGINE_TEXTS = [
    "Hi.",
    "The lighthouse stood at the edge of the world.",
    "Every night its keeper climbed the stairs, one hundred and twelve of them, and rested at the top.",
    "Then he lit the lamp.",
    "The storm came in from the west.",
]


def tiny_tts(models_dir):
    """A CPU ``TTS`` over the tiny checkpoints, greedy by default."""
    from audiobook.settings import Settings
    from audiobook.tts import TTS

    return TTS(Settings(models_dir=str(models_dir), device="cpu", max_new_tokens=64, do_sample=False))


class _Stop(Exception):
    pass


def prompts_of(model, call):
    """qwen_tts's prompts and sampling rules for one wrapper call on ``model`` (a loaded qwen_tts model), nothing decoded."""
    from audiobook.engine import capture_prompts

    box = {}

    def generate(**inputs):
        box.update(inputs)
        raise _Stop

    model.model.generate = generate
    try:
        call()
    except _Stop:
        pass
    finally:
        del model.model.generate
    return capture_prompts(model.model, box)


def job_prompts(tts, ref_wav, job, texts, max_new_tokens):
    """(loaded qwen_tts model, prompts, greedy sampling rules) of ``texts`` for one prompt kind: design, clone or preset."""
    kw = dict(max_new_tokens=max_new_tokens, do_sample=False, subtalker_dosample=False, repetition_penalty=1.5)
    lang = ["english"] * len(texts)
    if job == "design":
        model = tts.model("design")
        call = lambda: model.generate_voice_design(text=texts, instruct=["A calm voice."] * len(texts), language=lang, **kw)  # noqa: E731
    elif job == "clone":
        prompt = tts.clone_prompt(ref_wav, "A short reference line.")
        model = tts.model("clone")
        call = lambda: model.generate_voice_clone(text=texts, language=lang, voice_clone_prompt=[prompt] * len(texts), **kw)  # noqa: E731
    else:
        model = tts.model("preset")
        call = lambda: model.generate_custom_voice(text=texts, speaker="ryan", language=lang, **kw)  # noqa: E731
    prompts, sampling = prompts_of(model, call)
    return model, prompts, sampling
