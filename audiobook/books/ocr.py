"""Pages that are only pictures (scanned PDF pages, image-only EPUB pages) read with Tesseract OCR.

Tesseract runs as a program (Debian's ``tesseract-ocr`` and one ``tesseract-ocr-LANG`` pack
per language), one page per CPU core at a time, in the book's language. Each page's text is
cached under ``ocr_cache_dir()`` by what was read (the file's bytes and page, or the image's
bytes), the language and the Tesseract version, so a second load of the book is instant.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

from ..errors import AudiobookError
from .reading import OnProgress

OCR_DPI = 300  # Tesseract reads best at about 300 dots per inch
PAGE_TIMEOUT_S = 300
LOW_CONFIDENCE = 70  # a page read with less mean word confidence (0-100) is worth a look
TESSERACT_MISSING = ("Reading scanned pages needs Tesseract OCR, which is not installed; install Debian's "
                     "tesseract-ocr package with its English pack (sudo apt-get install tesseract-ocr tesseract-ocr-eng, or make setup).")
# ISO 639-1 -> Tesseract's language pack names (the Debian package is tesseract-ocr-<name>, "_" as "-").
TESSERACT_LANGUAGES = {
    "en": "eng", "de": "deu", "fr": "fra", "es": "spa", "it": "ita", "pt": "por", "nl": "nld", "ru": "rus",
    "pl": "pol", "sv": "swe", "da": "dan", "no": "nor", "nb": "nor", "nn": "nor", "fi": "fin", "cs": "ces",
    "sk": "slk", "uk": "ukr", "ja": "jpn", "zh": "chi_sim", "ko": "kor", "tr": "tur", "el": "ell", "hu": "hun",
    "ro": "ron", "ca": "cat", "la": "lat", "ar": "ara", "he": "heb", "hi": "hin", "bg": "bul", "hr": "hrv",
    "sl": "slv", "sr": "srp", "lt": "lit", "lv": "lav", "et": "est", "id": "ind", "vi": "vie", "th": "tha",
}
_LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
                   "pt": "Portuguese", "nl": "Dutch", "ru": "Russian", "ja": "Japanese", "zh": "Chinese", "ko": "Korean"}


@dataclass
class OcrPage:
    lines: list[str]  # the page's lines of text, top to bottom; "" between paragraphs
    confidence: float  # Tesseract's mean word confidence, 0-100 (100 for a page without words)
    cached: bool = False


def tesseract() -> str:
    """The path of the tesseract program; a sentence naming the package when it is missing."""
    exe = shutil.which("tesseract")
    if exe is None:
        raise AudiobookError(TESSERACT_MISSING)
    return exe


@lru_cache(maxsize=4)
def _tesseract_facts(exe: str) -> tuple[str, frozenset[str]]:
    """(version line, installed language packs) of one tesseract program."""
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout.split("\n")[0].strip()
        listed = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise AudiobookError(f"Tesseract OCR at {exe} does not run ({e}); reinstall Debian's tesseract-ocr package.") from None
    langs = frozenset(line.strip() for line in listed.splitlines()[1:] if line.strip())
    return version, langs


def ocr_language(book_language: str) -> tuple[str, list[str]]:
    """(Tesseract language, warnings) for a book in ``book_language`` (ISO 639-1, "" when unknown)."""
    _, installed = _tesseract_facts(tesseract())
    code = (book_language or "").split("-")[0].lower()
    want = TESSERACT_LANGUAGES.get(code, "eng")
    warnings = []
    if not code:
        warnings.append("The book does not say its language; its scanned pages were read as English "
                        "(choose the narration language in the settings to read them in another).")
    if want not in installed:
        name = _LANGUAGE_NAMES.get(code, code)
        package = f"tesseract-ocr-{want.replace('_', '-').lower()}"
        if "eng" not in installed:
            raise AudiobookError(f"Tesseract OCR has no pack for {name} or English; install Debian's {package} package.")
        warnings.append(f"Tesseract has no pack for {name}, so the scanned pages were read as English; "
                        f"install Debian's {package} package and load the book again.")
        want = "eng"
    return want, warnings


def ocr_cache_dir() -> Path:
    """Where page texts are cached: $AUDIOBOOK_OCR_CACHE, else the user's cache folder."""
    if os.environ.get("AUDIOBOOK_OCR_CACHE"):
        return Path(os.environ["AUDIOBOOK_OCR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "audiobook" / "ocr"


def _cache_path(key: str) -> Path:
    return ocr_cache_dir() / key[:2] / f"{key}.json"


def _read_cache(key: str) -> OcrPage | None:
    try:
        data = json.loads(_cache_path(key).read_text("utf-8"))
        return OcrPage([str(line) for line in data["lines"]], float(data["confidence"]), cached=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(key: str, page: OcrPage) -> None:
    from ..files import atomic_write_text

    try:
        _cache_path(key).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(_cache_path(key), json.dumps({"lines": page.lines, "confidence": page.confidence}))
    except OSError:
        pass  # a cache that cannot be written only costs time next load


def _parse_tsv(tsv: str) -> OcrPage:
    """Tesseract's TSV output -> the page's lines (words joined in reading order) and mean confidence."""
    lines: dict[tuple[int, int, int], list[str]] = {}
    confidences = []
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        text = (row.get("text") or "").strip()
        if row.get("level") != "5" or not text:
            continue
        lines.setdefault((int(row["block_num"]), int(row["par_num"]), int(row["line_num"])), []).append(text)
        confidences.append(float(row["conf"]))
    out: list[str] = []
    paragraph = None
    for (block, par, _), words in sorted(lines.items()):
        if paragraph is not None and (block, par) != paragraph:
            out.append("")  # Tesseract's paragraphs are kept: a blank line between them
        out.append(" ".join(words))
        paragraph = (block, par)
    return OcrPage(out, sum(confidences) / len(confidences) if confidences else 100.0)


def _run_tesseract(exe: str, image_bytes: bytes, language: str) -> OcrPage:
    with tempfile.TemporaryDirectory(prefix="audiobook-ocr-") as tmp:
        image = Path(tmp) / "page.img"  # PNG or PNM: Tesseract reads the kind from the bytes
        image.write_bytes(image_bytes)
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # one page per core is faster than one page on all cores
        try:
            done = subprocess.run([exe, str(image), "stdout", "-l", language, "--dpi", str(OCR_DPI), "tsv"],
                                  capture_output=True, text=True, errors="replace", timeout=PAGE_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            raise AudiobookError(f"Tesseract OCR took more than {PAGE_TIMEOUT_S} s on one page; the book's scans may be damaged.") from None
    if done.returncode != 0:
        last = next((line for line in reversed(done.stderr.splitlines()) if line.strip()), "no message")
        raise AudiobookError(f"Tesseract OCR failed on a page ({last.strip()[:160]}).")
    return _parse_tsv(done.stdout)


def page_key(*parts: str | bytes) -> str:
    """A cache key of what identifies a page (file digest and page number, or image bytes)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def ocr_pages(pages: Iterable[tuple[str, Callable[[], bytes]]], total: int, language: str,
              on_progress: OnProgress | None = None, what: str = "page") -> list[OcrPage]:
    """OCR each of ``pages`` (key, a function making its image file's bytes) in ``language``, cached by key.

    The images are made one at a time here (PDF rendering is not thread-safe); Tesseract
    reads them on every CPU core. ``on_progress(done, total, sentence)`` after each page.
    """
    exe = tesseract()
    version, _ = _tesseract_facts(exe)
    results: list[OcrPage | None] = [None] * total
    done = 0

    def tell() -> None:
        if on_progress is not None:
            on_progress(done, total, f"Reading scanned {what} {done} of {total} with OCR")

    tell()
    workers = max(1, min(os.cpu_count() or 1, 8))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = {}
        for i, (key, make_image) in enumerate(pages):
            full_key = page_key(key, language, version, str(OCR_DPI))
            cached = _read_cache(full_key)
            if cached is not None:
                results[i] = cached
                done += 1
                tell()
                continue
            pending[pool.submit(_run_tesseract, exe, make_image(), language)] = (i, full_key)
            while len(pending) >= 2 * workers:  # keep a few images in memory, not the whole book
                done += _collect(pending, results)
                tell()
        while pending:
            done += _collect(pending, results)
            tell()
    return [r if r is not None else OcrPage([], 100.0) for r in results]


def _collect(pending: dict, results: list) -> int:
    from concurrent.futures import FIRST_COMPLETED, wait

    finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
    for future in finished:
        i, key = pending.pop(future)
        page = future.result()
        _write_cache(key, page)
        results[i] = page
    return len(finished)


def image_for_ocr(data: bytes) -> bytes:
    """An image file's bytes (PNG, JPEG, GIF, WebP...) as a grey PNM on white, which Tesseract always reads."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
            if picture.mode in ("RGBA", "LA", "P"):
                picture = picture.convert("RGBA")
                white = Image.new("RGBA", picture.size, (255, 255, 255, 255))
                picture = Image.alpha_composite(white, picture)
            grey = picture.convert("L")
    except (UnidentifiedImageError, OSError, ValueError):
        grey = Image.new("L", (8, 8), 255)  # an image Pillow cannot read has no words to find
    out = io.BytesIO()
    grey.save(out, format="PPM")
    return out.getvalue()


def ocr_paragraphs(lines: list[str]) -> list[str]:
    """An OCR page's lines ("" between paragraphs) as paragraphs, words hyphenated at a line end made whole."""
    out, current = [], ""
    for line in lines + [""]:
        if not line:
            if current:
                out.append(current)
            current = ""
        elif current.endswith("-") and current[-2:-1].isalpha() and line[:1].islower():
            current = current[:-1] + line
        else:
            current = f"{current} {line}".strip()
    return out
