"""Files on disk, written one way everywhere: atomic writes, safe names, ffmpeg, the sample rate.

* ``atomic_write_bytes``/``atomic_write_text`` and ``atomic_output(s)``: a crash or a full
  disk leaves the old file or the new one, never half of one; a failed write is one
  ``AudiobookError`` sentence.
* ``safe_filename``: a name every OS accepts, made from a title.
* ``ffmpeg_command``/``run_ffmpeg``/``ffmpeg_write``: the one way to start the ffmpeg
  program (shipped with imageio-ffmpeg) that reads and writes audio files.
* ``SAMPLE_RATE``: every audio file the project writes is mono at this rate, the rate
  Qwen3-TTS's 12 Hz tokenizer decodes to.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from .errors import AudiobookError

SAMPLE_RATE = 24000  # Qwen3-TTS 12 Hz tokenizer output rate

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


# ---- atomic writes ------------------------------------------------------------------------


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text so that a crash leaves either the old file or the new one, never half of one."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes through a synced temporary file beside ``path`` that then replaces it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A hidden temporary path beside ``path`` that becomes ``path`` only if the block succeeds."""
    with atomic_outputs([path]) as tmps:
        yield tmps[0]


@contextmanager
def atomic_outputs(paths: Sequence[Path]) -> Iterator[list[Path]]:
    """``atomic_output`` for several files written together: all of them appear, or none.

    An ``OSError`` inside the block (a full disk, an unwritable folder) becomes an
    ``AudiobookError`` that names the first file.
    """
    tmps: list[Path] = []
    try:
        for p in paths:
            fd, name = tempfile.mkstemp(prefix=f".{Path(p).name}.", suffix=".partial", dir=Path(p).parent)
            os.close(fd)
            tmps.append(Path(name))
        yield tmps
        for tmp, p in zip(tmps, paths):
            os.replace(tmp, p)
    except OSError as e:
        raise disk_error(Path(paths[0]), e) from None
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)  # only our own temporary files


def read_json_file(path: Path, what: str, missing: str, encoding: str = "utf-8"):
    """Parse a JSON file the user named; AudiobookError with ``missing`` when it is not there,
    else "The {what} NAME is not valid JSON." when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text(encoding=encoding))
    except FileNotFoundError:
        raise AudiobookError(missing) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise AudiobookError(f"The {what} {path.name} is not valid JSON.") from None


def disk_full_sentence(name: str) -> str:
    return f"The disk filled up while writing {name}; the partial file was removed, so free some space and try again."


def disk_error(path: Path, e: OSError) -> AudiobookError:
    """The sentence for an ``OSError`` met while writing ``path``."""
    if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return AudiobookError(disk_full_sentence(path.name))
    from .errors import os_error_sentence

    return AudiobookError(os_error_sentence(e, f"write {path.name} in {path.parent}"))


# ---- names --------------------------------------------------------------------------------


def safe_filename(name: str, max_bytes: int = 150) -> str:
    """A file name that every OS accepts, keeping letters (and emoji) of any script readable.

    Path separators, ``:`` and other reserved characters become ``_``; the name is cut to
    ``max_bytes`` of UTF-8 (file systems count bytes, and an emoji is four of them).
    """
    bad = '<>:"/\\|?*\0'
    cleaned = "".join("_" if (c in bad or ord(c) < 32) else c for c in str(name))
    cleaned = " ".join(cleaned.split()).strip(" .")
    encoded = cleaned.encode("utf-8")[:max_bytes]
    cleaned = encoded.decode("utf-8", errors="ignore").rstrip(" .")
    if cleaned.split(".")[0].rstrip(" ").upper() in _WINDOWS_RESERVED:
        cleaned = f"_{cleaned}"
    return cleaned or "untitled"


# ---- ffmpeg -------------------------------------------------------------------------------


def ffmpeg_exe() -> str:
    """The ffmpeg binary shipped with imageio-ffmpeg (no system ffmpeg is needed)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # pragma: no cover - a broken install
        raise AudiobookError(f"The ffmpeg program that reads and writes audio is missing ({e}); reinstall imageio-ffmpeg.") from None


def ffmpeg_command(args: Sequence[str], reads_stdin: bool = False) -> list[str]:
    """The ffmpeg command line for ``args``: quiet but for errors, outputs overwritten.

    ``reads_stdin`` is for a command fed through ``pipe:0``; every other one is told to
    leave stdin alone.
    """
    return [ffmpeg_exe(), "-hide_banner", *([] if reads_stdin else ["-nostdin"]), "-loglevel", "error", "-y", *args]


def run_ffmpeg(args: Sequence[str]) -> subprocess.CompletedProcess:
    """Run ffmpeg to the end; its stdout and stderr come back as bytes (the caller judges them)."""
    return subprocess.run(ffmpeg_command(args), stdin=subprocess.DEVNULL, capture_output=True)


def ffmpeg_write(args: Sequence[str], name: str) -> None:
    """Run ffmpeg to write the file called ``name``; a failure is an ``AudiobookError`` sentence."""
    proc = run_ffmpeg(args)
    if proc.returncode != 0:
        raise ffmpeg_failure(name, proc.stderr.decode("utf-8", "replace"), proc.returncode)


def ffmpeg_failure(name: str, message: str, rc: int = 1) -> AudiobookError:
    """The sentence for ffmpeg failing to write ``name`` with ``message`` on stderr."""
    # a file-size limit kills ffmpeg with SIGXFSZ instead of failing the write
    if any(s in message for s in ("No space left", "File too large", "Disk quota")) or rc == -getattr(signal, "SIGXFSZ", -1):
        return AudiobookError(disk_full_sentence(name))
    last = message.strip().splitlines()[-1] if message.strip() else "no message"
    return AudiobookError(f"ffmpeg could not write {name} ({last}).")
