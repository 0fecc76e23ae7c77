"""Keeping qwen_tts's import banners out of our output, and nothing else.

Importing qwen_tts prints a flash-attn banner, and its ``sox`` dependency runs ``sox -h`` and
warns with a link when the SoX program is missing. Both belong to the 25 Hz tokenizer, which
this app never loads (it uses the 12 Hz models), so to a user they read like a broken install.
``install()`` (called by ``audiobook/__init__.py``) makes the first import of qwen_tts, wherever
it happens, run with the process's stdout and stderr captured at the file-descriptor level (the
shell that runs ``sox -h`` writes there directly); the banners go to the debug log and every
other line goes back where it was written, so our own warnings and other threads' output still
show.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import io
import logging
import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager

log = logging.getLogger(__name__)

QUIET_MODULES = ("qwen_tts",)  # top-level packages whose first import is kept quiet

# The lines of the banners (each matched whole, after stripping); anything else is passed on.
CHATTER = [re.compile(p) for p in (
    r"\*+",
    r"Warning: flash-attn is not installed\..*",
    r"SoX could not be found!",
    r"If you do not have SoX, proceed here:",
    r"- - - http://sox\.sourceforge\.net/ - - -",
    r"If you do \(or think that you should\) have SoX, double-check your",
    r"path variables\.",
    r"(/bin/)?sh: \d+: sox: not found",
)]

_capture_lock = threading.Lock()


def is_chatter(line: str) -> bool:
    return any(p.fullmatch(line.strip()) for p in CHATTER)


def pass_on(text: str) -> str:
    """``text`` without the banner lines, and without the blank lines around them."""
    kept = [line for line in text.splitlines() if line.strip() and not is_chatter(line)]
    return "".join(line + "\n" for line in kept)


@contextmanager
def without_banners():
    """Run the block with fds 1 and 2 and ``sys.stdout``/``sys.stderr`` captured; pass on all but the
    banners when it ends (Python's streams may write elsewhere than fds 1 and 2, as under pytest)."""
    with _capture_lock:
        streams = {1: sys.stdout, 2: sys.stderr}
        for stream in streams.values():
            stream.flush()
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        files = {fd: tempfile.TemporaryFile() for fd in (1, 2)}
        buffers = {fd: io.StringIO() for fd in (1, 2)}
        try:
            for fd, f in files.items():
                os.dup2(f.fileno(), fd)
            sys.stdout, sys.stderr = buffers[1], buffers[2]
            yield
        finally:
            sys.stdout, sys.stderr = streams[1], streams[2]
            for fd in (1, 2):
                os.dup2(saved[fd], fd)
                os.close(saved[fd])
            for fd, f in files.items():
                f.seek(0)
                text = f.read().decode("utf-8", errors="replace") + buffers[fd].getvalue()
                f.close()
                if text.strip():
                    log.debug("While importing a library: %s", text.strip())
                rest = pass_on(text)
                if rest:
                    streams[fd].write(rest)
                    streams[fd].flush()


class _QuietLoader(importlib.abc.Loader):
    """Runs another loader's ``exec_module`` inside ``without_banners``."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with without_banners():
            self.loader.exec_module(module)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds the ``QUIET_MODULES`` as usual and hands them to ``_QuietLoader``."""

    def __init__(self):
        self._looking = threading.local()

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in QUIET_MODULES or getattr(self._looking, "busy", False):
            return None
        self._looking.busy = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._looking.busy = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Keep the banners of the ``QUIET_MODULES`` quiet from now on (once per process)."""
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
