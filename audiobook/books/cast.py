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

from ..dialogue import DIALOGUE, NARRATOR, Span, discover_names, find_dialogue, join_spans, merge_spans, speaker_name
from ..errors import AudiobookError
from ..files import read_json_file

CAST_FILE = "cast.json"
CAST_FORMAT = "audiobook-cast"
CAST_VERSION = 1
PREVIEW_CHARS = 160  # the preview line shown in the cast table


@dataclass
class CastMember:
    """One character: ``lines`` spoken in the book, the ``voice`` that reads them ("" for none yet)."""

    name: str
    lines: int = 0
    voice: str = ""  # a saved voice's name or a built-in speaker's
    preview: str = ""  # one of their lines

    def to_dict(self) -> dict:
        return {"name": self.name, "lines": self.lines, "voice": self.voice, "preview": self.preview}


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
            members.append(CastMember(name, lines, voice.strip(), str(item.get("preview") or "")))
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


def cast_of(chapters: Iterable, previous: Cast | None = None) -> Cast:
    """Every speaker of the chapters' spans but the narrator, most lines first, with a preview line.

    Voices come from ``previous``; its characters with a voice but no lines in this book
    stay listed (with 0 lines) so a mapping is not lost.
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
    members = [CastMember(n, lines[n], old[n].voice if n in old else "", preview[n])
               for n in sorted(lines, key=lambda n: (n == DIALOGUE, -lines[n], n))]
    members += [CastMember(m.name, 0, m.voice, m.preview) for m in old.values() if m.name not in lines and m.voice]
    return Cast(members)


def label_book(book, cast: Cast | None = None, llm: "LLM | None" = None, progress: Callable[[int, int], None] | None = None):
    """A copy of ``book`` where every chapter has spans, and its ``cast`` is counted again.

    Chapters that already have spans (markup, a JSON book) keep them. The others get
    quoted dialogue attributed to the names of ``cast``, of the book's cast and of the
    "said Name" phrases found in the book; with ``llm``, a language model labels them
    and the dialogue finder is the fallback for any answer that is rejected. Returns
    ``(book, warnings)``: one sentence per rejected answer.
    """
    known = list(cast.names() if cast else []) + [m.name for m in (book.cast.members if book.cast else [])]
    todo = [i for i, ch in enumerate(book.chapters) if ch.spans is None]
    names = known + [n for n in discover_names(book.chapters[i].text for i in todo) if n not in known]
    chapters, warnings = list(book.chapters), []
    for n, i in enumerate(todo):
        text = chapters[i].text
        if llm is not None:
            spans, why = llm.label(text, names)
            warnings += [f"Chapter {i + 1}: {w}" for w in why]
        else:
            spans = find_dialogue(text, names)
        chapters[i] = replace(chapters[i], spans=spans)
        if progress:
            progress(n + 1, len(todo))
    previous = Cast([replace(m) for m in (book.cast.members if book.cast else [])])
    for m in (cast.members if cast else []):  # the given cast's voices win over the book's
        previous = previous.with_voice(m.name, m.voice or previous.voice_of(m.name))
    labelled = replace(book, chapters=chapters)
    return replace(labelled, cast=cast_of(chapters, previous)), warnings


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


def _windows(text: str) -> list[str]:
    """Pieces of ``text`` at most about LLM_WINDOW_CHARS long, cut after paragraph breaks; they join to ``text``."""
    pieces, start = [], 0
    while len(text) - start > LLM_WINDOW_CHARS:
        cut = text.rfind("\n\n", start, start + LLM_WINDOW_CHARS)
        if cut <= start:
            cut = text.find("\n\n", start + LLM_WINDOW_CHARS)
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

    @classmethod
    def from_settings(cls, s) -> "LLM":
        if not s.llm_url.strip():
            raise AudiobookError("Labelling with a language model needs its address: set llm_url in Advanced Settings, "
                                 "for example http://127.0.0.1:11434/v1 for Ollama.")
        return cls(s.llm_url.strip(), s.llm_model.strip(), float(s.llm_timeout_s))

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

    def label(self, text: str, names: Iterable[str] = ()) -> tuple[list[Span], list[str]]:
        """Spans of a chapter labelled by the model, with one sentence per rejected answer.

        Each window's answer must rebuild its text word for word; a rewritten or invalid
        answer is rejected and that window keeps the dialogue finder's labels.
        """
        names = [n for n in names if n not in (NARRATOR, DIALOGUE)]
        who = f"Characters known so far: {', '.join(names)}.\n\n" if names else ""
        spans: list[Span] = []
        warnings: list[str] = []
        for window in _windows(text):
            if not window.strip():
                spans.append(Span(window))
                continue
            try:
                spans += align_labels(window, _answer_spans(self.chat(_SYSTEM, f"{who}Text:\n{window}")))
            except ValueError as e:
                what = "changed the text" if str(e) == "rewritten" else "was not the JSON list of spans asked for"
                warnings.append(f"the language model's answer {what}, so it was rejected and the quotes found in the text are used instead.")
                spans += find_dialogue(window, names)
        spans = merge_spans(spans)
        if join_spans(spans) != text:  # pragma: no cover - align_labels guarantees it
            raise AudiobookError("The labelled spans do not rebuild the chapter.")
        return spans, warnings
