"""The dtype setting on this machine: what runs, the sentence for what does not, and int8 in the engine."""

import pytest
import torch

from audiobook import precision
from audiobook.errors import AudiobookError
from audiobook.settings import DTYPES, Settings
from audiobook.tts import TTS


def test_every_dtype_is_a_setting_choice_and_float32_always_runs():
    assert set(precision.CPU_DTYPES) <= set(DTYPES)
    assert precision.dtype_problem("float32", "cpu") is None
    assert precision.cpu_choices()[0] == "float32"


def test_what_the_machine_cannot_run_is_refused_with_a_sentence(monkeypatch):
    assert "CPU" in precision.dtype_problem("int8", "cuda:0")
    assert "GPU" in precision.dtype_problem("float16", "cpu")
    monkeypatch.setattr(precision, "cpu_bf16", lambda: False)
    problem = precision.dtype_problem("bfloat16", "cpu")
    assert problem.endswith(".") and "bfloat16 instructions" in problem
    assert "bfloat16" not in precision.cpu_choices()
    monkeypatch.setattr(precision, "int8_kernels", lambda: False)
    assert "int8" not in precision.cpu_choices()
    tts = TTS(Settings(device="cpu", dtype="bfloat16"))
    with pytest.raises(AudiobookError, match="no bfloat16 instructions"):
        tts.dtype()


def test_int8_loads_in_float32_and_decodes_with_int8_weights(tiny_models_dir):
    if not precision.int8_kernels():
        pytest.skip("this torch has no CPU int8 weight kernel")  # the refusal is tested above
    from audiobook.agreement import compare_with_qwen_tts

    tts = TTS(Settings(models_dir=str(tiny_models_dir), device="cpu", dtype="int8", max_new_tokens=64))
    assert tts.dtype() == torch.float32
    model = tts.model("preset")
    texts = ["The lighthouse stood at the edge of the world.", "Then he lit the lamp."]
    call = lambda: model.generate_custom_voice(  # noqa: E731
        text=texts, speaker="ryan", language=["english"] * 2, do_sample=False, subtalker_dosample=False,
        max_new_tokens=24)
    result = compare_with_qwen_tts(model.model, call, int8=True)
    assert result.top1_agreement >= 0.95  # against qwen_tts in float32
    assert result.max_logit_diff > 0  # the int8 weights were used: not bitwise float32
    from audiobook.tts import GenerationOptions

    wavs = tts.preset(texts, "ryan", "", "en", GenerationOptions(max_new_tokens=16, do_sample=False))
    assert len(wavs) == 2 and tts.loaded.engine.int8
