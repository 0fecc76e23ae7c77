"""Who speaks which part of a chapter: spans, the ``[voice: Name]`` markup and quoted dialogue.

A chapter's text can be cut into ``Span``s, each with a ``speaker`` (a character's name,
``narrator`` or ``dialogue``) and a ``style`` (an instruction such as "whispering").
The spans of a chapter always rebuild its text exactly: ``"".join(s.text for s in spans)``.

Two sources of spans live here:

* ``strip_markup``: lines ``[voice: Name]`` switch the speaker until the next such tag
  (``[voice: narrator]`` returns), ``[style: whispering]`` sets the style of the next
  paragraph; the tags are removed from the text, so they are never spoken;
* ``quote_ranges``: quoted speech (straight and typographic quotes, « », » «, „ “, 「 」),
  which ``find_dialogue`` makes spans of their own, attributed by the rules of
  ``attribution`` (who finds the characters: ``characters``), else to ``dialogue``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from .errors import AudiobookError

NARRATOR = "narrator"  # the book's narrator: narration, and speech no one else is mapped to
DIALOGUE = "dialogue"  # quoted speech whose speaker is not known


@dataclass(frozen=True)
class Span:
    """A stretch of a chapter's text, spoken by ``speaker`` in ``style`` ("" for none).

    ``rule`` says how the speaker of a quote was found ("said", "pronoun", ... see
    ``attribution.RULES``; "llm", "markup" or "" for a user's choice); it is not part of
    a span's identity.
    """

    text: str
    speaker: str = NARRATOR
    style: str = ""
    rule: str = field(default="", compare=False)

    def to_dict(self) -> dict:
        return {"text": self.text, "speaker": self.speaker, "style": self.style, **({"rule": self.rule} if self.rule else {})}

    @classmethod
    def from_dict(cls, data, where: str = "a span") -> "Span":
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise AudiobookError(f'{where} needs a "text".')
        speaker, style = data.get("speaker") or NARRATOR, data.get("style") or ""
        if not isinstance(speaker, str) or not isinstance(style, str):
            raise AudiobookError(f'The "speaker" and "style" of {where} must be text.')
        rule = data.get("rule") if isinstance(data.get("rule"), str) else ""
        return cls(data["text"], speaker_name(speaker), " ".join(style.split()), rule)


def speaker_name(name: str) -> str:
    """A speaker's name as the cast keys it: single spaces; "Narrator" and "Dialogue" in any case are the special ones."""
    name = " ".join(str(name).split())
    return name.lower() if name.lower() in (NARRATOR, DIALOGUE) else name


def join_spans(spans: Iterable[Span]) -> str:
    return "".join(s.text for s in spans)


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Neighbours with the same speaker and style become one span; empty spans go."""
    out: list[Span] = []
    for s in spans:
        if not s.text:
            continue
        if out and out[-1].speaker == s.speaker and out[-1].style == s.style:
            out[-1] = Span(out[-1].text + s.text, s.speaker, s.style, out[-1].rule or s.rule)
        else:
            out.append(s)
    return out


def check_spans(text: str, spans: list[Span], where: str = "this chapter") -> list[Span]:
    """Return ``spans`` when they rebuild ``text`` exactly, else raise AudiobookError."""
    if join_spans(spans) != text:
        raise AudiobookError(f"The spans of {where} do not add up to its text; fix their texts so that together they are the chapter, word for word.")
    return spans


# ---------------------------------------------------------------- markup

_TAG = re.compile(r"\[\s*(voice|style)\s*:\s*([^\]\n]*?)\s*\]", re.IGNORECASE)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\f\v]*\n\s*")
NO_STYLE = ("", "none", "normal", "plain")


def has_markup(text: str) -> bool:
    """True when ``text`` holds a ``[voice: ...]`` or ``[style: ...]`` tag."""
    return bool(_TAG.search(text))


def is_markup_line(line: str) -> bool:
    """True for a line that is only markup tags (the readers keep it out of titles)."""
    return bool(line.strip()) and not _TAG.sub("", line).strip() and bool(_TAG.search(line))


def strip_markup(text: str, speaker: str = NARRATOR) -> tuple[str, list[Span], str]:
    """Remove the tags from a chapter's text; return ``(clean text, spans, speaker at its end)``.

    ``speaker`` is who speaks at the start (the last ``[voice: ...]`` of the chapter
    before); a ``[style: ...]`` applies from the tag to the end of the paragraph that
    follows it. A paragraph that held only tags disappears.
    """
    paragraphs: list[list[Span]] = []
    pending_style = ""
    for para in _PARAGRAPH_BREAK.split(text):
        pieces: list[Span] = []
        style, pos = pending_style, 0
        for m in _TAG.finditer(para):
            pieces.append(Span(para[pos:m.start()], speaker, style))
            value = " ".join(m.group(2).split())
            if m.group(1).lower() == "voice":
                speaker = speaker_name(value) if value else NARRATOR
            else:
                style = "" if value.lower() in NO_STYLE else value
            pos = m.end()
        pieces.append(Span(para[pos:], speaker, style))
        # Whitespace where a tag was: keep one space between words, none at the edges.
        cleaned: list[Span] = []
        for p in pieces:
            t = p.text
            if not cleaned or not "".join(c.text for c in cleaned).strip():
                t = t.lstrip()
            elif cleaned[-1].text[-1:].isspace():
                t = t.lstrip()
            cleaned.append(Span(t, p.speaker, p.style))
        while cleaned and not cleaned[-1].text.strip():
            cleaned.pop()
        if cleaned:
            cleaned[-1] = Span(cleaned[-1].text.rstrip(), cleaned[-1].speaker, cleaned[-1].style)
        cleaned = [c for c in cleaned if c.text]
        if cleaned:
            paragraphs.append(cleaned)
            pending_style = ""
        else:
            pending_style = style  # a paragraph of tags only: its style is for the next one
    spans: list[Span] = []
    for i, para in enumerate(paragraphs):
        if i:
            last = spans[-1]
            spans[-1] = Span(last.text + "\n\n", last.speaker, last.style)
        spans += para
    spans = [Span(s.text, s.speaker, s.style, "markup") for s in merge_spans(spans)]
    return join_spans(spans), spans, speaker


# ---------------------------------------------------------------- quoted dialogue

# Opening quote -> the characters that close it.
_CLOSERS = {'"': '"', "\u201c": "\u201d", "\u201e": "\u201c\u201d", "\u00ab": "\u00bb", "\u00bb": "\u00ab",
            "\u300c": "\u300d", "\u300e": "\u300f", "\u2018": "\u2019", "\u201a": "\u2018\u2019",
            "\u2039": "\u203a", "\u203a": "\u2039"}
# Openers that may be followed by a space (French « Bonjour »), and those with no letters around them.
_SPACED = {"\u00ab", "\u300c", "\u300e"}
# A quote spanning paragraphs opens each one again with one of these.
_REOPEN = {'"': '"', "\u201c": "\u201c", "\u201e": "\u201e\u00bb", "\u00ab": "\u00ab\u00bb", "\u00bb": "\u00bb",
           "\u300c": "\u300c", "\u300e": "\u300e", "\u2018": "\u2018", "\u201a": "\u201a",
           "\u2039": "\u2039\u203a", "\u203a": "\u203a"}
_OPEN_BEFORE = " \t\n([{\u2014\u2013-/:" + "".join(_CLOSERS)


def _opens(text: str, i: int) -> bool:
    c = text[i]
    if c not in _CLOSERS:
        return False
    before = text[i - 1] if i else " "
    after = text[i + 1] if i + 1 < len(text) else " "
    if c in ("\u300c", "\u300e"):
        return True
    if before not in _OPEN_BEFORE and not before.isspace():
        return False
    return c in _SPACED or not after.isspace()


def _closes(text: str, i: int, closers: str) -> bool:
    c = text[i]
    if c not in closers:
        return False
    after = text[i + 1] if i + 1 < len(text) else " "
    if c == "\u2019" and after.isalpha():
        return False  # an apostrophe: don't, l'homme
    return True


def _paragraph_ranges(text: str) -> list[tuple[int, int, int]]:
    """(start, end of text, start of the next paragraph) of every paragraph."""
    out, pos = [], 0
    for m in _PARAGRAPH_BREAK.finditer(text):
        out.append((pos, m.start(), m.end()))
        pos = m.end()
    out.append((pos, len(text), len(text)))
    return out


def quote_ranges(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every top-level quotation in ``text``, its quote marks included.

    Quotes inside a quote belong to it. A quote left open at the end of a paragraph goes
    on when the next paragraph opens with a quote mark again (the convention for speech
    over several paragraphs), else it ends with its paragraph.
    """
    ranges: list[tuple[int, int]] = []
    paras = _paragraph_ranges(text)
    start, opener, stack = None, "", []
    for n, (p0, p1, nxt) in enumerate(paras):
        i = p0
        if start is not None:
            if p0 < p1 and text[p0] in _REOPEN[opener]:
                i = p0 + 1  # the same speech goes on
                stack = [stack[0]]
            else:
                ranges.append((start, paras[n - 1][1]))
                start, stack = None, []
        while i < p1:
            c = text[i]
            if stack and _closes(text, i, stack[-1]):
                stack.pop()
                if not stack:
                    ranges.append((start, i + 1))
                    start = None
            elif _opens(text, i) and not (stack and c in stack[-1]):
                if not stack:
                    start, opener = i, c
                stack.append(_CLOSERS[c])
            i += 1
    if start is not None:
        ranges.append((start, paras[-1][1]))
    return ranges


# Verbs of speech, in the past and present, for the languages whose books use these quotes.
_SPEECH_VERBS = (
    "said says asked asks replied replies answered answers cried cries shouted shouts whispered whispers "
    "muttered mutters murmured murmurs called calls added adds exclaimed continued continues snapped yelled "
    "began agreed laughed sighed insisted repeated admitted explained demanded protested growled hissed "
    "breathed observed remarked returned retorted inquired enquired stammered declared warned interrupted "
    "screamed roared pleaded suggested announced wondered thought told tells "
    "sagte sagt fragte fragt rief ruft antwortete flüsterte meinte erwiderte "
    "dit demanda répondit cria murmura ajouta s'écria reprit "
    "dijo preguntó respondió gritó"
).split()


def find_dialogue(text: str, cast: Iterable[str] = (), narrator: str = NARRATOR) -> list[Span]:
    """Spans of ``text``: quoted speech apart from the narration, each quote given to a member of ``cast``
    by the rules of ``attribution`` when they tell who speaks, else to ``dialogue``. The spans rebuild ``text``."""
    from .attribution import label_spans
    from .characters import Character, CharacterList

    names = [n for n in (speaker_name(x) for x in cast) if n not in (NARRATOR, DIALOGUE)]
    return label_spans(text, CharacterList(Character(n) for n in dict.fromkeys(names)), narrator)
