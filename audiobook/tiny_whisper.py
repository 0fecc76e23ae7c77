"""Tiny random-weight Whisper checkpoints for tests and CPU benchmarks, and the released ones' sizes.

``build_tiny_whisper`` writes folders under the released names (``WHISPER_NAMES``) that load
through ``transformers`` like the real ones (the take check's Whisper runs on them); their
transcripts are noise. ``whisper_parameters`` counts a released checkpoint's parameters from
its shapes (``WHISPER_RELEASED``) without weights.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from .tiny import CORPUS


# Folder names the verify settings resolve to (``check.resolve_verify_model``): the
# released checkpoints' names without their "openai/" owner.
WHISPER_NAMES = ("whisper-large-v3-turbo", "whisper-small")

# Full-size shapes of the released checkpoints (from their config.json), for memory
# estimates without weights; ``whisper_parameters`` counts them.
WHISPER_RELEASED = {
    "whisper-large-v3-turbo": {"d_model": 1280, "encoder_layers": 32, "decoder_layers": 4,
                               "encoder_attention_heads": 20, "decoder_attention_heads": 20,
                               "encoder_ffn_dim": 5120, "decoder_ffn_dim": 5120, "num_mel_bins": 128,
                               "vocab_size": 51866},
    "whisper-small": {"d_model": 768, "encoder_layers": 12, "decoder_layers": 12,
                      "encoder_attention_heads": 12, "decoder_attention_heads": 12,
                      "encoder_ffn_dim": 3072, "decoder_ffn_dim": 3072, "num_mel_bins": 80,
                      "vocab_size": 51865},
}
_WHISPER_MARKER = "tiny_whisper.json"
_WHISPER_CORPUS = CORPUS + (
    "the a and of to in is was he she it that his her with for on as at by one two three ",
    "eighteen fifty-one hundred twelve thousand lighthouse keeper storm light night stairs ",
)


def build_tiny_whisper(out_dir, names=None, seed: int = 0) -> dict[str, Path]:
    """Write random-weight Whisper checkpoints into ``out_dir`` under ``WHISPER_NAMES``.

    Each folder loads with ``WhisperForConditionalGeneration.from_pretrained`` and
    ``WhisperProcessor.from_pretrained`` like a released one: config, generation config
    (languages, tasks, timestamps), a byte-level BPE tokenizer with Whisper's special
    tokens, and an 80-bin log-mel feature extractor. Transcripts are noise. Returns
    ``{name: folder}``; a folder already complete with the same seed is kept.
    """
    names = tuple(WHISPER_NAMES if names is None else names)
    unknown = [n for n in names if n not in WHISPER_NAMES]
    if unknown:
        raise ValueError(f"unknown Whisper names {unknown}; expected some of {WHISPER_NAMES}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = {"seed": seed, "kind": "whisper"}
    for name in names:
        final = out / name
        try:
            if json.loads((final / _WHISPER_MARKER).read_text()) == params:
                continue
        except (OSError, ValueError):
            pass
        with tempfile.TemporaryDirectory(dir=out, prefix=".tiny-build-") as tmp:
            stage = Path(tmp) / name
            _save_tiny_whisper(stage, seed * 1000 + WHISPER_NAMES.index(name))
            (stage / _WHISPER_MARKER).write_text(json.dumps(params))
            if final.exists():
                shutil.rmtree(final)
            stage.rename(final)
    return {n: out / n for n in names}


def _whisper_special_tokens() -> list[str]:
    """Whisper's special tokens in their released order: timestamps follow <|notimestamps|>."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES as WHISPER_LANGUAGES

    return (["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{code}|>" for code in WHISPER_LANGUAGES]
            + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
               "<|notimestamps|>"] + [f"<|{i * 0.02:.2f}|>" for i in range(1501)])


def _save_tiny_whisper(folder: Path, seed: int) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizerFast)
    from transformers.models.whisper.tokenization_whisper import LANGUAGES as WHISPER_LANGUAGES

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(list(_WHISPER_CORPUS) * 20, trainer=trainer)
    special = _whisper_special_tokens()
    bpe.add_special_tokens(special)
    tok = WhisperTokenizerFast(tokenizer_object=bpe, model_max_length=448, clean_up_tokenization_spaces=False)
    ids = {t: tok.convert_tokens_to_ids(t) for t in special}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    # Random weights favour no token; suppressing the control tokens makes the noise words.
    suppress = sorted(i for t, i in ids.items() if t != "<|endoftext|>" and not t.startswith("<|0.00"))
    features = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400)
    WhisperProcessor(feature_extractor=features, tokenizer=tok).save_pretrained(str(folder))

    config = WhisperConfig(
        vocab_size=-(-len(tok) // 64) * 64, num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=1500, max_target_positions=448, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
        decoder_start_token_id=sot, use_cache=True, suppress_tokens=None, begin_suppress_tokens=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WhisperForConditionalGeneration(config).eval()
    model.save_pretrained(str(folder), safe_serialization=True)
    gen = GenerationConfig(
        decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, max_length=448,
        begin_suppress_tokens=[eot], suppress_tokens=suppress, is_multilingual=True,
        lang_to_id={f"<|{code}|>": ids[f"<|{code}|>"] for code in WHISPER_LANGUAGES},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"],
        max_initial_timestamp_index=50, alignment_heads=[[1, 0], [1, 1]],
    )
    gen.save_pretrained(str(folder))


def whisper_parameters(name: str) -> int:
    """Parameters of a released Whisper checkpoint, counted from its shapes without weights."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(**WHISPER_RELEASED[name], max_source_positions=1500, max_target_positions=448)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    # The output projection shares the token embedding's weights.
    return sum(p.numel() for p in model.parameters())
