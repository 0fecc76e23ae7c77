"""bench/gpu_check.py: its CPU-runnable checks pass on the tiny checkpoint, can fail, and it is honest without CUDA."""

import pytest
import torch

from audiobook.engine import FastEngine
from audiobook.settings import Settings
from audiobook.tts import TTS
from bench import gpu_check
from bench.models import eos_scale_for, set_eos_scale


@pytest.fixture(scope="module")
def rig(tiny_models_dir):
    tts = TTS(Settings(models_dir=str(tiny_models_dir), device="cpu", engine="fast", do_sample=False, max_new_tokens=256))
    model = tts.model("preset")
    set_eos_scale(model, eos_scale_for(model.model.config.talker_config.hidden_size))
    return gpu_check.Rig(tts, model, torch.device("cpu"), False)


def test_without_cuda_it_says_so_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    assert "No CUDA GPU" in capsys.readouterr().out


def test_the_cpu_checks_pass_on_the_tiny_checkpoint(rig):
    lines = []
    results = gpu_check.run_checks(rig, gpu_check.CHECKS, out=lambda line, **_: lines.append(line))
    assert [r.name for r in results] == ["kv-boundary", "seeded", "sampler", "teacher-forced"]
    assert all(r.ok for r in results), "\n".join(lines)
    assert len(lines) == 4 and all(line.startswith("PASS") for line in lines)
    teacher = results[-1].detail
    assert "top-1 agreement 100.00%" in teacher  # float32: the engine follows qwen_tts exactly


def test_the_checks_fail_on_a_wrong_engine(rig, monkeypatch):
    step = FastEngine._talker_step
    monkeypatch.setattr(FastEngine, "_talker_step", lambda self, st, x, kv_len: -step(self, st, x, kv_len))
    assert not gpu_check.check_teacher_forced(rig).ok
    lines = []

    def broken(rig):
        raise RuntimeError("device-side assert triggered")

    results = gpu_check.run_checks(rig, [broken], out=lambda line, **_: lines.append(line))
    assert not results[0].ok and lines[0].startswith("FAIL") and "device-side assert" in lines[0]


def test_expected_probs_are_the_warped_softmax():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0])
    p = gpu_check.expected_probs(logits, 1.0, 5, 1.0)
    assert torch.allclose(p, logits.double().softmax(-1))
    p = gpu_check.expected_probs(logits, 1.0, 2, 1.0)
    assert p[2:].sum() == 0 and abs(float(p.sum()) - 1) < 1e-12
    p = gpu_check.expected_probs(logits, 1.0, 5, 0.5)
    assert p[0] == 1.0  # the top code alone holds more than half of the mass


def test_only_picks_checks_by_name_and_refuses_an_unknown_one(monkeypatch, capsys):
    picked = gpu_check.chosen_checks("teacher-forced, replay-equals-eager")
    assert picked == [gpu_check.check_replay_equals_eager, gpu_check.check_teacher_forced]
    assert gpu_check.chosen_checks(None) == gpu_check.CUDA_CHECKS + gpu_check.CHECKS
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(["--only", "teacher-forcd"])
    assert exit_.value.code == 2
    assert "There is no check named teacher-forcd; the checks are captures, replay-equals-eager" in capsys.readouterr().err
