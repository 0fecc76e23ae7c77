"""Transcript and voice checks of a take: did it say its text, in the narrator's voice?

A small package, one job per module, so the decisions can be tested without a model:

* ``words``: one normaliser for the book's text and the transcript (Whisper's own for English);
* ``rules``: the alignment and the rules a listener applies; ``judge`` gives a take's verdict;
* ``whisper``: Whisper through transformers, run well (fallback, forced language, token limits);
* ``voice``: the speaker encoder and the narrator's voice profile;
* here: ``TakeChecker``, which the render loop calls once per model call.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import AudiobookError
from ..text import base_language
from .rules import (
    RULES,
    Segment,
    Verdict,
    align,
    find_loop,
    judge,
    marked_diff,
    respelling_table,
    word_error_rate,
)
from .voice import (
    MIN_VOICE_S,
    VOICE_MIN_SAMPLES,
    VOICE_SEED_TAKES,
    SpeakerEncoder,
    VoiceStats,
    base_checkpoint_on_disk,
    cosine,
)
from .whisper import (
    CPU_MODEL,
    GPU_MODEL,
    Heard,
    Transcriber,
    local_whisper,
    resolve_verify_model,
    verify_enabled,
    verify_model_id,
    whisper_language,
)
from .words import words as words_for_compare

__all__ = ["AudiobookError", "CPU_MODEL", "GPU_MODEL", "Heard", "MIN_VOICE_S", "RULES", "Segment", "SpeakerEncoder",
           "TakeCheck", "TakeChecker", "Transcriber", "VOICE_MIN_SAMPLES", "VOICE_SEED_TAKES", "Verdict", "VoiceStats",
           "align", "base_checkpoint_on_disk", "cosine", "find_loop", "judge", "local_whisper", "marked_diff",
           "resolve_verify_model", "respelling_table", "unload_models", "verify_enabled", "verify_model_id",
           "whisper_language", "word_error_rate", "words_for_compare"]

log = logging.getLogger(__name__)


_loaded: dict[str, object] = {}
_load_lock = threading.Lock()


def _cached(key: str, make: Callable[[], object]):
    """One checking model of each kind stays loaded between renders (a new source replaces it)."""
    with _load_lock:
        kind = key.split(":", 1)[0]
        for k in [k for k in _loaded if k.split(":", 1)[0] == kind and k != key]:
            del _loaded[k]
        if key not in _loaded:
            _loaded[key] = make()
        return _loaded[key]


def unload_models() -> None:
    """Drop the checking models (frees their memory)."""
    with _load_lock:
        _loaded.clear()


@dataclass(frozen=True)
class TakeCheck:
    """The scores of one take and why it fails ("" when it passes)."""

    wer: float | None = None
    transcript: str | None = None
    voice_similarity: float | None = None
    reason: str = ""
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)
    rule: str = ""  # the rule that failed it (``rules.RULES``, or "voice"); "" when it passes
    segments: tuple[Segment, ...] = ()  # Whisper's timed segments of the take
    span: tuple | None = None  # the words the rule is about (``Verdict.span``), for marking the diff

    @property
    def badness(self) -> float:
        """How bad the take is next to other takes of the same text (lower is better)."""
        b = 0.0 if self.wer is None else min(self.wer, 3.0)
        if self.voice_similarity is not None:
            b += max(0.0, 1.0 - self.voice_similarity)
        return b + (1.0 if self.reason else 0.0)


class TakeChecker:
    """Checks the takes of one render: transcript against text, voice against the narrator.

    Models load on the first takes (never for a render with nothing to generate).
    ``note`` receives log lines for the user.
    """

    def __init__(self, settings, device: str, narrator, language: str, note: Callable[[str], None] = log.info,
                 tts=None):
        self.settings, self.device, self.narrator, self.note, self.tts = settings, device, narrator, note, tts
        self.language = whisper_language(language)  # None: detected from the first takes, then kept
        self.text_language = base_language(language)
        self.max_wer = float(settings.max_wer)
        self.respellings: Mapping[str, str] = {}  # the pronunciation dictionary the voice was given
        self.voice: VoiceStats | None = None
        self._cast_voices: dict = {}  # a cast's other voices (Narrator -> VoiceStats), each judged on its own
        self._voice_ready = False
        self._encoder: SpeakerEncoder | None = None

    @classmethod
    def for_render(cls, settings, tts, narrator, language: str, note: Callable[[str], None]) -> "TakeChecker | None":
        """The checker a render with these settings uses, or None when the verify setting is off."""
        mode = getattr(settings, "verify", "off")
        if mode == "off":
            return None
        device = tts.device() if hasattr(tts, "device") else "cpu"
        if not verify_enabled(mode, device):
            return None
        return cls(settings, device, narrator, language, note, tts)

    # ---- models ---------------------------------------------------------------------

    @property
    def transcriber(self) -> Transcriber:
        source = local_whisper(self.settings.verify_model, self.device, self.settings.models_dir)
        return _cached(f"whisper:{source}:{self.device}", lambda: self._load_whisper(source))

    def require(self) -> str:
        """The Whisper folder this render checks with; ``MissingCheckpoint`` (one sentence naming its
        download) before any take is made when it is not on this computer."""
        return local_whisper(self.settings.verify_model, self.device, self.settings.models_dir)

    def _load_whisper(self, source: str) -> Transcriber:
        self.note(f"Loading the checking model {source}.")
        return Transcriber(source, self.device)

    def _speaker_encoder(self) -> SpeakerEncoder | None:
        loaded = getattr(self.tts, "loaded", None)
        module = getattr(getattr(getattr(loaded, "model", None), "model", None), "speaker_encoder", None)
        if module is not None:  # the narrating checkpoint carries one: use it as it is
            return SpeakerEncoder(module, self.device)
        folder = base_checkpoint_on_disk(self.settings.model_size, self.settings.models_dir)
        if folder is None:
            return None
        return _cached(f"speaker:{folder}:{self.device}", lambda: SpeakerEncoder.from_checkpoint(folder, self.device))

    def _start_voice(self, out_dir: Path | None, kept_files: Sequence[str]) -> None:
        """Build the narrator's voice profile once: the clip's embedding, or the book's finished takes."""
        self._voice_ready = True
        self._encoder = self._speaker_encoder()
        if self._encoder is None:
            self.note("Voice check skipped: no Qwen3-TTS Base checkpoint (which holds the speaker encoder) "
                      "is on this computer.")
            return
        floor = float(self.settings.min_voice_similarity)
        ref_audio = getattr(self.narrator, "ref_audio", "")
        if ref_audio:
            import soundfile as sf

            wav, sr = sf.read(ref_audio, dtype="float32", always_2d=True)
            ref = self._encoder.embed([wav.mean(axis=1)], sr)[0]
            self.voice = VoiceStats(floor, ref, fixed=True)
            return
        self.voice = VoiceStats(floor)
        if out_dir is not None and kept_files:
            import soundfile as sf

            for rel in list(kept_files)[:VOICE_SEED_TAKES]:
                try:
                    wav, sr = sf.read(str(Path(out_dir) / rel), dtype="float32")
                except Exception:
                    continue
                self.voice.add(self._encoder.embed([wav], sr)[0], None)

    # ---- checking -------------------------------------------------------------------

    def _profile(self, voice) -> VoiceStats | None:
        """The voice profile a take is judged against: the narrator's, or a cast voice's own."""
        if voice is None or voice == self.narrator or self.voice is None or self._encoder is None:
            return self.voice
        if voice not in self._cast_voices:
            floor = float(self.settings.min_voice_similarity)
            ref_audio = getattr(voice, "ref_audio", "")
            if ref_audio:
                import soundfile as sf

                wav, sr = sf.read(ref_audio, dtype="float32", always_2d=True)
                self._cast_voices[voice] = VoiceStats(floor, self._encoder.embed([wav.mean(axis=1)], sr)[0], fixed=True)
            else:
                self._cast_voices[voice] = VoiceStats(floor)
        return self._cast_voices[voice]

    def check(self, texts: Sequence[str], wavs: Sequence[np.ndarray], sr: int, out_dir: Path | None = None,
              kept_files: Sequence[str] = (), voices: Sequence | None = None,
              book_texts: Sequence[str] | None = None) -> list[TakeCheck]:
        """Judge each take (``rules.judge``) and its voice; the reasons say which fail.

        ``texts`` are what the voice was told to say; ``book_texts`` the book's own words of the same
        chunks (before the pronunciation dictionary and number expansion), which the transcript is
        compared with where given. ``voices`` (a cast's render) names each take's narrator; a take
        is judged against its own voice."""
        if not texts:
            return []
        refs = [b or t for b, t in zip(book_texts or [""] * len(texts), texts)]
        if self.language is None:
            self._detect_language(wavs, sr)
        extra = {"words": True} if getattr(self.settings, "word_timings", False) else {}  # costs Whisper time
        heard = self.transcriber.transcribe(wavs, sr, self.language, refs, **extra)
        if not self._voice_ready:
            self._start_voice(out_dir, kept_files)
        long_enough = [len(w) / sr >= MIN_VOICE_S for w in wavs]
        embeddings: list = [None] * len(texts)
        if self._encoder is not None and any(long_enough):
            judged = [k for k, ok in enumerate(long_enough) if ok]
            for k, e in zip(judged, self._encoder.embed([wavs[k] for k in judged], sr)):
                embeddings[k] = e
        out = []
        for ref, h, emb, voice in zip(refs, heard, embeddings, voices or [None] * len(texts)):
            verdict = judge(ref, h.text, self.text_language, h.segments, self.respellings, self.max_wer)
            profile = self._profile(voice)
            sim = profile.similarity(emb) if (profile is not None and emb is not None) else None
            voice_problem = profile.problem(sim) if profile is not None else ""
            rule = verdict.rule or ("voice" if voice_problem else "")
            out.append(TakeCheck(verdict.wer, verdict.transcript, sim, verdict.reason or voice_problem, emb,
                                 rule, tuple(h.segments), verdict.span))
        return out

    def _detect_language(self, wavs: Sequence[np.ndarray], sr: int) -> None:
        """The book names no language: Whisper's guess on the first takes is kept for the whole book."""
        found = self.transcriber.detect_language(wavs, sr)
        if found:
            self.language = found
            self.text_language = base_language(found)
            self.note(f"The checking model hears {found}; every take of this book is checked in it.")

    def accepted(self, check: TakeCheck, voice=None) -> None:
        """A take passed and was kept: it joins the book's voice profile (its own voice's, in a cast)."""
        profile = self._profile(voice)
        if profile is not None and check.embedding is not None:
            profile.add(check.embedding, check.voice_similarity)
