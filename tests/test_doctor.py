"""``doctor`` end to end on the tiny checkpoints: the JSON a user attaches to a bug report."""

import json

import pytest

import backend
from audiobook import doctor
from audiobook.settings import SETTINGS_FILE, load_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runaway_models_dir(tmp_path_factory):
    """Tiny checkpoints that never end an item: greedy runs every text to the frame cap, so the
    comparison covers whole runs (the plain tiny models end greedy items after a frame or two)."""
    import torch

    from audiobook.tiny import build_tiny_models

    torch.set_num_threads(1)  # as for the other tiny models: extra threads only contend on a shared CPU
    out = tmp_path_factory.mktemp("runaway-models")
    build_tiny_models(out, runaway=True)
    return out


@pytest.fixture()
def root(tmp_path):
    (tmp_path / SETTINGS_FILE).write_text(json.dumps({"device": "cpu", "batch_size": 3}))
    return tmp_path


def test_doctor_end_to_end_on_the_tiny_models(runaway_models_dir, root, tmp_path, monkeypatch, capsys):
    tiny_models_dir = runaway_models_dir
    monkeypatch.setattr(backend, "ROOT", root)
    out = tmp_path / "doctor.json"
    code = backend.main(["doctor", "--models-dir", str(tiny_models_dir), "--json", str(out)])
    assert code == 0, capsys.readouterr()
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["dtype"] == "float32" and report["attention"] == "sdpa"
    names = {c["name"]: c for c in report["checkpoints"]}
    assert len(names) == 5 and all(c["present"] and c["bytes"] > 0 and c["path"] for c in names.values())
    assert report["live_check_checkpoint"] == str(tiny_models_dir / "Qwen3-TTS-12Hz-1.7B-CustomVoice")
    # float32: every frame of both texts equal, each run to the comparison's full length.
    assert report["engine_matches_reference"] is True and report["comparison"] == "codes"
    assert report["frames_compared"] == [doctor.COMPARE_FRAMES["cpu"]] * 2  # qwen_tts never feeds back the last
    assert report["frames_equal"] == report["frames_compared"]
    assert set(report["x_real_time"]) == {"batch_1", "batch_3"} and all(v > 0 for v in report["x_real_time"].values())
    from audiobook.precision import cpu_choices

    # every dtype this CPU runs, measured: float32 always, int8 and bfloat16 where the machine has them
    assert list(report["x_real_time_by_dtype"]) == cpu_choices() and "float32" in cpu_choices()
    assert all(v > 0 for v in report["x_real_time_by_dtype"].values())
    assert report["memory_kind"] == "process RSS" and report["per_slot_bytes"] > 0
    assert 1 <= report["suggested_batch_size"] <= 20
    assert report["engine_switched"] is False
    printed = capsys.readouterr().out
    assert "agrees with qwen_tts" in printed and "Suggested batch size" in printed


def test_a_disagreeing_engine_is_switched_off(runaway_models_dir, root, monkeypatch):
    """The check itself fails when the engine's codes differ: the setting goes to qwen_tts and says why."""
    from audiobook.engine import FastEngine

    real = FastEngine.generate_codes

    def off_by_one(self, prompts, sampling):
        codes = real(self, prompts, sampling)
        return [(c + 1) % 2048 if len(c) else c for c in codes]

    monkeypatch.setattr(FastEngine, "generate_codes", off_by_one)
    b = backend.Backend(root=root, models_dir=str(runaway_models_dir))
    report = b.doctor()
    assert report.engine_matches_reference is False and not report.ok
    assert report.frames_equal == [0, 0]
    assert report.engine_switched and "switched to qwen_tts" in report.summary()
    assert load_settings(root / SETTINGS_FILE).engine == "qwen_tts"
    assert b.settings.engine == "qwen_tts"


def test_without_a_checkpoint_the_live_check_says_what_to_download(root, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    b = backend.Backend(root=root, models_dir=str(tmp_path / "no-models"))
    report = b.doctor()
    assert report.engine_matches_reference is None and report.ok
    assert not any(c["present"] for c in report.checkpoints)
    assert "models --download Qwen3-TTS-12Hz-1.7B-CustomVoice" not in report.summary()
    assert "download Qwen3-TTS-12Hz-1.7B-CustomVoice" in report.summary()


def test_the_batch_size_suggestion_follows_the_measured_cost():
    assert doctor.suggest_batch_size(10 * 2**30, 2**30) == 9  # a tenth is kept free
    assert doctor.suggest_batch_size(100 * 2**30, 2**30) == 64  # the engine's most slots, on a GPU
    assert doctor.suggest_batch_size(100 * 2**30, 2**30, doctor.MAX_BATCH_CPU) == 20
    assert doctor.suggest_batch_size(2**29, 2**30) == 1
    assert doctor.suggest_batch_size(2**30, None) is None


def test_half_precision_is_judged_teacher_forced(runaway_models_dir, tmp_path):
    """In bf16 the engine is judged on qwen_tts's codes fed through it (the GPU's path, run here on the CPU)."""
    (tmp_path / SETTINGS_FILE).write_text(json.dumps({"device": "cpu", "dtype": "bfloat16", "batch_size": 2}))
    report = backend.Backend(root=tmp_path, models_dir=str(runaway_models_dir)).doctor()
    assert report.dtype == "bfloat16" and report.comparison == "teacher-forced"
    assert report.top1_agreement >= doctor.TOP1_NEEDED and report.max_logit_diff is not None
    assert report.engine_matches_reference is True and not report.engine_switched
    assert len(report.frames_equal) == 2 and all(0 <= e <= c for e, c in zip(report.frames_equal, report.frames_compared))
    assert "of its picks agree" in report.summary()
