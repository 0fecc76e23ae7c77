"""Random-weight checkpoints for the benchmark: tiny and medium from audiobook.tiny, full size from the released configs.

Every engine in a run must do the same work, so the benchmark decodes greedily and
shrinks the talker's EOS row until greedy items stop at different lengths
(``set_eos_scale``): greedy codes are identical in every engine, so are the lengths.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from audiobook.tiny import build_tiny_models

PRESET_MODEL = "Qwen3-TTS-12Hz-1.7B-CustomVoice"
# Released config files by checkpoint name, in ../shared/qwen3-tts-configs/.
RELEASED_CONFIGS = {
    "Qwen3-TTS-12Hz-1.7B-CustomVoice": "1.7B-CustomVoice.config.json",
    "Qwen3-TTS-12Hz-0.6B-CustomVoice": "0.6B-CustomVoice.config.json",
}
_TALKER_SHAPE = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "head_dim", "rope_scaling", "text_hidden_size", "text_vocab_size")
_PREDICTOR_SHAPE = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "head_dim", "layer_types")


def eos_scale_for(hidden_size: int) -> float:
    """EOS row norm that lets greedy items end after a few to a couple of hundred frames.

    Hidden states are RMS-normed, so the EOS logit is about N(0, scale^2) while the
    other random logits grow with the hidden size. Measured on this workload: 0.30
    for the tiny model (hidden 64), 1.25 for the medium one (512); other sizes follow
    the power law through those two points (untested on full size: the run prints
    the spread of lengths it got, and ``--eos-scale`` overrides).
    """
    return 0.30 * (hidden_size / 64) ** 0.686


def set_eos_scale(qwen_model, scale: float) -> None:
    """Point the talker's EOS row in its own direction with norm ``scale`` (in memory only)."""
    import torch

    talker = qwen_model.model.talker
    eos = qwen_model.model.config.talker_config.codec_eos_token_id
    with torch.no_grad():
        row = talker.codec_head.weight[eos].float()
        talker.codec_head.weight[eos] = (row / row.norm() * scale).to(talker.codec_head.weight.dtype)


def cpu_models(out_dir: Path, size: str) -> Path:
    """The tiny or medium CustomVoice checkpoint (built once, reused)."""
    build_tiny_models(out_dir, names=[PRESET_MODEL], size=size)
    return out_dir


def full_size_models(out_dir: Path, configs_dir: Path, name: str = PRESET_MODEL, device: str = "cuda",
                     layers: int | None = None) -> Path:
    """A random-weight checkpoint with the released shapes of ``name`` (bf16), in ``out_dir/name``.

    The text and speech tokenizers are the tiny ones (no released tokenizer merges are
    here; the talker and code predictor, which do the generating, are full size).
    ``layers`` shrinks the talker for a quick check of this builder on a CPU.
    """
    import torch
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSForConditionalGeneration
    from safetensors.torch import save_file

    folder = out_dir / name
    marker = folder / "full_size.json"
    params = {"name": name, "layers": layers}
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return out_dir
    tiny_dir = out_dir / ".tiny"
    build_tiny_models(tiny_dir, names=[name])
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(tiny_dir / name, folder)
    (folder / "model.safetensors").unlink()
    config = json.loads((folder / "config.json").read_text())
    released = json.loads((configs_dir / RELEASED_CONFIGS[name]).read_text())
    for key in _TALKER_SHAPE:
        config["talker_config"][key] = released["talker_config"][key]
    for key in _PREDICTOR_SHAPE:
        config["talker_config"]["code_predictor_config"][key] = released["talker_config"]["code_predictor_config"][key]
    if layers:
        config["talker_config"]["num_hidden_layers"] = layers
    config["tts_model_size"] = released["tts_model_size"]
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            model = Qwen3TTSForConditionalGeneration(Qwen3TTSConfig(**json.loads(json.dumps(config))))
    finally:
        torch.set_default_dtype(default_dtype)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    del model
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    marker.write_text(json.dumps(params))
    return out_dir


def random_whisper(out_dir: Path, name: str, device: str = "cpu") -> Path:
    """A random-weight Whisper with the released shapes of ``name`` (``audiobook.tiny_whisper.WHISPER_RELEASED``).

    Tokenizer, feature extractor and generation config are the tiny checkpoint's (its
    80 mel bins become the released count). Random weights never say end-of-text, so every
    transcript runs to the checker's token cap: the timing is an upper bound.
    """
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    from audiobook.tiny_whisper import WHISPER_RELEASED, build_tiny_whisper

    folder = out_dir / name
    marker = folder / "full_size.json"
    if marker.is_file() and json.loads(marker.read_text()) == {"name": name}:
        return folder
    tiny = build_tiny_whisper(out_dir / ".tiny", names=[name])[name]
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(tiny, folder)
    config = WhisperConfig.from_pretrained(str(folder))
    for key, value in WHISPER_RELEASED[name].items():
        if key != "vocab_size":  # the tiny tokenizer's vocabulary; decoding cost is per step, not per word
            setattr(config, key, value)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    for f in folder.glob("model*.safetensors"):
        f.unlink()
    model.save_pretrained(str(folder), safe_serialization=True)
    shutil.copyfile(tiny / "generation_config.json", folder / "generation_config.json")  # languages and tasks
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(str(folder))
    marker.write_text(json.dumps({"name": name}))
    return folder
