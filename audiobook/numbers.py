"""Numbers written as words in the book's language, as a narrator says them.

``numbers_to_words`` speaks money, times, ordinals, decades, years, percentages, degrees,
decimals and plain numbers through num2words; each language's grouped thousands are read as
one number ("10 000" and "10 000" in French, "10.000" and "10'000" in German, "10,000" in
English). Chinese, Japanese and Korean keep their digits (their voices read digits well).
"""

from __future__ import annotations

import re


# Languages whose numbers use "," for decimals and "." or a space for thousands.
_COMMA_DECIMAL = {"de", "fr", "es", "it", "pt", "nl", "ru", "pl", "cs", "sk", "da", "no", "sv", "fi", "tr", "uk", "ro", "hu", "id", "lt", "lv", "sl", "sr", "ca", "be", "kz"}
# Languages whose TTS reads digits natively and where num2words adds nothing.
_KEEP_DIGITS = {"zh", "ja", "ko", "yue"}
_PERCENT = {"en": "percent", "de": "Prozent", "fr": "pour cent", "es": "por ciento", "it": "per cento", "pt": "por cento", "nl": "procent"}
_DEGREES = {"en": ("degree", "degrees"), "de": ("Grad", "Grad"), "fr": ("degré", "degrés"), "es": ("grado", "grados")}
_CURRENCY_EN = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
                "€": ("euro", "euros", "cent", "cents"), "¥": ("yen", "yen", "sen", "sen")}
_SCALE = r"(?:\s+(thousand|million|billion|trillion))?"


def _num2words_lang(lang: str) -> str | None:
    from num2words import CONVERTER_CLASSES

    return lang if lang in CONVERTER_CLASSES and lang not in _KEEP_DIGITS else None


def _words(number, lang: str, to: str = "cardinal") -> str:
    from num2words import num2words

    try:
        return num2words(number, lang=lang, to=to)
    except (NotImplementedError, OverflowError, ValueError, TypeError, KeyError, AttributeError):
        return num2words(number, lang=lang) if to != "cardinal" else str(number)


# How each language groups thousands (after ``clean_unicode`` every kind of space is a plain one):
# "10 000" in French and Russian, "10.000" or "10 000" in German, Swiss "10'000", "10,000" in English.
_GROUP_SEPARATORS = {"en": ", ", "fr": " .", "ru": " ", "uk": " ", "be": " ", "de": ". '", "it": ". '",
                     "pl": " .", "cs": " .", "sk": " .", "sv": " .", "fi": " .", "no": " .", "da": ". "}
_DEFAULT_GROUP_SEPARATORS = {True: ". ", False: ", "}  # comma-decimal languages, the others


def group_separators(lang: str) -> str:
    """The characters ``lang`` groups the thousands of a number with."""
    return _GROUP_SEPARATORS.get(lang, _DEFAULT_GROUP_SEPARATORS[lang in _COMMA_DECIMAL])


def _parse_number(raw: str, lang: str):
    """'59,265' -> 59265, '10 000' (fr) -> 10000, '3,14' (de) -> Decimal('3.14'); None if it is not a plain number."""
    for sep in group_separators(lang):
        raw = raw.replace(sep, "")
    if lang in _COMMA_DECIMAL:
        raw = raw.replace(",", ".")
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(raw)
    except InvalidOperation:
        return None
    return int(value) if "." not in raw else value


def numbers_to_words(text: str, language: str = "en") -> str:
    """Write numbers as words: money, times, ordinals, years, percentages, decimals, plain numbers.

    Uses num2words in the book's language; languages it does not know, and Chinese,
    Japanese and Korean (whose voices read digits well), keep their digits.
    """
    from .text import base_language  # text.py speaks numbers through this module

    lang = _num2words_lang(base_language(language))
    if lang is None or not re.search(r"\d", text):
        return text
    en = lang == "en"
    group = "[" + re.escape(group_separators(lang)) + "]"
    if lang in _COMMA_DECIMAL:
        number = rf"\d{{1,3}}(?:{group}\d{{3}})+(?![\d])(?:,\d+)?|\d+(?:,\d+)?"
    else:
        number = rf"\d{{1,3}}(?:{group}\d{{3}})+(?![\d])(?:\.\d+)?|\d+(?:\.\d+)?"
    start, end = r"(?<![\w.,])", r"(?![\d])"

    def cardinal(raw: str) -> str:
        if len(raw) > 1 and raw[0] == "0" and raw.isdigit() or len(raw) > 15:
            return " ".join(_words(int(d), lang) for d in raw if d.isdigit())  # codes, not amounts
        value = _parse_number(raw, lang)
        return raw if value is None else _words(value, lang)

    if en:
        def money(m: re.Match) -> str:
            one, many, sub_one, sub_many = _CURRENCY_EN[m.group(1)]
            value = _parse_number(m.group(2), lang)
            if value is None:
                return m.group(0)
            if m.group(3):  # "$5 million" -> "five million dollars"
                return f"{cardinal(m.group(2))} {m.group(3)} {many}"
            whole = int(value)
            cents = int(round((value - whole) * 100)) if not isinstance(value, int) else 0
            spoken = f"{_words(whole, lang)} {one if whole == 1 else many}"
            if cents:
                spoken += f" and {_words(cents, lang)} {sub_one if cents == 1 else sub_many}"
            return spoken

        text = re.sub(rf"([$£€¥])\s?({number}){_SCALE}{end}", money, text)

        def clock(m: re.Match) -> str:
            hour, minute, half = int(m.group(1)), int(m.group(2)), m.group(3)
            if hour > 24 or minute > 59:
                return m.group(0)
            spoken = _words(hour, lang)
            if minute == 0:
                spoken += "" if half else " o'clock"
            elif minute < 10:
                spoken += f" oh {_words(minute, lang)}"
            else:
                spoken += f" {_words(minute, lang)}"
            return spoken + (f" {half[0].lower()}.m." if half else "")

        text = re.sub(r"(?<![\w:])(\d{1,2}):(\d{2})(?![\d:])(?:\s?([AaPp]\.?[Mm]\.?)(?!\w))?", clock, text)
        text = re.sub(rf"{start}(\d+)(?:st|nd|rd|th)(?!\w)", lambda m: _words(int(m.group(1)), lang, "ordinal"), text)

        def decade(m: re.Match) -> str:
            words = _words(int(m.group(1)), lang, "year")
            return words[:-1] + "ies" if words.endswith("y") else words + "s"

        text = re.sub(rf"{start}(1[1-9]\d0|20\d0)'?s(?!\w)", decade, text)
    # Four-digit numbers that look like years are read as years ("eighteen fifty-one").
    text = re.sub(rf"{start}(1[1-9]\d\d|20\d\d){end}(?![.,]\d)(?!\s?%)",
                  lambda m: _words(int(m.group(1)), lang, "year"), text)
    if lang in _PERCENT:
        text = re.sub(rf"{start}({number})\s?%", lambda m: f"{cardinal(m.group(1))} {_PERCENT[lang]}", text)
    if lang in _DEGREES:
        one, many = _DEGREES[lang]

        def degrees(m: re.Match) -> str:
            value = _parse_number(m.group(1), lang)
            unit = {"C": " Celsius", "F": " Fahrenheit"}.get(m.group(2) or "", "")
            return f"{cardinal(m.group(1))} {one if value == 1 else many}{unit}"

        text = re.sub(rf"{start}({number})\s?°(?:\s?([CF])(?!\w))?", degrees, text)
    text = re.sub(r"(?<![\w.,\-])-(?=\d)", "minus ", text) if en else text
    return re.sub(rf"{start}({number}){end}", lambda m: cardinal(m.group(1)), text)
