"""PDF books: chapters from the outline (bookmarks), else from heading lines; scanned pages read by OCR.

The text is cleaned as a listener needs it: running heads and footers and page numbers
go, words hyphenated at a line end are joined, footnote markers are dropped. Pages that
are only a picture (a scan) are read with Tesseract (``ocr``).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ..errors import AudiobookError
from .common import TocNode, chapter_entries, read_bytes, words_of
from .model import FRONT_MATTER_TITLE, Book, Chapter
from .reading import OnProgress, ReadReport
from .txt import HEADING, split_text_chapters

_ROMAN_PAGE = re.compile(r"^[ivxlc]{1,7}$")
_PAGE_WORD = re.compile(r"^(?:page\s+)?[-\u2013\u2014(\[]?\s*\d{1,4}\s*[-\u2013\u2014)\]]?(?:\s*(?:of|/)\s*\d+)?$", re.IGNORECASE)
_EDGE_LINES = 2  # running headers and footers live in this many lines at each end of a page
_NOTE_MARK = re.compile(r"^[\d*\u2020\u2021\u00a7\u00b6]{1,3}$")
_SCANNED_CHARS = 20  # a page with an image and fewer characters of text than this is a scan


def _number_key(line: str, page: int) -> tuple[str, int] | None:
    """(text around the number, number - page index) of a line that carries a number at one end."""
    m = re.match(r"^(.*?)\s*(\d{1,4})\s*$|^\s*(\d{1,4})\s*(.*)$", line)
    if not m:
        return None
    rest = (m.group(1) if m.group(2) else m.group(4)) or ""
    return _PAGE_WORD.sub("", rest.lower()).strip(), int(m.group(2) or m.group(3)) - page


def _strip_running_lines(pages: list[list[str]], report: ReadReport | None = None) -> list[list[str]]:
    """Remove running heads, footers and page numbers from the first/last lines of each page.

    An edge line goes when its text repeats at the page edge on many pages (the book's
    title), when it repeats on every page or every other page after its first showing
    (a chapter's title as the head of its pages; the first showing is the chapter's
    heading), or when it is a number that counts up with the pages ("12", "Page 12",
    "My Book 12"). "" lines (paragraph breaks of OCR pages) are not counted as edges.
    """
    n = len(pages)
    threshold = max(3, int(0.3 * n)) if n >= 3 else n + 1
    edges = []
    for lines in pages:
        filled = [k for k, line in enumerate(lines) if line]
        edges.append(sorted(set(filled[:_EDGE_LINES] + filled[-_EDGE_LINES:])))
    shown: dict[str, list[int]] = {}  # edge line -> the pages it is on an edge of
    numbered: Counter = Counter()
    for i, lines in enumerate(pages):
        for line in {lines[k] for k in edges[i]}:
            shown.setdefault(line.lower(), []).append(i)
            key = _number_key(line, i)
            if key is not None:
                numbered[key] += 1

    def running(line: str, i: int) -> bool:
        pages_shown = shown.get(line.lower(), [])
        if len(pages_shown) >= threshold or _ROMAN_PAGE.match(line.strip()):
            return True
        at = pages_shown.index(i)
        if at > 0 and pages_shown[at] - pages_shown[at - 1] <= 2 and len(line) <= 80:
            return True
        key = _number_key(line, i)
        return key is not None and (numbered[key] >= threshold or (n < 3 and _PAGE_WORD.match(line.strip()) is not None))

    out = []
    for i, lines in enumerate(pages):
        drop = {k for k in edges[i] if running(lines[k], i)}
        keep = [line for k, line in enumerate(lines) if k not in drop]
        while keep and not keep[-1]:
            keep.pop()
        while keep and not keep[0]:
            keep.pop(0)
        out.append(keep)
        if report is not None:
            report.running_lines += len(drop)
    return out


def _pdf_paragraphs(lines: list[str], report: ReadReport | None = None) -> list[str]:
    """Join PDF lines into paragraphs; a word hyphenated across a line break is made whole."""
    if not lines:
        return []
    lengths = sorted(len(l) for l in lines if l.strip())
    typical = lengths[len(lengths) * 3 // 4] if lengths else 0
    paras, current = [], ""
    for line in lines:
        line = line.strip()
        if not line:
            if current:
                paras.append(current)
            current = ""
            continue
        if current.endswith("-") and re.search(r"[a-zà-ÿ]-$", current) and line[:1].islower():
            current = current[:-1] + line
            if report is not None:
                report.hyphens_joined += 1
        else:
            current = f"{current} {line}".strip()
        # A short line that ends a sentence ends its paragraph.
        if len(line) < 0.8 * typical and re.search(r"[.!?:\"'\u201d)]$", line):
            paras.append(current)
            current = ""
    if current:
        paras.append(current)
    return paras


def _page_text(page, report: ReadReport) -> str:
    """A page's text, footnote markers (small raised digits or signs after a word) left out."""
    pieces: list[tuple[str, float, float]] = []  # (text, font size, baseline height)

    def visit(text, cm, tm, font_dict, font_size):
        scale = abs(tm[3] * cm[3]) or 1.0
        pieces.append((text, float(font_size or 0) * scale, tm[5] * cm[3] + cm[5]))

    page.extract_text(visitor_text=visit)
    sizes: Counter = Counter()
    for text, size, _ in pieces:
        sizes[round(size, 1)] += len(text.strip())
    body = sizes.most_common(1)[0][0] if sizes else 0.0
    out, previous = [], None
    for text, size, y in pieces:
        if previous is not None and _NOTE_MARK.match(text.strip()) and 0 < size < 0.85 * body:
            prev_text, _, prev_y = previous
            if not prev_text.endswith("\n") or 0 < y - prev_y < body:
                report.note_marks += 1
                if text.endswith("\n") and not out[-1].endswith("\n"):
                    out.append(" ")
                continue
        out.append(text)
        if text.strip():
            previous = (text, size, y)
    return "".join(out)


def _pictured(path: Path, candidates: list[int]) -> list[int]:
    """Those of the ``candidates`` pages that draw a picture (an image object, inline or not, in forms too)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    if not candidates:
        return []
    try:
        document = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError:
        return []  # pypdf read it; a file PDFium refuses has no scans we could draw anyway
    try:
        out = []
        for i in candidates:
            page = document[i]
            try:
                if next(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=4), None) is not None:
                    out.append(i)
            finally:
                page.close()
        return out
    finally:
        document.close()


def _ocr_scanned(path: Path, raw: bytes, pages: list[str], scanned: list[int], language: str,
                 report: ReadReport, on_progress: OnProgress | None) -> None:
    """Put the OCR text of the ``scanned`` pages into ``pages``; what it did goes into ``report``."""
    import hashlib
    import io

    import pypdfium2 as pdfium

    from .ocr import LOW_CONFIDENCE, OCR_DPI, ocr_language, ocr_pages

    lang, warnings = ocr_language(language)
    digest = hashlib.sha256(raw).hexdigest()
    try:
        document = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as e:
        raise AudiobookError(f"{path.name} has scanned pages that cannot be drawn for OCR ({e}).") from None

    def image(index: int):
        def make() -> bytes:
            page = document[index]
            try:
                picture = page.render(scale=OCR_DPI / 72, grayscale=True).to_pil()
            finally:
                page.close()
            buffer = io.BytesIO()
            picture.save(buffer, format="PPM")  # fast to write, and Tesseract reads it
            return buffer.getvalue()
        return make

    try:
        read = ocr_pages(((f"pdf:{digest}:{i}", image(i)) for i in scanned), len(scanned), lang, on_progress)
    finally:
        document.close()
    for i, page in zip(scanned, read):
        pages[i] = "\n".join(page.lines or [""])
    report.ocr_pages, report.ocr_cached, report.ocr_language = len(scanned), sum(p.cached for p in read), lang
    report.warnings += warnings
    low = [str(i + 1) for i, p in zip(scanned, read) if p.lines and p.confidence < LOW_CONFIDENCE]
    if low:
        listed = ", ".join(low[:12]) + (f" and {len(low) - 12} more" if len(low) > 12 else "")
        report.warnings.append(f"OCR was unsure of the text of page{'s' if len(low) > 1 else ''} {listed}; check "
                               f"{'them' if len(low) > 1 else 'it'} before a long render.")


def read_pdf(path: Path, on_progress: OnProgress | None = None, language: str = "") -> Book:
    """A PDF: chapters from its outline (bookmarks), else from heading lines.

    Running headers, footers and page numbers are removed; hyphenated line breaks
    are joined; footnote markers are dropped. Scanned pages (a picture and no text)
    are read by OCR in the book's language (else ``language``), with ``on_progress`` told each page.
    """
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PdfReadError

    raw = read_bytes(path)
    report = ReadReport(reader="PDF")
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise AudiobookError(f"{path.name} is protected by a password; save an unprotected copy first.")
        pages = [_page_text(page, report) for page in reader.pages]
    except AudiobookError:
        raise
    except DependencyError as e:  # AES encryption needs a package this install may lack
        raise AudiobookError(f"{path.name} is encrypted in a way that needs another package ({e}); install it into "
                             "the app's environment, or save an unprotected copy of the PDF.") from None
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        raise AudiobookError(f"{path.name} is damaged or not a PDF ({type(e).__name__}).") from e
    except Exception as e:  # pypdf's other complaints (limits, recursion, its own errors) mean the same to a reader
        raise AudiobookError(f"{path.name} is damaged or not a PDF that can be read ({type(e).__name__}).") from None
    report.pages = len(pages)
    scanned = _pictured(path, [i for i, text in enumerate(pages) if len(text.strip()) < _SCANNED_CHARS])
    try:
        lang = str(reader.trailer["/Root"].get("/Lang") or "")
    except Exception:
        lang = ""
    from ..text import base_language

    book_language = base_language(lang) if lang else ""
    if scanned:
        try:
            _ocr_scanned(path, raw, pages, scanned, book_language or language, report, on_progress)
        except AudiobookError as e:
            text_pages = len(pages) - len(scanned)
            if sum(len(p.strip()) for p in pages) < max(20, 10 * text_pages) // 2:
                raise AudiobookError(f"{path.name} is scanned: {e}") from None
            report.warnings.append(f"{len(scanned)} scanned page{'s were' if len(scanned) > 1 else ' was'} left out: {e}")
    if sum(len(p.strip()) for p in pages) < max(20, 10 * len(pages)) // 2:
        raise AudiobookError(f"{path.name} has no text to read: its pages have neither a text layer nor scanned images for OCR.")
    ocr = set(scanned)  # an OCR page keeps its paragraph breaks as "" lines
    page_lines = _strip_running_lines([[line.strip() for line in p.split("\n") if line.strip() or i in ocr]
                                       for i, p in enumerate(pages)], report)
    meta = reader.metadata or {}
    title = str(meta.get("/Title") or "").strip() or path.stem.replace("_", " ")
    author = str(meta.get("/Author") or "").strip()
    chapters = _pdf_outline_chapters(reader, page_lines, report) or _pdf_heading_chapters(page_lines, title, report)
    return Book(title=title, author=author, language=book_language, chapters=chapters, report=report)


def _pdf_outline_chapters(reader, page_lines: list[list[str]], report: ReadReport) -> list[Chapter]:
    def nodes(outline) -> list[TocNode]:
        out: list[TocNode] = []
        for entry in outline:
            if isinstance(entry, list):
                if out:
                    out[-1].children += nodes(entry)
                continue
            try:
                page = reader.get_destination_page_number(entry)
            except Exception:
                page = None
            out.append(TocNode(" ".join(str(entry.title or "").split()), "" if page is None else str(page), []))
        return out

    try:
        entries = chapter_entries(nodes(reader.outline))
    except Exception:
        return []
    starts = sorted({(int(e.href), i) for i, e in enumerate(entries)})
    if not starts:
        return []
    chapters: list[tuple[str, list[str]]] = [(FRONT_MATTER_TITLE, [])]
    bounds = [(page, entries[i].title) for page, i in starts]
    b = 0
    for pno, lines in enumerate(page_lines):
        lines = list(lines)
        while b < len(bounds) and bounds[b][0] == pno:
            title = bounds[b][1]
            at = _find_title_line(lines, title)
            chapters[-1][1].extend(lines[:at])
            lines = lines[at:]
            # The heading lines that repeat the title are spoken as the title.
            title_words = set(words_of(title))
            while lines and set(words_of(lines[0])) <= title_words and len(lines[0]) <= 150:
                lines = lines[1:]
            chapters.append((title, []))
            b += 1
        chapters[-1][1].extend(lines)
    out = []
    for title, lines in chapters:
        text = "\n\n".join(_pdf_paragraphs(lines, report))
        if title == FRONT_MATTER_TITLE and not text:
            continue
        out.append(Chapter(title, text or title))
    return out


def _find_title_line(lines: list[str], title: str) -> int:
    want = " ".join(words_of(title))
    for i, line in enumerate(lines[:12]):
        got = " ".join(words_of(line))
        if got and (got == want or (want.startswith(got) and len(got) > 3)):
            return i
    return 0


def _pdf_heading_chapters(page_lines: list[list[str]], title: str, report: ReadReport) -> list[Chapter]:
    text_lines: list[str] = []
    for lines in page_lines:
        for line in lines:
            if HEADING.match(line) and len(line) <= 100:
                text_lines += ["", line, ""]  # a heading line stands alone, as in a text file
            else:
                text_lines.append(line)
    paragraphs = _pdf_paragraphs(text_lines, report)
    return split_text_chapters("\n\n".join(paragraphs), title)
