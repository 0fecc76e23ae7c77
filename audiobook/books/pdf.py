"""Text PDFs: chapters from the outline (bookmarks), else from heading lines."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ..errors import AudiobookError
from .common import TocNode, chapter_entries, read_bytes, words_of
from .model import FRONT_MATTER_TITLE, Book, Chapter
from .txt import HEADING, split_text_chapters

_ROMAN_PAGE = re.compile(r"^[ivxlc]{1,7}$")
_PAGE_WORD = re.compile(r"^(?:page\s+)?[-\u2013\u2014(\[]?\s*\d{1,4}\s*[-\u2013\u2014)\]]?(?:\s*(?:of|/)\s*\d+)?$", re.IGNORECASE)
_EDGE_LINES = 2  # running headers and footers live in this many lines at each end of a page


def _strip_running_lines(pages: list[list[str]]) -> list[list[str]]:
    """Remove running headers, footers and page numbers from the first/last lines of each page.

    A line goes when its text repeats at the page edge on many pages, or when it is a
    number that counts up with the pages ("12", "Page 12", "My Book 12").
    """
    n = len(pages)
    threshold = max(3, int(0.3 * n)) if n >= 3 else n + 1
    exact: Counter = Counter()
    numbered: Counter = Counter()  # (text around the number, number - page index)
    for i, lines in enumerate(pages):
        edge = set(lines[:_EDGE_LINES] + lines[-_EDGE_LINES:])
        for line in edge:
            exact[line.lower()] += 1
            m = re.match(r"^(.*?)\s*(\d{1,4})\s*$|^\s*(\d{1,4})\s*(.*)$", line)
            if m:
                rest = (m.group(1) if m.group(2) else m.group(4)) or ""
                num = int(m.group(2) or m.group(3))
                numbered[(_PAGE_WORD.sub("", rest.lower()).strip(), num - i)] += 1
    out = []
    for i, lines in enumerate(pages):
        def running(line: str) -> bool:
            if exact[line.lower()] >= threshold or _ROMAN_PAGE.match(line.strip()):
                return True
            m = re.match(r"^(.*?)\s*(\d{1,4})\s*$|^\s*(\d{1,4})\s*(.*)$", line)
            if not m:
                return False
            rest = (m.group(1) if m.group(2) else m.group(4)) or ""
            key = (_PAGE_WORD.sub("", rest.lower()).strip(), int(m.group(2) or m.group(3)) - i)
            return numbered[key] >= threshold or (n < 3 and _PAGE_WORD.match(line.strip()) is not None)

        keep = list(lines)
        for _ in range(_EDGE_LINES):
            if keep and running(keep[0]):
                keep.pop(0)
            if keep and running(keep[-1]):
                keep.pop()
        out.append(keep)
    return out


def _pdf_paragraphs(lines: list[str]) -> list[str]:
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
        else:
            current = f"{current} {line}".strip()
        # A short line that ends a sentence ends its paragraph.
        if len(line) < 0.8 * typical and re.search(r"[.!?:\"'\u201d)]$", line):
            paras.append(current)
            current = ""
    if current:
        paras.append(current)
    return paras


def read_pdf(path: Path) -> Book:
    """A text PDF: chapters from its outline (bookmarks), else from heading lines.

    Running headers, footers and page numbers are removed; hyphenated line breaks
    are joined. A PDF with no text layer (a scan) is refused with advice.
    """
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PdfReadError

    read_bytes(path)
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise AudiobookError(f"{path.name} is protected by a password; save an unprotected copy first.")
        pages = [(page.extract_text() or "") for page in reader.pages]
    except AudiobookError:
        raise
    except DependencyError as e:  # AES encryption needs a package this install may lack
        raise AudiobookError(f"{path.name} is encrypted in a way that needs another package ({e}); install it into "
                             "the app's environment, or save an unprotected copy of the PDF.") from None
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        raise AudiobookError(f"{path.name} is damaged or not a PDF ({type(e).__name__}).") from e
    except Exception as e:  # pypdf's other complaints (limits, recursion, its own errors) mean the same to a reader
        raise AudiobookError(f"{path.name} is damaged or not a PDF that can be read ({type(e).__name__}).") from None
    if sum(len(p.strip()) for p in pages) < max(20, 10 * len(pages)) // 2:
        raise AudiobookError(f"{path.name} has no text layer (it is probably scanned); run OCR first, for example with ocrmypdf.")
    page_lines = _strip_running_lines([[l.strip() for l in p.split("\n") if l.strip()] for p in pages])
    meta = reader.metadata or {}
    title = str(meta.get("/Title") or "").strip() or path.stem.replace("_", " ")
    author = str(meta.get("/Author") or "").strip()
    try:
        lang = str(reader.trailer["/Root"].get("/Lang") or "")
    except Exception:
        lang = ""
    from ..text import base_language

    chapters = _pdf_outline_chapters(reader, page_lines) or _pdf_heading_chapters(page_lines, title)
    return Book(title=title, author=author, language=base_language(lang) if lang else "", chapters=chapters)


def _pdf_outline_chapters(reader, page_lines: list[list[str]]) -> list[Chapter]:
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
        text = "\n\n".join(_pdf_paragraphs(lines))
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


def _pdf_heading_chapters(page_lines: list[list[str]], title: str) -> list[Chapter]:
    text_lines: list[str] = []
    for lines in page_lines:
        for line in lines:
            if HEADING.match(line) and len(line) <= 100:
                text_lines += ["", line, ""]  # a heading line stands alone, as in a text file
            else:
                text_lines.append(line)
    paragraphs = _pdf_paragraphs(text_lines)
    return split_text_chapters("\n\n".join(paragraphs), title)
