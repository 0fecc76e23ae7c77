"""Tiny random-weight Qwen3-TTS checkpoints for tests and CPU benchmarks.

Each checkpoint is a complete model folder under its released name
(``Qwen3-TTS-12Hz-1.7B-Base`` ...) that loads through the real qwen_tts code::

    Qwen3TTSModel.from_pretrained(str(folder), device_map="cpu",
                                  dtype=torch.float32, attn_implementation="sdpa")

It holds a hand-written ``config.json``, random weights, the released
``generation_config.json``, a small byte-level BPE text tokenizer and a tiny
12 Hz speech tokenizer in ``speech_tokenizer/``. The weights are random but
shaped so that generation behaves like the real thing where tests care: audio
is audible, batch items stop at different, seed-dependent lengths, and
``runaway=True`` builds models that never emit EOS.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

MODEL_NAMES = (
    "Qwen3-TTS-12Hz-1.7B-VoiceDesign",
    "Qwen3-TTS-12Hz-1.7B-Base",
    "Qwen3-TTS-12Hz-0.6B-Base",
    "Qwen3-TTS-12Hz-1.7B-CustomVoice",
    "Qwen3-TTS-12Hz-0.6B-CustomVoice",
)

# name -> (tts_model_type, tts_model_size), as in the released configs.
_VARIANTS = {
    "Qwen3-TTS-12Hz-1.7B-VoiceDesign": ("voice_design", "1b7"),
    "Qwen3-TTS-12Hz-1.7B-Base": ("base", "1b7"),
    "Qwen3-TTS-12Hz-0.6B-Base": ("base", "0b6"),
    "Qwen3-TTS-12Hz-1.7B-CustomVoice": ("custom_voice", "1b7"),
    "Qwen3-TTS-12Hz-0.6B-CustomVoice": ("custom_voice", "0b6"),
}

# A subset of the released speakers, with their released codec ids.
SPEAKERS = {"vivian": 3065, "serena": 3066, "ryan": 3061, "aiden": 2861, "eric": 2875}
_SPEAKER_DIALECT = {"eric": "sichuan_dialect"}
LANGUAGES = {
    "chinese": 2055,
    "english": 2050,
    "german": 2053,
    "spanish": 2054,
    "french": 2061,
    "japanese": 2058,
    "sichuan_dialect": 2062,
}

# Released codec control ids (the top 1024 of the 3072-entry codec vocabulary).
_CODEC_IDS = {
    "codec_pad_id": 2148,
    "codec_bos_id": 2149,
    "codec_eos_token_id": 2150,
    "codec_think_id": 2154,
    "codec_nothink_id": 2155,
    "codec_think_bos_id": 2156,
    "codec_think_eos_id": 2157,
}
_CODEBOOK_SIZE = 2048
_CODEC_VOCAB = 3072
_NUM_CODE_GROUPS = 16

_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<tts_pad>",
    "<tts_text_bos>",
    "<tts_text_eod>",
)
# Qwen2's pre-tokenizer split pattern.
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CORPUS = (  # what the tiny tokenizers learn their pieces from
    "assistant user system\n",
    "The quick brown fox jumps over the lazy dog. ",
    "Chapter one. It was a bright cold day in April, and the clocks were striking thirteen. ",
    "She said, \"Hello there!\" and he answered: 'Well, what now?' 1234567890 ",
    "A warm, calm narrator with a low voice reads the story slowly and clearly. ",
    "今天天气很好，我们一起去公园散步吧。这是一个关于勇气和友谊的故事。",
    "Der schnelle braune Fuchs. El rápido zorro marrón. Le renard brun rapide. ",
    "こんにちは、世界。",
)

# Parameter sets; "tiny" for unit tests, "medium" (~40 M) for CPU benchmarks.
_SIZES = {
    "tiny": {
        "hidden": {"1b7": 64, "0b6": 48},
        "text_hidden": 64,
        "layers": 2,
        "heads": 4,
        "kv_heads": 2,
        "head_dim": 16,
        "mrope_section": [2, 3, 3],
        "intermediate": 128,
        "cp_hidden": 32,
        "cp_layers": 1,
        "cp_heads": 4,
        "cp_kv_heads": 2,
        "cp_head_dim": 8,
        "cp_intermediate": 64,
        "spk_channels": [32, 32, 32, 32, 96],
    },
    "medium": {
        "hidden": {"1b7": 512, "0b6": 384},
        "text_hidden": 512,
        "layers": 4,
        "heads": 8,
        "kv_heads": 4,
        "head_dim": 64,
        "mrope_section": [12, 10, 10],
        "intermediate": 1024,
        "cp_hidden": 256,
        "cp_layers": 2,
        "cp_heads": 4,
        "cp_kv_heads": 2,
        "cp_head_dim": 64,
        "cp_intermediate": 512,
        "spk_channels": [64, 64, 64, 64, 192],
    },
}

# Scale of the talker's EOS row: items stop after a few to about 80 frames
# (median about 25), at lengths that depend on the seed and the input; smaller
# scales give longer runs (1.0: up to about 230) but slow every test down.
_EOS_SCALE = 1.2
# Target RMS of decoded audio from random codes (audible, far from clipping).
_TARGET_RMS = 0.1
_MARKER = "tiny_model.json"

_GENERATION_CONFIG = {
    "do_sample": True,
    "repetition_penalty": 1.05,
    "temperature": 0.9,
    "top_p": 1.0,
    "top_k": 50,
    "subtalker_dosample": True,
    "subtalker_temperature": 0.9,
    "subtalker_top_p": 1.0,
    "subtalker_top_k": 50,
    "max_new_tokens": 8192,
}
_PROCESSOR_CONFIG = {
    "padding_side": "left",
    "padding_value": 0.0,
    "processor_class": "Qwen3TTSProcessor",
    "return_attention_mask": True,
}
_FEATURE_EXTRACTOR_CONFIG = {
    "chunk_length_s": None,
    "feature_extractor_type": "EncodecFeatureExtractor",
    "feature_size": 1,
    "overlap": None,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": True,
    "sampling_rate": 24000,
}


def build_tiny_models(
    out_dir,
    names=None,
    seed: int = 0,
    runaway: bool = False,
    size: str = "tiny",
) -> dict[str, Path]:
    """Write random-weight Qwen3-TTS checkpoints into ``out_dir``.

    Args:
        out_dir: folder that receives one sub-folder per model, named as released.
        names: which of ``MODEL_NAMES`` to build (default: all five).
        seed: weights are a pure function of (name, seed, runaway, size).
        runaway: zero the talker's EOS row so generation never stops and every
            call runs to ``max_new_tokens`` (for runaway-detection tests).
        size: "tiny" (about 3 M parameters, for tests) or "medium" (a few tens
            of millions, for CPU benchmarks).

    Returns:
        ``{name: folder}`` for every requested model. A folder that is already
        complete with the same parameters is kept as is, so re-running is cheap.
    """
    names = tuple(MODEL_NAMES if names is None else names)
    unknown = [n for n in names if n not in _VARIANTS]
    if unknown:
        raise ValueError(f"unknown model names {unknown}; expected some of {MODEL_NAMES}")
    if size not in _SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {sorted(_SIZES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = {"seed": seed, "runaway": runaway, "size": size}
    todo = [n for n in names if not _is_complete(out / n, params)]
    if todo:
        _build_missing(out, todo, params)
    return {n: out / n for n in names}


def _is_complete(folder: Path, params: dict) -> bool:
    """True when ``folder`` was fully written with the same parameters."""
    marker = folder / _MARKER
    try:
        return json.loads(marker.read_text()) == params
    except (OSError, ValueError):
        return False


def _build_missing(out: Path, names: list[str], params: dict) -> None:
    """Build the shared tokenizers once, then each model into a staging folder."""
    with tempfile.TemporaryDirectory(dir=out, prefix=".tiny-build-") as tmp:
        shared = Path(tmp) / "shared"
        text_ids = _save_text_tokenizer(shared / "text")
        _save_speech_tokenizer(shared / "speech_tokenizer", params["seed"])
        for name in names:
            stage = Path(tmp) / name
            shutil.copytree(shared / "text", stage)
            shutil.copytree(shared / "speech_tokenizer", stage / "speech_tokenizer")
            _save_tts_model(stage, name, text_ids, params)
            (stage / _MARKER).write_text(json.dumps(params))
            # Swap in only once complete, so an interrupted build is redone.
            final = out / name
            if final.exists():
                shutil.rmtree(final)
            stage.rename(final)


# ---------------------------------------------------------------- text tokenizer


def _save_text_tokenizer(folder: Path) -> dict[str, int]:
    """Train and save a small byte-level BPE; return the ids the config needs."""
    from transformers import Qwen2TokenizerFast

    tok = Qwen2TokenizerFast(
        tokenizer_object=_train_bpe(),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=list(_SPECIAL_TOKENS[1:]),
        add_prefix_space=False,
        clean_up_tokenization_spaces=False,
        errors="replace",
        model_max_length=131072,
    )
    _check_prompt_slicing(tok)
    tok.save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps(_PROCESSOR_CONFIG, indent=2))
    ids = {t: tok.convert_tokens_to_ids(t) for t in _SPECIAL_TOKENS}
    return {
        "assistant": tok.convert_tokens_to_ids("assistant"),
        "im_start": ids["<|im_start|>"],
        "im_end": ids["<|im_end|>"],
        "tts_pad": ids["<tts_pad>"],
        "tts_bos": ids["<tts_text_bos>"],
        "tts_eos": ids["<tts_text_eod>"],
        # Rounded up like the released 151936, leaving unused rows.
        "vocab_size": -(-len(tok) // 64) * 64,
    }


def _train_bpe():
    """A byte-level BPE with Qwen2's split rule, trained on a few sentences."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeat the chat words so "assistant" becomes a single token.
    bpe.train_from_iterator(list(CORPUS) * 20, trainer=trainer)
    bpe.add_special_tokens(list(_SPECIAL_TOKENS))
    return bpe


def _check_prompt_slicing(tok) -> None:
    """qwen_tts slices prompts by position: the role prefixes must be 3 and 5 tokens."""
    prefix = tok("<|im_start|>assistant\n")["input_ids"]
    middle = tok("<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    if len(prefix) != 3 or len(middle) != 5:
        raise RuntimeError(f"text tokenizer breaks prompt slicing: {prefix} {middle}")


# -------------------------------------------------------------- speech tokenizer


def _speech_tokenizer_config() -> dict:
    """A 12 Hz tokenizer config: released rates and codebooks, tiny widths."""
    encoder = {
        "_frame_rate": 12.5,
        "audio_channels": 1,
        "codebook_dim": 16,
        "codebook_size": _CODEBOOK_SIZE,
        "compress": 2,
        "dilation_growth_rate": 2,
        "head_dim": 16,
        "hidden_act": "gelu",
        "hidden_size": 32,
        "intermediate_size": 64,
        "kernel_size": 7,
        "last_kernel_size": 3,
        "max_position_embeddings": 8000,
        "num_attention_heads": 2,
        "num_filters": 4,
        "num_hidden_layers": 1,
        "num_key_value_heads": 2,
        "num_quantizers": _NUM_CODE_GROUPS,
        "num_residual_layers": 1,
        "num_semantic_quantizers": 1,
        "residual_kernel_size": 3,
        "sampling_rate": 24000,
        "sliding_window": 250,
        "upsample_groups": 32,
        "upsampling_ratios": [8, 6, 5, 4],
        "use_cache": False,
        "use_causal_conv": True,
        "vector_quantization_hidden_dimension": 16,
    }
    decoder = {
        "codebook_dim": 16,
        "codebook_size": _CODEBOOK_SIZE,
        "decoder_dim": 32,
        "head_dim": 16,
        "hidden_act": "silu",
        "hidden_size": 32,
        "intermediate_size": 64,
        "latent_dim": 32,
        "max_position_embeddings": 8000,
        "num_attention_heads": 2,
        "num_hidden_layers": 1,
        "num_key_value_heads": 2,
        "num_quantizers": _NUM_CODE_GROUPS,
        "sliding_window": 72,
        # 8*5*4*3 * 2*2 = 1920 samples a frame, as released.
        "upsample_rates": [8, 5, 4, 3],
        "upsampling_ratios": [2, 2],
    }
    return {
        "architectures": ["Qwen3TTSTokenizerV2Model"],
        "model_type": "qwen3_tts_tokenizer_12hz",
        "encoder_valid_num_quantizers": _NUM_CODE_GROUPS,
        "input_sample_rate": 24000,
        "output_sample_rate": 24000,
        "decode_upsample_rate": 1920,
        "encode_downsample_rate": 1920,
        "encoder_config": encoder,
        "decoder_config": decoder,
    }


def _save_speech_tokenizer(folder: Path, seed: int) -> None:
    """Build, fix up and save the speech tokenizer once; models copy it."""
    import torch
    from qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2 import (
        Qwen3TTSTokenizerV2Config,
    )
    from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import (
        Qwen3TTSTokenizerV2Model,
    )

    config = _speech_tokenizer_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3TTSTokenizerV2Model(Qwen3TTSTokenizerV2Config(**config)).eval()
        _randomise_codebooks(model)
        _scale_decoder(model)
    _save_weights(model, folder)
    _write_json(folder / "config.json", config)
    _write_json(folder / "preprocessor_config.json", _FEATURE_EXTRACTOR_CONFIG)


def _randomise_codebooks(model) -> None:
    """Random init leaves every codebook at zero: all codes 0 and silent audio."""
    import torch

    for name, tensor in model.state_dict(keep_vars=True).items():
        if name.endswith("embed_sum") or name.endswith("embedding_sum"):
            with torch.no_grad():
                tensor.normal_()


def _scale_decoder(model) -> None:
    """Scale the decoder's last conv so random codes decode at ``_TARGET_RMS``."""
    import torch

    gen = torch.Generator().manual_seed(1234)
    codes = torch.randint(0, _CODEBOOK_SIZE, (1, _NUM_CODE_GROUPS, 20), generator=gen)
    last_conv = model.decoder.decoder[-1].conv
    with torch.no_grad():
        rms = model.decoder(codes).pow(2).mean().sqrt().item()
        # The decoder clamps to [-1, 1]; undo any clipping by scaling from far below.
        factor = _TARGET_RMS / max(rms, 1e-12)
        last_conv.weight.mul_(factor)
        if last_conv.bias is not None:
            last_conv.bias.mul_(factor)


# ------------------------------------------------------------------ TTS model


def _tts_config(name: str, text_ids: dict[str, int], size: str) -> dict:
    """The hand-written ``config.json`` (``save_pretrained``'s does not load back)."""
    model_type, size_tag = _VARIANTS[name]
    s = _SIZES[size]
    hidden = s["hidden"][size_tag]
    talker = {
        "attention_bias": False,
        "attention_dropout": 0,
        "code_predictor_config": _code_predictor_config(s),
        **_CODEC_IDS,
        "codec_language_id": dict(LANGUAGES),
        "spk_id": dict(SPEAKERS) if model_type == "custom_voice" else {},
        "spk_is_dialect": (
            {spk: _SPEAKER_DIALECT.get(spk, False) for spk in SPEAKERS}
            if model_type == "custom_voice"
            else {}
        ),
        "head_dim": s["head_dim"],
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": s["intermediate"],
        "max_position_embeddings": 32768,
        "model_type": "qwen3_tts_talker",
        "num_attention_heads": s["heads"],
        "num_code_groups": _NUM_CODE_GROUPS,
        "num_hidden_layers": s["layers"],
        "num_key_value_heads": s["kv_heads"],
        "position_id_per_seconds": 13,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {
            "interleaved": True,
            "mrope_section": s["mrope_section"],
            "rope_type": "default",
            "type": "default",
        },
        "rope_theta": 1000000,
        "sliding_window": None,
        "text_hidden_size": s["text_hidden"],
        "text_vocab_size": text_ids["vocab_size"],
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": _CODEC_VOCAB,
    }
    config = {
        "architectures": ["Qwen3TTSForConditionalGeneration"],
        "assistant_token_id": text_ids["assistant"],
        "im_start_token_id": text_ids["im_start"],
        "im_end_token_id": text_ids["im_end"],
        "tts_pad_token_id": text_ids["tts_pad"],
        "tts_bos_token_id": text_ids["tts_bos"],
        "tts_eos_token_id": text_ids["tts_eos"],
        "model_type": "qwen3_tts",
        "tokenizer_type": "qwen3_tts_tokenizer_12hz",
        "tts_model_size": size_tag,
        "tts_model_type": model_type,
        "talker_config": talker,
    }
    if model_type == "base":
        config["speaker_encoder_config"] = {
            "enc_dim": hidden,
            "enc_channels": s["spk_channels"],
            "enc_attention_channels": 16,
            "enc_se_channels": 16,
            "sample_rate": 24000,
        }
    return config


def _code_predictor_config(s: dict) -> dict:
    """The code predictor's sub-config, as a plain dict."""
    return {
        "attention_bias": False,
        "attention_dropout": 0,
        "head_dim": s["cp_head_dim"],
        "hidden_act": "silu",
        "hidden_size": s["cp_hidden"],
        "initializer_range": 0.02,
        "intermediate_size": s["cp_intermediate"],
        "layer_types": ["full_attention"] * s["cp_layers"],
        "max_position_embeddings": 65536,
        "model_type": "qwen3_tts_talker_code_predictor",
        "num_attention_heads": s["cp_heads"],
        "num_code_groups": _NUM_CODE_GROUPS,
        "num_hidden_layers": s["cp_layers"],
        "num_key_value_heads": s["cp_kv_heads"],
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000,
        "sliding_window": None,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": _CODEBOOK_SIZE,
    }


def _save_tts_model(folder: Path, name: str, text_ids: dict, params: dict) -> None:
    """Build one TTS model with deterministic random weights and save it."""
    import torch
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSForConditionalGeneration

    config = _tts_config(name, text_ids, params["size"])
    with torch.random.fork_rng(devices=[]):
        # Each name gets its own stream, so building a subset changes nothing.
        torch.manual_seed(params["seed"] * 1000 + MODEL_NAMES.index(name))
        model = Qwen3TTSForConditionalGeneration(Qwen3TTSConfig(**json.loads(json.dumps(config))))
        _set_eos_row(model, runaway=params["runaway"])
    _save_weights(model, folder)
    _write_json(folder / "config.json", config)
    _write_json(folder / "generation_config.json", _GENERATION_CONFIG)


def _set_eos_row(model, runaway: bool) -> None:
    """Make EOS likely enough to end items at varied lengths, or impossible."""
    import torch

    head = model.talker.codec_head.weight
    eos = model.config.talker_config.codec_eos_token_id
    with torch.no_grad():
        if runaway:
            # A zero logit never makes the top-k of 2048 random ones: no EOS.
            head[eos].zero_()
        else:
            # Hidden states are RMS-normed, so the EOS logit is about N(0, scale^2).
            row = torch.randn(head.shape[1])
            head[eos] = row / row.norm() * _EOS_SCALE


def _save_weights(model, folder: Path) -> None:
    """Write ``model.safetensors`` straight from the state dict."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON."""
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def count_parameters(folder) -> int:
    """Number of parameters stored in a checkpoint folder (speech tokenizer excluded)."""
    from safetensors import safe_open

    with safe_open(str(Path(folder) / "model.safetensors"), framework="pt") as f:
        return sum(_numel(f.get_slice(key).get_shape()) for key in f.keys())


def _numel(shape) -> int:
    """Product of a shape's dimensions."""
    n = 1
    for d in shape:
        n *= d
    return n
