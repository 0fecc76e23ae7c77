"""The voice library under ``voices/``: designed, cloned and built-in voices on disk.

A voice is a folder ``voices/<slug>/`` holding ``voice.json`` (a :class:`Voice`), and for designed
and cloned voices ``reference.wav`` (mono 24 kHz) whose words are ``Voice.reference_text``. A designed
voice narrates as a clone of its reference clip, so every chunk of a book has the same timbre.
The Base model's clone prompt for that clip is cached beside it (``prompt_cache_path``), one file
per model size. Clips are prepared in ``clips.py``; previews are made in ``previews.py``.
"""

from __future__ import annotations

import io
import json
import logging
import os
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
from .files import SAMPLE_RATE, atomic_write_text, safe_filename
from .tts import CLONE, PRESET, Narrator

log = logging.getLogger(__name__)

VOICE_FILE = "voice.json"
REFERENCE_FILE = "reference.wav"
PREVIEW_FILE = "preview.wav"
PROMPT_FILE = "clone_prompt-{size}.pt"  # one per model size: the Base models differ

DESIGNED, CLONED, BUILTIN = "designed", "cloned", "preset"
KINDS = (DESIGNED, CLONED, BUILTIN)

MAX_NAME_CHARS = 80

# Zip import limits: a voice is a small json and a clip of seconds.
MAX_ZIP_MEMBERS = 16
MAX_MEMBER_BYTES = {VOICE_FILE: 256 * 1024, REFERENCE_FILE: 40 * 2**20, PREVIEW_FILE: 40 * 2**20}


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


def prompt_cache_path(narrator: Narrator, model_size: str) -> Path | None:
    """Where the clone prompt of a library voice is cached; None for a clip outside the library."""
    if narrator.kind == PRESET or not narrator.ref_audio:
        return None
    folder = Path(narrator.ref_audio).parent
    if Path(narrator.ref_audio).name != REFERENCE_FILE or not (folder / VOICE_FILE).is_file():
        return None
    return folder / PROMPT_FILE.format(size=model_size)
