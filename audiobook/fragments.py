"""Sentences in a book's pages: find each timed sentence in the XHTML and wrap it in a span with an id.

The timed sentences are the text the narrator read (numbers spelled out, the user's
respellings), so they are found by aligning words, not by exact search: the words of a
chapter's sentences are matched against the words of the pages from where the last
chapter ended, and a sentence covers its pages' text from its first matched word up to
where the next sentence starts (inside one paragraph). A sentence that crosses markup
(``<em>``, a link) is wrapped whole when its ends share a parent; otherwise only its first
piece carries the id. A sentence whose words are not found gets no fragment (its time
goes to its neighbour in the media overlay).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Sequence

XHTML_NS = "http://www.w3.org/1999/xhtml"
_SKIP = {"script", "style", "head", "nav", "svg", "math", "rt", "rp", "template", "noscript", "object",
         "iframe", "audio", "video", "button", "input", "select", "textarea", "img", "title"}
_SKIP_TYPES = {"pagebreak", "noteref", "doc-pagebreak", "doc-noteref", "toc", "doc-toc", "page-list", "landmarks"}
_BLOCKS = {
    "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "pre", "section", "article", "header",
    "footer", "figure", "figcaption", "table", "tr", "td", "th", "dt", "dd", "ul", "ol", "dl", "body", "hr",
    "address", "center", "main", "aside", "caption", "hgroup", "details", "summary", "html", "tbody", "thead", "tfoot",
}
# Where a <span> may not stand (only certain children are allowed there).
_NO_PHRASING = {"ul", "ol", "dl", "table", "tbody", "thead", "tfoot", "tr", "colgroup", "select", "html", "head",
                "hgroup", "ruby", "math", "svg"}
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])\w)+")
WINDOW_SLACK = 400  # words past a chapter's own length searched for its text


def words(text: str) -> list[str]:
    """The words of ``text`` as alignment tokens: lower case, no punctuation; CJK one character each."""
    return [m.group(0).lower() for m in _TOKEN.finditer(text)]


def local(tag) -> str:
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


@dataclass
class _Token:
    doc: int  # index of the page
    slot: int  # index into that page's text slots
    start: int  # character offsets in the slot's string
    end: int
    block: int  # id of the block element it is in
    word: str


@dataclass
class Page:
    """One XHTML page (an lxml tree) and its text, cut into slots: (element, "text" or "tail")."""

    tree: object
    slots: list[tuple[object, str]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    marks: list[tuple[int, int, int, int, str]] = field(default_factory=list)  # (slot, off, slot, off, id) to wrap

    def text(self, slot: int) -> str:
        el, kind = self.slots[slot]
        return (el.text if kind == "text" else el.tail) or ""


def _skipped(el) -> bool:
    types = set()
    for key, value in el.attrib.items():
        if local(key) in ("type", "role"):
            types.update(value.lower().split())
    return local(el.tag) in _SKIP or bool(types & _SKIP_TYPES) or not isinstance(el.tag, str)


class Pages:
    """The pages of a book in reading order, with every word they show and where it is."""

    def __init__(self, trees: Sequence[object]):
        self.pages = [Page(t) for t in trees]
        self.tokens: list[_Token] = []
        for d, page in enumerate(self.pages):
            root = page.tree.getroot()
            page.ids = {v for el in root.iter() for k, v in el.attrib.items() if local(k) == "id"}
            body = next((e for e in root.iter() if local(e.tag) == "body"), None)
            if body is not None:
                self._walk(d, page, body, id(body))

    def _walk(self, d: int, page: Page, el, block: int) -> None:
        if local(el.tag) in _BLOCKS:
            block = id(el)
        self._add(d, page, el, "text", block)
        for child in el:
            if isinstance(child.tag, str) and not _skipped(child):
                self._walk(d, page, child, block)
            self._add(d, page, child, "tail", block)

    def _add(self, d: int, page: Page, el, kind: str, block: int) -> None:
        s = (el.text if kind == "text" else el.tail) or ""
        if not s.strip():
            return
        page.slots.append((el, kind))
        slot = len(page.slots) - 1
        for m in _TOKEN.finditer(s):
            self.tokens.append(_Token(d, slot, m.start(), m.end(), block, m.group(0).lower()))

    # ---- finding the sentences ---------------------------------------------------------

    def place(self, chapters: Sequence[Sequence[str]]) -> list[list[tuple[int, int] | None]]:
        """For each chapter's sentences, the (first, last) token each covers, or None when not found.

        Chapters are searched in order, each from where the previous one was found.
        """
        cursor = 0
        out = []
        for sentences in chapters:
            placed, cursor = self._place_chapter(sentences, cursor)
            out.append(placed)
        return out

    def _place_chapter(self, sentences: Sequence[str], cursor: int):
        own = [words(s) for s in sentences]
        flat = [w for ws in own for w in ws]
        owner = [k for k, ws in enumerate(own) for _ in ws]
        window = self.tokens[cursor : cursor + int(len(flat) * 1.3) + WINDOW_SLACK]
        matcher = difflib.SequenceMatcher(None, flat, [t.word for t in window], autojunk=False)
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for a, b, size in matcher.get_matching_blocks():
            for i in range(size):
                k, tok = owner[a + i], cursor + b + i
                first.setdefault(k, tok)
                last[k] = tok
        placed: list[tuple[int, int] | None] = []
        starts = sorted(first.values())
        end_of_chapter = max(last.values(), default=cursor - 1)
        for k in range(len(sentences)):
            if k not in first:
                placed.append(None)
                continue
            a, b = first[k], last[k]
            # the sentence reaches to the word before the next sentence, inside its own block
            nxt = next((s for s in starts if s > b), end_of_chapter + 1)
            while b + 1 < nxt and self.tokens[b + 1].block == self.tokens[b].block and self.tokens[b + 1].doc == self.tokens[b].doc:
                b += 1
            placed.append((a, b))
        return placed, end_of_chapter + 1

    # ---- marking them --------------------------------------------------------------------

    def mark(self, first: int, last: int, prefix: str) -> tuple[int, str]:
        """Ask for tokens ``first``..``last`` to be wrapped in a span; returns (page, id)."""
        a, b = self.tokens[first], self.tokens[last]
        page = self.pages[a.doc]
        if b.doc != a.doc:  # a sentence across two pages: its part on the first
            b = max((t for t in self.tokens[first : last + 1] if t.doc == a.doc), key=lambda t: (t.slot, t.end))
        ident, n = prefix, 1
        while ident in page.ids:
            n += 1
            ident = f"{prefix}-{n}"
        page.ids.add(ident)
        begin, head = a.start, page.text(a.slot)
        while begin > 0 and not head[begin - 1].isspace() and not _TOKEN.match(head, begin - 1):
            begin -= 1  # and so does the opening quote or bracket
        end = b.end
        rest = page.text(b.slot)
        while end < len(rest) and not rest[end].isspace() and not _TOKEN.match(rest, end):
            end += 1  # the closing punctuation belongs to the sentence
        page.marks.append((a.slot, begin, b.slot, end, ident))
        return a.doc, ident

    def wrap_all(self, used: set[str] | None = None) -> list[bool]:
        """Wrap every marked sentence (those whose id is in ``used``, when given) in ``<span id="...">``,
        last first so earlier offsets stay true; returns for each page whether it changed."""
        changed = []
        for page in self.pages:
            marks = [m for m in page.marks if used is None or m[4] in used]
            for mark in sorted(marks, key=lambda m: (m[0], m[1]), reverse=True):
                _wrap(page, *mark)
            changed.append(bool(marks))
        return changed


# ---- wrapping a range of text in a span ------------------------------------------------------


def _position(page: Page, slot: int, off: int) -> tuple[str, object, int]:
    el, kind = page.slots[slot]
    return kind, el, off


def _lift_start(pos):
    """A start at the very beginning of an inline element is also the point just before it."""
    kind, el, off = pos
    while kind == "text" and not (el.text or "")[:off].strip() and local(el.tag) not in _BLOCKS:
        parent = el.getparent()
        if parent is None:
            break
        prev = el.getprevious()
        pos = ("tail", prev, len(prev.tail or "")) if prev is not None else ("text", parent, len(parent.text or ""))
        kind, el, off = pos
    return pos


def _lift_end(pos):
    """An end at the very end of an inline element's text is also the point just after it."""
    kind, el, off = pos
    while True:
        holder = el if kind == "text" else el.getparent()
        if holder is None or local(holder.tag) in _BLOCKS:
            return pos
        rest = (el.text if kind == "text" else el.tail) or ""
        if rest[off:].strip() or (kind == "text" and len(el)) or (kind == "tail" and el.getnext() is not None):
            return pos
        pos = ("tail", holder, 0)
        kind, el, off = pos


def _level(pos):
    kind, el, _ = pos
    return el if kind == "text" else el.getparent()


def _wrap(page: Page, s_slot: int, s_off: int, e_slot: int, e_off: int, ident: str) -> None:
    start, end = _position(page, s_slot, s_off), _position(page, e_slot, e_off)
    if s_slot != e_slot:
        start, end = _lift_start(start), _lift_end(end)
        if _level(start) is not _level(end) or not _wrappable(start, end):
            # the sentence crosses blocks or markup it cannot enclose: its first piece carries the id
            start = _position(page, s_slot, s_off)
            end = (start[0], start[1], len(page.text(s_slot)))
    _enclose(start, end, ident)


def _children_between(start, end) -> list:
    parent = _level(start)
    kids = list(parent)
    lo = 0 if start[0] == "text" else kids.index(start[1]) + 1
    hi = kids.index(end[1]) + 1 if end[0] == "tail" else 0
    return kids[lo:hi]


def _wrappable(start, end) -> bool:
    parent = _level(start)
    if local(parent.tag) in _NO_PHRASING:
        return False
    if start[0] == "tail" and end[0] == "text":
        return False
    kids = _children_between(start, end)
    if start[0] == "tail" and end[0] == "tail" and list(parent).index(end[1]) < list(parent).index(start[1]):
        return False
    for kid in kids:
        if local(kid.tag) in _BLOCKS or any(local(d.tag) in _BLOCKS for d in kid.iterdescendants() if isinstance(d.tag, str)):
            return False
    return True


def _new_span(parent, ident: str):
    ns = parent.tag[1:].split("}")[0] if isinstance(parent.tag, str) and parent.tag.startswith("{") else XHTML_NS
    span = parent.makeelement(f"{{{ns}}}span", {"id": ident})
    return span


def _enclose(start, end, ident: str) -> None:
    s_kind, s_el, s_off = start
    e_kind, e_el, e_off = end
    parent = _level(start)
    span = _new_span(parent, ident)
    if s_kind == e_kind and s_el is e_el:  # one string
        text = (s_el.text if s_kind == "text" else s_el.tail) or ""
        span.text, after = text[s_off:e_off], text[e_off:]
        if s_kind == "text":
            s_el.text = text[:s_off]
            s_el.insert(0, span)
        else:
            s_el.tail = text[:s_off]
            s_el.addnext(span)
        span.tail = after
        return
    kids = _children_between(start, end)
    head = (s_el.text if s_kind == "text" else s_el.tail) or ""
    tail_text = e_el.tail or ""
    span.text = head[s_off:]
    if s_kind == "text":
        s_el.text = head[:s_off]
        index = 0
    else:
        s_el.tail = head[:s_off]
        index = list(parent).index(s_el) + 1
    for kid in kids:
        span.append(kid)  # moves it
    e_el.tail = tail_text[:e_off]
    span.tail = tail_text[e_off:]
    parent.insert(index, span)
