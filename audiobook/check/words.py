"""One normaliser for both sides of a comparison: the book's text and what Whisper heard.

Both sides go through ``words`` with the book's language, so a difference that remains is
one a listener would hear. English uses Whisper's own English normaliser (the
``whisper-normalizer`` package ships it with its spelling table: "colour" = "color", "can't"
= "can not", "twenty-one" = "21"); other languages a basic one plus what Whisper writes its
own way:

* Roman numerals are numbers ("Kapitel IV" = "Kapitel 4");
* number words are digits where ``text2num`` knows the language ("dix mille" = "10 000" =
  "10000"), and grouped thousands lose their separators (spaces, thin spaces, dots, apostrophes);
* abbreviated chapter words are written out ("Kap." = "Kapitel"), and the abbreviations
  ``text.py`` knows ("M. Dupont" = "Monsieur Dupont");
* Russian ё is е; German ß is ss (case folding);
* Chinese is compared in Simplified characters (OpenCC's Traditional-to-Simplified table),
  character by character, Chinese numerals as digits;
* Japanese is compared on readings (pykakasi: kanji and katakana become hiragana), kana by
  kana, so "私" and "わたし" agree.

Compounds written as one word on one side and two on the other are matched by the alignment
(``rules.align``), not here.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from ..text import base_language, expand_abbreviations, is_cjk, roman_to_int

# Words that negate, as the normaliser leaves them (English: Whisper's normaliser turns "n't" into "not").
NEGATIONS = {
    "en": {"not", "no", "never", "nothing", "nobody", "none", "nor", "neither", "nowhere", "cannot"},
    "de": {"nicht", "kein", "keine", "keinen", "keinem", "keiner", "keines", "nie", "niemals", "nichts",
           "niemand", "nirgends", "weder"},
    "fr": {"ne", "n", "pas", "jamais", "rien", "aucun", "aucune", "nul", "nulle", "ni"},
    "ru": {"не", "нет", "ни", "никогда", "ничего", "ничто", "никто", "нельзя", "нигде", "никуда"},
    "es": {"no", "nunca", "nada", "nadie", "ni", "jamás", "tampoco"},
    "it": {"non", "mai", "niente", "nulla", "nessuno", "né"},
    "pt": {"não", "nunca", "nada", "ninguém", "nem", "jamais"},
    "zh": {"不", "没", "别", "未", "无", "非", "莫", "勿"},
}
# Japanese negation, found in the readings (ない, なかった, なく, ません).
JA_NEGATION = re.compile(r"な(?:い|かっ|く)|ません")

# Abbreviated chapter words, written out before comparing (a title Whisper hears in full).
_CHAPTER_WORDS = {
    "en": {"ch": "chapter", "chap": "chapter", "pt": "part", "vol": "volume", "bk": "book"},
    "de": {"kap": "Kapitel", "bd": "Band", "tl": "Teil"},
    "fr": {"chap": "chapitre", "ch": "chapitre", "vol": "volume", "liv": "livre"},
    "ru": {"гл": "глава", "ч": "часть", "т": "том"},
    "es": {"cap": "capítulo", "vol": "volumen"},
    "it": {"cap": "capitolo", "vol": "volume"},
}
_TITLE_WORDS = {"chapter", "part", "book", "volume", "act", "scene", "kapitel", "teil", "band", "buch", "akt",
                "chapitre", "partie", "livre", "tome", "acte", "глава", "часть", "том", "книга",
                "capítulo", "parte", "libro", "capitolo", "atto", "canto", "section"}
_TEXT2NUM = {"fr", "de", "es", "it", "pt", "nl", "en"}
_ROMAN_TOKEN = re.compile(r"(?<![\w'’])([IVXLCDM]+)(?![\w'’])")
_GROUPED = re.compile(r"(?<![\d.,])\d{1,3}(?:[ \u00a0\u202f\u2009.'’]\d{3})+(?![\d])")
_GROUPED_COMMA = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d])")  # Chinese, Japanese and English write 1,942
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000, "亿": 100_000_000}
_CN_NUMBER = re.compile(r"[零〇一二两三四五六七八九十百千万亿]{2,}|[零〇二三四五六七八九十]")


def is_number(word: str, language: str = "en") -> bool:
    """A number: digits, or (where numbers are compared as words) a number word of the language.

    Japanese counts from two digits on: 一人, 三日, 二度 are words as often as numbers, and
    Whisper may write them in kana."""
    lang = base_language(language)
    if lang == "ja":
        return word.isdigit() and len(word) >= 2
    return any(ch.isdigit() for ch in word) or word in _number_words(lang)


@lru_cache(maxsize=None)
def _number_words(lang: str) -> frozenset[str]:
    """The words num2words writes numbers with, for languages whose number words stay words here."""
    if lang in _TEXT2NUM or lang in ("zh", "ja"):
        return frozenset()
    from ..numbers import _words

    values = list(range(0, 1000)) + [k * 1000 for k in range(1, 21)] + [10 ** 6, 2 * 10 ** 6, 5 * 10 ** 6, 10 ** 9]
    found = {w for n in values for w in re.findall(r"[^\W\d_]+", _words(n, lang).casefold())}
    return frozenset(w.replace("ё", "е") for w in found if len(w) > 1)


@lru_cache(maxsize=None)
def _values(lang: str) -> dict[str, int]:
    from ..numbers import _words

    values = list(range(0, 1000)) + list(range(1000, 2101)) + [k * 1000 for k in range(2, 21)]
    out = {}
    for n in values:
        key = "".join(re.findall(r"[^\W\d_]+", _words(n, lang).casefold())).replace("ё", "е")
        out.setdefault(key, n)
    return out


def number_value(phrase: str, language: str = "en") -> str:
    """A number as digits for a reason ("одна тысяча восемьсот двенадцать" -> "1812"); as it is otherwise."""
    lang = base_language(language)
    if any(ch.isdigit() for ch in phrase) or not _number_words(lang):
        return phrase
    value = _values(lang).get("".join(phrase.split()))
    return phrase if value is None else str(value)


# Ordinal endings after digits ("3e", "3ème", "3rd", "3.") and the ordinal "first", which text2num
# leaves as a word: compared as the bare number.
_ORDINAL_DIGITS = re.compile(r"(?<=\d)(?:er|re|ère|e|ème|eme|es|ᵉ|ᵉʳ|nd|nde|°)(?![^\W\d_])")
_FIRST = {"fr": {"premier", "première", "premiers", "premières"},
          "de": {"erste", "erster", "ersten", "erstes", "erstem"}}


def script_of(language: str) -> str:
    """'zh' and 'ja' compare character by character (kana by kana), every other language word by word."""
    lang = base_language(language)
    return lang if lang in ("zh", "ja") else "words"


# ---- pieces ------------------------------------------------------------------------------------------


def romans_to_digits(text: str, language: str) -> str:
    """Roman numerals written in capitals become digits ("Louis XIV" -> "Louis 14"); a lone
    letter only after a title word ("Chapter V") or as the whole text, and never English "I"."""
    lang = base_language(language)

    def repl(m: re.Match) -> str:
        numeral = m.group(1)
        value = roman_to_int(numeral)
        if not value:
            return numeral
        if len(numeral) == 1:
            before = m.string[:m.start()].split()
            titled = bool(before) and before[-1].rstrip(".").casefold() in _TITLE_WORDS
            alone = not m.string.replace(numeral, "", 1).strip(" .:")
            if (lang == "en" and numeral == "I" and not titled) or not (titled or alone):
                return numeral
        return str(value)

    return _ROMAN_TOKEN.sub(repl, text)


def chapter_words(text: str, language: str) -> str:
    table = _CHAPTER_WORDS.get(base_language(language))
    if not table:
        return text
    pattern = r"(?<!\w)(" + "|".join(map(re.escape, table)) + r")\.(?=\s*[\dIVXLCDM])"
    return re.sub(pattern, lambda m: table.get(m.group(1).casefold(), m.group(1)), text, flags=re.IGNORECASE)


def ungroup_thousands(text: str, commas: bool = False) -> str:
    """'10 000', '10.000', '10 000', "10'000" (and with ``commas`` '10,000') -> '10000'."""
    if commas:
        text = _GROUPED_COMMA.sub(lambda m: m.group(0).replace(",", ""), text)
    return _GROUPED.sub(lambda m: re.sub(r"\D", "", m.group(0)), text)


def chinese_numerals(text: str, single: bool = True) -> str:
    """Chinese numerals as digits: '一九四二' -> '1942', '三百二十' -> '320', '两' -> '2' (lone
    numerals only with ``single``)."""

    def value(run: str) -> str:
        if not any(ch in _CN_UNITS for ch in run):
            return "".join(str(_CN_DIGITS[ch]) for ch in run)
        total, section, digit = 0, 0, None
        for ch in run:
            if ch in _CN_DIGITS:
                digit = _CN_DIGITS[ch]
                continue
            unit = _CN_UNITS[ch]
            if unit >= 10_000:
                total += (section + (digit or 0)) * unit
                section = 0
            else:
                section += (1 if digit is None else digit) * unit
            digit = None
        return str(total + section + (digit or 0))

    return _CN_NUMBER.sub(lambda m: value(m.group(0)) if single or len(m.group(0)) > 1 else m.group(0), text)


@lru_cache(maxsize=1)
def _english():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


@lru_cache(maxsize=1)
def _to_simplified():
    import opencc

    return opencc.OpenCC("t2s")


@lru_cache(maxsize=1)
def _kakasi():
    import pykakasi

    return pykakasi.kakasi()


def _text2num(text: str, lang: str) -> str:
    try:
        from text_to_num import alpha2digit

        return alpha2digit(text, lang)
    except Exception:  # a language or a phrase it does not handle: digits stay as they are
        return text


def _characters(text: str) -> list[str]:
    """CJK characters one by one, runs of digits and of other letters as words."""
    out: list[str] = []
    for m in re.finditer(r"\d+|[^\W\d_]+", text):
        run = m.group(0)
        if run.isdigit():
            out.append(run)
            continue
        word: list[str] = []
        for ch in run:
            if is_cjk(ch):
                if word:
                    out.append("".join(word))
                    word = []
                out.append(ch)
            else:
                word.append(ch)
        if word:
            out.append("".join(word))
    return out


# ---- the normaliser ------------------------------------------------------------------------------------


def words(text: str, language: str = "en") -> list[str]:
    """The words of ``text`` as the comparison sees them (characters or kana for Chinese and Japanese)."""
    lang = base_language(language)
    text = unicodedata.normalize("NFKC", text or "")
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)  # no control characters
    text = romans_to_digits(chapter_words(text, lang), lang)
    if lang == "zh":
        text = ungroup_thousands(_to_simplified().convert(text), commas=True)
        return [w.casefold() for w in _characters(chinese_numerals(text))]
    if lang == "ja":
        text = chinese_numerals(ungroup_thousands(text, commas=True), single=False)
        reading = "".join(item["hira"] for item in _kakasi().convert(text))
        return [w.casefold() for w in _characters(reading)]
    if lang == "en":
        return _english()(ungroup_thousands(expand_abbreviations(text, lang), commas=True)).split()
    text = ungroup_thousands(expand_abbreviations(text, lang))
    if lang in _TEXT2NUM:
        text = _ORDINAL_DIGITS.sub("", ungroup_thousands(_text2num(text, lang)))
    else:  # no number parser for this language: digits become words, as the voice said them
        from ..numbers import numbers_to_words

        text = numbers_to_words(text, lang)
    text = text.casefold()
    if lang in ("ru", "uk", "be"):
        text = text.replace("ё", "е")
    first = _FIRST.get(lang, set())
    return ["1" if w in first else w for w in _WORD.findall(text)]


def negations(tokens: list[str], language: str) -> list[str]:
    """The negating words of a normalised text, in order (Japanese: the negative endings of its readings)."""
    lang = base_language(language)
    if lang == "ja":
        return JA_NEGATION.findall("".join(tokens))
    table = NEGATIONS.get(lang, set())
    return [w for w in tokens if w in table]


_SENTENCE_START = re.compile(r"(?:^|[.!?…:;\"«»“”„(\[—–-]|\n)\s*$")


def names(text: str, language: str = "en") -> frozenset[str]:
    """Normalised words the book writes with a capital inside a sentence (names, and German nouns):
    the only words whose spelling may differ from Whisper's."""
    if script_of(language) != "words":
        return frozenset()
    found: set[str] = set()
    for m in re.finditer(r"[^\W\d_][\w'’-]*", text):
        word = m.group(0)
        if not word[0].isupper() or word.isupper() and len(word) > 1:
            continue
        if _SENTENCE_START.search(text[:m.start()]):
            continue
        found.update(words(word, language))
    return frozenset(found)
