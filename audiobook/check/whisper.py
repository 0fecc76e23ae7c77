"""Whisper, run the way its own transcriber runs it, for checking takes.

* only a checkpoint on this computer is loaded (the models folder or the Hugging Face cache,
  ``models.py``); a missing one is the usual sentence naming its download, never a hub call;
* temperature fallback: a decode whose text compresses too well (Whisper looping) or whose
  mean log-probability is too low is decoded again at a higher temperature, so Whisper's own
  loops are retried by Whisper and not blamed on the take; a stretch Whisper takes for
  silence is not transcribed (no words it made up on a pause);
* the language is detected once per book (``detect_language``) or taken from the book, and
  forced on every take;
* each take's token limit comes from its reference text's own token count (a take that loops
  costs little, a doubled sentence still fits);
* segment times come back with the text (the tail rule and the read-along need them).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import AudiobookError
from ..text import base_language
from .rules import Segment

log = logging.getLogger(__name__)

# A GPU has room and speed for the accurate multilingual model (4 decoder layers: fast);
# on a CPU the smallest model whose non-English transcripts are good enough to judge by.
GPU_MODEL = "openai/whisper-large-v3-turbo"
CPU_MODEL = "openai/whisper-small"
WHISPER_RATE = 16000
WHISPER_WINDOW_S = 30.0  # longer takes are transcribed in Whisper's long-form mode
TRANSCRIBE_BATCH = 8  # takes per Whisper call (bounds its memory beside the TTS model)
# Whisper's own fallback schedule and thresholds (its transcribe defaults; the compression ratio
# is measured on tokens in transformers, where 1.35 is the equivalent of 2.4 on text).
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
COMPRESSION_RATIO_THRESHOLD = 1.35
LOGPROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6  # a stretch Whisper thinks is silence (and decodes unsurely) is not transcribed
MAX_TARGET_TOKENS = 440  # Whisper decodes at most 448 tokens, its prompt included
TOKENS_PER_TEXT_TOKEN = 2  # room for a take that says its text twice (the repeat rule must see it)
TOKEN_MARGIN = 24  # timestamps and a little slack


def verify_enabled(mode: str, device: str) -> bool:
    """Whether takes are checked: ``on``, or ``auto`` on a CUDA device."""
    return mode == "on" or (mode == "auto" and str(device).startswith("cuda"))


def verify_model_id(setting: str, device: str) -> str:
    """The Whisper checkpoint a verify-model setting names (``auto``: by device)."""
    if setting and setting.strip() and setting.strip() != "auto":
        return setting.strip()
    return GPU_MODEL if str(device).startswith("cuda") else CPU_MODEL


def resolve_verify_model(setting: str, device: str, models_dir: str | None) -> str:
    """The Whisper checkpoint to load: a folder (given, or under ``models_dir`` named like it), else the hub id."""
    wanted = verify_model_id(setting, device)
    if Path(wanted).expanduser().is_dir():
        return str(Path(wanted).expanduser())
    if models_dir:
        local = Path(models_dir).expanduser() / wanted.rstrip("/").split("/")[-1]
        if (local / "config.json").is_file():
            return str(local)
    return wanted


def local_whisper(setting: str, device: str, models_dir: str | None) -> str:
    """The folder of the Whisper checkpoint to load; ``MissingCheckpoint`` (the sentence naming its
    download) when it is not on this computer. Nothing is downloaded here."""
    from .. import models

    source = resolve_verify_model(setting, device, models_dir)
    if Path(source).is_dir():
        return source
    name = source.rstrip("/").split("/")[-1]
    if name in models.WHISPER_CHECKPOINTS:
        return models.require(name, models_dir).path
    cached = models._hub_cache_snapshot(source)
    if cached is not None and (cached / "config.json").is_file():
        return str(cached)
    raise AudiobookError(
        f"The checking model {source} is not on this computer; copy its folder into the models folder as {name}, "
        f"or choose {models.WHISPER_CHECKPOINTS and ' or '.join(models.WHISPER_CHECKPOINTS)} (Models panel, or "
        "`backend.py models --download NAME`), or turn the verify setting off.")


def whisper_language(language: str) -> str | None:
    """The ISO code Whisper takes for a render language ('English', 'en-US' -> 'en'; 'auto' -> None)."""
    if not language or language.lower() == "auto":
        return None
    from transformers.models.whisper.tokenization_whisper import LANGUAGES as WHISPER_LANGUAGES

    code = base_language(language)
    return code if code in WHISPER_LANGUAGES else None


def resample(wav: np.ndarray, sr: int, to: int) -> np.ndarray:
    if sr == to:
        return np.asarray(wav, dtype=np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(sr, to)
    return resample_poly(np.asarray(wav, dtype=np.float32), to // g, sr // g).astype(np.float32)


@dataclass(frozen=True)
class Heard:
    """What Whisper heard in one take: the text and its timed segments."""

    text: str
    segments: tuple[Segment, ...] = field(default=())


class Transcriber:
    """A Whisper checkpoint folder loaded through transformers; ``transcribe`` turns takes into text."""

    def __init__(self, source: str, device: str = "cpu", dtype=None):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.source, self.device = source, device
        self.dtype = dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
        if not Path(source).is_dir():
            raise AudiobookError(f"The checking model {source} is not on this computer; download it in the Models "
                                 "panel or with `backend.py models --download NAME`, or turn the verify setting off.")
        try:
            self.processor = WhisperProcessor.from_pretrained(source, local_files_only=True)
            self.model = WhisperForConditionalGeneration.from_pretrained(
                source, dtype=self.dtype, attn_implementation="sdpa", local_files_only=True).to(device).eval()
        except (OSError, ValueError) as e:
            raise AudiobookError(f"The Whisper folder {source} could not be loaded ({e}); download it again.") from None

    # ---- language ------------------------------------------------------------------

    def detect_language(self, wavs: Sequence[np.ndarray], sr: int) -> str | None:
        """The language most of these takes are in (an ISO code), as Whisper's language token says."""
        import torch

        audio = [resample(w, sr, WHISPER_RATE)[: int(WHISPER_WINDOW_S * WHISPER_RATE)] for w in wavs if len(w)]
        if not audio:
            return None
        feats = self.processor(audio, sampling_rate=WHISPER_RATE, return_tensors="pt")
        with torch.inference_mode(), _quiet_transformers():
            ids = self.model.detect_language(feats.input_features.to(self.device, self.dtype))
        to_code = {v: k.strip("<|>") for k, v in (self.model.generation_config.lang_to_id or {}).items()}
        codes = [to_code.get(int(i)) for i in ids.view(-1).tolist()]
        codes = [c for c in codes if c]
        return max(set(codes), key=codes.count) if codes else None

    # ---- transcripts ---------------------------------------------------------------

    def token_limit(self, texts: Sequence[str]) -> int:
        """Tokens a batch may decode: twice its longest reference's own token count, plus timestamps."""
        count = max((len(self.processor.tokenizer(t, add_special_tokens=False).input_ids) for t in texts), default=0)
        return max(8, min(MAX_TARGET_TOKENS, TOKENS_PER_TEXT_TOKEN * count + TOKEN_MARGIN))

    def transcribe(self, wavs: Sequence[np.ndarray], sr: int, language: str | None = None,
                   texts: Sequence[str] | None = None, words: bool = False) -> list[Heard]:
        """What was heard in each take, in order. ``language`` (an ISO code) is forced; ``texts`` (what
        each take should say) bound the tokens decoded; ``words`` also times each word (from the
        cross-attention of the checkpoint's alignment heads), which costs Whisper time."""
        out: list[Heard] = []
        for start in range(0, len(wavs), TRANSCRIBE_BATCH):
            part = [resample(w, sr, WHISPER_RATE) for w in wavs[start:start + TRANSCRIBE_BATCH]]
            limit = self.token_limit(texts[start:start + TRANSCRIBE_BATCH]) if texts else MAX_TARGET_TOKENS
            out += self._batch(part, language, limit, words)
        return out

    def _batch(self, audio: list[np.ndarray], language: str | None, max_tokens: int, words: bool = False) -> list[Heard]:
        import torch

        long_form = max(len(a) for a in audio) > WHISPER_WINDOW_S * WHISPER_RATE
        audio = [a if len(a) else np.zeros(WHISPER_RATE // 10, dtype=np.float32) for a in audio]
        extra = dict(truncation=False, padding="longest") if long_form else {}
        feats = self.processor(audio, sampling_rate=WHISPER_RATE, return_tensors="pt", return_attention_mask=True,
                               **extra)
        kwargs = dict(task="transcribe", max_new_tokens=max_tokens, attention_mask=feats.attention_mask.to(self.device),
                      return_timestamps=True, return_segments=True, temperature=TEMPERATURES,
                      compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD, logprob_threshold=LOGPROB_THRESHOLD,
                      no_speech_threshold=NO_SPEECH_THRESHOLD, condition_on_prev_tokens=False)
        if language:
            kwargs["language"] = language
        if words:
            kwargs["return_token_timestamps"] = True
        with torch.inference_mode(), _quiet_transformers():
            result = self.model.generate(feats.input_features.to(self.device, self.dtype), **kwargs)
        return [self._heard(result, k) for k in range(len(audio))]

    def _heard(self, result, k: int) -> Heard:
        tok = self.processor.tokenizer
        segments = []
        for seg in (result.get("segments") or [[]] * (k + 1))[k] if isinstance(result, dict) else []:
            text = tok.decode(seg["tokens"], skip_special_tokens=True).strip()
            if text:
                segments.append(Segment(float(seg["start"]), float(seg["end"]), text, self._words(seg)))
        if isinstance(result, dict):
            text = tok.decode(result["sequences"][k], skip_special_tokens=True).strip()
        else:
            text = tok.decode(result[k], skip_special_tokens=True).strip()
        return Heard(text, tuple(segments))


    def _words(self, seg) -> tuple:
        """(word, start, end) of a segment whose tokens were timed: a word starts at a token that
        begins with a space and ends where the next one starts (the last at the segment's end)."""
        times = seg.get("token_timestamps")
        if times is None:
            return ()
        tok = self.processor.tokenizer
        words: list[list] = []
        for token, t in zip(seg["tokens"].tolist(), times.tolist()):
            piece = tok.decode([token], skip_special_tokens=True)
            if not piece.strip():
                continue
            if not words or piece[:1].isspace():
                words.append([piece.strip(), float(t)])
            else:
                words[-1][0] += piece.strip()
        begin, end = float(seg["start"]), float(seg["end"])
        bounds = [w[1] for w in words[1:]] + [end]
        clamp = lambda t: min(max(t, begin), end)  # noqa: E731
        return tuple((w, clamp(s), max(clamp(e), clamp(s))) for (w, s), e in zip(words, bounds))


@contextmanager
def _quiet_transformers():
    """transformers warns about generation defaults on every call; the log is for the user."""
    import warnings

    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)
