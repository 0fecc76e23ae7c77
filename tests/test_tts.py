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
    import huggingface_hub.constants

    # Offline as the library sees it (its constants are read once, at import).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    tts = TTS(Settings(models_dir=str(tmp_path), device="cpu"))
    with pytest.raises(AudiobookError) as err:
        tts.model(PRESET)
    msg = str(err.value)
    assert "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice" in msg and "models --download Qwen3-TTS-12Hz-1.7B-CustomVoice" in msg
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


def test_speakers_come_from_the_config_without_loading_a_model(tiny_models_dir):
    loads = []
    tts = TTS(Settings(models_dir=str(tiny_models_dir), device="cpu"), on_load=lambda job, src: loads.append(job))
    listed = tts.speakers()
    assert listed and listed == sorted(listed) and "ryan" in listed
    assert loads == []
    model = tts.model(PRESET)
    assert sorted(s.lower() for s in model.get_supported_speakers()) == listed


def test_batch_returns_one_wav_per_text_in_order(tiny_models_dir):
    from model_helpers import varied_lengths

    tts = TTS(Settings(models_dir=str(tiny_models_dir), device="cpu"))
    opts = GenerationOptions(max_new_tokens=120, do_sample=False)
    texts = ["One.", "A longer second sentence, with a clause.", "Three short words."]
    with varied_lengths(tts.model(PRESET)):
        together = tts.preset(texts, "ryan", "", "en", opts)
        alone = [tts.preset([t], "ryan", "", "en", opts)[0] for t in texts]
    assert len(together) == 3 and all(np.sqrt(np.mean(w**2)) > 1e-4 for w in together)
    assert len({len(w) for w in alone}) > 1, "the takes must differ in length for their order to show"
    assert [len(w) for w in together] == [len(w) for w in alone]


def test_narrate_clones_with_a_reused_prompt(tiny_models_dir, tmp_path, monkeypatch):
    import soundfile as sf

    tts = TTS(Settings(models_dir=str(tiny_models_dir), device="cpu"))
    t = np.arange(24000 * 4) / 24000
    clip = tmp_path / "ref.wav"
    sf.write(clip, (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32), 24000)
    opts = GenerationOptions(max_new_tokens=100)
    make_prompt = tts.clone_prompt
    for x_vector_only, text in ((False, "A tone for testing."), (True, "")):
        narrator = Narrator(kind=CLONE, ref_audio=str(clip), ref_text=text, x_vector_only=x_vector_only)
        prompt = make_prompt(narrator.ref_audio, narrator.ref_text, x_vector_only)
        assert prompt.icl_mode is (not x_vector_only)
        used = []  # the prompts the model was handed
        real_clone = tts.clone
        monkeypatch.setattr(tts, "clone", lambda texts, p, *a, **k: used.append(p) or real_clone(texts, p, *a, **k))
        monkeypatch.setattr(tts, "clone_prompt", lambda *a, **k: pytest.fail("narrate made a new clone prompt"))
        wavs = tts.narrate(narrator, ["First line.", "Second line."], "en", opts, prompt=prompt)
        assert len(wavs) == 2 and all(len(w) > 0 for w in wavs)
        assert used == [prompt]  # the given prompt, reused as is
        monkeypatch.undo()
    assert tts.loaded.job == CLONE


def test_design_batch_and_one_model_resident(tiny_models_dir):
    tts = TTS(Settings(models_dir=str(tiny_models_dir), device="cpu"))
    wavs = tts.design(["Hello.", "Hello again, friend."], "a calm narrator", "en", GenerationOptions(max_new_tokens=100))
    assert len(wavs) == 2 and tts.loaded.job == DESIGN
    tts.preset(["Hi."], "ryan", "", "en", GenerationOptions(max_new_tokens=50))
    assert tts.loaded.job == PRESET  # switching jobs replaced the design model


def test_auto_engine_falls_back_to_qwen_tts_when_the_engine_fails(tiny_models_dir, monkeypatch):
    from audiobook import engine

    def broken(self, call):
        raise RuntimeError("graph capture failed")

    monkeypatch.setattr(engine.FastEngine, "generate_wavs", broken)
    opts = GenerationOptions(max_new_tokens=60)
    auto = TTS(Settings(models_dir=str(tiny_models_dir), device="cpu", engine="auto"))
    assert auto.uses_fast_engine(opts)
    assert len(auto.preset(["One.", "Two."], "ryan", "", "en", opts)) == 2
    assert not auto.uses_fast_engine(opts)  # the rest of the session uses qwen_tts's own loop
    fast = TTS(Settings(models_dir=str(tiny_models_dir), device="cpu", engine="fast"))
    with pytest.raises(RuntimeError, match="graph capture"):
        fast.preset(["One."], "ryan", "", "en", opts)


def test_speakers_without_local_weights_need_no_download(tmp_path, monkeypatch, no_network):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    loads = []
    tts = TTS(Settings(models_dir=str(tmp_path), device="cpu"), on_load=lambda job, src: loads.append(src))
    assert "ryan" in tts.speakers() and "vivian" in tts.speakers()
    assert loads == [] and no_network == []  # no model loaded, no connection tried
    assert not (tmp_path / "hf").exists()  # and nothing fetched into the cache


def test_released_speaker_list_matches_the_released_configs():
    import json
    from pathlib import Path

    from audiobook.tts import RELEASED_SPEAKERS

    configs = Path(__file__).resolve().parents[2] / "shared" / "qwen3-tts-configs"
    for size in ("1.7B", "0.6B"):
        config = json.loads((configs / f"{size}-CustomVoice.config.json").read_text())
        assert sorted(config["talker_config"]["spk_id"]) == list(RELEASED_SPEAKERS)
