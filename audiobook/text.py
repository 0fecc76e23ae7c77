"""Normalising text and cutting it into sentence-aligned chunks.

Two steps, kept apart so each can be tested alone:

* ``normalize`` makes text speakable: one Unicode form, plain quotes and dashes, no
  invisible characters, the user's pronunciation dictionary, common abbreviations
  and numbers written as words in the book's language (``numbers.py``).
* ``chunk_text``/``plan_chunks`` cut normalised text into chunks of whole sentences
  (pysbd) of at most ``chunk_chars`` characters that never cross a chapter.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

from .dialogue import NARRATOR
from .errors import AudiobookError
from .files import read_json_file
from .numbers import numbers_to_words  # noqa: F401 (the normaliser's numbers step; also imported from here)

DEFAULT_CHUNK_CHARS = 500
MIN_CHUNK_CHARS = 1
# pysbd is slow on huge runs of text; longer paragraphs are cut at a likely sentence
# end first so the segmenter only ever sees a window of this size.
SEGMENT_WINDOW_CHARS = 5000


@dataclass(frozen=True)
class Chunk:
    """A run of whole sentences inside one chapter, at most ``chunk_chars`` long.

    ``chapter`` and ``index`` place it in the book; ``is_title`` marks the spoken chapter
    title; ``paragraph_end``/``chapter_end`` say which pause follows it. ``speaker`` and
    ``style`` come from the chapter's spans; ``turn_end`` says another speaker follows.
    """

    chapter: int
    index: int
    text: str
    is_title: bool = False
    paragraph_end: bool = False
    chapter_end: bool = False
    speaker: str = NARRATOR
    style: str = ""
    turn_end: bool = False
    book_text: str = ""  # the book's own words of it (before the dictionary and number expansion); "": same as text


# ---------------------------------------------------------------- languages


# Qwen3-TTS names its languages in words; the text rules need ISO 639-1 codes.
_LANGUAGE_NAMES = {"english": "en", "chinese": "zh", "japanese": "ja", "korean": "ko", "german": "de",
                   "french": "fr", "russian": "ru", "portuguese": "pt", "spanish": "es", "italian": "it", "auto": "en"}


def base_language(language: str | None) -> str:
    """'en-US' -> 'en'; 'English' -> 'en'; '', 'auto' or None -> 'en' (the default narration language)."""
    code = (language or "").strip().replace("_", "-").split("-")[0].lower()
    return _LANGUAGE_NAMES.get(code, code) or "en"


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u3000-\u303f\uff00-\uffef]")


def is_cjk(char: str) -> bool:
    """True for a Chinese, Japanese or Korean character (scripts written without spaces)."""
    return bool(_CJK.match(char))


# ---------------------------------------------------------------- pronunciations


@dataclass(frozen=True)
class Pronunciations:
    """A user's pronunciation dictionary: whole-word replacements applied before chunking.

    The JSON file is one object, ``{"written form": "spoken form", ...}``.

    Case rules:

    * a key written all in lower case matches in any case ("qwen" matches "Qwen" and
      "QWEN");
    * a key with any capital letter matches only exactly as written ("US" replaces
      "US" but never "us");
    * the replacement is inserted exactly as written.

    Keys match whole words only (never inside a longer word); a key may hold several
    words or punctuation ("Dr. Who"). Where keys overlap, the longest wins. Keys in
    scripts written without spaces (Chinese, Japanese) match anywhere.
    """

    entries: tuple[tuple[str, str], ...] = ()
    _pattern: re.Pattern | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_dict(cls, mapping: dict) -> "Pronunciations":
        """Build from ``{"written": "spoken"}``; raise AudiobookError on anything else."""
        if not isinstance(mapping, dict):
            raise AudiobookError('A pronunciation dictionary must be a JSON object such as {"Qwen": "chwen"}.')
        entries = []
        for key, value in mapping.items():
            if not isinstance(value, str) or not str(key).strip():
                raise AudiobookError(f'The pronunciation of "{key}" must be a non-empty word and a text replacement.')
            entries.append((str(key).strip(), value))
        entries.sort(key=lambda kv: -len(kv[0]))  # longest first, so it wins in the alternation
        parts = []
        for key, _ in entries:
            body = re.escape(key)
            if not key.islower():
                flags = ""
            else:
                flags = "(?i:"  # case-insensitive for lower-case keys
            start = "" if is_cjk(key[0]) else r"(?<!\w)"
            end = "" if is_cjk(key[-1]) else r"(?!\w)"
            parts.append(f"{start}{flags}{body}{')' if flags else ''}{end}")
        pattern = re.compile("|".join(parts)) if parts else None
        return cls(tuple(entries), pattern)

    def apply(self, text: str) -> str:
        """Return ``text`` with every whole-word match replaced."""
        if self._pattern is None:
            return text
        exact = dict(self.entries)
        lower = {k.lower(): v for k, v in self.entries if k.islower()}

        def repl(m: re.Match) -> str:
            found = m.group(0)
            return exact[found] if found in exact else lower[found.lower()]

        return self._pattern.sub(repl, text)


def load_pronunciations(path: str | Path) -> Pronunciations:
    """Read a pronunciation dictionary JSON file (see ``Pronunciations`` for the rules)."""
    p = Path(path)
    data = read_json_file(p, "pronunciation dictionary", f"There is no pronunciation dictionary at {p}.")
    return Pronunciations.from_dict(data)


# ---------------------------------------------------------------- unicode clean-up

# Invisible characters that only steer layout; ZWJ/ZWNJ stay because some scripts need them.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200e\u200f\u2060\ufeff\u180e"), None)
_QUOTES = str.maketrans({
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u2033": '"',
    "\u2039": "'", "\u203a": "'",
})
_DASHES = re.compile(r"\s*(?:[\u2012\u2014\u2015\u2e3a\u2e3b]|(?<!-)--(?!-))\s*")
_RANGE = re.compile(r"(?<=\d)\s*[\u2013\u2012]\s*(?=\d)")
_EN_DASH = re.compile(r"\s*\u2013\s*")


def clean_unicode(text: str) -> str:
    """One Unicode form, ligatures split, plain quotes, one kind of dash, no invisible characters."""
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).translate(_QUOTES)
    text = text.replace("\u2026", "...").replace("\u2044", "/")
    text = _RANGE.sub(" to ", text)  # 1851–1900 reads as a range
    text = _DASHES.sub(" \u2014 ", text)
    text = _EN_DASH.sub(" \u2014 ", text)
    text = re.sub(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+", " ", text)
    return re.sub(r" *\n *", "\n", text).strip()


# ---------------------------------------------------------------- abbreviations

# (pattern, spoken form, may end a sentence); patterns match at a word start.
_ABBREVIATIONS: dict[str, list[tuple[str, str, bool]]] = {
    "en": [
        (r"Mr\.", "Mister", False), (r"Mrs\.", "Missus", False), (r"Ms\.", "Miz", False),
        (r"Dr\.(?=\s+[A-Z])", "Doctor", False), (r"Prof\.", "Professor", False),
        (r"St\.(?=\s+[A-Z])", "Saint", False), (r"St\.", "Street", True),
        (r"Jr\.", "Junior", True), (r"Sr\.", "Senior", True), (r"Capt\.", "Captain", False),
        (r"Col\.", "Colonel", False), (r"Gen\.", "General", False), (r"Lt\.", "Lieutenant", False),
        (r"Sgt\.", "Sergeant", False), (r"Rev\.", "Reverend", False), (r"Hon\.", "Honourable", False),
        (r"Mt\.", "Mount", False), (r"vs\.", "versus", False), (r"etc\.", "et cetera", True),
        (r"e\.g\.", "for example", False), (r"i\.e\.", "that is", False), (r"approx\.", "approximately", False),
        (r"No\.(?=\s*\d)", "number", False), (r"Nos\.(?=\s*\d)", "numbers", False),
        (r"Fig\.(?=\s*\d)", "figure", False), (r"Vol\.(?=\s*\d)", "volume", False),
        (r"pp?\.(?=\s*\d)", "page", False),
    ],
    "de": [
        (r"z\.\s?B\.", "zum Beispiel", False), (r"d\.\s?h\.", "das heißt", False), (r"u\.\s?a\.", "unter anderem", True),
        (r"usw\.", "und so weiter", True), (r"bzw\.", "beziehungsweise", False), (r"Dr\.", "Doktor", False),
        (r"Hr\.", "Herr", False), (r"Fr\.", "Frau", False), (r"Nr\.(?=\s*\d)", "Nummer", False),
        (r"ca\.", "circa", False), (r"Prof\.", "Professor", False),
    ],
    "fr": [
        (r"M\.(?=\s+[A-Z])", "Monsieur", False), (r"Mme\.?(?=\s)", "Madame", False), (r"Mlle\.?(?=\s)", "Mademoiselle", False),
        (r"Dr\.?(?=\s+[A-Z])", "Docteur", False), (r"etc\.", "et cetera", True), (r"p\.\s?ex\.", "par exemple", False),
    ],
    "es": [
        (r"Sr\.", "señor", False), (r"Sra\.", "señora", False), (r"Srta\.", "señorita", False),
        (r"Dr\.", "doctor", False), (r"Dra\.", "doctora", False), (r"etc\.", "etcétera", True),
    ],
}


@lru_cache(maxsize=None)
def _abbreviation_rules(lang: str) -> list[tuple[re.Pattern, str, bool]]:
    return [(re.compile(r"(?<![\w.])" + pat), spoken, ends) for pat, spoken, ends in _ABBREVIATIONS.get(lang, [])]


def expand_abbreviations(text: str, language: str = "en") -> str:
    """Write common abbreviations out ("Dr. Smith" -> "Doctor Smith") for the book's language."""
    for pattern, spoken, may_end in _abbreviation_rules(base_language(language)):

        def repl(m: re.Match, spoken=spoken, may_end=may_end) -> str:
            # The abbreviation's period may also close the sentence: keep it then.
            rest = m.string[m.end():m.end() + 3]
            if may_end and (not rest.strip() or re.match(r"\s+[\"'(]?[A-Z]", rest)):
                return spoken + "."
            return spoken

        text = pattern.sub(repl, text)
    return text


# ---------------------------------------------------------------- titles

_ROMAN = re.compile(r"^M{0,4}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})$")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
_TITLE_KEYWORDS = r"chapter|part|book|section|volume|vol\.|act|scene|canto|letter|stave|appendix|lecture|lesson|tale"


def roman_to_int(numeral: str) -> int | None:
    """'XII' -> 12; None when the string is not a well-formed Roman numeral."""
    numeral = numeral.upper()
    if not numeral or not _ROMAN.match(numeral):
        return None
    total = 0
    for i, ch in enumerate(numeral):
        value = _ROMAN_VALUES[ch]
        total += -value if i + 1 < len(numeral) and _ROMAN_VALUES[numeral[i + 1]] > value else value
    return total


def speakable_title(title: str, language: str = "en") -> str:
    """A chapter title as it should be spoken.

    Roman numerals after words such as Chapter/Part/Book, or leading a title
    ("IV. Death by Water"), become numbers; all-capital titles become title case so a
    voice does not spell them out. The result still goes through ``normalize``.
    """
    title = " ".join(title.split())

    def keyword(m: re.Match) -> str:
        value = roman_to_int(m.group(2))
        return f"{m.group(1)} {value}" if value and (m.group(2).isupper() or m.group(2).islower()) else m.group(0)

    title = re.sub(rf"(?i)\b({_TITLE_KEYWORDS})\s+([IVXLCDMivxlcdm]+)\b(?!')", keyword, title)

    def leading(m: re.Match) -> str:
        value = roman_to_int(m.group(1))
        return f"{value}{m.group(2)}" if value else m.group(0)

    title = re.sub(r"^([IVXLCDM]+)([.:)]\s)", leading, title)
    if re.fullmatch(r"[IVXLCDM]+\.?", title) and roman_to_int(title.rstrip(".")):
        title = str(roman_to_int(title.rstrip(".")))
    letters = [c for c in title if c.isalpha()]
    if len(letters) > 3 and all(c.isupper() for c in letters if c.upper() != c.lower()):
        title = re.sub(r"[^\W\d_]+('[^\W\d_]+)?", lambda m: m.group(0).capitalize(), title)
        # Small words stay small inside a title ("The Burial of the Dead").
        title = re.sub(r"(?<=[^\W\d_] )(Of|The|A|An|And|Or|In|On|To|For|By|At)\b", lambda m: m.group(0).lower(), title)
    spoken = normalize(title, language)
    return spoken[:1].upper() + spoken[1:]


# ---------------------------------------------------------------- normalise


def normalize(text: str, language: str = "en", pronunciations: Pronunciations | None = None) -> str:
    """Make text speakable and return it; paragraph breaks ("\\n\\n") are kept.

    Steps, in order: Unicode clean-up (``clean_unicode``), the user's pronunciation
    dictionary, abbreviations, numbers (both for the book's ``language``). No word of
    the text is dropped.
    """
    text = clean_unicode(text)
    if pronunciations is not None:
        text = pronunciations.apply(text)
    text = expand_abbreviations(text, language)
    text = numbers_to_words(text, language)
    return re.sub(r"[ \t]+", " ", text).strip()


# ---------------------------------------------------------------- sentences


@lru_cache(maxsize=None)
def _segmenter(lang: str):
    import pysbd
    from pysbd.languages import LANGUAGE_CODES

    return pysbd.Segmenter(language=lang if lang in LANGUAGE_CODES else "en", clean=False)


_FALLBACK_END = re.compile(r"(?<=[.!?。！？…])[\"')\]”’」』]*\s*")
_WINDOW_CUT = re.compile(r"[.!?。！？][\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|[。！？]")


def _windows(paragraph: str) -> list[str]:
    """Cut a very long paragraph near sentence ends into pieces pysbd handles quickly."""
    pieces, start = [], 0
    while len(paragraph) - start > SEGMENT_WINDOW_CHARS:
        cut = None
        for m in _WINDOW_CUT.finditer(paragraph, start + SEGMENT_WINDOW_CHARS // 2, start + SEGMENT_WINDOW_CHARS):
            cut = m.end()
        if cut is None:
            space = paragraph.rfind(" ", start + 1, start + SEGMENT_WINDOW_CHARS)
            cut = space if space > start else start + SEGMENT_WINDOW_CHARS
        pieces.append(paragraph[start:cut])
        start = cut
    pieces.append(paragraph[start:])
    return pieces


def split_sentences(paragraph: str, language: str = "en") -> list[str]:
    """Cut one paragraph into sentences with pysbd; their concatenation keeps every character."""
    sentences: list[str] = []
    for window in _windows(paragraph):
        sentences += _split_window(window, base_language(language))
    return [s for s in sentences if s]


def _split_window(text: str, lang: str) -> list[str]:
    try:
        # The processor alone: Segmenter.segment() would also compute character spans
        # with one fresh regex per sentence, which is most of its time; the spans are
        # found below more cheaply.
        segmenter = _segmenter(lang)
        segments = segmenter.processor(text).process() if text else []
    except Exception:  # pysbd has rare internal errors on odd input; fall back below
        segments = None
    # pysbd may alter text on odd input, so its segments are mapped back onto the
    # original and only used as cut points: no character can be lost or moved.
    cuts, cursor = [], 0
    for seg in segments or []:
        seg = seg.strip()
        if not seg:
            continue
        pos = text.find(seg, cursor)
        if pos < 0:
            cuts = None
            break
        cursor = pos + len(seg)
        cuts.append(cursor)
    if not cuts:
        cuts = [m.end() for m in _FALLBACK_END.finditer(text)]
    out, prev = [], 0
    for cut in cuts + [len(text)]:
        if cut > prev:
            out.append(text[prev:cut].strip())
            prev = cut
    return [s for s in out if s]


# ---------------------------------------------------------------- chunks

_CLAUSE = re.compile(r"[;:,\u2014、，；：](?=\s|$)|[、，；：]| \u2014 ")


def _join(left: str, right: str) -> str:
    if not left:
        return right
    # Scripts without spaces are joined without one.
    return left + right if is_cjk(left[-1]) and is_cjk(right[0]) else f"{left} {right}"


def cut_at_clauses(text: str, limit: int, clause: re.Pattern = _CLAUSE) -> list[str]:
    """``text`` cut into pieces of at most ``limit`` characters: each at the last ``clause`` end that
    fits past a quarter of the piece, else at the last space, else anywhere (one word, or a run of
    CJK, longer than ``limit``)."""
    pieces = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit + 1]
        cut = max((m.end() for m in clause.finditer(window) if limit // 4 < m.end() <= limit), default=0)
        if not cut:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = limit
        head, rest = rest[:cut].strip(), rest[cut:].strip()
        if head:
            pieces.append(head)
    if rest:
        pieces.append(rest)
    return pieces


def chunk_text(text: str, chunk_chars: int = DEFAULT_CHUNK_CHARS, language: str = "en",
               pronunciations: Pronunciations | None = None) -> list[tuple[str, bool]]:
    """Cut a chapter's text into ``(chunk text, paragraph_end)`` pairs.

    The text is normalised first; chunks pack whole sentences up to ``chunk_chars``
    characters and never cross a paragraph; a longer sentence is cut at a clause
    boundary. No chunk is longer than ``chunk_chars``.
    """
    return [(t, end) for t, end, _ in chunk_sources(text, chunk_chars, language, pronunciations, book_texts=False)]


def chunk_sources(text: str, chunk_chars: int = DEFAULT_CHUNK_CHARS, language: str = "en",
                  pronunciations: Pronunciations | None = None, book_texts: bool = True) -> list[tuple[str, bool, str]]:
    """``chunk_text`` with each chunk's book text: ``(chunk text, paragraph_end, book text)``.

    The book text is the chunk's sentences as the book writes them (Unicode cleaned, before
    the pronunciation dictionary, abbreviations and numbers); "" where it is the chunk text
    itself, or where the chunk does not start and end on a sentence of the book (a long
    sentence cut at a clause). Without ``book_texts`` every book text is "" (no second pass of
    the sentence splitter: planning a render whose takes are not checked stays as fast).
    """
    if chunk_chars < MIN_CHUNK_CHARS:
        raise AudiobookError(f"Chunk size must be at least {MIN_CHUNK_CHARS} character.")
    spoken_paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", normalize(text, language, pronunciations))]
    book_paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", clean_unicode(text))]
    if len(book_paras) != len(spoken_paras):
        book_paras = [""] * len(spoken_paras)
    out: list[tuple[str, bool, str]] = []
    for para, book in zip(spoken_paras, book_paras):
        if not para:
            continue
        same = para == book
        if len(para) <= chunk_chars:
            out.append((para, True, "" if same else book))  # fits whole: no need to find its sentences
            continue
        pieces: list[tuple[str, bool]] = []
        current = ""
        for sentence in split_sentences(para, language):
            for piece in cut_at_clauses(sentence, chunk_chars):
                joined = _join(current, piece)
                if current and len(joined) > chunk_chars:
                    pieces.append((current, False))
                    current = piece
                else:
                    current = joined
        if current:
            pieces.append((current, True))
        books = [""] * len(pieces) if same or not book or not book_texts else _book_sentences(
            [t for t, _ in pieces], book, language, pronunciations)
        out += [(t, end, b) for (t, end), b in zip(pieces, books)]
    return out


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _book_sentences(chunks: list[str], book: str, language: str, pronunciations: Pronunciations | None) -> list[str]:
    """The book's sentences behind each chunk of one paragraph: the paragraph's own sentences are
    normalised one by one and matched to the chunks in order; "" for a chunk they do not make up."""
    raw = split_sentences(book, language)
    spoken = [_squash(normalize(s, language, pronunciations)) for s in raw]
    out, k = [], 0
    for chunk in chunks:
        want, got, start = _squash(chunk), "", k
        while k < len(raw) and len(got) < len(want):
            got += spoken[k]
            k += 1
        if got != want:
            return out + [""] * (len(chunks) - len(out))  # out of step (a cut sentence): nothing more to match
        text = _join_sentences(raw[start:k], language)
        out.append("" if text == chunk else text)
    return out


def _join_sentences(sentences: list[str], language: str) -> str:
    joined = ""
    for s in sentences:
        joined = _join(joined, s)
    return joined


_ENDS_PARAGRAPH = re.compile(r"\n\s*\n\s*$")
_STARTS_PARAGRAPH = re.compile(r"^\s*\n\s*\n")


def chunk_spans(spans, chunk_chars: int = DEFAULT_CHUNK_CHARS, language: str = "en",
                pronunciations: Pronunciations | None = None) -> list[tuple[str, bool, str, str, bool]]:
    """Cut a chapter's spans into ``(text, paragraph_end, speaker, style, turn_end)``, never across a span.

    A span's last chunk ends a paragraph when a paragraph break follows it (in its own
    text, in white space between spans or at the start of the next span) or the chapter
    ends; ``turn_end`` marks a chunk after which another speaker talks.
    """
    return [row[:5] for row in _span_chunks(spans, chunk_chars, language, pronunciations, False)]


def _span_chunks(spans, chunk_chars: int, language: str,
                 pronunciations: Pronunciations | None, book_texts: bool = True) -> list[tuple[str, bool, str, str, bool, str]]:
    """``chunk_spans`` with each chunk's book text last (see ``chunk_sources``)."""
    spoken = [(k, s) for k, s in enumerate(spans) if s.text.strip()]
    out: list[tuple[str, bool, str, str, bool, str]] = []
    for n, (k, span) in enumerate(spoken):
        pieces = chunk_sources(span.text, chunk_chars, language, pronunciations, book_texts)
        if not pieces:
            continue
        nxt = spoken[n + 1] if n + 1 < len(spoken) else None
        between = span.text + "".join(s.text for s in spans[k + 1:nxt[0]]) if nxt else ""
        last_para = nxt is None or bool(_ENDS_PARAGRAPH.search(between)) or bool(_STARTS_PARAGRAPH.match(nxt[1].text))
        turn = nxt is not None and nxt[1].speaker != span.speaker
        for i, (t, para_end, book) in enumerate(pieces):
            last = i == len(pieces) - 1
            out.append((t, last_para if last else para_end, span.speaker, span.style, turn and last, book))
    return out


def plan_chunks(chapters: Iterable, chunk_chars: int = DEFAULT_CHUNK_CHARS, language: str = "en",
                speak_titles: bool = True, pronunciations: Pronunciations | None = None,
                progress: Callable[[int, int], None] | None = None, book_texts: bool = False) -> list[Chunk]:
    """Every chunk of the book in reading order.

    ``chapters`` are objects with ``title`` and ``text`` (``books.Chapter``), and
    ``spans`` where the chapter has speakers: then chunks follow the spans and carry
    their speaker and style. With ``speak_titles`` each chapter starts with its spoken
    title (``is_title``, read by the narrator), unless the chapter's text is only that
    title. The last chunk of every chapter has ``chapter_end``. ``progress(done, total)``
    is called after each chapter. With ``book_texts`` each chunk carries the book's own
    words (``Chunk.book_text``) for checking its takes.
    """
    chapters = list(chapters)
    chunks: list[Chunk] = []
    for ci, chapter in enumerate(chapters):
        spans = getattr(chapter, "spans", None)
        if spans:
            body = _span_chunks(spans, chunk_chars, language, pronunciations, book_texts)
        else:
            body = [(t, p, NARRATOR, "", False, b)
                    for t, p, b in chunk_sources(chapter.text, chunk_chars, language, pronunciations, book_texts)]
        items: list[tuple] = []
        title = chapter.title.strip()
        body_is_title = title and " ".join(chapter.text.split()) == " ".join(title.split())
        if speak_titles and title and not body_is_title:
            spoken = speakable_title(title, language)
            if pronunciations is not None:
                spoken = pronunciations.apply(spoken)
            said = chunk_text(spoken, chunk_chars, language)
            written = " ".join(clean_unicode(title).split())
            items += [(t, True, True, NARRATOR, "", False,
                       written if book_texts and len(said) == 1 and written != t else "")
                      for t, _ in said]
        items += [(t, bool(body_is_title), p, who, style, turn, b) for t, p, who, style, turn, b in body]
        for i, (t, is_title, para_end, who, style, turn, book) in enumerate(items):
            last = i == len(items) - 1
            chunks.append(Chunk(ci, i, t, is_title=is_title, paragraph_end=para_end, chapter_end=last,
                                speaker=who, style=style, turn_end=turn and not last, book_text=book))
        if progress is not None:
            progress(ci + 1, len(chapters))
    return chunks
