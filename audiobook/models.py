"""The checkpoints the app can use: where each one is on disk, how big, and downloading one with progress.

A checkpoint is on this computer when its folder is complete: ``<models folder>/<name>/`` or its
snapshot in the Hugging Face cache holds ``config.json``, the weights and the speech tokenizer, and
no half-written file. Downloads go file by file through ``huggingface_hub`` (which honours
``HF_ENDPOINT``), into the models folder when one is set, else into the Hugging Face cache; a broken
connection is resumed from the bytes already on disk, now or at the next attempt. ``config.json``
comes last, so a folder that has it is whole.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from .errors import AudiobookError
from .tts import CLONE, DESIGN, PRESET, checkpoint_name

ORG = "Qwen"
# Every Qwen3-TTS checkpoint the app can load, in the order the page lists them, with its job in words.
TTS_CHECKPOINTS = (
    (checkpoint_name(DESIGN, "1.7B"), "design a voice from a description"),
    (checkpoint_name(CLONE, "1.7B"), "clone a voice / narrate with a saved voice (1.7B)"),
    (checkpoint_name(CLONE, "0.6B"), "clone a voice / narrate with a saved voice (0.6B)"),
    (checkpoint_name(PRESET, "1.7B"), "narrate with a built-in speaker (1.7B)"),
    (checkpoint_name(PRESET, "0.6B"), "narrate with a built-in speaker (0.6B)"),
)
# Whisper checkpoints that check takes (audiobook/check.py picks one), by folder name.
WHISPER_CHECKPOINTS = {
    "whisper-large-v3-turbo": "openai/whisper-large-v3-turbo",
    "whisper-small": "openai/whisper-small",
}
WHISPER_PURPOSE = "check every take against its text (transcripts)"
# Weights in formats the app does not load: never downloaded.
_SKIPPED_SUFFIXES = (".h5", ".msgpack", ".ot", ".onnx", ".onnx_data", ".tflite", ".pb")
HUB_TIMEOUT_S = 4.0  # an unreachable hub is reported within seconds, not after a minute
FILE_ATTEMPTS = 4  # tries per file within one download; each resumes from the bytes on disk
_RETRY_PAUSE_S = 0.5
_POLL_S = 0.2
_INCOMPLETE = ".incomplete"


@dataclass
class Checkpoint:
    """One checkpoint and where it stands on this computer."""

    name: str  # folder name, as released: Qwen3-TTS-12Hz-1.7B-Base
    repo_id: str  # Hugging Face id: Qwen/Qwen3-TTS-12Hz-1.7B-Base
    purpose: str  # what the app uses it for
    present: bool  # complete on disk
    path: str  # where it is, or where a download puts it
    bytes: int  # bytes on disk (of a partial download: what has arrived so far)
    partial: bool = False  # a download started and did not finish: Download resumes it

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def status(self) -> str:
        """In words, for the page and the command line."""
        if self.present:
            return f"on disk, {human_bytes(self.bytes)}"
        if self.partial:
            return f"partly downloaded ({human_bytes(self.bytes)}); download again to resume"
        return "not downloaded"


@dataclass
class DownloadProgress:
    """How far a download has come; ``fraction`` reaches 1.0 when every byte is on disk."""

    name: str
    done_bytes: int
    total_bytes: int
    file: str = ""
    bytes_per_s: float = 0.0
    eta_s: float | None = None
    finished: bool = False

    @property
    def fraction(self) -> float:
        return min(1.0, self.done_bytes / self.total_bytes) if self.total_bytes else (1.0 if self.finished else 0.0)

    def describe(self) -> str:
        """``45 % (1.2 GB of 2.6 GB, 35 MB/s, about 40 s left)``."""
        text = f"{self.fraction * 100:.0f} % ({human_bytes(self.done_bytes)} of {human_bytes(self.total_bytes)}"
        if self.finished:
            return text + ", done)"
        if self.bytes_per_s > 0:
            text += f", {human_bytes(self.bytes_per_s)}/s"
        if self.eta_s is not None:
            text += f", about {human_duration(self.eta_s)} left"
        return text + ")"


@dataclass
class DownloadState:
    """A background download as the page follows it."""

    name: str = ""
    running: bool = False
    done: bool = False
    error: str = ""
    progress: DownloadProgress | None = None

    def describe(self) -> str:
        if self.error:
            return self.error
        if self.progress is None:
            return f"Asking the model hub for {self.name}..." if self.running else ""
        verb = "Downloaded" if self.done else "Downloading"
        return f"{verb} {self.name}: {self.progress.describe()}"


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def human_duration(s: float) -> str:
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


# ---- where checkpoints are ---------------------------------------------------------------------


def known_names() -> list[str]:
    return [name for name, _ in TTS_CHECKPOINTS] + list(WHISPER_CHECKPOINTS)


def repo_id_for(name: str) -> str:
    """The Hugging Face id of a checkpoint's folder name."""
    short = name.split("/")[-1]
    return WHISPER_CHECKPOINTS.get(short) or f"{ORG}/{short}"


def check_name(name: str) -> str:
    """The checkpoint's folder name; an unknown name is an error listing the known ones."""
    short = name.rstrip("/").split("/")[-1]
    if short not in known_names():
        raise AudiobookError(f"There is no checkpoint called '{name}'; choose one of: {', '.join(known_names())}.")
    return short


def is_complete(folder: Path) -> bool:
    """A checkpoint folder that loads: config, weights and speech tokenizer, and nothing half-written."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        return False
    if folder.name.startswith("Qwen3-TTS") and not (folder / "speech_tokenizer" / "config.json").is_file():
        return False
    return not _incomplete_files(folder / ".cache")


def _incomplete_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(f"*{_INCOMPLETE}")] if folder.is_dir() else []


def _bytes_of(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        try:
            total += p.stat().st_size
        except OSError:  # renamed into place as it was measured
            continue
    return total


def folder_bytes(folder: Path) -> int:
    """Bytes of a checkpoint's files (links followed, as in the Hugging Face cache), partial files included."""
    total = 0
    if not Path(folder).is_dir():
        return 0
    for p in Path(folder).rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            continue
    return total


def _hub_cache_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot folder of a hub checkpoint, when its config is cached."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:
        return None
    return Path(found).parent if isinstance(found, str) else None


def _hub_cache_repo(repo_id: str) -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))


def checkpoint(name: str, models_dir: str | os.PathLike | None = None, purpose: str = "") -> Checkpoint:
    """Where ``name`` is on this computer: the models folder first, then the Hugging Face cache."""
    name = check_name(name)
    repo_id = repo_id_for(name)
    purpose = purpose or dict(TTS_CHECKPOINTS).get(name, WHISPER_PURPOSE if name in WHISPER_CHECKPOINTS else "")
    local = Path(models_dir).expanduser() / name if models_dir else None
    if local is not None and is_complete(local):
        return Checkpoint(name, repo_id, purpose, True, str(local), folder_bytes(local))
    cached = _hub_cache_snapshot(repo_id)
    if cached is not None and is_complete(cached):
        return Checkpoint(name, repo_id, purpose, True, str(cached), folder_bytes(cached))
    if local is not None:
        started = local.is_dir() and any(local.iterdir())
        return Checkpoint(name, repo_id, purpose, False, str(local), folder_bytes(local), partial=started)
    repo = _hub_cache_repo(repo_id)
    blobs = repo / "blobs"
    return Checkpoint(name, repo_id, purpose, False, str(repo), folder_bytes(blobs),
                      partial=blobs.is_dir() and any(blobs.iterdir()))


def list_checkpoints(models_dir: str | os.PathLike | None = None, whisper: str | None = None) -> list[Checkpoint]:
    """Every checkpoint the app can use, with its status; ``whisper`` (a hub id) adds the one that checks takes."""
    found = [checkpoint(name, models_dir, purpose) for name, purpose in TTS_CHECKPOINTS]
    if whisper and whisper.split("/")[-1] in WHISPER_CHECKPOINTS:
        found.append(checkpoint(whisper, models_dir, WHISPER_PURPOSE))
    return found


class MissingCheckpoint(AudiobookError):
    """A job needs a checkpoint that is not on this computer; ``name`` is what to download."""

    def __init__(self, name: str, purpose: str = ""):
        self.name = name
        what = f" to {purpose}" if purpose else ""
        super().__init__(
            f"The model {repo_id_for(name)} is needed{what} and is not downloaded yet; download it in the "
            f"Models panel (Advanced Settings) or run `backend.py models --download {name}`."
        )


def require(name: str, models_dir: str | os.PathLike | None = None) -> Checkpoint:
    """The checkpoint when it is on disk; else ``MissingCheckpoint`` (nothing is downloaded unasked)."""
    found = checkpoint(name, models_dir)
    if not found.present:
        raise MissingCheckpoint(found.name, found.purpose)
    return found


# ---- downloading -------------------------------------------------------------------------------

_download_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _endpoint() -> str | None:
    """The hub address, read at call time so that ``HF_ENDPOINT`` set after import counts."""
    return os.environ.get("HF_ENDPOINT") or None


def _unreachable(name: str, why: str) -> AudiobookError:
    return AudiobookError(
        f"Could not reach the model hub to download {repo_id_for(name)} ({why}); check the internet connection "
        f"and try again, or copy the checkpoint folder into the models folder as {name}."
    )


def remote_files(name: str) -> list[tuple[str, int]]:
    """``(path, size)`` of every file of the checkpoint on the hub; fails within seconds when offline."""
    import requests
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    if constants.HF_HUB_OFFLINE:
        raise _unreachable(name, "HF_HUB_OFFLINE is set")
    try:
        info = HfApi(endpoint=_endpoint()).model_info(repo_id_for(name), files_metadata=True, timeout=HUB_TIMEOUT_S)
    except RepositoryNotFoundError:
        raise AudiobookError(f"The model hub has no checkpoint {repo_id_for(name)}; check the name.") from None
    except (requests.ConnectionError, requests.Timeout) as e:
        raise _unreachable(name, type(e).__name__) from None
    except HfHubHTTPError as e:
        raise _unreachable(name, f"HTTP {e.response.status_code if e.response is not None else 'error'}") from None
    files = [(s.rfilename, int(s.size or 0)) for s in info.siblings or []]
    has_safetensors = any(f.endswith(".safetensors") for f, _ in files)
    files = [(f, size) for f, size in files if not f.endswith(_SKIPPED_SUFFIXES)
             and not (has_safetensors and f.endswith(".bin") and "model" in f)]
    if not files:
        raise AudiobookError(f"The model hub lists no files for {repo_id_for(name)}; try again later.")
    return files


def download(name: str, models_dir: str | os.PathLike | None = None,
             on_progress: Callable[[DownloadProgress], None] | None = None) -> Checkpoint:
    """Download a checkpoint (into ``models_dir/<name>`` when given, else the Hugging Face cache).

    ``on_progress`` is called a few times a second, from another thread, and once at the end with
    ``fraction == 1.0``. Bytes already on disk (a broken earlier download) are not fetched again.
    Returns the checkpoint, now present; raises AudiobookError with one sentence when it fails.
    """
    name = check_name(name)
    with _locks_guard:
        lock = _download_locks.setdefault(name, threading.Lock())
    if not lock.acquire(blocking=False):
        raise AudiobookError(f"{name} is already downloading; wait for it to finish.")
    try:
        return _download(name, models_dir, on_progress)
    finally:
        lock.release()


def _download(name: str, models_dir, on_progress) -> Checkpoint:
    files = remote_files(name)
    # config.json last: its presence marks a finished folder.
    files.sort(key=lambda f: (f[0] == "config.json", f[0]))
    total = sum(size for _, size in files)
    local = Path(models_dir).expanduser() / name if models_dir else None
    watch = local / ".cache" if local is not None else _hub_cache_repo(repo_id_for(name)) / "blobs"
    meter = _Meter(name, total, watch, on_progress)
    meter.start()
    try:
        for path, size in files:
            meter.begin_file(path)
            _fetch_file(name, path, local, meter)
            meter.end_file(size)
    finally:
        meter.stop()
    found = checkpoint(name, models_dir)
    if not found.present:
        raise AudiobookError(f"The download of {name} finished but the folder {found.path} is not complete; "
                             "download it again.")
    meter.report(finished=True)
    return found


def _fetch_file(name: str, path: str, local: Path | None, meter: "_Meter") -> None:
    """One file through huggingface_hub; a broken connection is retried, resuming from the partial file."""
    import requests
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    last = ""
    for attempt in range(FILE_ATTEMPTS):
        try:
            hf_hub_download(repo_id_for(name), path, local_dir=str(local) if local else None,
                            endpoint=_endpoint(), etag_timeout=HUB_TIMEOUT_S)
            return
        except (requests.RequestException, OSError, HfHubHTTPError) as e:
            last = f"{type(e).__name__}"
            if isinstance(e, HfHubHTTPError) and e.response is not None and e.response.status_code < 500:
                break
            time.sleep(_RETRY_PAUSE_S * (attempt + 1))
    raise AudiobookError(
        f"The download of {name} stopped at {meter.progress().fraction * 100:.0f} % ({last} on {path}); "
        "download it again to resume where it stopped."
    )


class _Meter:
    """Counts bytes on disk while huggingface_hub writes them, and reports progress from a thread."""

    def __init__(self, name: str, total: int, watch: Path, on_progress):
        self.name, self.total, self.watch, self.on_progress = name, total, watch, on_progress
        self.done_files = 0  # bytes of finished files
        self.file = ""
        self.t0 = time.monotonic()
        self.start_bytes: int | None = None  # bytes already there when this download began (resumed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"download-{name}", daemon=True)
        self._lock = threading.Lock()
        self._best = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def begin_file(self, path: str) -> None:
        with self._lock:
            self.file = path

    def end_file(self, size: int) -> None:
        with self._lock:
            self.done_files += size
        self.report()

    def progress(self, finished: bool = False) -> DownloadProgress:
        with self._lock:
            done = self.total if finished else min(self.total, self.done_files + _bytes_of(_incomplete_files(self.watch)))
            done = self._best = max(self._best, done)  # never backwards while a finished file is moved into place
            if self.start_bytes is None:
                self.start_bytes = done
            elapsed = time.monotonic() - self.t0
            rate = (done - self.start_bytes) / elapsed if elapsed > 0.5 else 0.0
            eta = (self.total - done) / rate if rate > 0 else None
            return DownloadProgress(self.name, done, self.total, self.file, rate, eta, finished)

    def report(self, finished: bool = False) -> None:
        if self.on_progress:
            self.on_progress(self.progress(finished))

    def _run(self) -> None:
        while not self._stop.wait(_POLL_S):
            self.report()
