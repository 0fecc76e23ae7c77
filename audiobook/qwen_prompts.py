"""qwen_tts's own talker prompts and sampling rules, taken from its ``generate`` before its decode loop.

The engine replaces only qwen_tts's loop: design, clone (ICL and x-vector) and preset
prompts are built by qwen_tts itself. ``capture_prompts`` runs its ``generate`` up to the
call of ``talker.generate`` and intercepts that call's arguments: one ``Prompt`` per item
and the ``Sampling`` rules.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class Sampling:
    """The talker's and code predictor's decoding rules, as qwen_tts passes them to ``talker.generate``."""

    max_new_tokens: int
    min_new_tokens: int
    do_sample: bool
    top_k: int
    top_p: float
    temperature: float
    repetition_penalty: float
    sub_do_sample: bool
    sub_top_k: int
    sub_top_p: float
    sub_temperature: float
    eos_id: int
    suppress: tuple[int, ...]

    @classmethod
    def from_talker_kwargs(cls, kw: dict[str, Any]) -> "Sampling":
        return cls(
            max_new_tokens=int(kw["max_new_tokens"]),
            min_new_tokens=int(kw.get("min_new_tokens") or 0),
            do_sample=bool(kw["do_sample"]),
            top_k=int(kw["top_k"] or 0),
            top_p=float(kw["top_p"] if kw["top_p"] is not None else 1.0),
            temperature=float(kw["temperature"] or 1.0),
            repetition_penalty=float(kw["repetition_penalty"] or 1.0),
            sub_do_sample=bool(kw["subtalker_dosample"]),
            sub_top_k=int(kw["subtalker_top_k"] or 0),
            sub_top_p=float(kw["subtalker_top_p"] if kw["subtalker_top_p"] is not None else 1.0),
            sub_temperature=float(kw["subtalker_temperature"] or 1.0),
            eos_id=int(kw["eos_token_id"]),
            suppress=tuple(int(i) for i in kw.get("suppress_tokens") or ()),
        )


@dataclass
class Prompt:
    """One item's talker input as qwen_tts builds it: prompt embeddings and the text fed per frame."""

    embeds: torch.Tensor  # [L, D] prompt, no padding
    trailing: torch.Tensor  # [T, D] added to frame t's input while t < T
    pad: torch.Tensor  # [D] added once the trailing text is used up


class Captured(Exception):
    """Raised inside qwen_tts's generate once the talker inputs are built."""


@contextlib.contextmanager
def override(obj, name: str, fn: Callable):
    """Shadow a method on one instance for the duration of a block (an earlier shadow comes back)."""
    missing = object()
    before = vars(obj).get(name, missing)
    setattr(obj, name, fn)
    try:
        yield
    finally:
        if before is missing:
            delattr(obj, name)
        else:
            setattr(obj, name, before)


def capture_prompts(qmodel, inputs: dict[str, Any]) -> tuple[list[Prompt], Sampling]:
    """Build the talker prompts with qwen_tts's own code, stopping before its decode loop.

    ``qmodel`` is a ``Qwen3TTSForConditionalGeneration``; ``inputs`` are the keyword
    arguments of its ``generate``. Returns one Prompt per item and the sampling rules.
    """
    box: dict[str, Any] = {}

    def grab(**kw):
        box.update(kw)
        raise Captured

    with override(qmodel.talker, "generate", grab):
        try:
            type(qmodel).generate(qmodel, **inputs)
        except Captured:
            pass
    mask = box["attention_mask"].bool()
    embeds, trailing, pad = box["inputs_embeds"], box["trailing_text_hidden"], box["tts_pad_embed"].reshape(-1)
    prompts = [Prompt(embeds[i][mask[i]], trailing[i], pad) for i in range(embeds.shape[0])]
    return prompts, Sampling.from_talker_kwargs(box)
