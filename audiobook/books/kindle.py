"""Kindle books (.mobi, .azw3, .azw, .prc), unpacked with the ``mobi`` package and read as an EPUB.

A KF8 book (azw3, and the new half of a joint mobi) unpacks to an EPUB, read by the EPUB
reader; an old MOBI 7 book unpacks to one HTML file and its OPF, read like an HTML book
with the OPF's metadata and cover.
"""

from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path

from ..errors import AudiobookError
from .common import read_bytes
from .epub import read_epub
from .html import html_book
from .model import Book
from .reading import OnProgress, ReadReport
from .xhtml import local_name

def check_kindle(path: Path, raw: bytes) -> None:
    """Refuse what is not a Kindle book, and a DRM-protected one, with a sentence."""
    if len(raw) < 78 + 8 or raw[60:68] not in (b"BOOKMOBI", b"TEXtREAd"):
        raise AudiobookError(f"{path.name} is not a Kindle (MOBI/AZW3) book: its header is not one.")
    (record0,) = struct.unpack(">I", raw[78:82])
    if record0 + 14 > len(raw):
        raise AudiobookError(f"{path.name} is damaged or incomplete and cannot be opened as a Kindle book.")
    (encryption,) = struct.unpack(">H", raw[record0 + 12:record0 + 14])
    if encryption:
        raise AudiobookError(f"{path.name} is protected by DRM; only DRM-free books can be narrated.")


def _mobi7_book(folder: Path, name: str) -> Book:
    """An unpacked MOBI 7 book: its one HTML file (headings made of big bold type become headings;
    the printed contents page at the end is cut off) with the title, author, language and cover of its OPF."""
    from lxml import etree, html as lxml_html

    page = next(folder.glob("*.html"))
    text = page.read_text("utf-8", errors="replace")
    toc = re.search(r'<reference[^>]*type="toc"[^>]*filepos=0*(\d+)', text)
    ncx = (folder / "toc.ncx").read_text("utf-8", errors="replace") if (folder / "toc.ncx").exists() else ""
    targets = [int(n) for n in re.findall(r'filepos(\d+)"', ncx)]
    if toc and targets and int(toc.group(1)) > max(targets):
        cut = text.find(f'<a id="filepos{toc.group(1)}"')
        if cut > 0:
            text = text[:cut] + "</body></html>"
    sizes = {"7": 1, "6": 2, "5": 3, "4": 4}
    text = re.sub(r'<p\b[^>]*>\s*<font size="([4-7])">\s*<b>(.*?)</b>\s*</font>\s*</p>',
                  lambda m: f"<h{sizes[m.group(1)]}>{m.group(2)}</h{sizes[m.group(1)]}>", text, flags=re.S)
    opf = etree.fromstring((folder / "content.opf").read_bytes(), etree.XMLParser(recover=True, resolve_entities=False, no_network=True))

    def dc(name: str) -> list[str]:
        return [" ".join("".join(e.itertext()).split()) for e in opf.iter() if local_name(e.tag) == name and "".join(e.itertext()).strip()]

    title = (dc("title") or [name])[0]
    creators = dc("creator")
    author = " and ".join(creators) if len(creators) <= 2 else ", ".join(creators)
    book = html_book(lxml_html.document_fromstring(text.encode("utf-8")), title, "Kindle (mobi)", known=(title, author))
    from ..text import base_language

    book.title, book.author = title, author
    lang = (dc("language") or [""])[0]
    book.language = base_language(lang) if lang else ""
    year = re.search(r"\b(1[5-9]\d\d|2[01]\d\d)\b", " ".join(dc("date")))
    book.year = year.group(1) if year else ""
    cover_id = next((e.get("content") for e in opf.iter() if local_name(e.tag) == "meta" and e.get("name") == "cover"), None)
    item = next((e for e in opf.iter() if local_name(e.tag) == "item" and e.get("id") == cover_id), None) if cover_id else None
    if item is not None and (folder / item.get("href", "")).is_file():
        book.cover, book.cover_mime = (folder / item.get("href")).read_bytes(), item.get("media-type") or ""
    return book


def read_kindle(path: Path, on_progress: OnProgress | None = None, language: str = "") -> Book:
    """A DRM-free Kindle book: chapters from its contents, title, author, language and cover from its metadata."""
    import mobi
    from loguru import logger

    check_kindle(path, read_bytes(path))
    logger.disable("mobi")  # its unpacking log is not for our users
    try:
        tmp, unpacked = mobi.extract(str(path))
    except Exception as e:  # the unpacker reports damage in many ways
        raise AudiobookError(f"{path.name} could not be unpacked as a Kindle book ({type(e).__name__}: {str(e)[:120]}).") from None
    try:
        unpacked = Path(unpacked)
        if unpacked.suffix.lower() == ".epub":
            book = read_epub(unpacked, on_progress, language)
        elif unpacked.suffix.lower() in (".html", ".htm") and (unpacked.parent / "content.opf").exists():
            book = _mobi7_book(unpacked.parent, path.stem.replace("_", " "))
        else:
            raise AudiobookError(f"{path.name} holds a kind of Kindle book this app cannot read ({unpacked.suffix or 'no text'}); "
                                 "convert it to EPUB with Calibre and load that.")
    except AudiobookError as e:
        raise AudiobookError(str(e).replace(unpacked.name, path.name)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    book.report = ReadReport(reader="Kindle (mobi/azw3)")
    if book.title == unpacked.stem:
        book.title = path.stem.replace("_", " ")
    return book
