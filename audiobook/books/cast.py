"""The cast of a book: its characters, how many lines each speaks, and the voice that reads them.

``label_book`` gives every chapter spans (markup and JSON spans stay as they are; other
chapters get their quoted dialogue found, or labelled by a language model through any
OpenAI-compatible endpoint), and ``cast_of`` counts the lines of every character. A
``Cast`` maps characters to voices (saved voices or built-in speakers); characters
without a voice are read by the ``dialogue`` voice when they are quoted speech and one
is set, else by the narrator. It is saved in ``cast.json`` and in the JSON book.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

from ..attribution import RULES, find_characters, label_spans
from ..characters import GENDERS, Character, CharacterList
from ..dialogue import DIALOGUE, NARRATOR, merge_spans, speaker_name
from ..errors import AudiobookError
from ..files import read_json_file
from ..llm import LLM, align_labels  # noqa: F401  (the labeller; callers import it from here)

CAST_FILE = "cast.json"
CAST_FORMAT = "audiobook-cast"
CAST_VERSION = 1
PREVIEW_CHARS = 160  # the preview line shown in the cast table


@dataclass
class CastMember:
    """One character: ``lines`` spoken in the book, the ``voice`` that reads them ("" for none yet).

    ``aliases`` are the other ways the book names them, ``gender`` is guessed from the text
    ("male", "female", "" when it does not tell), ``hidden`` ones are read as ``dialogue``,
    and ``description`` is the voice description "Design the cast" used or will use.
    """

    name: str
    lines: int = 0
    voice: str = ""  # a saved voice's name or a built-in speaker's
    preview: str = ""  # one of their lines
    aliases: list[str] = field(default_factory=list)
    gender: str = ""
    hidden: bool = False
    description: str = ""

    def to_dict(self) -> dict:
        out = {"name": self.name, "lines": self.lines, "voice": self.voice, "preview": self.preview}
        for key, default in (("aliases", []), ("gender", ""), ("hidden", False), ("description", "")):
            if getattr(self, key) != default:
                out[key] = getattr(self, key)
        return out

    def character(self) -> Character:
        return Character(self.name, list(self.aliases), self.gender, self.hidden, fixed=True)


@dataclass
class Cast:
    """The characters of a book in order of how much they speak; ``dialogue`` is unattributed speech."""

    members: list[CastMember] = field(default_factory=list)

    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def get(self, name: str) -> CastMember | None:
        name = speaker_name(name)
        return next((m for m in self.members if m.name == name), None)

    def voice_of(self, name: str) -> str:
        """The voice mapped to a speaker ("" when none: the caller falls back)."""
        m = self.get(name)
        return m.voice if m else ""

    def with_voice(self, name: str, voice: str) -> "Cast":
        """A copy where ``name`` (added when new) is read by ``voice`` ("" to unmap)."""
        name = speaker_name(name)
        if not name or name == NARRATOR:
            raise AudiobookError("The narrator's voice is the render's voice; map characters or 'dialogue' here.")
        members = [replace(m) for m in self.members]
        found = next((m for m in members if m.name == name), None)
        if found is None:
            members.append(CastMember(name))
            found = members[-1]
        found.voice = (voice or "").strip()
        return Cast(members)

    # ---- the user's edits of the character list: each returns a new Cast

    def _copy(self) -> list[CastMember]:
        return [replace(m, aliases=list(m.aliases)) for m in self.members]

    def _member(self, members: list[CastMember], name: str) -> CastMember:
        name = speaker_name(name)
        found = next((m for m in members if m.name == name), None)
        if found is None or name in (NARRATOR, DIALOGUE):
            known = ", ".join(m.name for m in members if m.name != DIALOGUE) or "none yet"
            raise AudiobookError(f"There is no character '{name}' in this cast (it has: {known}).")
        return found

    def renamed(self, name: str, new: str) -> "Cast":
        """``name`` is called ``new`` from now on; the old name stays as an alias so the text still finds them."""
        new = speaker_name(new)
        members = self._copy()
        m = self._member(members, name)
        if not new or new in (NARRATOR, DIALOGUE):
            raise AudiobookError("Give the character a name of their own (not 'narrator' or 'dialogue').")
        if new != m.name and any(x.name == new for x in members):
            raise AudiobookError(f"There is already a character called {new}; merge the two instead.")
        m.aliases = [a for a in [m.name] + m.aliases if a != new]
        m.name = new
        return Cast(members)

    def merged(self, keep: str, other: str) -> "Cast":
        """``other`` is the same person as ``keep``: one character with both names; ``keep``'s voice wins."""
        members = self._copy()
        a, b = self._member(members, keep), self._member(members, other)
        if a is b:
            raise AudiobookError(f"Pick two different characters to merge; both are {a.name}.")
        a.aliases += [x for x in [b.name] + b.aliases if x != a.name and x not in a.aliases]
        a.lines += b.lines
        a.voice = a.voice or b.voice
        a.gender = a.gender or b.gender
        a.description = a.description or b.description
        members.remove(b)
        return Cast(members)

    def split(self, name: str, alias: str) -> "Cast":
        """``alias`` of ``name`` is someone else: a character of their own."""
        members = self._copy()
        m = self._member(members, name)
        alias = " ".join(alias.split())
        match = next((a for a in m.aliases if a.lower() == alias.lower()), None)
        if match is None:
            listed = ", ".join(m.aliases) or "none"
            raise AudiobookError(f"'{alias}' is not one of {m.name}'s other names (they are: {listed}).")
        m.aliases.remove(match)
        members.insert(members.index(m) + 1, CastMember(match))
        return Cast(members)

    def hidden(self, name: str, hide: bool = True) -> "Cast":
        """Hide a character (their quotes are read as ``dialogue``), or show them again."""
        members = self._copy()
        self._member(members, name).hidden = bool(hide)
        return Cast(members)

    def to_dict(self) -> dict:
        return {"format": CAST_FORMAT, "version": CAST_VERSION, "characters": [m.to_dict() for m in self.members]}

    @classmethod
    def from_dict(cls, data, where: str = "this cast") -> "Cast":
        """Read the cast format (also a bare list of characters, as the JSON book holds it)."""
        items = data.get("characters") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise AudiobookError(f'{where} is not a cast: it needs a "characters" list of {{"name", "voice"}} objects.')
        members: list[CastMember] = []
        for i, item in enumerate(items, 1):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
                raise AudiobookError(f'Character {i} of {where} has no "name".')
            voice, lines = item.get("voice") or "", item.get("lines") or 0
            if not isinstance(voice, str) or isinstance(lines, bool) or not isinstance(lines, int):
                raise AudiobookError(f'Character {i} of {where} needs a text "voice" and a whole number of "lines".')
            name = speaker_name(item["name"])
            if name == NARRATOR or any(m.name == name for m in members):
                continue
            aliases, gender = item.get("aliases") or [], item.get("gender") or ""
            if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases) or gender not in GENDERS:
                raise AudiobookError(f'Character {i} of {where} needs "aliases" as a list of names and a "gender" of '
                                     '"male", "female" or "".')
            members.append(CastMember(name, lines, voice.strip(), str(item.get("preview") or ""),
                                      [" ".join(a.split()) for a in aliases if a.strip()], gender,
                                      bool(item.get("hidden")), str(item.get("description") or "")))
        return cls(members)


def load_cast(path: str | Path) -> Cast:
    """Read a ``cast.json`` (or a JSON book, whose ``cast`` is used); AudiobookError when it is not one."""
    p = Path(path)
    data = read_json_file(p, "cast file", f"There is no cast file at {p}.", encoding="utf-8-sig")
    if isinstance(data, dict) and data.get("format") == "audiobook-book":
        data = data.get("cast") or []
    return Cast.from_dict(data, p.name)


def save_cast(cast: Cast, path: str | Path) -> Path:
    """Write ``cast`` as JSON (atomically)."""
    from ..files import atomic_write_text

    p = Path(path)
    atomic_write_text(p, json.dumps(cast.to_dict(), ensure_ascii=False, indent=1) + "\n")
    return p


# ---------------------------------------------------------------- the book's spans and cast


def cast_of(chapters: Iterable, previous: Cast | None = None, characters: CharacterList | None = None) -> Cast:
    """Every speaker of the chapters' spans but the narrator, most lines first, with a preview line.

    Voices, descriptions and what the user set (aliases, gender, hidden) come from
    ``previous``; aliases and guessed genders found in the text from ``characters``.
    ``previous``'s characters with a voice, or hidden, but no lines in this book stay
    listed (with 0 lines) so the user's choice is not lost.
    """
    lines: dict[str, int] = {}
    preview: dict[str, str] = {}
    for ch in chapters:
        for s in getattr(ch, "spans", None) or []:
            if s.speaker == NARRATOR or not s.text.strip():
                continue
            lines[s.speaker] = lines.get(s.speaker, 0) + 1
            line = " ".join(s.text.split())
            if s.speaker not in preview or len(preview[s.speaker]) < 20 <= len(line):
                preview[s.speaker] = line[:PREVIEW_CHARS]
    old = {m.name: m for m in (previous.members if previous else [])}
    found = {c.name: c for c in (characters.characters if characters else [])}

    def member(name: str, count: int, line: str) -> CastMember:
        was, c = old.get(name), found.get(name)
        aliases = list(was.aliases if was else [])
        aliases += [a for a in (c.aliases if c else []) if a not in aliases and a != name]
        return CastMember(name, count, was.voice if was else "", line, aliases,
                          (was.gender if was and was.gender else c.gender if c else ""),
                          was.hidden if was else False, was.description if was else "")

    members = [member(n, lines[n], preview[n]) for n in sorted(lines, key=lambda n: (n == DIALOGUE, -lines[n], n))]
    members += [replace(member(m.name, 0, m.preview), preview=m.preview) for m in old.values()
                if m.name not in lines and (m.voice or m.hidden or m.aliases)]
    return Cast(members)


def book_characters(book, cast: Cast | None = None, chapters: Iterable[int] | None = None) -> CharacterList:
    """The characters of ``book``: those of ``cast`` and of the book's cast (with their aliases, genders and
    hidden ones), then the ones the text's speech verbs name, clustered."""
    known: dict[str, Character] = {}
    for m in (book.cast.members if book.cast else []) + (cast.members if cast else []):
        if m.name not in (NARRATOR, DIALOGUE):
            known[m.name] = m.character()
    todo = range(len(book.chapters)) if chapters is None else chapters
    return find_characters((book.chapters[i].text for i in todo), known.values())


_AUTOMATIC = set(RULES) | {"llm"}


def recast_book(book, cast: Cast, speakers: dict[str, str]):
    """The book with the parts of each speaker in ``speakers`` given to its new name (a merge, a rename;
    ``dialogue`` for a hidden character), every other part as it was labelled (by the rules, the language
    model, markup or hand), and the lines of ``cast`` counted again."""
    chapters = []
    for ch in book.chapters:
        if ch.spans:
            ch = replace(ch, spans=merge_spans(
                replace(s, speaker=speakers[s.speaker], rule="" if speakers[s.speaker] == DIALOGUE else s.rule)
                if s.speaker in speakers else s for s in ch.spans))
        chapters.append(ch)
    return replace(book, chapters=chapters, cast=cast_of(chapters, cast))


def relabel_book(book, cast: Cast, llm: "LLM | None" = None, progress: Callable[[int, int], None] | None = None):
    """``label_book`` again after the cast was edited: chapters whose speakers were all found automatically
    are labelled anew with ``cast`` (its names, aliases and hidden characters); markup and parts the user
    set stay."""
    chapters = []
    for ch in book.chapters:
        spans = ch.spans or []
        automatic = all(s.rule in _AUTOMATIC or (not s.rule and s.speaker in (NARRATOR, DIALOGUE)) for s in spans)
        chapters.append(replace(ch, spans=None) if automatic else ch)
    return label_book(replace(book, chapters=chapters, cast=cast), cast, llm, progress)


def label_book(book, cast: Cast | None = None, llm: "LLM | None" = None, progress: Callable[[int, int], None] | None = None):
    """A copy of ``book`` where every chapter has spans, and its ``cast`` is counted again.

    Chapters that already have spans (markup, a JSON book) keep them. The others get
    their quotes attributed by the rules of ``attribution`` to the characters of
    ``cast``, of the book's cast and of the text; with ``llm``, a language model labels
    each chapter with those labels as hints, and they are the fallback for any answer
    that is rejected. Returns ``(book, warnings)``: one sentence per rejected answer.
    """
    todo = [i for i, ch in enumerate(book.chapters) if ch.spans is None]
    characters = book_characters(book, cast, todo)
    chapters, warnings = list(book.chapters), []
    for n, i in enumerate(todo):
        text = chapters[i].text
        spans = label_spans(text, characters)
        if llm is not None:
            try:
                spans, why = llm.label(text, characters, hints=spans)
            except AudiobookError as e:  # already asked twice
                raise AudiobookError(f"{e} It failed twice, on chapter {i + 1} ({chapters[i].title}).") from None
            warnings += [f"Chapter {i + 1} ({chapters[i].title}): {w}" for w in why]
        chapters[i] = replace(chapters[i], spans=spans)
        if progress:
            progress(n + 1, len(todo))
    previous = Cast([replace(m) for m in (book.cast.members if book.cast else [])])
    for m in (cast.members if cast else []):  # the given cast wins over the book's
        old = previous.get(m.name)
        previous = Cast([x for x in previous.members if x.name != m.name]
                        + [replace(m, voice=m.voice or (old.voice if old else ""))])
    labelled = replace(book, chapters=chapters)
    return replace(labelled, cast=cast_of(chapters, previous, characters)), warnings
