"""The narrator's voice: a speaker embedding per take, judged against the book's own takes or a clip.

``SpeakerEncoder`` is the speaker encoder a Qwen3-TTS Base checkpoint carries, loaded alone;
``VoiceStats`` keeps a voice's profile (a reference embedding and the similarities of kept
takes) and says when a take sounds like another voice or drifts from the rest of the book.
A take under ``MIN_VOICE_S`` of speech is neither judged nor learned from: on a one-word title
a speaker embedding is noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import AudiobookError
from ..files import SAMPLE_RATE
from .whisper import resample

MIN_VOICE_S = 3.0  # shorter takes are not judged by voice
VOICE_MIN_SAMPLES = 8  # accepted takes before the book's own spread of voice similarity is trusted
VOICE_OUTLIER_MADS = 4.0  # this many median absolute deviations below the median is an outlier
VOICE_MIN_SPREAD = 0.02  # the spread never counts as smaller than this (identical takes)
VOICE_SEED_TAKES = 8  # finished takes embedded to rebuild a built-in speaker's profile on resume


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denom) if denom > 0 else 0.0


@dataclass
class VoiceStats:
    """The narrator's voice as this book hears it: a reference embedding and the similarities of kept takes.

    With a reference (a cloned voice's clip) every take is compared with it; without one (a
    built-in speaker) the reference is the mean of the book's accepted takes, so nothing is
    judged until ``VOICE_MIN_SAMPLES`` takes are in.
    """

    floor: float
    reference: np.ndarray | None = None
    fixed: bool = False  # the reference is a clip, not the book's own takes
    _sum: np.ndarray | None = None
    _count: int = 0
    similarities: list[float] = field(default_factory=list)

    def similarity(self, embedding: np.ndarray) -> float | None:
        ref = self.reference if self.fixed else (self._sum / self._count if self._count >= VOICE_MIN_SAMPLES else None)
        return None if ref is None else round(cosine(embedding, ref), 4)

    def problem(self, similarity: float | None) -> str:
        """Why a take's voice is off, as a short phrase; "" when it passes or cannot be judged yet."""
        if similarity is None:
            return ""
        if similarity < self.floor:
            return f"sounds like another voice (similarity {similarity:.2f}, below {self.floor:.2f})"
        if len(self.similarities) >= VOICE_MIN_SAMPLES:
            med = float(np.median(self.similarities))
            spread = max(float(np.median(np.abs(np.asarray(self.similarities) - med))), VOICE_MIN_SPREAD)
            if similarity < med - VOICE_OUTLIER_MADS * spread:
                return f"voice drifts from the rest of the book (similarity {similarity:.2f}, book median {med:.2f})"
        return ""

    def add(self, embedding: np.ndarray, similarity: float | None) -> None:
        """Count an accepted take in the book's profile."""
        e = np.asarray(embedding, dtype=np.float64).ravel()
        if not self.fixed:
            self._sum = e.copy() if self._sum is None else self._sum + e
            self._count += 1
        if similarity is not None:
            self.similarities.append(similarity)


class SpeakerEncoder:
    """The speaker encoder of a Qwen3-TTS Base checkpoint, alone: takes in, embeddings out."""

    def __init__(self, module, device: str = "cpu"):
        self.module, self.device = module, device

    @classmethod
    def from_checkpoint(cls, folder: str | Path, device: str = "cpu") -> "SpeakerEncoder":
        """Load only the ``speaker_encoder.*`` weights of a Base checkpoint folder."""
        import torch
        from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSSpeakerEncoderConfig
        from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSSpeakerEncoder
        from safetensors import safe_open

        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        module = Qwen3TTSSpeakerEncoder(Qwen3TTSSpeakerEncoderConfig(**config["speaker_encoder_config"]))
        prefix, state = "speaker_encoder.", {}
        for shard in sorted(folder.glob("*.safetensors")):
            with safe_open(str(shard), framework="pt") as f:
                for key in f.keys():
                    if key.startswith(prefix):
                        state[key[len(prefix):]] = f.get_tensor(key)
        if not state:
            raise AudiobookError(f"The checkpoint {folder} holds no speaker encoder.")
        module.load_state_dict(state)
        return cls(module.to(device).float().eval(), device)

    def embed(self, wavs: Sequence[np.ndarray], sr: int) -> list[np.ndarray]:
        """One embedding per take (24 kHz mel frames, as the Base model computes them)."""
        import torch
        from qwen_tts.core.models.modeling_qwen3_tts import mel_spectrogram

        out = []
        dtype = next(self.module.parameters()).dtype  # the narrating model's own encoder may be half precision
        with torch.inference_mode():
            for w in wavs:
                w = resample(w, sr, SAMPLE_RATE)
                if len(w) < 2048:
                    w = np.pad(w, (0, 2048 - len(w)))
                mels = mel_spectrogram(torch.from_numpy(np.clip(w, -1, 1)).unsqueeze(0), n_fft=1024, num_mels=128,
                                       sampling_rate=SAMPLE_RATE, hop_size=256, win_size=1024, fmin=0, fmax=12000)
                emb = self.module(mels.transpose(1, 2).to(self.device, dtype))[0]
                out.append(emb.float().cpu().numpy())
        return out


def base_checkpoint_on_disk(model_size: str, models_dir: str | None) -> Path | None:
    """A Base checkpoint folder that is already on this computer (models folder or hub cache), else None."""
    from ..tts import CLONE, checkpoint_name, hub_id

    for size in dict.fromkeys((model_size, "0.6B", "1.7B")):
        if models_dir:
            local = Path(models_dir).expanduser() / checkpoint_name(CLONE, size)
            if (local / "config.json").is_file() and any(local.glob("*.safetensors")):
                return local
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(hub_id(CLONE, size), "config.json")
        except Exception:
            found = None
        if isinstance(found, str) and any(Path(found).parent.glob("*.safetensors")):
            return Path(found).parent
    return None
