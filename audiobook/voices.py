"""The voice library under ``voices/``: designed, cloned and built-in voices, their clips and clone prompts.

A voice is a folder ``voices/<slug>/`` holding ``voice.json`` (a :class:`Voice`), and for designed
and cloned voices ``reference.wav`` (mono 24 kHz) whose words are ``Voice.reference_text``. A designed
voice narrates as a clone of its reference clip, so every chunk of a book has the same timbre.
The Base model's clone prompt for that clip is cached beside it, one file per model size.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import shutil
import tempfile
import unicodedata
import uuid
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import audio
from .errors import AudiobookError
from .files import SAMPLE_RATE, atomic_write_bytes, atomic_write_text, run_ffmpeg, safe_filename
from .tts import CLONE, DESIGN, PRESET, TTS, GenerationOptions, Narrator, checkpoint_name, file_sha1, resolve_checkpoint

log = logging.getLogger(__name__)

VOICE_FILE = "voice.json"
REFERENCE_FILE = "reference.wav"
PREVIEW_FILE = "preview.wav"
PROMPT_FILE = "clone_prompt-{size}.pt"  # one per model size: the Base models differ
PROMPT_FORMAT = 1

DESIGNED, CLONED, BUILTIN = "designed", "cloned", "preset"
KINDS = (DESIGNED, CLONED, BUILTIN)

# Clip limits, in seconds of sound after trimming silence.
MIN_CLIP_S = 3.0
BEST_MIN_S = 5.0
BEST_MAX_S = 15.0
MAX_WITH_TRANSCRIPT_S = 20.0  # a transcript fixes the words, so a longer clip cannot be cut
MAX_DECODE_S = 600  # read at most ten minutes of an uploaded file
CLIP_EXTENSIONS = (".wav", ".mp3", ".flac", ".m4a", ".ogg")

SILENT_PEAK = 10 ** (-60 / 20)  # -60 dBFS: nothing there
QUIET_RMS = 10 ** (-40 / 20)  # speech quieter than -40 dBFS is raised and reported
CLIPPED_LEVEL = 0.99
CLIPPED_FRACTION = 0.001  # more than 0.1% of samples at full scale sounds distorted
TARGET_PEAK = 10 ** (-1 / 20)
FRAME_S = 0.02
EDGE_MARGIN_S = 0.1

MAX_NAME_CHARS = 80

# Zip import limits: a voice is a small json and a clip of seconds.
MAX_ZIP_MEMBERS = 16
MAX_MEMBER_BYTES = {VOICE_FILE: 256 * 1024, REFERENCE_FILE: 40 * 2**20, PREVIEW_FILE: 40 * 2**20}

# About 15 s of speech with varied vowels, consonants, a question and an exclamation.
DEFAULT_REFERENCE_TEXT = (
    "Good evening, and welcome. Tonight I will read you a story about a quiet village by the sea, "
    "where the fishermen sang while they mended their nets. Did you hear that? "
    "Somewhere a dog barked twice, the church bell rang, and the wind whispered through the yellow reeds. "
    "What a strange, beautiful night it was!"
)
DEFAULT_TEST_LINE = (
    "Every story begins with a single voice. Listen closely, and tell me whether this one suits the tale."
)
XVECTOR_COST = (
    "Without a transcript the voice is cloned from its sound alone (x-vector only mode): the likeness "
    "is weaker and the rhythm of the clip is not carried over; add the words spoken in the clip for a closer match."
)


# ---- the voice record ------------------------------------------------------------------------


@dataclass
class Voice:
    """One saved voice, as stored in ``voice.json``.

    ``description`` is what a designed voice was asked to sound like; ``instruct`` is the style
    instruction of a preset; ``reference_text`` is the words of ``reference.wav`` (empty for a
    clone without transcript, which then uses x-vector only mode); ``model`` is the checkpoint
    that made it. ``folder`` is where it lives (not stored).
    """

    name: str
    kind: str
    description: str = ""
    instruct: str = ""
    language: str = "auto"
    reference_text: str = ""
    speaker: str = ""
    model: str = ""
    seed: int | None = None
    created: str = ""
    notes: str = ""
    folder: Path | None = field(default=None, compare=False, repr=False)

    @property
    def slug(self) -> str:
        return self.folder.name if self.folder else voice_slug(self.name)

    @property
    def reference_path(self) -> Path | None:
        return self.folder / REFERENCE_FILE if self.folder and self.kind != BUILTIN else None

    @property
    def preview_path(self) -> Path | None:
        p = self.folder / PREVIEW_FILE if self.folder else None
        return p if p and p.is_file() else None

    @property
    def x_vector_only(self) -> bool:
        return self.kind != BUILTIN and not self.reference_text.strip()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("folder")
        return d

    @classmethod
    def from_dict(cls, data: Any, where: str = "voice.json") -> "Voice":
        """Validate a parsed ``voice.json``; unknown keys are ignored (a newer version may add some)."""
        if not isinstance(data, dict):
            raise AudiobookError(f"{where} is not a voice description (a JSON object).")
        known = {f.name for f in fields(cls)} - {"folder"}
        values = {k: v for k, v in data.items() if k in known}
        for k, v in values.items():
            if k == "seed":
                if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                    raise AudiobookError(f"In {where}, 'seed' must be a whole number.")
            elif not isinstance(v, str):
                raise AudiobookError(f"In {where}, '{k}' must be text.")
        if not values.get("name", "").strip():
            raise AudiobookError(f"{where} has no voice name.")
        if values.get("kind") not in KINDS:
            raise AudiobookError(f"In {where}, 'kind' must be one of {', '.join(KINDS)}.")
        if values["kind"] == BUILTIN and not values.get("speaker"):
            raise AudiobookError(f"{where} describes a built-in speaker voice but names no speaker.")
        return cls(**values)


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# ---- names ---------------------------------------------------------------------------------


def clean_name(name: str) -> str:
    """The name as shown: NFC unicode, single spaces, no control characters; AudiobookError when unusable."""
    if not isinstance(name, str) or not name.strip():
        raise AudiobookError("Give the voice a name.")
    text = unicodedata.normalize("NFC", name)
    text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    text = " ".join(text.split())
    if len(text) > MAX_NAME_CHARS:
        raise AudiobookError(f"A voice name can be at most {MAX_NAME_CHARS} characters long; this one has {len(text)}.")
    if not any(c.isalnum() for c in text):
        raise AudiobookError(f"The voice name '{text}' needs at least one letter or digit.")
    return text


def voice_slug(name: str) -> str:
    """The folder name for a voice: readable in any script, safe on every OS, never a path.

    Separators and characters Windows forbids become ``_``; leading/trailing dots and spaces go
    (no hidden folders, no ``..``); reserved device names such as ``CON`` get a leading ``_``.
    """
    text = clean_name(name)
    slug = safe_filename(text, max_bytes=120)
    if not any(c.isalnum() for c in slug):
        raise AudiobookError(f"The voice name '{text}' needs at least one letter or digit.")
    return slug


# ---- clips ----------------------------------------------------------------------------------


@dataclass
class Clip:
    """A reference clip ready to clone: mono float32 at 24 kHz, trimmed, levelled.

    ``source_s`` is the length of the file as read; ``warnings`` are sentences for the user.
    """

    wav: np.ndarray
    source_s: float
    start_s: float = 0.0  # where the kept part begins in the source
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.wav) / SAMPLE_RATE


def _looks_like_audio_container(head: bytes) -> bool:
    """Magic numbers of the audio formats ffmpeg reads (to tell a damaged clip from a non-audio file)."""
    return (
        head[:4] in (b"RIFF", b"fLaC", b"OggS", b"FORM", b"caff", b"\x1aE\xdf\xa3", b"0&\xb2u")
        or head[:3] == b"ID3"
        or head[4:8] == b"ftyp"
        or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)
    )


def load_clip(path: str | os.PathLike) -> np.ndarray:
    """Any audio file ffmpeg reads, as mono float32 at 24 kHz; AudiobookError for unreadable or non-audio files."""
    p = Path(path)
    name = p.name
    if not p.exists():
        raise AudiobookError(f"The clip {name} could not be found.")
    if not p.is_file():
        raise AudiobookError(f"The clip {name} is a folder, not an audio file.")
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
    except OSError as e:
        raise AudiobookError(f"The clip {name} could not be read ({e.strerror or e}).") from None
    if not head:
        raise AudiobookError(f"The clip {name} is empty; it is not an audio file.")
    proc = run_ffmpeg(["-t", str(MAX_DECODE_S), "-i", str(p), "-vn", "-map", "0:a:0",
                       "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "pipe:1"])
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode("utf-8", "replace")
        if "matches no streams" in err:
            raise AudiobookError(f"The file {name} has no sound in it; it is not an audio clip.")
        if not _looks_like_audio_container(head):
            raise AudiobookError(f"The file {name} is not audio; upload a wav, mp3, flac, m4a or ogg clip.")
        raise AudiobookError(f"The clip {name} is damaged or in a format that cannot be read; export it again as wav or mp3.")
    usable = len(proc.stdout) // 4 * 4
    return np.frombuffer(proc.stdout[:usable], dtype="<f4").astype(np.float32)


def _frame_rms(wav: np.ndarray) -> np.ndarray:
    n = int(SAMPLE_RATE * FRAME_S)
    frames = len(wav) // n
    if frames == 0:
        return np.zeros(0, dtype=np.float32)
    x = wav[: frames * n].reshape(frames, n).astype(np.float64)
    return np.sqrt((x * x).mean(axis=1))


def _active(rms: np.ndarray) -> np.ndarray:
    """Frames with sound: louder than -60 dBFS and within 35 dB of the loudest frame."""
    if rms.size == 0:
        return np.zeros(0, dtype=bool)
    return rms > max(SILENT_PEAK, float(rms.max()) * 10 ** (-35 / 20))


def trim_silence(wav: np.ndarray) -> tuple[np.ndarray, float]:
    """Cut leading and trailing silence (keeping a short margin); returns the clip and where it starts, in s."""
    active = _active(_frame_rms(wav))
    if not active.any():
        return wav[:0], 0.0
    n = int(SAMPLE_RATE * FRAME_S)
    margin = int(SAMPLE_RATE * EDGE_MARGIN_S)
    idx = np.flatnonzero(active)
    start = max(0, idx[0] * n - margin)
    end = min(len(wav), (idx[-1] + 1) * n + margin)
    return wav[start:end], start / SAMPLE_RATE


def best_window(wav: np.ndarray, min_s: float = BEST_MIN_S, max_s: float = BEST_MAX_S) -> tuple[int, int]:
    """The sample range of the ``min_s``-``max_s`` stretch with the most sound, cut at pauses when there are any."""
    rms = _frame_rms(wav)
    active = _active(rms)
    n = int(SAMPLE_RATE * FRAME_S)
    total = len(active)
    lo, hi = int(min_s / FRAME_S), int(max_s / FRAME_S)
    if total <= hi:
        return 0, len(wav)
    cum = np.concatenate([[0], np.cumsum(active)])
    pauses = np.flatnonzero(~active)
    starts = np.concatenate([[0], pauses])
    best, best_range = -1, (0, hi)
    for s in starts:
        # the latest pause that keeps the window within bounds, else the longest window allowed
        ends = pauses[(pauses >= s + lo) & (pauses <= s + hi)]
        e = int(ends[-1]) if ends.size else min(s + hi, total)
        score = int(cum[e] - cum[s]) * 2 + (1 if ends.size else 0)  # sound first, then a clean cut
        if score > best:
            best, best_range = score, (int(s), e)
    s, e = best_range
    return s * n, min(len(wav), e * n)


def prepare_clip(path: str | os.PathLike, has_transcript: bool) -> Clip:
    """Read a clip and make it a clean reference: checks, trim, best window, level.

    AudiobookError (one sentence) when the clip is not audio, unreadable, silent, clipped or shorter
    than ``MIN_CLIP_S`` seconds of sound, or, with a transcript, longer than ``MAX_WITH_TRANSCRIPT_S``.
    """
    name = Path(path).name
    wav = load_clip(path)
    source_s = len(wav) / SAMPLE_RATE
    if wav.size == 0 or source_s < 0.05:
        raise AudiobookError(f"The clip {name} holds no audio.")
    peak = float(np.abs(wav).max())
    if not np.isfinite(peak) or peak < SILENT_PEAK:
        raise AudiobookError(f"The clip {name} is silent; record or choose a clip where the voice can be heard.")
    clipped = float(np.mean(np.abs(wav) >= CLIPPED_LEVEL))
    if clipped > CLIPPED_FRACTION:
        raise AudiobookError(
            f"The clip {name} is clipped (distorted: {clipped:.1%} of it hits full volume); "
            "record it again a little quieter."
        )
    wav, start_s = trim_silence(wav)
    warnings: list[str] = []
    dur = len(wav) / SAMPLE_RATE
    if dur < MIN_CLIP_S:
        raise AudiobookError(
            f"The clip {name} is too short: {dur:.1f} s of sound; a voice needs at least {MIN_CLIP_S:.0f} s "
            f"({BEST_MIN_S:.0f}-{BEST_MAX_S:.0f} s is best)."
        )
    if dur > BEST_MAX_S:
        if has_transcript:
            if dur > MAX_WITH_TRANSCRIPT_S:
                raise AudiobookError(
                    f"The clip {name} has {dur:.0f} s of sound, too long to match its transcript; cut it to "
                    f"{BEST_MIN_S:.0f}-{BEST_MAX_S:.0f} s and type just those words, or leave the transcript out "
                    "and the best part is picked for you."
                )
            warnings.append(f"The clip is {dur:.0f} s long; {BEST_MIN_S:.0f}-{BEST_MAX_S:.0f} s clones best.")
        else:
            s, e = best_window(wav)
            wav, inner = trim_silence(wav[s:e])
            start_s += s / SAMPLE_RATE + inner
            warnings.append(
                f"The clip was {dur:.0f} s long; the {len(wav) / SAMPLE_RATE:.0f} s from {start_s:.1f} s on is used."
            )
            if len(wav) / SAMPLE_RATE < MIN_CLIP_S:  # pragma: no cover - the window is at least BEST_MIN_S
                raise AudiobookError(f"The clip {name} has no stretch of {MIN_CLIP_S:.0f} s of speech.")
    active = _active(_frame_rms(wav))
    speech_rms = float(np.sqrt(np.mean(_frame_rms(wav)[active] ** 2))) if active.any() else 0.0
    if speech_rms < QUIET_RMS:
        warnings.append("The clip is very quiet; it was raised in level, which also raises its noise.")
    wav = (wav * (TARGET_PEAK / max(float(np.abs(wav).max()), 1e-9))).astype(np.float32)
    return Clip(wav=wav, source_s=source_s, start_s=start_s, warnings=warnings)


def level_reference(wav: np.ndarray) -> np.ndarray:
    """A generated reference clip, trimmed of silence at its ends and peak-levelled (its words stay whole)."""
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    trimmed, _ = trim_silence(wav)
    if trimmed.size:
        wav = trimmed
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    return (wav * (TARGET_PEAK / peak)).astype(np.float32) if peak > SILENT_PEAK else wav


# ---- previews: hearing a voice before it is saved ---------------------------------------------


@dataclass
class VoicePreview:
    """A voice heard but not yet saved: the draft record, its reference clip and the audio to play.

    ``audio`` is what the user hears (for a designed voice: the reference clip itself; otherwise the
    test line); ``reference`` is the clip to save (None for presets); ``wav_path`` holds ``audio``.
    """

    voice: Voice
    audio: np.ndarray
    reference: np.ndarray | None = None
    wav_path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def preview_design(tts: TTS, description: str, language: str = "auto", text: str | None = None,
                   seed: int | None = None, opts: GenerationOptions | None = None) -> VoicePreview:
    """The VoiceDesign model speaks ``text`` (default: a reference passage) in the described voice.

    ``seed`` None picks a new one, so calling again regenerates; the seed used is in ``voice.seed``.
    """
    description = (description or "").strip()
    if not description:
        raise AudiobookError("Describe the voice to design, for example 'a warm, elderly British storyteller, slow and calm'.")
    text = (text or "").strip() or DEFAULT_REFERENCE_TEXT
    seed = random.randrange(2**31 - 1) if seed is None else int(seed)
    opts = replace(opts or GenerationOptions.from_settings(tts.settings), seed=seed)
    wav = level_reference(tts.design([text], description, language, opts)[0])
    if wav.size == 0 or float(np.abs(wav).max()) < SILENT_PEAK:
        raise AudiobookError("The design model produced no sound for this description; try again with another seed.")
    warnings = []
    if len(wav) / SAMPLE_RATE < MIN_CLIP_S:
        warnings.append(f"The designed clip is only {len(wav) / SAMPLE_RATE:.1f} s long; regenerate for a fuller reference.")
    voice = Voice(name="", kind=DESIGNED, description=description, language=language or "auto",
                  reference_text=text, model=checkpoint_name(DESIGN, tts.settings.model_size), seed=seed)
    return VoicePreview(voice=voice, audio=wav, reference=wav, warnings=warnings)


def preview_clone(tts: TTS, clip_path: str | os.PathLike, transcript: str = "", language: str = "auto",
                  test_line: str | None = None, opts: GenerationOptions | None = None) -> VoicePreview:
    """Prepare an uploaded clip and let the Base model speak a test line in its voice."""
    transcript = " ".join((transcript or "").split())
    clip = prepare_clip(clip_path, has_transcript=bool(transcript))
    warnings = list(clip.warnings)
    if not transcript:
        warnings.append(XVECTOR_COST)
    prompt = tts.clone_prompt((clip.wav, SAMPLE_RATE), transcript, x_vector_only=not transcript)
    opts = opts or GenerationOptions.from_settings(tts.settings)
    spoken = tts.clone([(test_line or "").strip() or DEFAULT_TEST_LINE], prompt, language, opts)[0]
    voice = Voice(name="", kind=CLONED, language=language or "auto", reference_text=transcript,
                  model=checkpoint_name(CLONE, tts.settings.model_size),
                  notes=f"Cloned from {Path(clip_path).name}.")
    return VoicePreview(voice=voice, audio=spoken, reference=clip.wav, warnings=warnings)


def check_instruct(tts: TTS, instruct: str) -> None:
    """A style instruction needs a model that follows one; say so instead of dropping it."""
    tts.check_instruct(instruct)


def preview_preset(tts: TTS, speaker: str, instruct: str = "", language: str = "auto",
                   test_line: str | None = None, opts: GenerationOptions | None = None) -> VoicePreview:
    """A built-in CustomVoice speaker (with an optional style instruction) speaks a test line."""
    speaker = (speaker or "").strip()
    instruct = (instruct or "").strip()
    if not speaker:
        raise AudiobookError("Choose a built-in speaker.")
    check_instruct(tts, instruct)
    opts = opts or GenerationOptions.from_settings(tts.settings)
    spoken = tts.preset([(test_line or "").strip() or DEFAULT_TEST_LINE], speaker, instruct, language, opts)[0]
    voice = Voice(name="", kind=BUILTIN, speaker=speaker.lower(), instruct=instruct, language=language or "auto",
                  model=checkpoint_name(PRESET, tts.settings.model_size))
    return VoicePreview(voice=voice, audio=spoken)


# ---- the library -------------------------------------------------------------------------------


class VoiceLibrary:
    """The folder of saved voices: list, get, save, rename, delete, import and export."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def folder(self, name: str) -> Path:
        """Where a voice of this name lives (whether or not it exists); never outside ``root``."""
        return self.root / voice_slug(name)

    def _existing(self, name: str) -> Path | None:
        """The folder of a saved voice with this name, matched the way case-insensitive disks match."""
        slug = voice_slug(name)
        exact = self.root / slug
        if (exact / VOICE_FILE).is_file():
            return exact
        if self.root.is_dir():
            for d in self.root.iterdir():
                if d.name.casefold() == slug.casefold() and (d / VOICE_FILE).is_file():
                    return d
        return None

    def list(self) -> list[Voice]:
        """Every readable voice, by name; unreadable folders are skipped with a log line."""
        out = []
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.iterdir()):
            if d.name.startswith(".") or not (d / VOICE_FILE).is_file():
                continue
            try:
                out.append(self._read(d))
            except AudiobookError as e:
                log.warning("Skipping voice folder %s: %s", d, e)
        return sorted(out, key=lambda v: v.name.casefold())

    def names(self) -> list[str]:
        return [v.name for v in self.list()]

    def _read(self, folder: Path) -> Voice:
        try:
            data = json.loads((folder / VOICE_FILE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise AudiobookError(f"The voice file {folder / VOICE_FILE} could not be read ({e}).") from None
        voice = Voice.from_dict(data, where=str(folder / VOICE_FILE))
        voice.folder = folder
        if voice.kind != BUILTIN and not (folder / REFERENCE_FILE).is_file():
            raise AudiobookError(f"The voice '{voice.name}' has lost its reference clip {folder / REFERENCE_FILE}.")
        return voice

    def get(self, name: str) -> Voice:
        """The saved voice called ``name``; AudiobookError naming the known voices when there is none."""
        folder = self._existing(name)
        if folder is None:
            known = self.names()
            hint = f" Saved voices: {', '.join(known)}." if known else " There are no saved voices yet."
            raise AudiobookError(f"There is no voice called '{name}'.{hint}")
        return self._read(folder)

    def exists(self, name: str) -> bool:
        return self._existing(name) is not None

    def save(self, voice: Voice, reference: np.ndarray | None = None, preview: np.ndarray | None = None,
             overwrite: bool = False) -> Voice:
        """Write a voice (and its reference clip) into its folder, replacing a voice of the same name
        only when ``overwrite`` is true; returns the saved voice."""
        name = clean_name(voice.name)
        if voice.kind not in KINDS:
            raise AudiobookError(f"A voice's kind must be one of {', '.join(KINDS)}, not '{voice.kind}'.")
        if voice.kind != BUILTIN and (reference is None or np.asarray(reference).size == 0):
            raise AudiobookError(f"The {voice.kind} voice '{name}' needs its reference clip.")
        existing = self._existing(name)
        if existing is not None and not overwrite:
            other = self._safe_name(existing)
            raise AudiobookError(f"A voice called '{other}' already exists; confirm to overwrite it, or pick another name.")
        record = replace(voice, name=name, created=voice.created or now_iso(), folder=None)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".new-", dir=self.root))
        try:
            if record.kind != BUILTIN:
                audio.write_wav(staging / REFERENCE_FILE, np.asarray(reference, dtype=np.float32), SAMPLE_RATE)
            if preview is not None and np.asarray(preview).size:
                audio.write_wav(staging / PREVIEW_FILE, np.asarray(preview, dtype=np.float32), SAMPLE_RATE)
            atomic_write_text(staging / VOICE_FILE, json.dumps(record.to_dict(), ensure_ascii=False, indent=2) + "\n")
            target = existing or self.folder(name)
            self._swap_in(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return self._read(target)

    def _swap_in(self, staging: Path, target: Path) -> None:
        """Put a fully written folder in place of ``target`` (old one removed only after the move)."""
        old = None
        if target.exists():
            old = target.with_name(f".old-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _safe_name(self, folder: Path) -> str:
        try:
            return self._read(folder).name
        except AudiobookError:
            return folder.name

    def rename(self, old: str, new: str, overwrite: bool = False) -> Voice:
        """Give a saved voice a new name (and folder); its clip and cached prompts move with it."""
        voice = self.get(old)
        new_name = clean_name(new)
        target = self._existing(new_name)
        same = target is not None and target.resolve() == voice.folder.resolve()
        if target is not None and not same and not overwrite:
            raise AudiobookError(f"A voice called '{self._safe_name(target)}' already exists; confirm to overwrite it, or pick another name.")
        record = replace(voice, name=new_name, folder=None)
        atomic_write_text(voice.folder / VOICE_FILE, json.dumps(record.to_dict(), ensure_ascii=False, indent=2) + "\n")
        dest = self.folder(new_name)
        if voice.folder.name != dest.name:
            if target is not None and not same:
                shutil.rmtree(target)
            # a case-only rename goes through a temporary name on case-insensitive disks
            hop = voice.folder.with_name(f".rename-{uuid.uuid4().hex[:8]}")
            os.replace(voice.folder, hop)
            os.replace(hop, dest)
        return self._read(dest)

    def delete(self, name: str) -> None:
        """Remove a saved voice and everything in its folder."""
        voice = self.get(name)
        shutil.rmtree(voice.folder)

    # ---- sharing -------------------------------------------------------------------------

    def export_zip(self, name: str, dest: str | os.PathLike | None = None) -> Path:
        """Zip a voice folder (its record, clip and preview; never cached prompts) and return the zip's path.

        ``dest`` is a file or a folder; default: ``<slug>.zip`` in the system temp folder.
        """
        voice = self.get(name)
        dest = Path(dest) if dest else Path(tempfile.gettempdir()) / "audiobook-voices"
        if dest.suffix.lower() != ".zip":
            dest = dest / f"{voice.slug}.zip"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}")
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for member in (VOICE_FILE, REFERENCE_FILE, PREVIEW_FILE):
                    if (voice.folder / member).is_file():
                        zf.write(voice.folder / member, f"{voice.slug}/{member}")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def import_zip(self, path: str | os.PathLike, overwrite: bool = False, name: str | None = None) -> Voice:
        """Add a voice from a zip made by :meth:`export_zip`; only its record and clips are read, never paths
        from the archive, with size limits. ``name`` renames it on the way in."""
        path = Path(path)
        if not path.is_file():
            raise AudiobookError(f"The voice file {path.name} could not be found.")
        if not zipfile.is_zipfile(path):
            raise AudiobookError(f"The file {path.name} is not a voice archive (a .zip exported from a voice library).")
        members: dict[str, bytes] = {}
        try:
            with zipfile.ZipFile(path) as zf:
                infos = [i for i in zf.infolist() if not i.is_dir()]
                if len(infos) > MAX_ZIP_MEMBERS:
                    raise AudiobookError(f"The archive {path.name} holds {len(infos)} files; a voice has at most three.")
                for info in infos:
                    parts = info.filename.replace("\\", "/").split("/")
                    if info.filename.startswith(("/", "\\")) or ".." in parts or ":" in info.filename:
                        raise AudiobookError(f"The archive {path.name} contains an unsafe path ({info.filename}); it was not imported.")
                    base = parts[-1]
                    if base not in MAX_MEMBER_BYTES or len(parts) > 2:
                        continue  # caches and anything else are rebuilt or ignored
                    if base in members:
                        raise AudiobookError(f"The archive {path.name} holds more than one voice; import them one at a time.")
                    limit = MAX_MEMBER_BYTES[base]
                    with zf.open(info) as fh:
                        data = fh.read(limit + 1)  # the header's size may lie; the read does not
                    if len(data) > limit:
                        raise AudiobookError(f"The file {base} in {path.name} is larger than a voice file can be ({limit // 2**20 or 1} MB at most).")
                    members[base] = data
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, RuntimeError, NotImplementedError) as e:
            raise AudiobookError(f"The archive {path.name} could not be read ({e}).") from None
        if VOICE_FILE not in members:
            raise AudiobookError(f"The archive {path.name} has no {VOICE_FILE}; it is not a voice.")
        try:
            data = json.loads(members[VOICE_FILE].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise AudiobookError(f"The {VOICE_FILE} in {path.name} is not valid JSON.") from None
        voice = Voice.from_dict(data, where=f"{VOICE_FILE} in {path.name}")
        if name:
            voice.name = name
        reference = self._zip_wav(members, REFERENCE_FILE, path.name)
        if voice.kind != BUILTIN and reference is None:
            raise AudiobookError(f"The archive {path.name} has no {REFERENCE_FILE}, which a {voice.kind} voice needs.")
        preview = self._zip_wav(members, PREVIEW_FILE, path.name)
        return self.save(voice, reference if voice.kind != BUILTIN else None, preview, overwrite=overwrite)

    @staticmethod
    def _zip_wav(members: dict[str, bytes], member: str, archive: str) -> np.ndarray | None:
        if member not in members:
            return None
        import soundfile as sf

        try:
            wav, sr = sf.read(io.BytesIO(members[member]), dtype="float32", always_2d=False)
        except Exception:
            raise AudiobookError(f"The {member} in {archive} is not a readable wav file.") from None
        if wav.ndim > 1:
            wav = wav.mean(axis=1)
        if sr != SAMPLE_RATE:
            raise AudiobookError(f"The {member} in {archive} is at {sr} Hz; a voice clip must be {SAMPLE_RATE} Hz.")
        return wav.astype(np.float32)


# ---- narration --------------------------------------------------------------------------------


def narrator_for(voice: Voice) -> Narrator:
    """How a saved voice narrates: designed and cloned voices clone their clip, presets name a speaker."""
    if voice.kind == BUILTIN:
        return Narrator(kind=PRESET, speaker=voice.speaker, instruct=voice.instruct, name=voice.name)
    return Narrator(kind=CLONE, ref_audio=str(voice.reference_path), ref_text=voice.reference_text,
                    x_vector_only=voice.x_vector_only, name=voice.name)


def _sha1_bytes(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def prompt_key(narrator: Narrator, source: str) -> dict[str, Any]:
    """What a cached clone prompt depends on: the clip's bytes, its text, the mode and the checkpoint."""
    return {
        "format": PROMPT_FORMAT,
        "reference_sha1": file_sha1(narrator.ref_audio),
        "text_sha1": _sha1_bytes(narrator.ref_text.encode("utf-8")),
        "x_vector_only": bool(narrator.x_vector_only),
        "checkpoint": source,
    }


def prompt_cache_path(narrator: Narrator, model_size: str) -> Path | None:
    """Where the clone prompt of a library voice is cached; None for a clip outside the library."""
    if narrator.kind == PRESET or not narrator.ref_audio:
        return None
    folder = Path(narrator.ref_audio).parent
    if Path(narrator.ref_audio).name != REFERENCE_FILE or not (folder / VOICE_FILE).is_file():
        return None
    return folder / PROMPT_FILE.format(size=model_size)


def load_clone_prompt(path: Path, key: dict[str, Any]):
    """The cached prompt at ``path`` when it was made from the same clip, text and checkpoint, else None."""
    import torch
    from qwen_tts.inference.qwen3_tts_model import VoiceClonePromptItem

    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain values only
    except Exception as e:
        log.warning("Ignoring unreadable clone prompt cache %s: %s", path, e)
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    return VoiceClonePromptItem(
        ref_code=data["ref_code"], ref_spk_embedding=data["ref_spk_embedding"],
        x_vector_only_mode=bool(data["x_vector_only_mode"]), icl_mode=bool(data["icl_mode"]),
        ref_text=data["ref_text"],
    )


def save_clone_prompt(path: Path, key: dict[str, Any], prompt) -> None:
    """Store a prompt's tensors (on the CPU) with the key that makes it valid; written atomically."""
    import torch

    data = {
        "key": key,
        "ref_code": None if prompt.ref_code is None else prompt.ref_code.detach().cpu(),
        "ref_spk_embedding": prompt.ref_spk_embedding.detach().cpu(),
        "x_vector_only_mode": bool(prompt.x_vector_only_mode),
        "icl_mode": bool(prompt.icl_mode),
        "ref_text": prompt.ref_text,
    }
    buf = io.BytesIO()
    torch.save(data, buf)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except (OSError, AudiobookError) as e:
        log.warning("Could not cache the clone prompt at %s: %s", path, e)


def clone_prompt_for(tts: TTS, narrator: Narrator):
    """The Base model's clone prompt for ``narrator``: from the voice's cache when it is fresh, else
    computed (and cached for library voices). Returns None for built-in speakers."""
    if narrator.kind == PRESET:
        return None
    if not Path(narrator.ref_audio).is_file():
        raise AudiobookError(f"The reference clip {narrator.ref_audio} of voice '{narrator.name or '?'}' is missing.")
    cache = prompt_cache_path(narrator, tts.settings.model_size)
    key = prompt_key(narrator, resolve_checkpoint(CLONE, tts.settings.model_size, tts.settings.models_dir)) if cache else None
    if cache is not None:
        prompt = load_clone_prompt(cache, key)
        if prompt is not None:
            log.info("Using the cached clone prompt %s", cache)
            return prompt
    wav = load_clip(narrator.ref_audio)  # decoded here: no first-call librosa delay, any format
    prompt = tts.clone_prompt((wav, SAMPLE_RATE), narrator.ref_text, narrator.x_vector_only)
    if cache is not None:
        save_clone_prompt(cache, key, prompt)
    return prompt
