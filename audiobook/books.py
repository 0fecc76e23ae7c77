"""Reading books (txt, md, epub, pdf, json) into a Book of ordered chapters.

``load_book(path)`` picks the reader by extension; every problem with the file comes
back as one ``AudiobookError`` sentence. The chapter edit functions (rename, merge,
drop, reorder, set text) return a new ``Book`` so the caller can keep or undo them,
and ``save_book_json`` writes the edited book in the project's JSON book format,
which ``load_book`` reads back unchanged.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote

from .errors import AudiobookError

BOOK_FORMAT_VERSION = 1
BOOK_EXTENSIONS = (".txt", ".md", ".markdown", ".epub", ".pdf", ".json")
# Where nothing better is known the book says this about its front matter.
FRONT_MATTER_TITLE = "Opening"


@dataclass
class Chapter:
    """One chapter: its title and its text, paragraphs separated by a blank line.

    Inside a paragraph a single newline is a line break that carries meaning (poetry).
    """

    title: str
    text: str

    @property
    def words(self) -> int:
        return len(self.text.split())


@dataclass
class Book:
    """A book as the renderer sees it."""

    title: str
    chapters: list[Chapter] = field(default_factory=list)
    author: str = ""
    language: str = ""  # ISO 639-1 code such as "en", or "" when unknown
    cover: bytes | None = None  # image bytes
    cover_mime: str = ""
    year: str = ""  # publication year, for the audiobook's tags
    genre: str = ""

    @property
    def words(self) -> int:
        return sum(c.words for c in self.chapters)

    def to_dict(self) -> dict:
        """The JSON book format: plain data that ``from_dict`` turns back into an equal Book."""
        return {
            "format": "audiobook-book",
            "version": BOOK_FORMAT_VERSION,
            "title": self.title,
            "author": self.author,
            "language": self.language,
            "cover_mime": self.cover_mime,
            "cover_base64": base64.b64encode(self.cover).decode("ascii") if self.cover else "",
            "year": self.year,
            "genre": self.genre,
            "chapters": [{"title": c.title, "text": c.text} for c in self.chapters],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Book":
        """Build a Book from the JSON book format; raise AudiobookError when it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("chapters"), list):
            raise AudiobookError('This JSON file is not a book: it needs a "chapters" list of {"title", "text"} objects.')
        if data.get("version", BOOK_FORMAT_VERSION) not in (BOOK_FORMAT_VERSION,):
            raise AudiobookError(f"This JSON book has format version {data.get('version')!r}; this app reads version {BOOK_FORMAT_VERSION}.")
        chapters = []
        for i, c in enumerate(data["chapters"], 1):
            if not isinstance(c, dict) or not isinstance(c.get("text"), str):
                raise AudiobookError(f'Chapter {i} of this JSON book has no "text".')
            title = c.get("title")
            if title is not None and not isinstance(title, str):
                raise AudiobookError(f'The "title" of chapter {i} of this JSON book must be text.')
            chapters.append(Chapter(title=title if title else f"Chapter {i}", text=c["text"]))
        try:
            cover = base64.b64decode(data["cover_base64"], validate=True) if data.get("cover_base64") else None
        except (binascii.Error, TypeError, ValueError):
            raise AudiobookError('The "cover_base64" of this JSON book is not valid base64.') from None
        return cls(
            title=str(data.get("title") or "Untitled"),
            author=str(data.get("author") or ""),
            language=str(data.get("language") or ""),
            cover=cover,
            cover_mime=str(data.get("cover_mime") or ""),
            year=str(data.get("year") or ""),
            genre=str(data.get("genre") or ""),
            chapters=chapters,
        )


# ---------------------------------------------------------------- chapter edits
# Pure functions: each returns a new Book and leaves its argument as it was.
# Chapter indexes are 0-based, like Chunk.chapter; messages count from 1 for the user.


def _check_index(book: Book, index: int) -> None:
    if not isinstance(index, int) or not 0 <= index < len(book.chapters):
        raise AudiobookError(f"There is no chapter {index + 1 if isinstance(index, int) else index}; the book has {len(book.chapters)}.")


def rename_chapter(book: Book, index: int, title: str) -> Book:
    """A copy of ``book`` whose chapter ``index`` is called ``title``."""
    _check_index(book, index)
    if not title.strip():
        raise AudiobookError("A chapter title cannot be empty.")
    chapters = list(book.chapters)
    chapters[index] = replace(chapters[index], title=title.strip())
    return replace(book, chapters=chapters)


def set_chapter_text(book: Book, index: int, text: str) -> Book:
    """A copy of ``book`` whose chapter ``index`` has ``text`` (paragraphs split by a blank line)."""
    _check_index(book, index)
    if not text.strip():
        raise AudiobookError("A chapter needs some text; drop the chapter instead.")
    chapters = list(book.chapters)
    chapters[index] = replace(chapters[index], text=text.strip())
    return replace(book, chapters=chapters)


def merge_chapters(book: Book, indexes: list[int]) -> Book:
    """A copy of ``book`` where the chapters ``indexes`` become one, at the first one's place.

    The merged chapter keeps the first chapter's title; the texts follow in book
    order, and the later chapters' titles stay as paragraphs so no word is lost.
    """
    wanted = sorted(set(indexes))
    if len(wanted) < 2:
        raise AudiobookError("Pick at least two chapters to merge.")
    for i in wanted:
        _check_index(book, i)
    first = book.chapters[wanted[0]]
    parts = [first.text] + [f"{book.chapters[i].title}\n\n{book.chapters[i].text}" for i in wanted[1:]]
    merged = Chapter(first.title, "\n\n".join(p for p in parts if p.strip()))
    chapters = [merged if i == wanted[0] else c for i, c in enumerate(book.chapters) if i == wanted[0] or i not in wanted]
    return replace(book, chapters=chapters)


def drop_chapters(book: Book, indexes: list[int]) -> Book:
    """A copy of ``book`` without the chapters ``indexes``; at least one chapter must stay."""
    for i in indexes:
        _check_index(book, i)
    chapters = [c for i, c in enumerate(book.chapters) if i not in set(indexes)]
    if not chapters:
        raise AudiobookError("A book needs at least one chapter; keep one.")
    return replace(book, chapters=chapters)


def reorder_chapters(book: Book, order: list[int]) -> Book:
    """A copy of ``book`` whose chapters come in ``order`` (a list of every index once)."""
    if sorted(order) != list(range(len(book.chapters))):
        raise AudiobookError(f"A new chapter order must name each of the {len(book.chapters)} chapters exactly once.")
    return replace(book, chapters=[book.chapters[i] for i in order])


# ---------------------------------------------------------------- plain text and markdown

_NUMBER_WORDS = (
    r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|"
    r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last|final"
)
# A heading is a short line on its own: "Chapter 12", "CHAPTER XII.", "Part One: Arrival",
# "Prologue", or a Markdown-style "# Title".
_HEADING = re.compile(
    rf"^\s*(?:#{{1,3}}\s+\S.*"
    rf"|(?:chapter|part|book|volume|section|act|canto|letter|stave)\s+(?:\d+|[ivxlcdm]+|(?:{_NUMBER_WORDS})(?:[- ](?:one|two|three|four|five|six|seven|eight|nine))?)\b"
    rf"\.?(?:\s*[:.\-\u2013\u2014]\s*\S.{{0,80}}|\s+\S.{{0,80}})?"
    r"|prologue|epilogue|preface|foreword|afterword|introduction|interlude|appendix(?:\s+\w+)?)\s*[.:]?\s*$",
    re.IGNORECASE,
)
_GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)
_GUTENBERG_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)


def _decode_text(raw: bytes, name: str) -> str:
    """Bytes of a text file -> str; binary data is refused with a sentence."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16", errors="replace")
    sample = raw[:65536]
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
    if b"\x00" in sample or (sample and controls / len(sample) > 0.05):
        raise AudiobookError(f"{name} is not a text file: it contains binary data.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")  # the usual legacy encoding of old e-texts


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AudiobookError(f"Could not read {path.name}: {e.strerror or e}.") from None
    if not raw.strip():
        raise AudiobookError(f"{path.name} is empty: there is no text to narrate.")
    return raw


def _is_heading_block(lines: list[str]) -> bool:
    # "Chapter two of her life began." is a sentence, not a heading.
    sentence = len(lines[0].split()) > 3 and re.search(r"[.!?,;]\W*$", lines[0])
    return len(lines) <= 2 and all(len(line) <= 100 for line in lines) and bool(_HEADING.match(lines[0])) and not sentence


def _is_subtitle(lines: list[str]) -> bool:
    return len(lines) == 1 and len(lines[0]) <= 70 and not re.search(r"[.!?,;]\W*$", lines[0])


def split_text_chapters(text: str, fallback_title: str) -> list[Chapter]:
    """Plain text -> chapters at heading lines; paragraphs are blocks between blank lines.

    Hard-wrapped lines inside a paragraph are joined. A heading such as "CHAPTER I."
    followed by a short title line becomes "CHAPTER I. Down the Rabbit-Hole". A
    contents list (headings with no text that reappear later) is not made into chapters.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks = [[line.strip() for line in b.split("\n") if line.strip()] for b in re.split(r"\n[ \t\f\v]*\n", text)]
    blocks = [b for b in blocks if b]
    chapters: list[tuple[str | None, list[str]]] = [(None, [])]
    i = 0
    while i < len(blocks):
        lines = blocks[i]
        if _is_heading_block(lines) or (lines[0].startswith("#") and _HEADING.match(lines[0])):
            heading = lines[0].lstrip("#").strip()
            rest = lines[1:]
            if rest and not lines[0].startswith("#"):
                heading, rest = f"{heading.rstrip(':')}: {rest[0]}" if not heading.endswith(".") else f"{heading} {rest[0]}", []
            elif not rest and i + 1 < len(blocks) and _is_subtitle(blocks[i + 1]) and not _HEADING.match(blocks[i + 1][0]) and re.fullmatch(r"\w+\s+\S+\.?", heading):
                heading = f"{heading} {blocks[i + 1][0]}" if heading.endswith(".") else f"{heading}: {blocks[i + 1][0]}"
                i += 1
            chapters.append((heading, [" ".join(rest)] if rest else []))
        else:
            chapters[-1][1].append(" ".join(lines))
        i += 1
    titled = [" ".join(_words_of(t)) for t, paras in chapters if t and paras]
    out = []
    for n, (title, paras) in enumerate(chapters):
        if not paras:
            key = " ".join(_words_of(title or ""))
            if title is None or any(t == key or t.startswith(key + " ") for t in titled):
                continue  # a contents line, or nothing before the first heading
            paras = [title]  # a heading alone (a part title): it is its own short chapter
        out.append(Chapter(title or (fallback_title if n == 0 and len(chapters) == 1 else FRONT_MATTER_TITLE), "\n\n".join(paras)))
    return out


def read_txt(path: Path) -> Book:
    """A plain-text book: chapters start at heading lines such as 'Chapter 1' or '# Title'."""
    text = _decode_text(_read_bytes(path), path.name)
    start, end = _GUTENBERG_START.search(text), _GUTENBERG_END.search(text)
    if start and end and start.end() < end.start():
        text = text[start.end():end.start()]  # the licence around a Project Gutenberg text is not the book
    title = path.stem.replace("_", " ")
    chapters = split_text_chapters(text, title)
    if not chapters:
        raise AudiobookError(f"{path.name} is empty: there is no text to narrate.")
    return Book(title=title, chapters=chapters)


def read_markdown(path: Path) -> Book:
    """A Markdown book: chapters at the top heading level; a lone '# Title' names the book."""
    from markdown_it import MarkdownIt

    text = _decode_text(_read_bytes(path), path.name)
    tokens = MarkdownIt("commonmark").parse(text)
    items: list[tuple[int, str]] = []  # (heading level or 0 for a paragraph, text)
    for i, tok in enumerate(tokens):
        if tok.type == "inline":
            level = int(tokens[i - 1].tag[1]) if tokens[i - 1].type == "heading_open" else 0
            items.append((level, _markdown_inline(tok)))
        elif tok.type in ("fence", "code_block"):
            items.append((0, tok.content.strip()))
        elif tok.type == "html_block":
            items.append((0, re.sub(r"<[^>]+>", " ", tok.content).strip()))
    items = [(lv, t) for lv, t in items if t.strip()]
    levels = Counter(lv for lv, _ in items if lv)
    title = path.stem.replace("_", " ")
    split_level = min(levels) if levels else 0
    if split_level and levels[split_level] == 1 and any(lv > split_level for lv in levels):
        title = next(t for lv, t in items if lv == split_level)  # "# Book title" over "## Chapter"s
        items = [(lv, t) for lv, t in items if lv != split_level]
        split_level = min(lv for lv in levels if lv > split_level)
    chapters: list[Chapter] = []
    current, paras = None, []
    for level, value in items:
        if level and level <= split_level:
            if current is not None or paras:
                chapters.append(Chapter(current or FRONT_MATTER_TITLE, "\n\n".join(paras) or current or ""))
            current, paras = value, []
        else:
            paras.append(value)
    if current is not None or paras:
        chapters.append(Chapter(current or title, "\n\n".join(paras) or current or ""))
    chapters = [c for c in chapters if c.text.strip()]
    if not chapters:
        raise AudiobookError(f"{path.name} is empty: there is no text to narrate.")
    return Book(title=title, chapters=chapters)


def _markdown_inline(token) -> str:
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
        # images, raw HTML and link targets are not read aloud; link text is a text child
    return " ".join("".join(parts).split(" ")).strip()


# ---------------------------------------------------------------- epub

_XHTML_BLOCKS = {
    "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "pre", "section", "article",
    "header", "footer", "figure", "figcaption", "table", "tr", "td", "th", "dt", "dd", "ul", "ol", "dl",
    "body", "hr", "address", "center", "main", "aside", "caption", "hgroup", "details", "summary",
}
_XHTML_SKIP = {"script", "style", "head", "nav", "svg", "math", "rt", "rp", "template", "noscript",
               "object", "iframe", "audio", "video", "button", "input", "select", "textarea", "img"}
# epub:type / role values of things a listener should not hear in the flow of the text.
_SKIP_TYPES = {"pagebreak", "noteref", "toc", "landmarks", "page-list", "loi", "lot", "lof", "index",
               "doc-pagebreak", "doc-noteref", "doc-toc", "doc-pagelist", "doc-index", "doc-backlink", "backlink"}
_NOTE_TYPES = {"footnote", "endnote", "note", "rearnote", "doc-footnote", "doc-endnote"}
_SKIP_CLASSES = {"lnum", "linenum", "linenumber", "line-number", "pagenum", "page-number", "pagenumber", "pageno"}
# A spine document whose type, class or file name says it is one of these is not read.
_NON_BODY = {"cover", "toc", "contents", "loft", "lof", "lot", "loi", "copyright", "copyright-page",
             "colophon", "nav", "landmarks", "page-list", "index"}
_LINE_GROUP_CLASSES = {"linegroup", "stanza", "poem", "verse", "lg", "line-group"}
_NOTE_MARK = re.compile(r"^\W{0,2}(?:\d{1,3}|[*\u2020\u2021\u00a7\u00b6#]{1,3}|[a-z]|[ivx]{1,4})\W{0,2}$", re.IGNORECASE)
_FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
_LINE_BREAK = "\ue000"  # stands for <br> while whitespace is collapsed (not itself whitespace)


@dataclass
class _Block:
    text: str
    heading: bool = False


@dataclass
class _Split:
    entry: int  # index of the table-of-contents entry that starts here


@dataclass
class _TocNode:
    title: str
    href: str
    children: list["_TocNode"]


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _tokens(el, *names: str) -> set[str]:
    out: set[str] = set()
    for key, value in el.attrib.items():
        if _local(key) in names or key in names:
            out.update(value.lower().split())
    return out


class _XhtmlText:
    """Walks one XHTML document and emits paragraph blocks and chapter split marks."""

    def __init__(self, targets: dict[str, int]):
        self.targets = targets
        self.out: list[_Block | _Split] = []
        self.notes: list[_Block] = []
        self.buf: list[str] = []

    def flush(self, heading: bool = False) -> None:
        text = re.sub(r"\s+", " ", "".join(self.buf))
        text = re.sub(rf" ?{_LINE_BREAK} ?", "\n", text).strip()
        self.buf = []
        if text:
            self.out.append(_Block(text, heading))

    def walk(self, el, inline: bool = False) -> None:
        tag = _local(el.tag)
        if el.get("id") in self.targets:
            self.flush()
            self.out.append(_Split(self.targets[el.get("id")]))
        types = _tokens(el, "type", "role")
        if not tag or tag in _XHTML_SKIP or types & _SKIP_TYPES or _tokens(el, "class") & _SKIP_CLASSES or self._is_note_mark(el, tag, types):
            pass  # not read; its tail still is
        elif tag == "aside" and types & _NOTE_TYPES:
            inner = _XhtmlText({})
            inner.walk_children(el)
            inner.flush()
            self.notes += [b for b in inner.out if isinstance(b, _Block)]  # read after the chapter's text
        elif tag == "br":
            self.buf.append(_LINE_BREAK)
        elif tag in _XHTML_BLOCKS and not inline:
            self.flush()
            if self._is_line_group(el):
                self.buf.append(el.text or "")
                for child in el:
                    self.walk(child, inline=True)
                    self.buf.append(_LINE_BREAK)
            else:
                self.walk_children(el)
            self.flush(heading=tag in ("h1", "h2", "h3", "h4", "h5", "h6"))
        else:
            self.walk_children(el, inline)
        if el.tail:
            self.buf.append(el.tail)

    def walk_children(self, el, inline: bool = False) -> None:
        if el.text:
            self.buf.append(el.text)
        for child in el:
            self.walk(child, inline)

    @staticmethod
    def _is_note_mark(el, tag: str, types: set[str]) -> bool:
        """A footnote reference such as <a href="#n1"><sup>1</sup></a>: a marker, not words."""
        if tag not in ("a", "sup") or "#" not in (el.get("href") or "#" if tag == "sup" else el.get("href") or ""):
            return False
        text = "".join(el.itertext()).strip()
        if not _NOTE_MARK.match(text):
            return False
        parent = el.getparent()
        classes = " ".join(_tokens(el, "class"))
        links = tag == "a" or el.find(".//{*}a") is not None or el.find(".//a") is not None
        return links and ("note" in classes or "fn" in classes or tag == "sup"
                          or (parent is not None and _local(parent.tag) == "sup") or el.find(".//{*}sup") is not None
                          or el.find(".//sup") is not None or text.startswith(("[", "(")) or not text.isalnum())

    @staticmethod
    def _is_line_group(el) -> bool:
        """A poem's stanza: a block whose children are all one-line blocks."""
        children = [c for c in el if isinstance(c.tag, str)]
        if len(children) < 2 or (el.text or "").strip():
            return False
        marked = bool(_tokens(el, "class") & _LINE_GROUP_CLASSES)
        for child in children:
            if _local(child.tag) not in ("div", "p", "span") or (_local(child.tag) == "p" and not marked):
                return False
            if any(_local(d.tag) in _XHTML_BLOCKS for d in child.iterdescendants() if isinstance(d.tag, str)):
                return False
            if not marked and len("".join(child.itertext())) > 120:
                return False
        return marked or all(_local(c.tag) == "div" for c in children)


def _parse_xhtml(content: bytes):
    from lxml import etree, html

    try:
        root = etree.fromstring(content, etree.XMLParser(recover=True, resolve_entities=False, huge_tree=True, no_network=True))
    except etree.XMLSyntaxError:
        root = None
    if root is None:
        root = html.document_fromstring(content)
    return root


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


def _toc_nodes(toc) -> list[_TocNode]:
    from ebooklib import epub

    nodes = []
    for entry in toc:
        if isinstance(entry, tuple):
            head, children = entry[0], entry[1]
            nodes.append(_TocNode(" ".join((head.title or "").split()), getattr(head, "href", "") or "", _toc_nodes(children)))
        elif isinstance(entry, (epub.Link, epub.Section)):
            nodes.append(_TocNode(" ".join((entry.title or "").split()), getattr(entry, "href", "") or "", []))
    return nodes


def _linked(nodes: list[_TocNode]) -> list[_TocNode]:
    """The entries of one level that point somewhere; an entry without a link is see-through."""
    out = []
    for node in nodes:
        if node.href:
            out.append(node)
        else:
            out += _linked(node.children)
    return out


def chapter_entries(nodes: list[_TocNode]) -> list[_TocNode]:
    """The table-of-contents entries that become chapters.

    The top level, except that a lone wrapper entry ("Section IV" holding every story)
    is looked through: it stays as its own (usually short) chapter and its children
    become chapters too. Deeper entries stay inside their chapter.
    """
    out: list[_TocNode] = []
    level = _linked(nodes)
    while len(level) == 1 and _linked(level[0].children):
        out.append(level[0])
        level = _linked(level[0].children)
    return out + level


def _words_of(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _drop_title_headings(blocks: list[_Block], title: str) -> list[_Block]:
    """Leading headings that only repeat the chapter title are removed (the title is spoken)."""
    title_words = set(_words_of(title))
    # Numbers are ignored: a heading "1 Arrival" repeats a contents entry "Arrival".
    while blocks and blocks[0].heading and {w for w in _words_of(blocks[0].text) if not w.isdigit()} <= title_words:
        blocks = blocks[1:]
    return blocks


def _is_copyright_page(blocks: list[_Block]) -> bool:
    text = " ".join(b.text for b in blocks)
    hits = re.findall(r"©|\ball rights reserved\b|\bisbn\b|\bcopyright\b|\bpublished by\b|\bprinted in\b", text, re.IGNORECASE)
    return len(text.split()) < 300 and len(set(h.lower() for h in hits)) >= 2


def read_epub(path: Path) -> Book:
    """An EPUB 2 or 3 book: spine order, chapters from the nav document or NCX.

    Cover pages, navigation, contents lists and copyright pages are not read;
    footnote markers are removed and inline footnotes are read after their chapter's
    text; page numbers and line numbers are not read.
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

    stream: list[_Block | _Split] = []
    doc_titles: list[tuple[int, str]] = []  # (stream position, <title>) for books without a contents list
    for idref, linear in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() not in (ebooklib.ITEM_DOCUMENT, ebooklib.ITEM_NAVIGATION) or linear == "no":
            continue
        if isinstance(item, epub.EpubNav) or "nav" in (getattr(item, "properties", None) or []):
            continue
        root = _parse_xhtml(item.get_content())
        body = next((e for e in root.iter() if _local(e.tag) == "body"), root)
        stem_tokens = set(re.split(r"[-_. ]+", Path(item.file_name).stem.lower())) - {"index"}
        if (_tokens(body, "type", "role", "class") | _tokens(root, "type", "role") | stem_tokens) & _NON_BODY:
            continue
        doc_targets = targets.get(posixpath.normpath(unquote(item.file_name)), {})
        walker = _XhtmlText({k: v for k, v in doc_targets.items() if k})
        if "" in doc_targets:
            walker.out.append(_Split(doc_targets[""]))
        walker.walk(body)
        walker.flush()
        doc = walker.out + walker.notes
        blocks = [b for b in doc if isinstance(b, _Block)]
        if not blocks and not any(isinstance(b, _Split) for b in doc):
            continue
        if blocks and not any(isinstance(b, _Split) for b in doc) and _is_copyright_page(blocks):
            continue
        title_el = next((e for e in root.iter() if _local(e.tag) == "title"), None)
        doc_titles.append((len(stream), " ".join("".join(title_el.itertext()).split()) if title_el is not None else ""))
        stream += doc

    chapters = _epub_chapters(stream, entries, doc_titles)
    if not chapters:
        raise AudiobookError(f"{path.name} has no readable text (only images, or an empty book).")
    title = _first_meta(book, "title") or path.stem
    creators = [c for c, _ in book.get_metadata("DC", "creator") if c and c.strip()]
    author = " and ".join(creators) if len(creators) <= 2 else ", ".join(creators)
    from .text import base_language

    language = _first_meta(book, "language")
    cover, mime = _epub_cover(book)
    year = re.search(r"\b(1[5-9]\d\d|2[01]\d\d)\b", _first_meta(book, "date"))
    return Book(title=" ".join(title.split()), chapters=chapters, author=" ".join(author.split()),
                language=base_language(language) if language else "", cover=cover, cover_mime=mime,
                year=year.group(1) if year else "", genre=" ".join(_first_meta(book, "subject").split()))


def _epub_chapters(stream: list, entries: list[_TocNode], doc_titles: list[tuple[int, str]]) -> list[Chapter]:
    found = [s.entry for s in stream if isinstance(s, _Split)]
    if not found:
        # No usable contents list: one chapter per spine document.
        bounds = [pos for pos, _ in doc_titles] + [len(stream)]
        groups = [(doc_titles[i][1], stream[bounds[i]:bounds[i + 1]]) for i in range(len(doc_titles))]
    else:
        groups, current = [], (None, [])
        for piece in stream:
            if isinstance(piece, _Split):
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
        blocks = [b for b in blocks if isinstance(b, _Block)]
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


# ---------------------------------------------------------------- pdf

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
    from pypdf.errors import PdfReadError

    _read_bytes(path)
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise AudiobookError(f"{path.name} is protected by a password; save an unprotected copy first.")
        pages = [(page.extract_text() or "") for page in reader.pages]
    except AudiobookError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        raise AudiobookError(f"{path.name} is damaged or not a PDF ({type(e).__name__}).") from e
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
    from .text import base_language

    chapters = _pdf_outline_chapters(reader, page_lines) or _pdf_heading_chapters(page_lines, title)
    return Book(title=title, author=author, language=base_language(lang) if lang else "", chapters=chapters)


def _pdf_outline_chapters(reader, page_lines: list[list[str]]) -> list[Chapter]:
    def nodes(outline) -> list[_TocNode]:
        out: list[_TocNode] = []
        for entry in outline:
            if isinstance(entry, list):
                if out:
                    out[-1].children += nodes(entry)
                continue
            try:
                page = reader.get_destination_page_number(entry)
            except Exception:
                page = None
            out.append(_TocNode(" ".join(str(entry.title or "").split()), "" if page is None else str(page), []))
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
            title_words = set(_words_of(title))
            while lines and set(_words_of(lines[0])) <= title_words and len(lines[0]) <= 150:
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
    want = " ".join(_words_of(title))
    for i, line in enumerate(lines[:12]):
        got = " ".join(_words_of(line))
        if got and (got == want or (want.startswith(got) and len(got) > 3)):
            return i
    return 0


def _pdf_heading_chapters(page_lines: list[list[str]], title: str) -> list[Chapter]:
    text_lines: list[str] = []
    for lines in page_lines:
        for line in lines:
            if _HEADING.match(line) and len(line) <= 100:
                text_lines += ["", line, ""]  # a heading line stands alone, as in a text file
            else:
                text_lines.append(line)
    paragraphs = _pdf_paragraphs(text_lines)
    return split_text_chapters("\n\n".join(paragraphs), title)


# ---------------------------------------------------------------- json, dispatch, description


def read_json(path: Path) -> Book:
    """The project's JSON book format (see ``Book.to_dict``)."""
    raw = _read_bytes(path)
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AudiobookError(f"{path.name} is not valid JSON.") from None
    return Book.from_dict(data)


_READERS = {".txt": read_txt, ".md": read_markdown, ".markdown": read_markdown,
            ".epub": read_epub, ".pdf": read_pdf, ".json": read_json}


def load_book(path: str | Path) -> Book:
    """Read a book file; raise AudiobookError with a sentence when it cannot be read."""
    p = Path(path)
    if not p.exists():
        raise AudiobookError(f"There is no file at {p}.")
    if p.is_dir():
        raise AudiobookError(f"{p} is a folder; pick a book file.")
    reader = _READERS.get(p.suffix.lower())
    if reader is None:
        raise AudiobookError(f"Cannot read '{p.suffix or p.name}' files; use .txt, .md, .epub, .pdf or .json.")
    book = reader(p)
    if not book.chapters or not any(c.text.strip() for c in book.chapters):
        raise AudiobookError(f"{p.name} has no text to narrate.")
    return book


def save_book_json(book: Book, path: str | Path) -> Path:
    """Write ``book`` in the JSON book format (atomically); ``load_book`` reads it back equal."""
    from .settings import atomic_write_text

    p = Path(path)
    atomic_write_text(p, json.dumps(book.to_dict(), ensure_ascii=False, indent=1))
    return p


def describe_book(book: Book, chunk_chars: int, show_chunks: bool = False, speak_titles: bool = True,
                  pronunciations=None) -> str:
    """What the reader found, as text for a person checking a book before a long render.

    Title, author, language, cover, and per chapter its number, title, words and
    chunks; with ``show_chunks`` every chunk's text too.
    """
    from .text import plan_chunks

    chunks = plan_chunks(book.chapters, chunk_chars, book.language or "en", speak_titles, pronunciations=pronunciations)
    per_chapter = Counter(c.chapter for c in chunks)
    cover = f"yes ({book.cover_mime or 'image'}, {len(book.cover) // 1024} KB)" if book.cover else "no"
    lines = [
        f"Title:    {book.title}",
        f"Author:   {book.author or '(unknown)'}",
        f"Language: {book.language or '(unknown)'}",
        f"Cover:    {cover}",
        f"Chapters: {len(book.chapters)}, {book.words} words, {len(chunks)} chunks of at most {chunk_chars} characters",
        "",
        f"{'#':>4}  {'words':>7}  {'chunks':>6}  title",
    ]
    for i, chapter in enumerate(book.chapters):
        lines.append(f"{i + 1:>4}  {chapter.words:>7}  {per_chapter[i]:>6}  {chapter.title}")
        if show_chunks:
            for c in (c for c in chunks if c.chapter == i):
                mark = "title" if c.is_title else ("chapter end" if c.chapter_end else ("paragraph end" if c.paragraph_end else ""))
                lines.append(f"        [{c.index + 1}] {c.text}" + (f"   <{mark}>" if mark else ""))
    return "\n".join(lines)
