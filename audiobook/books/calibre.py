"""Books in the formats we have no reader for, converted to EPUB by Calibre's ``ebook-convert`` when it is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import AudiobookError
from .epub import read_epub
from .model import Book
from .reading import OnProgress

# Formats Calibre reads that we have no reader of our own for (comic-book archives left out: pictures, not text).
CALIBRE_FORMATS = (".azw4", ".chm", ".djvu", ".htmlz", ".lit", ".lrf", ".pdb", ".pml", ".rb", ".snb", ".tcr", ".txtz")
CONVERT_TIMEOUT_S = 900


def ebook_convert() -> str | None:
    """The path of Calibre's ebook-convert, or None when Calibre is not installed."""
    return shutil.which("ebook-convert")


def read_with_calibre(path: Path, our_formats: str, on_progress: OnProgress | None = None, language: str = "") -> Book:
    """Convert ``path`` to EPUB with ebook-convert and read that; refuse with a sentence when Calibre is missing."""
    exe = ebook_convert()
    if exe is None:
        raise AudiobookError(f"{path.name} is a {path.suffix.lower()} book, which this app reads only through Calibre's "
                             f"ebook-convert, and Calibre is not installed; install Debian's calibre package "
                             f"(sudo apt-get install calibre) or convert the book to one of {our_formats}.")
    with tempfile.TemporaryDirectory(prefix="audiobook-convert-") as tmp:
        out = Path(tmp) / f"{path.stem[:80] or 'book'}.epub"
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "CALIBRE_CONFIG_DIRECTORY": str(Path(tmp) / "config")}
        try:
            done = subprocess.run([exe, str(path), str(out), "--max-toc-links", "0"], capture_output=True, text=True, errors="replace",
                                  timeout=CONVERT_TIMEOUT_S, env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise AudiobookError(f"Calibre took more than {CONVERT_TIMEOUT_S // 60} minutes to convert {path.name}; "
                                 "convert it to EPUB yourself and load that.") from None
        said = (done.stdout + done.stderr).strip()
        if "DRMError" in said or "locked by DRM" in said:
            raise AudiobookError(f"{path.name} is protected by DRM; only DRM-free books can be narrated.")
        if done.returncode != 0 or not out.is_file():
            last = next((line for line in reversed(said.splitlines()) if line.strip()), "no message")
            raise AudiobookError(f"Calibre could not convert {path.name} ({last.strip()[:160]}).")
        try:
            book = read_epub(out, on_progress, language)
        except AudiobookError as e:
            raise AudiobookError(str(e).replace(out.name, path.name)) from None
    book.report.converted_by = "Calibre (ebook-convert)"
    book.report.reader = f"{path.suffix.lower().lstrip('.')} through EPUB"
    return book
