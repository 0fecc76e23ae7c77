"""How closely the fast engine follows qwen_tts's own ``generate`` (``compare_with_qwen_tts``).

The measure behind ``bench/gpu_check.py``'s teacher-forced check, the doctor's precision
check and the engine tests: qwen_tts generates greedily, its codes are fed through the
engine frame by frame, and the engine's picks and logits are compared with qwen_tts's
(``Agreement``); then the engine generates on its own and its codes are compared as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from .engine import FastEngine
from .qwen_prompts import Captured, Prompt, capture_prompts, override


@dataclass(frozen=True)
class Agreement:
    """How closely the fast engine follows qwen_tts's own ``generate`` on the same greedy call.

    Teacher-forced: qwen_tts's codes are fed through the engine frame by frame, and at
    every frame the engine's own greedy pick and its logits are compared with qwen_tts's.
    This is the measure that holds in bf16, where a different batch shape picks different
    kernels and free-running greedy codes part after a near-tie even inside qwen_tts.
    Free-running: the engine generates on its own and its codes are compared as they are.
    """

    items: int
    frames: int  # first-codebook decisions compared (every frame, and the stop frame where qwen_tts stopped)
    top1_agreement: float  # share of all picks (first codebook and the 15 code-predictor groups) equal to qwen_tts's
    first_code_agreement: float  # share of the first-codebook picks equal to qwen_tts's
    max_logit_diff: float  # largest |engine - qwen_tts| first-codebook logit over those frames
    reference_frames: tuple[int, ...]  # frames qwen_tts produced per item
    equal_frames: tuple[int, ...]  # free-running: leading frames where the engine's codes equal qwen_tts's
    codes_equal: bool  # free-running: every item's codes identical to qwen_tts's


def compare_with_qwen_tts(qmodel, call: Callable[[], Any], slots: int | None = None, engine_model=None,
                          int8: bool = False) -> Agreement:
    """Run one greedy qwen_tts wrapper call through qwen_tts's own ``generate`` and judge the engine by it.

    ``qmodel`` is the loaded ``Qwen3TTSForConditionalGeneration`` (``Qwen3TTSModel.model``);
    ``call`` runs one ``generate_voice_design/clone/custom_voice`` call on its wrapper with
    ``do_sample=False`` and ``subtalker_dosample=False`` (as ``FastEngine.generate_wavs``
    takes it; no audio is decoded). ``slots`` is the engine's slot count for the free-running
    part (default: one per text). qwen_tts generates first (its codes and raw logits are
    kept); then its codes are fed through the engine (teacher-forced, eager) and the engine
    also generates on its own (with CUDA graphs where they are on). Returns an ``Agreement``;
    in float32 expect ``top1_agreement == 1.0`` and ``codes_equal``, in bf16 expect
    ``top1_agreement`` of 0.99 or more and a ``max_logit_diff`` of the order of the logits' bf16 step.
    ``engine_model`` (the same checkpoint loaded in another dtype) and ``int8`` judge another
    precision of the engine against ``qmodel``'s: qwen_tts's prompts are cast to its dtype.
    Raises ``ValueError`` when the call samples or never reaches ``generate``.
    """
    box: dict[str, Any] = {}
    talker_generate = qmodel.talker.generate

    def reference_talker_generate(**kw):
        out = talker_generate(**kw, output_logits=True)
        box["logits"] = out.logits
        return out

    def generate(**inputs):
        with override(qmodel.talker, "generate", reference_talker_generate):
            codes, _ = type(qmodel).generate(qmodel, **inputs)
        box.update(codes=codes, inputs=inputs)
        raise Captured  # no audio decoding: the codes are all that is judged

    with override(qmodel, "generate", generate):
        try:
            call()
        except Captured:
            pass
    if "codes" not in box:
        raise ValueError("The call never reached qwen_tts's generate.")
    prompts, s = capture_prompts(qmodel, box["inputs"])
    if s.do_sample or s.sub_do_sample:
        raise ValueError("Comparing with qwen_tts needs greedy decoding (do_sample=False, subtalker_dosample=False).")
    engine_device = qmodel.talker.codec_head.weight.device
    refs = [c.to(engine_device) for c in box["codes"]]
    ref_logits = torch.stack([step.float() for step in box["logits"]]).to(engine_device)  # [steps, items, V]
    target = qmodel if engine_model is None else engine_model
    dt = target.talker.codec_head.weight.dtype
    prompts = [Prompt(p.embeds.to(dt), p.trailing.to(dt), p.pad.to(dt)) for p in prompts]
    forced = FastEngine(target, slots=len(prompts), cuda_graphs=False, int8=int8)._teacher_forced(prompts, s, refs)
    max_frames = s.max_new_tokens - 1
    agree_first = agree_groups = frames = groups = 0
    max_diff = 0.0
    for i, (ref, (logits, firsts, group_picks)) in enumerate(zip(refs, forced)):
        n = ref.shape[0]
        judged = n + 1 if n < max_frames else n  # the stop decision too, where qwen_tts stopped on its own
        want = torch.cat([ref[:, 0].cpu(), torch.tensor([s.eos_id])])[:judged]
        agree_first += int((firsts[:judged] == want).sum())
        frames += judged
        if judged:
            max_diff = max(max_diff, float((logits[:judged] - ref_logits[:judged, i]).abs().max()))
        agree_groups += int((group_picks == ref[:, 1:]).sum())
        groups += group_picks.numel()
    free = FastEngine(target, slots=slots or len(prompts), int8=int8).generate_codes(prompts, s)
    equal_frames = []
    for ref, got in zip(refs, free):
        n = min(ref.shape[0], got.shape[0])
        differs = (ref[:n] != got[:n]).any(1).nonzero()
        equal_frames.append(int(differs[0]) if differs.numel() else n)
    return Agreement(
        items=len(refs),
        frames=frames,
        top1_agreement=(agree_first + agree_groups) / max(1, frames + groups),
        first_code_agreement=agree_first / max(1, frames),
        max_logit_diff=max_diff,
        reference_frames=tuple(r.shape[0] for r in refs),
        equal_frames=tuple(equal_frames),
        codes_equal=all(r.shape == g.shape and torch.equal(r, g) for r, g in zip(refs, free)),
    )
