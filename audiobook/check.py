"""Transcript and voice checks of a take: did it say its text, in the narrator's voice?

Two halves, kept apart so the decisions can be tested without a model:

* the decisions: ``words_for_compare`` (one normalisation for text and transcript, with
  numbers spoken the way ``text.py`` speaks them), ``align``/``score_transcript`` (word
  error rate, a swallowed ending, a loop) and ``VoiceStats`` (outliers against the
  book's own takes, plus a floor);
* the models: ``Transcriber`` (Whisper through transformers, batched, in the chunk's
  language) and ``SpeakerEncoder`` (the speaker encoder a Qwen3-TTS Base checkpoint
  carries), driven by ``TakeChecker``, which the render loop calls once per model call.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import threading
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import AudiobookError
from .files import SAMPLE_RATE
from .text import base_language, expand_abbreviations, is_cjk, numbers_to_words

log = logging.getLogger(__name__)

VERIFY_MODES = ("off", "auto", "on")
# A GPU has room and speed for the accurate multilingual model (4 decoder layers: fast);
# on a CPU the smallest model whose non-English transcripts are good enough to judge by.
GPU_MODEL = "openai/whisper-large-v3-turbo"
CPU_MODEL = "openai/whisper-small"
WHISPER_RATE = 16000
WHISPER_WINDOW_S = 30.0  # longer takes are transcribed in Whisper's long-form mode
TRANSCRIBE_BATCH = 8  # takes per Whisper call (bounds its memory beside the TTS model)
MISSING_END_WORDS = 2  # this many words of the text's end missing from the take: a swallowed ending
LOOP_MIN_REPEATS = 3  # a phrase said this many times in a row (more than the text has): a loop
LOOP_MIN_REPEATS_ONE_WORD = 4
LOOP_MAX_PHRASE = 8
NAME_MATCH = 0.8  # spelling similarity at which two words of 4+ letters count as the same (names)
VOICE_MIN_SAMPLES = 8  # accepted takes before the book's own spread of voice similarity is trusted
VOICE_OUTLIER_MADS = 4.0  # this many median absolute deviations below the median is an outlier
VOICE_MIN_SPREAD = 0.02  # the spread never counts as smaller than this (identical takes)
VOICE_SEED_TAKES = 8  # finished takes embedded to rebuild a built-in speaker's profile on resume


# ---- which model --------------------------------------------------------------------------------


def verify_enabled(mode: str, device: str) -> bool:
    """Whether takes are checked: ``on``, or ``auto`` on a CUDA device."""
    return mode == "on" or (mode == "auto" and str(device).startswith("cuda"))


def resolve_verify_model(setting: str, device: str, models_dir: str | None) -> str:
    """The Whisper checkpoint to load: a folder under ``models_dir`` named like it first, else the hub id.

    ``auto`` is ``GPU_MODEL`` on a CUDA device and ``CPU_MODEL`` on a CPU.
    """
    wanted = setting.strip() if setting and setting.strip() != "auto" else (
        GPU_MODEL if str(device).startswith("cuda") else CPU_MODEL)
    if Path(wanted).expanduser().is_dir():
        return str(Path(wanted).expanduser())
    if models_dir:
        local = Path(models_dir).expanduser() / wanted.rstrip("/").split("/")[-1]
        if (local / "config.json").is_file():
            return str(local)
    return wanted


# ---- comparing words ----------------------------------------------------------------------------

_APOSTROPHES = re.compile(r"(?<=\w)['\u2019](?=\w)")
_HYPHENS = re.compile(r"[-\u2010-\u2015]")


def words_for_compare(text: str, language: str = "en") -> list[str]:
    """The words of ``text`` as both sides of a comparison see them.

    Abbreviations and numbers are written out as ``text.py`` speaks them ("1851" and
    "eighteen fifty-one" agree), case and punctuation go, apostrophes inside words are
    dropped ("don't" = "dont") and hyphens split words. Scripts written without spaces
    (Chinese, Japanese) compare character by character.
    """
    lang = base_language(language)
    text = unicodedata.normalize("NFKC", text or "")
    text = numbers_to_words(expand_abbreviations(text, lang), lang)
    text = _HYPHENS.sub(" ", _APOSTROPHES.sub("", text.casefold()))
    out: list[str] = []
    word: list[str] = []
    for ch in text:
        if is_cjk(ch) and unicodedata.category(ch)[0] in "LN":
            if word:
                out.append("".join(word))
                word = []
            out.append(ch)
        elif unicodedata.category(ch)[0] in "LNM":
            word.append(ch)
        elif word:
            out.append("".join(word))
            word = []
    if word:
        out.append("".join(word))
    return out


def same_word(a: str, b: str) -> bool:
    """Equal, or spelled nearly alike when both are long (a name Whisper spells its own way)."""
    if a == b:
        return True
    if len(a) < 4 or len(b) < 4:
        return False
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= NAME_MATCH


EQUAL, SUBSTITUTED, DELETED, INSERTED = "=", "s", "d", "i"


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[str, str | None, str | None]]:
    """The cheapest word alignment of ``hyp`` (what was heard) to ``ref`` (the text).

    Returns ``(op, ref_word, hyp_word)`` in order; op is ``=``, ``s`` (substituted),
    ``d`` (a text word not heard) or ``i`` (a heard word not in the text).
    """
    n, m = len(ref), len(hyp)
    cost = np.zeros((n + 1, m + 1), dtype=np.int32)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    match = np.zeros((n + 1, m + 1), dtype=bool)
    for i in range(1, n + 1):
        r = ref[i - 1]
        for j in range(1, m + 1):
            eq = same_word(r, hyp[j - 1])
            match[i, j] = eq
            cost[i, j] = min(cost[i - 1, j - 1] + (0 if eq else 1), cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    ops: list[tuple[str, str | None, str | None]] = []
    i, j = n, m
    while i or j:
        if i and j and cost[i, j] == cost[i - 1, j - 1] + (0 if match[i, j] else 1):
            ops.append((EQUAL if match[i, j] else SUBSTITUTED, ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i, j] == cost[i - 1, j] + 1:
            ops.append((DELETED, ref[i - 1], None))
            i -= 1
        else:
            ops.append((INSERTED, None, hyp[j - 1]))
            j -= 1
    ops.reverse()
    return ops


def word_error_rate(ops) -> float:
    """(substitutions + deletions + insertions) / words of the text; 0 for an empty text heard empty."""
    ref_words = sum(1 for op, r, _ in ops if r is not None)
    errors = sum(1 for op, _, _ in ops if op != EQUAL)
    if ref_words == 0:
        return 0.0 if errors == 0 else 1.0
    return errors / ref_words


def missing_ending(ops) -> list[str]:
    """Words at the end of the text that were not heard at all (after the last word that was)."""
    missing: list[str] = []
    for op, ref, _ in reversed(ops):
        if op == DELETED:
            missing.append(ref)
        elif op == INSERTED:
            continue
        else:
            break
    return missing[::-1]


def _runs(words: Sequence[str], n: int) -> list[tuple[int, int]]:
    """(start, repeats) of every phrase of ``n`` words said several times in a row."""
    out, i = [], 0
    while i + 2 * n <= len(words):
        k = 1
        while i + (k + 1) * n <= len(words) and list(words[i + k * n:i + (k + 1) * n]) == list(words[i:i + n]):
            k += 1
        if k > 1:
            out.append((i, k))
            i += k * n
        else:
            i += 1
    return out


def find_loop(heard: Sequence[str], text: Sequence[str]) -> str:
    """A phrase the take repeats in a row more often than its text does, as 'phrase' x N; '' when none."""
    best = ""
    best_len = 0
    for n in range(1, LOOP_MAX_PHRASE + 1):
        need = LOOP_MIN_REPEATS_ONE_WORD if n == 1 else LOOP_MIN_REPEATS
        for start, k in _runs(heard, n):
            phrase = list(heard[start:start + n])
            if k < need:
                continue
            in_text = max((kk for s, kk in _runs(text, n) if list(text[s:s + n]) == phrase), default=1)
            if k > in_text and k * n > best_len:
                best, best_len = f"'{' '.join(phrase)}' x{k}", k * n
    return best


@dataclass(frozen=True)
class TranscriptScore:
    """What a transcript says about a take of a text."""

    transcript: str
    wer: float
    missing_end: tuple[str, ...] = ()
    loop: str = ""

    def problem(self, max_wer: float) -> str:
        """Why the take fails, as a short phrase; "" when it passes."""
        if self.loop:
            return f"repeats itself ({self.loop})"
        if len(self.missing_end) >= MISSING_END_WORDS:
            return f"swallowed its ending ('{' '.join(self.missing_end)}' not heard)"
        if self.wer > max_wer:
            return f"says other words than its text (word error rate {self.wer:.0%})"
        return ""


def score_transcript(text: str, transcript: str, language: str = "en") -> TranscriptScore:
    """Compare what was heard with what should have been said (both normalised alike)."""
    ref, hyp = words_for_compare(text, language), words_for_compare(transcript, language)
    ops = align(ref, hyp)
    return TranscriptScore(transcript.strip(), round(word_error_rate(ops), 4), tuple(missing_ending(ops)),
                           find_loop(hyp, ref))


def marked_diff(text: str, transcript: str, language: str = "en") -> list[tuple[str, str | None]]:
    """Words for showing a take against its text: ``(word, None)`` when it matches, else
    ``(word, "missing")`` for a text word not heard, ``(heard, "heard")`` for a word said instead
    or in addition (for the page's highlighted text)."""
    out: list[tuple[str, str | None]] = []
    for op, ref, hyp in align(words_for_compare(text, language), words_for_compare(transcript, language)):
        if op == EQUAL:
            out.append((ref, None))
        elif op == SUBSTITUTED:
            out += [(ref, "missing"), (hyp, "heard")]
        elif op == DELETED:
            out.append((ref, "missing"))
        else:
            out.append((hyp, "heard"))
    return out


# ---- voice ---------------------------------------------------------------------------------------


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


# ---- models ---------------------------------------------------------------------------------------


def _resample(wav: np.ndarray, sr: int, to: int) -> np.ndarray:
    if sr == to:
        return np.asarray(wav, dtype=np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(sr, to)
    return resample_poly(np.asarray(wav, dtype=np.float32), to // g, sr // g).astype(np.float32)


class Transcriber:
    """A Whisper checkpoint loaded through transformers; ``transcribe`` turns takes into text."""

    def __init__(self, source: str, device: str = "cpu", dtype=None):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.source, self.device = source, device
        self.dtype = dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
        try:
            self.processor = WhisperProcessor.from_pretrained(source)
            self.model = WhisperForConditionalGeneration.from_pretrained(
                source, dtype=self.dtype, attn_implementation="sdpa").to(device).eval()
        except (OSError, ValueError) as e:
            if Path(source).is_dir():
                raise AudiobookError(f"The Whisper folder {source} could not be loaded ({e}); download it again.") from None
            raise AudiobookError(
                f"The checking model {source} is not on this computer and could not be downloaded; connect once, "
                f"or run `huggingface-cli download {source} --local-dir <models folder>/{source.split('/')[-1]}`, "
                "or turn the verify setting off.") from None

    def transcribe(self, wavs: Sequence[np.ndarray], sr: int, language: str | None = None,
                   max_words: Sequence[int] | None = None) -> list[str]:
        """One transcript per take, in order. ``language`` is an ISO code (None: Whisper detects it);
        ``max_words`` (words in each take's text) caps decoding, so a take that loops costs little."""
        out: list[str] = []
        for start in range(0, len(wavs), TRANSCRIBE_BATCH):
            part = [_resample(w, sr, WHISPER_RATE) for w in wavs[start:start + TRANSCRIBE_BATCH]]
            cap = max(max_words[start:start + TRANSCRIBE_BATCH]) if max_words else 200
            out += self._batch(part, language, cap)
        return out

    def _batch(self, audio: list[np.ndarray], language: str | None, max_words: int) -> list[str]:
        import torch

        long_form = max(len(a) for a in audio) > WHISPER_WINDOW_S * WHISPER_RATE
        audio = [a if len(a) else np.zeros(WHISPER_RATE // 10, dtype=np.float32) for a in audio]
        if long_form:
            feats = self.processor(audio, sampling_rate=WHISPER_RATE, return_tensors="pt", truncation=False,
                                   padding="longest", return_attention_mask=True)
        else:
            feats = self.processor(audio, sampling_rate=WHISPER_RATE, return_tensors="pt", return_attention_mask=True)
        kwargs = dict(task="transcribe", max_new_tokens=min(440, 3 * max_words + 16),
                      attention_mask=feats.attention_mask.to(self.device))
        if language:
            kwargs["language"] = language
        if long_form:
            kwargs["return_timestamps"] = True
        with torch.inference_mode(), _quiet_transformers():
            ids = self.model.generate(feats.input_features.to(self.device, self.dtype), **kwargs)
        if isinstance(ids, dict):
            ids = ids["sequences"]
        return [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]


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


def whisper_language(language: str) -> str | None:
    """The ISO code Whisper takes for a render language ('English', 'en-US', 'auto' -> None)."""
    if not language or language.lower() == "auto":
        return None
    from transformers.models.whisper.tokenization_whisper import LANGUAGES as WHISPER_LANGUAGES

    code = base_language(language)
    return code if code in WHISPER_LANGUAGES else None


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
                w = _resample(w, sr, SAMPLE_RATE)
                if len(w) < 2048:
                    w = np.pad(w, (0, 2048 - len(w)))
                mels = mel_spectrogram(torch.from_numpy(np.clip(w, -1, 1)).unsqueeze(0), n_fft=1024, num_mels=128,
                                       sampling_rate=SAMPLE_RATE, hop_size=256, win_size=1024, fmin=0, fmax=12000)
                emb = self.module(mels.transpose(1, 2).to(self.device, dtype))[0]
                out.append(emb.float().cpu().numpy())
        return out


def base_checkpoint_on_disk(model_size: str, models_dir: str | None) -> Path | None:
    """A Base checkpoint folder that is already on this computer (models folder or hub cache), else None."""
    from .tts import CLONE, checkpoint_name, hub_id

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


# ---- the render's checker --------------------------------------------------------------------------


@dataclass(frozen=True)
class TakeCheck:
    """The scores of one take and why it fails ("" when it passes)."""

    wer: float | None = None
    transcript: str | None = None
    voice_similarity: float | None = None
    reason: str = ""
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)

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
        self.language = whisper_language(language)
        self.text_language = base_language(language)
        self.max_wer = float(settings.max_wer)
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
        source = resolve_verify_model(self.settings.verify_model, self.device, self.settings.models_dir)
        return _cached(f"whisper:{source}:{self.device}", lambda: self._load_whisper(source))

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
              kept_files: Sequence[str] = (), voices: Sequence | None = None) -> list[TakeCheck]:
        """Score each take against its text; the reasons say which fail.

        ``voices`` (a cast's render) names each take's narrator; a take is judged against its own voice."""
        if not texts:
            return []
        words = [max(1, len(words_for_compare(t, self.text_language))) for t in texts]
        transcripts = self.transcriber.transcribe(wavs, sr, self.language, words)
        if not self._voice_ready:
            self._start_voice(out_dir, kept_files)
        embeddings = self._encoder.embed(wavs, sr) if self._encoder is not None else [None] * len(texts)
        out = []
        for text, heard, emb, voice in zip(texts, transcripts, embeddings, voices or [None] * len(texts)):
            score = score_transcript(text, heard, self.text_language)
            profile = self._profile(voice)
            sim = profile.similarity(emb) if (profile is not None and emb is not None) else None
            reason = score.problem(self.max_wer) or (profile.problem(sim) if profile is not None else "")
            out.append(TakeCheck(score.wer, score.transcript, sim, reason, emb))
        return out

    def accepted(self, check: TakeCheck, voice=None) -> None:
        """A take passed and was kept: it joins the book's voice profile (its own voice's, in a cast)."""
        profile = self._profile(voice)
        if profile is not None and check.embedding is not None:
            profile.add(check.embedding, check.voice_similarity)
