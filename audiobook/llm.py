"""A language model as labeller and writer: an OpenAI-compatible chat endpoint (Ollama, LM Studio,
llama.cpp's server, ...) that labels who speaks each part of a chapter, its answer checked.

The model gets the character list and the rules' labels (``attribution``) as hints, a
chapter in pieces sized to its context. An answer must rebuild its piece word for word
(only white space and the kind of quote mark may differ), else it is asked once more and
then rejected, the rules' labels kept; a server that fails is retried once, then the
failure is an AudiobookError sentence.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, replace

from .attribution import label_spans
from .characters import Character, CharacterList
from .dialogue import DIALOGUE, NARRATOR, Span, join_spans, merge_spans, quote_ranges, speaker_name
from .errors import AudiobookError

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
            if not window.strip() or not quote_ranges(window):
                spans += mine  # no one speaks here: nothing to ask
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
