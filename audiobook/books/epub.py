"""EPUB 2 and 3 books: spine order, chapters from the nav document or NCX."""

from __future__ import annotations

import posixpath
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from ..errors import AudiobookError
from .common import TocNode, chapter_entries, chapters_from_blocks, drop_title_page, words_of
from .model import FRONT_MATTER_TITLE, Book, Chapter
from .reading import OnProgress, ReadReport
from .xhtml import Block, Split, XhtmlText, local_name, parse_xhtml, tokens

# A spine document whose type, class or file name says it is one of these is not read.
_NON_BODY = {"cover", "toc", "contents", "loft", "lof", "lot", "loi", "copyright", "copyright-page",
             "colophon", "nav", "landmarks", "page-list", "index"}
_FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
def _check_epub_container(path: Path) -> None:
    """Refuse non-zip, damaged and DRM-protected EPUBs with a sentence."""
    from lxml import etree

    if not zipfile.is_zipfile(path):
        raise AudiobookError(f"{path.name} is not a valid EPUB: it is not a zip archive (the file may be truncated or renamed).")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "META-INF/rights.xml" in names or "META-INF/sinf.xml" in names:
                raise AudiobookError(f"{path.name} is protected by DRM; only DRM-free books can be narrated.")
            if "META-INF/encryption.xml" in names:
                root = etree.fromstring(zf.read("META-INF/encryption.xml"))
                algorithms = {m.get("Algorithm") for m in root.iter("{*}EncryptionMethod")}
                if algorithms - _FONT_OBFUSCATION:  # font obfuscation is allowed; anything else is DRM
                    raise AudiobookError(f"{path.name} is protected by DRM (its text is encrypted); only DRM-free books can be narrated.")
            bad = zf.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, etree.XMLSyntaxError, ValueError):
        raise AudiobookError(f"{path.name} is damaged or incomplete and cannot be opened as an EPUB.") from None
    except Exception as e:  # zlib and friends report damage in their own ways
        if isinstance(e, AudiobookError):
            raise
        raise AudiobookError(f"{path.name} is damaged or incomplete and cannot be opened as an EPUB.") from None
    if bad is not None:
        raise AudiobookError(f"{path.name} is damaged or incomplete: its part {bad} cannot be read.")


def _toc_nodes(toc) -> list[TocNode]:
    from ebooklib import epub

    nodes = []
    for entry in toc:
        if isinstance(entry, tuple):
            head, children = entry[0], entry[1]
            nodes.append(TocNode(" ".join((head.title or "").split()), getattr(head, "href", "") or "", _toc_nodes(children)))
        elif isinstance(entry, (epub.Link, epub.Section)):
            nodes.append(TocNode(" ".join((entry.title or "").split()), getattr(entry, "href", "") or "", []))
    return nodes


def _drop_title_headings(blocks: list[Block], title: str) -> list[Block]:
    """Leading headings that only repeat the chapter title are removed (the title is spoken)."""
    title_words = set(words_of(title))
    # Numbers are ignored: a heading "1 Arrival" repeats a contents entry "Arrival".
    while blocks and blocks[0].heading and {w for w in words_of(blocks[0].text) if not w.isdigit()} <= title_words:
        blocks = blocks[1:]
    return blocks


def _is_copyright_page(blocks: list[Block]) -> bool:
    text = " ".join(b.text for b in blocks)
    hits = re.findall(r"©|\ball rights reserved\b|\bisbn\b|\bcopyright\b|\bpublished by\b|\bprinted in\b", text, re.IGNORECASE)
    return len(text.split()) < 300 and len(set(h.lower() for h in hits)) >= 2


def read_epub(path: Path, on_progress: OnProgress | None = None, language: str = "") -> Book:
    """An EPUB 2 or 3 book: spine order, chapters from the nav document or NCX.

    Cover pages, navigation, contents lists and copyright pages are not read;
    footnote markers are removed and inline footnotes are read after their chapter's
    text; page numbers and line numbers are not read. A page that is only an image is
    read by OCR (``on_progress`` hears each image) when the words found look like text.
    """
    import ebooklib
    from ebooklib import epub

    _check_epub_container(path)
    try:
        book = epub.read_epub(str(path), options={"ignore_ncx": False})
    except Exception as e:  # ebooklib raises many kinds of errors on malformed books
        raise AudiobookError(f"{path.name} could not be read as an EPUB ({type(e).__name__}: {str(e)[:120]}).") from e

    entries = [n for n in chapter_entries(_toc_nodes(book.toc))]
    targets: dict[str, dict[str, int]] = {}  # file -> {fragment or "": entry index}
    for i, node in enumerate(entries):
        file, _, frag = unquote(node.href).partition("#")
        targets.setdefault(posixpath.normpath(file), {}).setdefault(frag, i)

    stream: list[Block | Split] = []
    doc_titles: list[tuple[int, str]] = []  # (stream position, <title>) for books without a contents list
    for idref, linear in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() not in (ebooklib.ITEM_DOCUMENT, ebooklib.ITEM_NAVIGATION) or linear == "no":
            continue
        if isinstance(item, epub.EpubNav) or "nav" in (getattr(item, "properties", None) or []):
            continue
        content = item.get_content()
        if not content.strip():
            continue  # an empty chapter file: nothing to read (lxml refuses an empty document)
        try:
            root = parse_xhtml(content)
        except Exception:
            raise AudiobookError(f"{path.name} is damaged: its part {item.file_name} cannot be read as a page; "
                                 "repair the book (for example by converting it with Calibre) and load it again.") from None
        body = next((e for e in root.iter() if local_name(e.tag) == "body"), root)
        stem_tokens = set(re.split(r"[-_. ]+", Path(item.file_name).stem.lower())) - {"index"}
        if (tokens(body, "type", "role", "class") | tokens(root, "type", "role") | stem_tokens) & _NON_BODY:
            continue
        doc_targets = targets.get(posixpath.normpath(unquote(item.file_name)), {})
        walker = XhtmlText({k: v for k, v in doc_targets.items() if k})
        if "" in doc_targets:
            walker.out.append(Split(doc_targets[""]))
        walker.walk(body)
        walker.flush()
        doc = walker.out + walker.notes
        blocks = [b for b in doc if isinstance(b, Block)]
        if not blocks:
            pictures = _pictures(book, item.file_name, body)
            if pictures:  # a page that is only an image (a scanned or drawn page): read by OCR below
                doc.append(_Pictures(pictures, item.file_name))
        if not blocks and not any(isinstance(b, (Split, _Pictures)) for b in doc):
            continue
        if blocks and not any(isinstance(b, Split) for b in doc) and _is_copyright_page(blocks):
            continue
        title_el = next((e for e in root.iter() if local_name(e.tag) == "title"), None)
        doc_titles.append((len(stream), " ".join("".join(title_el.itertext()).split()) if title_el is not None else ""))
        stream += doc

    report = ReadReport(reader="EPUB")
    if any(isinstance(piece, _Pictures) for piece in stream):
        stream = _ocr_pictures(path, stream, _first_meta(book, "language") or language, report, on_progress)
    chapters = _epub_chapters(stream, entries, doc_titles)
    if not chapters:
        raise AudiobookError(f"{path.name} has no readable text (only images, or an empty book).")
    title = _first_meta(book, "title") or path.stem
    creators = [c for c, _ in book.get_metadata("DC", "creator") if c and c.strip()]
    author = " and ".join(creators) if len(creators) <= 2 else ", ".join(creators)
    blocks = [b for b in stream if isinstance(b, Block)]
    if len(chapters) == 1 and sum(b.heading for b in blocks) >= 2:
        # One file under one contents entry (a converted book): its headings make the chapters.
        _, chapters = chapters_from_blocks(drop_title_page(blocks, title, author), title)
    from ..text import base_language

    language = _first_meta(book, "language")
    known = set(words_of(f"{title} {author}"))
    if len(chapters) > 1 and {w for w in words_of(f"{chapters[0].title} {chapters[0].text}") if not w.isdigit()} <= known:
        chapters = chapters[1:]  # a title page: the title and author are in the book's tags, not its narration
    cover, mime = _epub_cover(book)
    year = re.search(r"\b(1[5-9]\d\d|2[01]\d\d)\b", _first_meta(book, "date"))
    return Book(title=" ".join(title.split()), chapters=chapters, author=" ".join(author.split()),
                language=base_language(language) if language else "", cover=cover, cover_mime=mime,
                year=year.group(1) if year else "", genre=" ".join(_first_meta(book, "subject").split()),
                report=report)


@dataclass
class _Pictures:
    """The images of a page that has no text, to be read by OCR."""

    images: list[bytes]
    name: str


def _pictures(book, file_name: str, body) -> list[bytes]:
    """The bytes of the images a page shows (<img src>, SVG <image href>), in page order."""
    out = []
    for el in body.iter():
        tag = local_name(el.tag)
        href = el.get("src") if tag == "img" else next((v for k, v in el.attrib.items() if local_name(k) == "href"), None) if tag == "image" else None
        if not href or href.startswith("data:"):
            continue
        target = posixpath.normpath(posixpath.join(posixpath.dirname(file_name), unquote(href.split("#")[0])))
        item = book.get_item_with_href(target)
        if item is not None and item.get_content():
            out.append(item.get_content())
    return out


def _ocr_pictures(path: Path, stream: list, language: str, report: ReadReport, on_progress: OnProgress | None) -> list:
    """The stream with each image-only page's pictures replaced by the text OCR finds in them.

    Pictures where OCR finds no words, or only words it is unsure of (an illustration),
    are left out. Without Tesseract the pages are left out with a warning.
    """
    from ..text import base_language
    from .ocr import LOW_CONFIDENCE, image_for_ocr, ocr_language, ocr_pages, ocr_paragraphs, page_key

    pictures = [(piece, data) for piece in stream if isinstance(piece, _Pictures) for data in piece.images]
    try:
        lang, warnings = ocr_language(base_language(language) if language else "")
    except AudiobookError as e:
        if not any(isinstance(p, Block) for p in stream):
            raise AudiobookError(f"{path.name} has only images of its pages: {e}") from None
        report.warnings.append(f"{len(pictures)} pages that are only images were left out: {e}")
        return [p for p in stream if not isinstance(p, _Pictures)]
    read = ocr_pages(((f"image:{page_key(data)}", lambda data=data: image_for_ocr(data)) for _, data in pictures),
                     len(pictures), lang, on_progress, what="image")
    text: dict[int, list[Block]] = {}
    kept = 0
    for (piece, _), page in zip(pictures, read):
        words = sum(len(line.split()) for line in page.lines)
        if words >= 3 and page.confidence >= LOW_CONFIDENCE:
            kept += 1
            text.setdefault(id(piece), []).extend(Block(p) for p in ocr_paragraphs(page.lines))
    report.ocr_pages, report.ocr_cached, report.ocr_language = kept, sum(p.cached for p in read), lang
    if kept:
        report.warnings += [w.replace("scanned pages", "image pages") for w in warnings]
    out = []
    for piece in stream:
        out += text.get(id(piece), []) if isinstance(piece, _Pictures) else [piece]
    return out


def _epub_chapters(stream: list, entries: list[TocNode], doc_titles: list[tuple[int, str]]) -> list[Chapter]:
    found = [s.entry for s in stream if isinstance(s, Split)]
    if not found:
        # No usable contents list: one chapter per spine document.
        bounds = [pos for pos, _ in doc_titles] + [len(stream)]
        groups = [(doc_titles[i][1], stream[bounds[i]:bounds[i + 1]]) for i in range(len(doc_titles))]
    else:
        groups, current = [], (None, [])
        for piece in stream:
            if isinstance(piece, Split):
                if piece.entry in [g[0] for g in groups] + [current[0]]:
                    continue  # two entries at one place: the first wins
                groups.append(current)
                current = (piece.entry, [])
            else:
                current[1].append(piece)
        groups.append(current)
        groups = [(entries[e].title if e is not None else None, blocks) for e, blocks in groups]
    chapters = []
    for n, (title, blocks) in enumerate(groups):
        blocks = [b for b in blocks if isinstance(b, Block)]
        if not title:
            if not blocks:
                continue
            first = next((b for b in blocks if b.heading and len(b.text) <= 150), None)
            title = first.text.replace("\n", " ") if first else (FRONT_MATTER_TITLE if n == 0 else f"Chapter {len(chapters) + 1}")
        blocks = _drop_title_headings(blocks, title)
        text = "\n\n".join(b.text for b in blocks)
        chapters.append(Chapter(title, text or title))  # a part title alone is its own short chapter
    return chapters


def _first_meta(book, name: str) -> str:
    values = [v for v, _ in book.get_metadata("DC", name) if v and v.strip()]
    return values[0].strip() if values else ""


def _epub_cover(book) -> tuple[bytes | None, str]:
    import ebooklib

    for item in book.get_items_of_type(ebooklib.ITEM_COVER):
        if item.get_content():
            return item.get_content(), item.media_type or ""
    for _, attrs in book.get_metadata("OPF", "cover"):
        item = book.get_item_with_id(attrs.get("content", "")) if attrs else None
        if item is not None and (item.media_type or "").startswith("image/"):
            return item.get_content(), item.media_type
    for item in book.get_items_of_type(ebooklib.ITEM_IMAGE):
        if "cover" in item.file_name.lower():
            return item.get_content(), item.media_type or ""
    return None, ""
