"""XHTML and HTML documents as paragraph blocks: the walker shared by the EPUB, HTML and Kindle readers.

``XhtmlText`` walks a parsed document and emits ``Block``s (paragraphs, headings with
their level) and ``Split`` marks where a contents entry starts; footnote markers, page
numbers and line numbers are not read, and inline footnotes are kept for after the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
_SKIP_CLASSES = {"lnum", "linenum", "linenumber", "line-number", "pagenum", "page-number", "pagenumber", "pageno",
                 "pg-boilerplate"}  # the last: Project Gutenberg's licence header and footer
_LINE_GROUP_CLASSES = {"linegroup", "stanza", "poem", "verse", "lg", "line-group"}
_NOTE_MARK = re.compile(r"^\W{0,2}(?:\d{1,3}|[*\u2020\u2021\u00a7\u00b6#]{1,3}|[a-z]|[ivx]{1,4})\W{0,2}$", re.IGNORECASE)
_LINE_BREAK = "\ue000"  # stands for <br> while whitespace is collapsed (not itself whitespace)


@dataclass
class Block:
    text: str
    level: int = 0  # 1-6 for a heading <h1>-<h6>, 0 for text

    @property
    def heading(self) -> bool:
        return self.level > 0


@dataclass
class Split:
    entry: int  # index of the table-of-contents entry that starts here


def local_name(tag) -> str:
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def tokens(el, *names: str) -> set[str]:
    out: set[str] = set()
    for key, value in el.attrib.items():
        if local_name(key) in names or key in names:
            out.update(value.lower().split())
    return out


class XhtmlText:
    """Walks one XHTML document and emits paragraph blocks and chapter split marks."""

    def __init__(self, targets: dict[str, int]):
        self.targets = targets
        self.out: list[Block | Split] = []
        self.notes: list[Block] = []
        self.buf: list[str] = []

    def flush(self, level: int = 0) -> None:
        text = re.sub(r"\s+", " ", "".join(self.buf))
        text = re.sub(rf" ?{_LINE_BREAK} ?", "\n", text).strip()
        self.buf = []
        if text:
            self.out.append(Block(text, level))

    def walk(self, el, inline: bool = False) -> None:
        tag = local_name(el.tag)
        if el.get("id") in self.targets:
            self.flush()
            self.out.append(Split(self.targets[el.get("id")]))
        types = tokens(el, "type", "role")
        if (not tag or tag in _XHTML_SKIP or types & _SKIP_TYPES or tokens(el, "class") & _SKIP_CLASSES
                or self._is_note_mark(el, tag, types) or self._is_back_link(el, tag)):
            pass  # not read; its tail still is
        elif tag == "aside" and types & _NOTE_TYPES:
            inner = XhtmlText({})
            inner.walk_children(el)
            inner.flush()
            self.notes += [b for b in inner.out if isinstance(b, Block)]  # read after the chapter's text
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
            self.flush(level=int(tag[1]) if tag in ("h1", "h2", "h3", "h4", "h5", "h6") else 0)
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
        classes = " ".join(tokens(el, "class"))
        links = tag == "a" or el.find(".//{*}a") is not None or el.find(".//a") is not None
        return links and ("note" in classes or "fn" in classes or tag == "sup"
                          or (parent is not None and local_name(parent.tag) == "sup") or el.find(".//{*}sup") is not None
                          or el.find(".//sup") is not None or text.startswith(("[", "(")) or not text.isalnum())

    @staticmethod
    def _is_back_link(el, tag: str) -> bool:
        """A link back from a note to its marker ("↩"): a sign, not words."""
        return tag == "a" and (el.get("href") or "").startswith("#") and not re.search(r"\w", "".join(el.itertext()))

    @staticmethod
    def _is_line_group(el) -> bool:
        """A poem's stanza: a block whose children are all one-line blocks."""
        children = [c for c in el if isinstance(c.tag, str)]
        if len(children) < 2 or (el.text or "").strip():
            return False
        marked = bool(tokens(el, "class") & _LINE_GROUP_CLASSES)
        for child in children:
            if local_name(child.tag) not in ("div", "p", "span") or (local_name(child.tag) == "p" and not marked):
                return False
            if any(local_name(d.tag) in _XHTML_BLOCKS for d in child.iterdescendants() if isinstance(d.tag, str)):
                return False
            if not marked and len("".join(child.itertext())) > 120:
                return False
        return marked or all(local_name(c.tag) == "div" for c in children)


def parse_xhtml(content: bytes):
    from lxml import etree, html

    try:
        root = etree.fromstring(content, etree.XMLParser(recover=True, resolve_entities=False, huge_tree=True, no_network=True))
    except etree.XMLSyntaxError:
        root = None
    if root is None:
        root = html.document_fromstring(content)
    return root
