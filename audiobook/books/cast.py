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
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

from ..attribution import find_characters, label_spans
from ..characters import GENDERS, Character, CharacterList
from ..dialogue import DIALOGUE, NARRATOR, Span, join_spans, merge_spans, speaker_name
from ..errors import AudiobookError
from ..files import read_json_file

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
        return Character(self.name, list(self.aliases), self.gender, self.hidden)


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
            spans, why = llm.label(text, characters, hints=spans)
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


# ---------------------------------------------------------------- a language model as labeller

LLM_WINDOW_CHARS = 4000  # text sent to the model at once, cut at paragraph ends
_PLAIN = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"', "\u2018": "'",
                        "\u2019": "'", "\u201a": "'", "\u300c": '"', "\u300d": '"'})
_SYSTEM = (
    "You label who speaks each part of a story. Cut the text you are given into consecutive parts and "
    "return only JSON: {\"spans\": [{\"speaker\": \"...\", \"text\": \"...\"}]}. The texts of the parts, one "
    "after the other, must be the given text exactly: copy every word and punctuation mark, change nothing, "
    "add nothing, leave nothing out. A part is either narration (speaker \"narrator\") or the words one "
    "character says, quote marks included (speaker: that character's name as the story writes it, or "
    "\"dialogue\" when you cannot tell who speaks)."
)


def _windows(text: str, size: int = LLM_WINDOW_CHARS) -> list[str]:
    """Pieces of ``text`` at most about ``size`` characters long, cut after paragraph breaks; they join to ``text``."""
    pieces, start = [], 0
    while len(text) - start > size:
        cut = text.rfind("\n\n", start, start + size)
        if cut <= start:
            cut = text.find("\n\n", start + size)
            if cut < 0:
                break
        cut += 2
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def _answer_spans(content: str) -> list[tuple[str, str]]:
    """``(speaker, text)`` pairs from a model's answer; ValueError when it is not the asked-for JSON."""
    body = content.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", body, re.DOTALL)
    if fence:
        body = fence.group(1)
    starts = [i for i in (body.find("{"), body.find("[")) if i >= 0]
    if not starts:
        raise ValueError("no JSON")
    data, _ = json.JSONDecoder().raw_decode(body[min(starts):])
    items = data.get("spans") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ValueError("no spans")
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise ValueError("a span without text")
        out.append((speaker_name(str(item.get("speaker") or NARRATOR)) or NARRATOR, item["text"]))
    return out


def align_labels(text: str, labelled: list[tuple[str, str]]) -> list[Span]:
    """Spans of ``text`` (exactly) from a model's ``(speaker, text)`` parts; ValueError when they differ.

    The parts must hold the same characters as ``text`` in the same order; only white
    space and the kind of quote mark may differ. The cuts between parts are carried over
    to ``text``, whose own white space is kept.
    """
    mine = [(i, c) for i, c in enumerate(text) if not c.isspace()]
    theirs = "".join(c for _, t in labelled for c in t if not c.isspace())
    if "".join(c for _, c in mine).translate(_PLAIN) != theirs.translate(_PLAIN):
        raise ValueError("rewritten")
    spans, count, pos = [], 0, 0
    for n, (speaker, part) in enumerate(labelled):
        count += sum(1 for c in part if not c.isspace())
        end = len(text) if n == len(labelled) - 1 or count >= len(mine) else mine[count][0]
        spans.append(Span(text[pos:end], speaker))
        pos = end
    return merge_spans(spans)


@dataclass(frozen=True)
class LLM:
    """An OpenAI-compatible chat endpoint (Ollama, LM Studio, llama.cpp's server, ...) that labels spans."""

    url: str
    model: str
    timeout_s: float = 120.0
    context_tokens: int = 8192

    @classmethod
    def from_settings(cls, s) -> "LLM":
        if not s.llm_url.strip():
            raise AudiobookError("Labelling with a language model needs its address: set llm_url in Advanced Settings, "
                                 "for example http://127.0.0.1:11434/v1 for Ollama.")
        return cls(s.llm_url.strip(), s.llm_model.strip(), float(s.llm_timeout_s), int(s.llm_context_tokens))

    @property
    def endpoint(self) -> str:
        url = self.url.rstrip("/")
        if url.endswith("/chat/completions"):
            return url
        if re.fullmatch(r"https?://[^/]+", url):
            url += "/v1"
        return url + "/chat/completions"

    def chat(self, system: str, user: str) -> str:
        """The model's answer to one exchange; AudiobookError with a sentence when the server fails."""
        body = json.dumps({"model": self.model, "temperature": 0, "stream": False,
                           "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]})
        request = urllib.request.Request(self.endpoint, data=body.encode("utf-8"),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                data = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:200].strip()
            raise AudiobookError(f"The language model at {self.endpoint} answered with error {e.code}"
                                 f"{f' ({detail})' if detail else ''}; check the llm_model setting.") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise AudiobookError(f"Could not reach the language model at {self.endpoint} ({reason}); start it, "
                                 "or fix llm_url in Advanced Settings, or label without it.") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise AudiobookError(f"The server at {self.endpoint} did not answer like an OpenAI-compatible chat endpoint.") from None
        try:
            return str(data["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise AudiobookError(f"The server at {self.endpoint} did not answer like an OpenAI-compatible chat endpoint.") from None

    def label(self, text: str, characters=(), hints: list[Span] | None = None) -> tuple[list[Span], list[str]]:
        """Spans of a chapter labelled by the model, with one sentence per rejected answer.

        The chapter goes in pieces that fit the model's context, each with the character
        list and the rules' labels of its quotes as hints. Each answer must rebuild its
        piece word for word; a rewritten or invalid answer is asked for once more, then
        rejected, and that piece keeps the rules' labels. A server that fails twice
        raises AudiobookError.
        """
        if isinstance(characters, CharacterList):
            chars = [c for c in characters.characters if not c.hidden]
        else:
            chars = [Character(n) for n in characters if n not in (NARRATOR, DIALOGUE)]
        if hints is None:
            hints = label_spans(text, characters if isinstance(characters, CharacterList) else CharacterList(chars))
        who = _character_lines(chars)
        spans: list[Span] = []
        warnings: list[str] = []
        pos = 0
        for window in _windows(text, self.window_chars):
            start, pos = pos, pos + len(window)
            mine = _slice_spans(hints, start, pos)
            if not window.strip():
                spans += mine
                continue
            prompt = f"{who}{_hint_lines(mine)}Text:\n{window}"
            for attempt in (1, 2):
                try:
                    answer = _retrying(lambda: self.chat(_SYSTEM, prompt))
                    spans += [replace(s, rule="llm") if s.speaker != NARRATOR else s
                              for s in align_labels(window, _answer_spans(answer))]
                    break
                except ValueError as e:
                    if attempt == 1:
                        continue
                    what = "changed the text" if str(e) == "rewritten" else "was not the JSON list of spans asked for"
                    warnings.append(f"the language model's answer {what} twice, so it was rejected and the speakers "
                                    "found by the rules are kept for that part.")
                    spans += mine
        spans = merge_spans(spans)
        if join_spans(spans) != text:  # pragma: no cover - align_labels guarantees it
            raise AudiobookError("The labelled spans do not rebuild the chapter.")
        return spans, warnings

    @property
    def window_chars(self) -> int:
        """Characters of text per request: the context less the instructions and the answer (about twice the
        text, as JSON), at about four characters a token."""
        return max(1000, min(LLM_WINDOW_CHARS * 4, int((self.context_tokens - 1000) * 4 / 3.2)))


def _retrying(call):
    """``call()``, and once more when the server fails; the second failure's AudiobookError goes up."""
    try:
        return call()
    except AudiobookError:
        return call()


def _slice_spans(spans: list[Span], a: int, b: int) -> list[Span]:
    """The parts of ``spans`` between characters ``a`` and ``b`` of their text."""
    out, pos = [], 0
    for s in spans:
        lo, hi = max(a, pos), min(b, pos + len(s.text))
        if lo < hi:
            out.append(replace(s, text=s.text[lo - pos:hi - pos]))
        pos += len(s.text)
    return out


def _character_lines(chars: list[Character]) -> str:
    if not chars:
        return ""
    rows = []
    for c in chars[:60]:
        extra = [f"also {', '.join(c.aliases[:4])}"] if c.aliases else []
        extra += [c.gender] if c.gender else []
        rows.append(f"- {c.name} ({'; '.join(extra)})" if extra else f"- {c.name}")
    return "Characters (use these names):\n" + "\n".join(rows) + "\n\n"


def _hint_lines(spans: list[Span]) -> str:
    rows = [f"- {' '.join(s.text.split())[:60]} -> {s.speaker}" for s in spans
            if s.speaker not in (NARRATOR,) and s.text.strip()]
    if not rows:
        return ""
    return ("Speakers a rule-based finder guessed for the quotes (\"dialogue\": unknown; they may be wrong):\n"
            + "\n".join(rows[:200]) + "\n\n")
