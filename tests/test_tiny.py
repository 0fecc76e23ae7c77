"""Tiny random Qwen3-TTS checkpoints load and generate through the real qwen_tts code."""

import hashlib
import json

import numpy as np
import pytest
import torch

from audiobook.tiny import MODEL_NAMES, SPEAKERS, build_tiny_models, count_parameters

SR = 24000
FRAME = 1920  # samples per 12.5 Hz codec frame
MAX_NEW = 200
TEXTS = [
    "Hello world.",
    "It was a bright cold day in April.",
    "Short.",
    "你好，世界。",
    "The clocks were striking thirteen.",
]
# Speaker names of the released 1.7B-CustomVoice config.
RELEASED_SPEAKERS = {"serena", "vivian", "uncle_fu", "ryan", "aiden", "ono_anna", "sohee", "eric", "dylan"}

_loaded = {}


def load(folder):
    """Load a checkpoint exactly as the app does (cached per folder)."""
    from qwen_tts import Qwen3TTSModel

    key = str(folder)
    if key not in _loaded:
        _loaded[key] = Qwen3TTSModel.from_pretrained(
            key, device_map="cpu", dtype=torch.float32, attn_implementation="sdpa"
        )
    return _loaded[key]


def rms(wav):
    """Root mean square of a waveform."""
    return float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))


def frames(wavs):
    """Codec frames per waveform."""
    return [len(w) // FRAME for w in wavs]


def assert_batch_ok(wavs, sr, n):
    """One audible wav per input; items stop at different lengths before the cap."""
    assert sr == SR
    assert len(wavs) == n
    assert all(isinstance(w, np.ndarray) and w.ndim == 1 and len(w) > 0 for w in wavs)
    assert all(rms(w) > 1e-3 for w in wavs), [rms(w) for w in wavs]
    lengths = frames(wavs)
    assert len(set(lengths)) > 1, lengths
    assert min(lengths) < MAX_NEW - 1, lengths


def file_digests(folder):
    """sha256 of every file under ``folder``, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def ref_clip(seconds=2.0, f0=180.0):
    """A voiced-ish reference clip: a few harmonics with a slow tremolo."""
    t = np.arange(int(SR * seconds)) / SR
    wav = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5))
    wav *= 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.2 * wav / np.abs(wav).max()).astype(np.float32)


# ------------------------------------------------------------------ building


def test_builds_all_five_complete_folders(tiny_models_dir):
    for name in MODEL_NAMES:
        folder = tiny_models_dir / name
        assert (folder / "config.json").is_file()
        assert (folder / "model.safetensors").is_file()
        assert (folder / "generation_config.json").is_file()
        assert (folder / "tokenizer.json").is_file()
        assert (folder / "speech_tokenizer" / "config.json").is_file()
        assert (folder / "speech_tokenizer" / "model.safetensors").is_file()
        config = json.loads((folder / "config.json").read_text())
        assert config["tts_model_size"] == ("0b6" if "0.6B" in name else "1b7")
        talker = config["talker_config"]
        assert {"english", "chinese"} <= set(talker["codec_language_id"])
        if "CustomVoice" in name:
            assert set(talker["spk_id"]) <= RELEASED_SPEAKERS
            assert {"vivian", "ryan", "aiden", "serena"} <= set(talker["spk_id"])
            assert set(talker["spk_is_dialect"]) == set(talker["spk_id"])
        assert count_parameters(folder) < 10_000_000


def test_rerun_keeps_a_complete_build(tmp_path):
    """A second build over complete folders writes nothing (how long each takes: bench/quick.py)."""
    paths = build_tiny_models(tmp_path)
    assert set(paths) == set(MODEL_NAMES)

    def snapshot():
        return {f: f.stat().st_mtime_ns for p in paths.values() for f in p.rglob("*") if f.is_file()}

    before = snapshot()
    assert len(before) >= 5 * 3
    assert build_tiny_models(tmp_path) == paths
    assert snapshot() == before


def test_incomplete_or_different_folder_is_rebuilt(tmp_path):
    name = "Qwen3-TTS-12Hz-0.6B-Base"
    folder = build_tiny_models(tmp_path, names=[name])[name]
    (folder / "model.safetensors").unlink()
    (folder / "tiny_model.json").unlink()
    build_tiny_models(tmp_path, names=[name])
    assert (folder / "model.safetensors").is_file()
    seed0 = file_digests(folder)
    build_tiny_models(tmp_path, names=[name], seed=1)
    assert file_digests(folder)["model.safetensors"] != seed0["model.safetensors"]


def test_same_seed_gives_identical_weights(tmp_path):
    names = ["Qwen3-TTS-12Hz-1.7B-CustomVoice", "Qwen3-TTS-12Hz-0.6B-Base"]
    a = build_tiny_models(tmp_path / "a", names=names, seed=3)
    b = build_tiny_models(tmp_path / "b", names=names[1:], seed=3)
    c = build_tiny_models(tmp_path / "c", names=names[1:], seed=4)
    name = names[1]
    assert file_digests(a[name]) == file_digests(b[name])
    differs = file_digests(c[name])
    assert differs["model.safetensors"] != file_digests(a[name])["model.safetensors"]
    assert differs["speech_tokenizer/model.safetensors"] != file_digests(a[name])["speech_tokenizer/model.safetensors"]


def test_unknown_name_is_refused(tmp_path):
    with pytest.raises(ValueError):
        build_tiny_models(tmp_path, names=["Qwen3-TTS-12Hz-9B-Base"])


def test_text_tokenizer_slices_prompts_like_the_real_one(tiny_models_dir):
    from transformers import AutoTokenizer

    folder = tiny_models_dir / MODEL_NAMES[0]
    tok = AutoTokenizer.from_pretrained(str(folder))
    config = json.loads((folder / "config.json").read_text())
    prefix = tok("<|im_start|>assistant\n")["input_ids"]
    assert len(prefix) == 3
    assert prefix[:2] == [config["im_start_token_id"], config["assistant_token_id"]]
    assert len(tok("<|im_end|>\n<|im_start|>assistant\n")["input_ids"]) == 5
    for token in ("<tts_pad>", "<tts_text_bos>", "<tts_text_eod>", "<|endoftext|>"):
        assert len(tok(token)["input_ids"]) == 1
    ids = tok(["<tts_text_bos>", "<tts_text_eod>", "<tts_pad>"])["input_ids"]
    assert [i[0] for i in ids] == [
        config["tts_bos_token_id"],
        config["tts_eos_token_id"],
        config["tts_pad_token_id"],
    ]
    text = "Mixed text: 你好, ünïcode & 42!"
    assert tok.decode(tok(text)["input_ids"]) == text
    assert max(max(tok(text)["input_ids"]), config["tts_eos_token_id"]) < config["talker_config"]["text_vocab_size"]


# ------------------------------------------------------------------ loading


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_loads_through_qwen_tts(tiny_models_dir, name):
    model = load(tiny_models_dir / name)
    kind = {"VoiceDesign": "voice_design", "Base": "base", "CustomVoice": "custom_voice"}
    assert model.model.tts_model_type == kind[name.rsplit("-", 1)[1]]
    assert model.model.tts_model_size == ("0b6" if "0.6B" in name else "1b7")
    assert model.model.speech_tokenizer is not None
    assert model.model.generate_config["max_new_tokens"] == 8192
    languages = set(model.model.get_supported_languages())
    assert {"auto", "english", "chinese"} <= languages
    assert not any("dialect" in lang for lang in languages)
    if "CustomVoice" in name:
        assert set(model.model.get_supported_speakers()) == set(SPEAKERS)


# ------------------------------------------------------------------ generating


def test_voice_design_batch(tiny_models_dir):
    model = load(tiny_models_dir / "Qwen3-TTS-12Hz-1.7B-VoiceDesign")
    torch.manual_seed(0)
    wavs, sr = model.generate_voice_design(
        text=TEXTS,
        instruct=["A calm, warm narrator.", "", "An excited child.", "老人的声音", "A whisper."],
        language=["English", "Auto", "English", "Chinese", "English"],
        max_new_tokens=MAX_NEW,
    )
    assert_batch_ok(wavs, sr, len(TEXTS))


@pytest.mark.parametrize("name", ["Qwen3-TTS-12Hz-1.7B-CustomVoice", "Qwen3-TTS-12Hz-0.6B-CustomVoice"])
def test_custom_voice_batch(tiny_models_dir, name):
    model = load(tiny_models_dir / name)
    torch.manual_seed(0)
    # The 0.6B model drops instruct, as the real one does.
    wavs, sr = model.generate_custom_voice(
        text=TEXTS[:4],
        speaker=["Vivian", "ryan", "Aiden", "Eric"],
        language=["English", "English", "Auto", "Chinese"],
        instruct="Speak slowly.",
        max_new_tokens=MAX_NEW,
    )
    assert_batch_ok(wavs, sr, 4)


def test_unknown_speaker_is_refused(tiny_models_dir):
    model = load(tiny_models_dir / "Qwen3-TTS-12Hz-1.7B-CustomVoice")
    with pytest.raises(ValueError):
        model.generate_custom_voice(text="Hi.", speaker="Nobody", max_new_tokens=5)


@pytest.mark.parametrize("name", ["Qwen3-TTS-12Hz-1.7B-Base", "Qwen3-TTS-12Hz-0.6B-Base"])
def test_voice_clone_icl_batch(tiny_models_dir, name):
    model = load(tiny_models_dir / name)
    ref = ref_clip()
    prompt = model.create_voice_clone_prompt(ref_audio=(ref, SR), ref_text="A short reference line.")
    assert len(prompt) == 1 and prompt[0].icl_mode and not prompt[0].x_vector_only_mode
    assert prompt[0].ref_code.shape == (len(ref) // FRAME, 16)
    assert len(set(prompt[0].ref_code[:, 0].tolist())) > 1  # codebooks are not all zero
    torch.manual_seed(0)
    wavs, sr = model.generate_voice_clone(
        text=TEXTS[:4], language="English", voice_clone_prompt=prompt, max_new_tokens=MAX_NEW
    )
    assert_batch_ok(wavs, sr, 4)


def test_voice_clone_x_vector_batch(tiny_models_dir):
    model = load(tiny_models_dir / "Qwen3-TTS-12Hz-1.7B-Base")
    prompt = model.create_voice_clone_prompt(ref_audio=(ref_clip(), SR), x_vector_only_mode=True)
    assert prompt[0].x_vector_only_mode and prompt[0].ref_code is None
    torch.manual_seed(0)
    wavs, sr = model.generate_voice_clone(
        text=TEXTS[:3], language="Auto", voice_clone_prompt=prompt, max_new_tokens=MAX_NEW
    )
    assert_batch_ok(wavs, sr, 3)


def test_batch_keeps_input_order(tiny_models_dir):
    """Greedy decoding makes each item's length a function of its own input."""
    from model_helpers import varied_lengths

    model = load(tiny_models_dir / "Qwen3-TTS-12Hz-1.7B-VoiceDesign")
    texts = TEXTS[:4]
    greedy = dict(do_sample=False, subtalker_dosample=False, max_new_tokens=60)
    with varied_lengths(model):
        batched, _ = model.generate_voice_design(text=texts, instruct="", language="English", **greedy)
        alone = [
            model.generate_voice_design(text=t, instruct="", language="English", **greedy)[0][0]
            for t in texts
        ]
    assert len(set(frames(alone))) > 1, "the items must end at different lengths for their order to show"
    assert frames(batched) == frames(alone)


def test_lengths_depend_on_seed(tiny_models_dir):
    model = load(tiny_models_dir / "Qwen3-TTS-12Hz-1.7B-VoiceDesign")
    runs = []
    for seed in (0, 1, 0):
        torch.manual_seed(seed)
        wavs, _ = model.generate_voice_design(text=TEXTS[:3], instruct="", max_new_tokens=MAX_NEW)
        runs.append(frames(wavs))
    assert runs[0] == runs[2]
    assert runs[0] != runs[1]


def test_runaway_models_never_stop(tmp_path):
    name = "Qwen3-TTS-12Hz-1.7B-VoiceDesign"
    folder = build_tiny_models(tmp_path, names=[name], runaway=True)[name]
    model = load(folder)
    torch.manual_seed(0)
    wavs, _ = model.generate_voice_design(text=TEXTS[:3], instruct="", max_new_tokens=30)
    assert frames(wavs) == [29, 29, 29]
    assert all(rms(w) > 1e-3 for w in wavs)


def test_batch_of_five_clones_in_one_call(tiny_models_dir):
    """Five texts in one x-vector clone call give five takes of whole frames, none past the cap."""
    model = load(tiny_models_dir / "Qwen3-TTS-12Hz-0.6B-Base")
    prompt = model.create_voice_clone_prompt(ref_audio=(ref_clip(1.0), SR), x_vector_only_mode=True)
    torch.manual_seed(0)
    wavs, sr = model.generate_voice_clone(
        text=TEXTS, language="English", voice_clone_prompt=prompt, max_new_tokens=25
    )
    assert sr == SR and len(wavs) == 5
    assert all(len(w) % FRAME == 0 and 0 < len(w) // FRAME < 25 for w in wavs), [len(w) for w in wavs]
    assert all(np.isfinite(w).all() and rms(w) > 1e-3 for w in wavs)


def test_medium_size_loads_and_speaks(tmp_path):
    name = "Qwen3-TTS-12Hz-0.6B-CustomVoice"
    folder = build_tiny_models(tmp_path, names=[name], size="medium")[name]
    assert 10_000_000 < count_parameters(folder) < 100_000_000
    model = load(folder)
    torch.manual_seed(0)
    wavs, _ = model.generate_custom_voice(text="Hello.", speaker="Serena", max_new_tokens=10)
    assert len(wavs) == 1 and rms(wavs[0]) > 1e-3
