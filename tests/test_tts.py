"""Model loading: which checkpoint serves which job, the missing-weights sentence, batched calls."""

import numpy as np
import pytest

from audiobook.errors import AudiobookError
from audiobook.settings import Settings
from audiobook.tts import (
    CLONE,
    DESIGN,
    PRESET,
    TTS,
    GenerationOptions,
    Narrator,
    checkpoint_name,
    is_out_of_memory,
    language_name,
    resolve_checkpoint,
)


@pytest.mark.parametrize(
    "job, size, name",
    [
        (DESIGN, "1.7B", "Qwen3-TTS-12Hz-1.7B-VoiceDesign"),
        (DESIGN, "0.6B", "Qwen3-TTS-12Hz-1.7B-VoiceDesign"),  # design exists only at 1.7B
        (CLONE, "1.7B", "Qwen3-TTS-12Hz-1.7B-Base"),
        (CLONE, "0.6B", "Qwen3-TTS-12Hz-0.6B-Base"),
        (PRESET, "1.7B", "Qwen3-TTS-12Hz-1.7B-CustomVoice"),
        (PRESET, "0.6B", "Qwen3-TTS-12Hz-0.6B-CustomVoice"),
    ],
)
def test_checkpoint_names(job, size, name):
    assert checkpoint_name(job, size) == name


def test_local_folder_wins_over_hub(tmp_path):
    assert resolve_checkpoint(CLONE, "0.6B", tmp_path) == "Qwen/Qwen3-TTS-12Hz-0.6B-Base"
    local = tmp_path / "Qwen3-TTS-12Hz-0.6B-Base"
    local.mkdir()
    (local / "config.json").write_text("{}")
    assert resolve_checkpoint(CLONE, "0.6B", tmp_path) == str(local)


def test_missing_weights_give_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    tts = TTS(Settings(models_dir=str(tmp_path), device="cpu"))
    with pytest.raises(AudiobookError) as err:
        tts.model(PRESET)
    msg = str(err.value)
    assert "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice" in msg and "huggingface-cli download" in msg
    assert "Traceback" not in msg and msg.count("\n") == 0


def test_language_names():
    assert language_name("en") == "English"
    assert language_name("auto") == "Auto" and language_name("") == "Auto"
    assert language_name("zh-CN", ["chinese", "english"]) == "Chinese"
    assert language_name("sw", ["chinese", "english"]) == "Auto"


def test_out_of_memory_detection():
    import torch

    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_cuda_setting_without_gpu_is_a_sentence():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(AudiobookError, match="no CUDA GPU"):
        TTS(Settings(device="cuda")).device()


def test_cpu_defaults_to_float32():
    import torch

    tts = TTS(Settings(device="cpu"))
    assert tts.device() == "cpu" and tts.dtype() == torch.float32
