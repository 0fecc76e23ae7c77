"""The one exception type a user can cause; its message is a sentence for the user."""

from __future__ import annotations

import errno
import os
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path


class AudiobookError(Exception):
    """A problem the user can understand and fix (bad file, missing model, bad setting).

    ``str(err)`` is a complete sentence that the page and the command line show as is.
    """


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NOT_ALLOWED = (errno.EACCES, errno.EPERM, errno.EROFS)


def os_error_sentence(e: OSError, doing: str, then: str = "try again") -> str:
    """One sentence for a failed file operation; ``doing`` is what we tried ("write the chunk audio into X").

    The way out depends on why: a full disk, a folder we may not write to, a missing folder.
    ``then`` is what to do once it is fixed.
    """
    path = f" ({e.filename})" if e.filename else ""
    if e.errno in _NO_SPACE:
        return f"Could not {doing}: the disk is full; free some space and {then}."
    if e.errno in _NOT_ALLOWED:
        return f"Could not {doing}: permission denied{path}; choose a folder you can write to, or fix its permissions, and {then}."
    if e.errno in (errno.EEXIST, errno.ENOTDIR):
        return f"Could not {doing}: a file stands where a folder is needed{path}; choose another folder."
    if e.errno == errno.ENOENT:
        return f"Could not {doing}: a folder on the way does not exist or cannot be made there{path}; choose another folder."
    reason = e.strerror or str(e) or type(e).__name__
    return f"Could not {doing}: {reason[:1].lower() + reason[1:]}{path}; check the folder and {then}."


def log_folder() -> Path:
    """Where tracebacks of unexpected errors are written (the user gets the file's path)."""
    return Path(os.environ.get("AUDIOBOOK_LOG_DIR") or Path(tempfile.gettempdir()) / "audiobook-logs")


def write_error_log(exc: BaseException, where: str = "audiobook") -> Path | None:
    """Write ``exc``'s traceback to a new file in ``log_folder()``; return its path (None if that failed too)."""
    try:
        folder = log_folder()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{where}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
        return path
    except OSError:
        return None


def unexpected_sentence(exc: BaseException, log_path: Path | None) -> str:
    """The one sentence shown for an error nobody foresaw, naming the log file that holds its traceback."""
    where = f"the details are in {log_path}" if log_path else "the details could not be written to a log file"
    return f"An unexpected error ({type(exc).__name__}) stopped this; {where}; please report it with that file."


@contextmanager
def file_errors(doing: str):
    """Turn a failed file operation (full disk, no permission, missing folder) into a sentence."""
    try:
        yield
    except OSError as e:
        raise AudiobookError(os_error_sentence(e, doing)) from None
