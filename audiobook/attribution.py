"""Who says each quote of a chapter, by rules in order of evidence; each answer records its rule.

The rules, strongest first (``RULES``):

* ``said``: a speech verb with a name, an alias or a descriptor next to the quote
  ("said the Hatter", "Alice asked", "the old gentleman began");
* ``pronoun``: a speech verb with "he"/"she", resolved to the most recent character of
  that gender in the narration (the first one named in the nearest sentence naming one);
* ``paragraph``: a paragraph's other quotes go to the speaker of its attributed ones;
* ``turns``: in a run of quoted paragraphs between two characters, turns alternate;
* ``addressee``: a name in the vocative inside a quote ("Dear Prince, ...") is the
  listener; in a conversation of two, the speaker is the other one.

A quote no rule settles is left to ``dialogue``: a speaker is named only on evidence.
``find_characters`` makes the character list these rules resolve names against.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Iterable

from .characters import DETERMINERS, FEMALE, MALE, Character, CharacterList, cluster_names, guess_genders, is_group, norm
from .dialogue import _SPEECH_VERBS, DIALOGUE, NARRATOR, Span, _paragraph_ranges, merge_spans, quote_ranges

RULES = ("said", "pronoun", "paragraph", "turns", "addressee")
# How sure each rule is, for colouring quotes (measured on bench/data/attribution.json; see bench/attribution.py).
CONFIDENCE = {"markup": 1.0, "llm": 0.9, "said": 0.95, "paragraph": 0.9, "pronoun": 0.8, "turns": 0.75, "addressee": 0.7}

_MORE_VERBS = ("twittered snarled sneered moaned groaned sobbed gasped faltered ventured persisted urged responded "
               "chirped chirruped squeaked grumbled bellowed thundered stuttered drawled resumed concluded").split()
_VERB = r"(?:" + "|".join(re.escape(v) for v in sorted(set(_SPEECH_VERBS + _MORE_VERBS), key=len, reverse=True)) + r")"
_W = r"(?:(?:Mr|Mrs|Ms|Dr|St|Mme|Mlle)\.|[^\W\d_][\w'\u2019-]*)"
_PHRASE = rf"(?:{_W}\s+){{0,4}}{_W}"
_ADVERBIAL = r"(?:(?:at last|at length|then|again|now|once more|presently|finally|at once|still)\s+)?"
_AFTER_VERB_WHO = re.compile(rf"^[\s,;:!?\u2014\u2013-]*{_ADVERBIAL}(?:{_VERB})\s+(?P<who>{_PHRASE})")
_AFTER_WHO_VERB = re.compile(rf"^[\s,;:!?\u2014\u2013-]*(?P<who>(?:{_W}\s+){{0,4}}?{_W})\s+(?:\w+ly\s+)?(?:{_VERB})\b")
_BEFORE_WHO_VERB = re.compile(rf"(?P<who>{_PHRASE})\s+(?:\w+ly\s+)?(?:{_VERB})\b[^.!?\"\u201c\u201d\u00ab\u00bb]{{0,40}}$")
_BEFORE_VERB_WHO = re.compile(rf"\b(?:{_VERB})\s+(?P<who>{_PHRASE})\s*[,:\u2014-]?\s*$")
_PRONOUNS = {"he": MALE, "she": FEMALE}
_STOP = set(
    "to as at in on with who whom whose which that and but or for from after when while then again aloud once now "
    "so if not too also still just only very this there here where why how what by into upon out up down over "
    "under about through without within before behind beside is was were be been had has have do did does would "
    "could should will shall may might must can it they them we i you me us him her himself herself "
    "yes no oh ah well then finally suddenly presently at last length quite rather almost half".split())
_PREPOSITIONS = set("at in on with to from of by into upon for over under about through behind beside near after "
                    "before toward towards against among between across around".split())
_TITLE_ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "st.", "mme.", "mlle."}


def _words(phrase: str) -> list[str]:
    """The words of a matched phrase, a full stop after its last word dropped (not after "Mr.")."""
    words = phrase.split()
    if words and words[-1].endswith(".") and words[-1].lower() not in _TITLE_ABBREVIATIONS:
        words[-1] = words[-1].rstrip(".")
    return [w for w in words if w]
_NOBODY = {"one", "other", "others", "another", "every one", "everyone", "everybody", "each", "each other", "none",
           "all", "both", "someone", "somebody", "anyone", "nobody", "no one", "air", "voice", "voices"}
_STARTERS = set("then and but so now yet still when while as at once thus however again presently".split())


@dataclass(frozen=True)
class Quote:
    start: int
    end: int
    para: int  # paragraph of the quote's start
    last_para: int  # paragraph of its end (a speech over several paragraphs)
    before: str  # narration before it in its paragraph (back to the previous quote)
    after: str  # narration after it in its paragraph (up to the next quote)


def quotes_of(text: str) -> list[Quote]:
    ranges = quote_ranges(text)
    paras = _paragraph_ranges(text)
    starts = [p0 for p0, _, _ in paras]

    def para_of(pos: int) -> int:
        return max(0, bisect.bisect_right(starts, pos) - 1)

    out = []
    for k, (a, b) in enumerate(ranges):
        pa, pb = para_of(a), para_of(max(a, b - 1))
        lo = max(paras[pa][0], ranges[k - 1][1] if k else 0)
        hi = min(paras[pb][1], ranges[k + 1][0] if k + 1 < len(ranges) else len(text))
        out.append(Quote(a, b, pa, pb, text[lo:a], text[b:hi] if hi > b else ""))
    return out


def _trim_forward(words: list[str]) -> list[str]:
    """The who-phrase after a verb: "the Swallow who liked" -> "the Swallow"; "one of the Town Councillors"."""
    out: list[str] = []
    for i, w in enumerate(words):
        lw = w.lower().strip(".")
        if lw == "of" and out and i + 1 < len(words) and (words[i + 1][:1].isupper() or words[i + 1].lower() not in DETERMINERS):
            out.append(w)
            continue
        if lw == "of" and out and out[-1].lower() in ("one", "each", "some", "all", "both", "none", "most"):
            out.append(w)
            continue
        if (lw in _STOP and not (not out and lw in DETERMINERS)) or lw == "of" or (lw.endswith("ly") and len(lw) > 3 and lw not in ("lily", "emily", "molly", "polly", "sally", "kelly", "holly")):
            break
        out.append(w)
    while out and out[-1].lower() in DETERMINERS | {"of", "one"}:
        out.pop()
    return out


def _trim_backward(words: list[str]) -> list[str]:
    """The who-phrase before a verb: "Then the old gentleman" -> "the old gentleman"."""
    out: list[str] = []
    for w in reversed(words):
        lw = w.lower().strip(".")
        if lw in _STOP - {"he", "she"} or lw in _STARTERS or (lw.endswith("ly") and len(lw) > 3):
            break
        out.insert(0, w)
        if lw in DETERMINERS:
            break
    while out and out[0].lower() in DETERMINERS - {"the", "a", "an", "his", "her", "their", "its"}:
        out = out[1:]
    return out


def who_phrases(q: Quote) -> list[str]:
    """The phrases naming who says ``q`` ("he", "the Hatter", "Alice"), nearest first."""
    found = []
    m = _AFTER_VERB_WHO.match(q.after)
    if m:
        words = _words(m.group("who"))
        if words and words[0].lower() in _PRONOUNS:
            found.append(words[0].lower())
        else:
            found.append(" ".join(_trim_forward(words)))
    m = _AFTER_WHO_VERB.match(q.after)
    if m:
        words = _words(m.group("who"))
        if len(words) == 1 and words[0].lower() in _PRONOUNS:
            found.append(words[0].lower())
        elif words and words[0].lower() not in _STOP - DETERMINERS:
            found.append(" ".join(_trim_backward(words)))
    m = _BEFORE_WHO_VERB.search(q.before)
    if m:
        words = _words(m.group("who"))
        if words and words[-1].lower() in _PRONOUNS:
            found.append(words[-1].lower())
        else:
            phrase = _trim_backward(words)
            before = words[:len(words) - len(phrase)]
            # "Everybody at the windows cried": "the windows" is where, not who.
            if not (before and before[-1].lower() in _PREPOSITIONS):
                found.append(" ".join(phrase))
    m = _BEFORE_VERB_WHO.search(q.before)
    if m:
        words = _words(m.group("who"))
        found.append(words[0].lower() if words[0].lower() in _PRONOUNS else " ".join(_trim_forward(words)))
    return [f for f in found if f and (f in _PRONOUNS or _plausible(f))]


def _plausible(phrase: str) -> bool:
    """A phrase that can name someone: not a lone determiner or a word that starts sentences."""
    key = norm(phrase)
    return bool(key) and key not in _NOBODY and key not in _STOP and key not in DETERMINERS and key not in _STARTERS and not key.isdigit()


def find_characters(texts: Iterable[str], known: Iterable[Character] = ()) -> CharacterList:
    """The characters that speech verbs name in ``texts`` (and ``known`` ones first, with their aliases),
    clustered and with a guessed gender and their number of mentions."""
    texts = list(texts)
    characters = CharacterList(known)
    for text in texts:
        for q in quotes_of(text):
            for phrase in who_phrases(q):
                if phrase not in _PRONOUNS:
                    characters.add(phrase).mentions += 1
                    break
    cluster_names(characters)
    whole = "\n\n".join(texts)
    guess_genders(characters, whole)
    return characters


# ---------------------------------------------------------------- the rules


def _vocatives(quote: str, characters: CharacterList, pattern) -> set[str]:
    """Characters a quote speaks to: a name at its start or between commas ("Dear Prince, ...", ", Gluck!")."""
    out = set()
    if pattern is None:
        return out
    for m in pattern.finditer(quote):
        left = quote[:m.start()]
        right = quote[m.end():m.end() + 2]
        opening = not left.strip(" \"'\u201c\u201d\u2018\u00ab\u00bb") or re.search(r"(?:,|\b[Dd]ear|\b[Oo]h?|\bmy)\s*(?:little\s+|dear\s+|good\s+|poor\s+)?$", left)
        if opening and re.match(r"\s*[,!?.;\u201d\"]", right):
            c = characters.resolve(m.group(0))
            if c is not None:
                out.add(c.name)
    return out


_SOMEONE_ELSE = re.compile(
    rf"^[\s,;:!?\u2014\u2013-]*(?:(?:they|we|you|I|one|someone|somebody|everybody|everyone)\s+(?:\w+ly\s+)?(?:{_VERB})\b"
    rf"|{_ADVERBIAL}(?:{_VERB})\s+(?:they|we|I|someone|somebody|everybody|everyone)\b)", re.IGNORECASE)
_SOMEONE_ELSE_BEFORE = re.compile(rf"\b(?:they|we|you|I)\s+(?:\w+ly\s+)?(?:{_VERB})\b[^.!?\"\u201c\u201d]{{0,40}}$", re.IGNORECASE)
# Gendered people the narration names who may be no one in the list: "the young man", "a beautiful girl".
_PERSON = re.compile(r"\b(?:[Tt]he|[Aa]n?|[Hh]is|[Hh]er|[Tt]heir|[Ii]ts)\s+(?:[a-z-]+\s+){0,2}?(?P<noun>man|gentleman|boy|lad|fellow|king|"
                     r"prince|father|brother|son|husband|woman|lady|girl|mother|sister|daughter|wife|queen|princess|maid)\b")
_NOUN_GENDER = {**{w: MALE for w in "man gentleman boy lad fellow king prince father brother son husband".split()},
                **{w: FEMALE for w in "woman lady girl mother sister daughter wife queen princess maid".split()}}
_OBJECT_BEFORE = re.compile(r"\b(?:" + "|".join(sorted(_PREPOSITIONS)) + r")\s+(?:(?:the|a|an|his|her|their|its|my|poor|little|old|dear)\s+)*$",
                            re.IGNORECASE)
UNKNOWN_PERSON = "?"


def attribute(text: str, characters: CharacterList) -> list[tuple[int, int, str, str]]:
    """``(start, end, speaker, rule)`` of every quote of ``text``; speaker "" and rule "" when no rule tells."""
    quotes = quotes_of(text)
    pattern = characters.mention_pattern()
    hidden = {c.name for c in characters.characters if c.hidden}
    names = [p for c in characters.characters for p in c.phrases()]
    gender = {c.name: ("group" if c.group or is_group(c.name, names) else c.gender) for c in characters.characters}
    who: list[str] = [""] * len(quotes)
    rule: list[str] = [""] * len(quotes)
    pronoun: list[str] = [""] * len(quotes)
    # Quotes whose own attribution names someone no rule can place ("they said"): no other rule guesses them.
    elsewhere = [bool(_SOMEONE_ELSE.match(q.after) or _SOMEONE_ELSE_BEFORE.search(q.before)) for q in quotes]
    to_para: dict[int, set[str]] = {}
    for q in quotes:
        to_para.setdefault(q.para, set()).update(_vocatives(text[q.start:q.end], characters, pattern))
    addressed = [to_para[q.para] for q in quotes]

    # Rule 1: a speech verb with a name, alias or descriptor.
    for k, q in enumerate(quotes):
        for phrase in who_phrases(q):
            if phrase in _PRONOUNS:
                pronoun[k] = phrase
                break
            c = characters.resolve(phrase)
            if c is not None:
                who[k], rule[k] = c.name, "said"
            elif not elsewhere[k]:
                elsewhere[k] = True  # someone the list does not know
            break
    mentions = _mentions(text, quotes, characters, pattern)
    paras = _paragraph_ranges(text)

    # Rule 2: "he said" -> the most recent character of that gender.
    for k, q in enumerate(quotes):
        if who[k] or not pronoun[k]:
            continue
        found = _resolve_pronoun(text, k, quotes, who, mentions, gender, _PRONOUNS[pronoun[k]], paras)
        if found.startswith(UNKNOWN_PERSON):  # "the young man ... he cried": a new character
            c = characters.add(found.split(":", 1)[1])
            c.gender = c.gender or _PRONOUNS[pronoun[k]]
            found = c.name
            gender[c.name] = c.gender
        if found and found not in addressed[k]:
            who[k], rule[k] = found, "pronoun"
        else:
            elsewhere[k] = True

    def spread_paragraphs():
        by_para: dict[int, set[str]] = {}
        for k, q in enumerate(quotes):
            if who[k]:
                by_para.setdefault(q.para, set()).add(who[k])
                by_para.setdefault(q.last_para, set()).add(who[k])
        for k, q in enumerate(quotes):
            same = by_para.get(q.para, set()) | by_para.get(q.last_para, set())
            if not who[k] and not elsewhere[k] and len(same) == 1 and next(iter(same)) not in addressed[k]:
                who[k], rule[k] = next(iter(same)), "paragraph"

    # Rule 3: a paragraph's other quotes.
    spread_paragraphs()
    # Rules 4 and 5: turns and addressees in runs of quoted paragraphs.
    _turns(text, quotes, who, rule, addressed, elsewhere, mentions, paras)
    spread_paragraphs()
    return [(q.start, q.end, "" if who[k] in hidden else who[k], "" if who[k] in hidden else rule[k])
            for k, q in enumerate(quotes)]


def _mentions(text, quotes, characters, pattern) -> list[tuple[int, str, bool]]:
    """``(position, name, object)`` of the characters the narration names, outside quotes; a gendered person
    who is no one in the list ("the young man") is ``UNKNOWN_PERSON`` + "male"/"female"; ``object`` when a
    preposition comes first ("to the Prince"), so that no "he" names them."""
    starts = [q.start for q in quotes]

    def inside(pos: int) -> bool:
        i = bisect.bisect_right(starts, pos) - 1
        return i >= 0 and quotes[i].start <= pos < quotes[i].end

    found: dict[int, str] = {}
    for m in _PERSON.finditer(text):
        if not inside(m.start()):
            c = characters.resolve(m.group(0))
            found[m.start()] = c.name if c is not None else f"{UNKNOWN_PERSON}{_NOUN_GENDER[m.group('noun')]}:{m.group(0)}"
    if pattern is not None:
        for m in pattern.finditer(text):
            if inside(m.start()):
                continue
            c = characters.resolve(m.group(0))
            if c is not None:
                # A known name wins over an unknown person that overlaps it.
                for p in [p for p in found if p <= m.start() < p + 40 and found[p].startswith(UNKNOWN_PERSON)]:
                    if m.start() - p < 30:
                        del found[p]
                found[m.start()] = c.name
    return [(p, name, bool(_OBJECT_BEFORE.search(text, max(0, p - 40), p))) for p, name in sorted(found.items())]


def _sentences_before(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """Sentence ranges of ``text[lo:hi]``, last first."""
    out, start = [], lo
    for m in re.finditer(r"[.!?;]+[\"'\u201d\u2019]?\s+", text[lo:hi]):
        out.append((start, lo + m.end()))
        start = lo + m.end()
    if start < hi:
        out.append((start, hi))
    return out[::-1]


def _gender_of(name: str, gender: dict) -> str:
    if name.startswith(UNKNOWN_PERSON):
        return name[len(UNKNOWN_PERSON):].split(":", 1)[0]
    return gender.get(name, "")


def _resolve_pronoun(text, k, quotes, who, mentions, gender, g, paras, max_paragraphs: int = 6) -> str:
    """The character a "he"/"she" next to quote ``k`` names, going back sentence by sentence (earlier quotes
    count as their speaker): the person of gender ``g`` (or of unknown gender) named in the nearest sentence
    that names one, not after a preposition. "" when that sentence names two; ``UNKNOWN_PERSON`` when the
    person is no one in the list. A quote before it in its paragraph gives its speaker."""
    q = quotes[k]
    if k and quotes[k - 1].para == q.para and who[k - 1] and _gender_of(who[k - 1], gender) in (g, "", "group"):
        return who[k - 1]  # "Yes," said the Mayor. "And," he added, "..."
    lo_limit = paras[max(0, q.para - max_paragraphs)][0]
    pos, j = q.start, k - 1
    while pos > lo_limit:
        prev_end = quotes[j].end if j >= 0 else 0
        lo = max(prev_end, lo_limit)
        for s0, s1 in _sentences_before(text, lo, pos):
            named = []
            for p, name, obj in mentions:
                if s0 <= p < s1 and not obj and _gender_of(name, gender) in (g, "") and name not in named:
                    named.append(name)
            if len(named) == 1:
                return named[0]
            if named:
                return ""
        if j < 0 or prev_end <= lo_limit:
            break
        if who[j] and _gender_of(who[j], gender) == g:
            return who[j]
        pos = quotes[j].start
        j -= 1
    return ""


def _turns(text, quotes, who, rule, addressed, elsewhere, mentions, paras) -> None:
    """Turn-taking and addressees: runs of paragraphs that hold quotes, with no narration-only paragraph
    between them; each paragraph is one turn. A paragraph whose narration names someone outside the two
    talking, or says "they said", is no one's turn here."""
    by_para: dict[int, list[int]] = {}
    for k, q in enumerate(quotes):
        by_para.setdefault(q.para, []).append(k)
    mentioned: dict[int, set[str]] = {}
    starts = [p0 for p0, _, _ in paras]
    for p, name, _ in mentions:
        mentioned.setdefault(max(0, bisect.bisect_right(starts, p) - 1), set()).add(name)
    runs: list[list[int]] = []
    for p in sorted(by_para):
        if runs and p == runs[-1][-1] + 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    for run in runs:
        changed = True
        while changed:
            changed = False
            speakers = [_turn_speaker(by_para[p], who) for p in run]
            for i, p in enumerate(run):
                if speakers[i] != "" or any(elsewhere[k] for k in by_para[p]):
                    continue
                pair = {t for t in speakers[max(0, i - 3):i + 4] if t}
                to = addressed[by_para[p][0]]
                if len(pair) != 2 or mentioned.get(p, set()) - pair:
                    continue
                guess, why = "", ""
                if i >= 2 and speakers[i - 2] and speakers[i - 1] and speakers[i - 2] != speakers[i - 1]:
                    guess, why = speakers[i - 2], "turns"
                elif i + 2 < len(run) and speakers[i + 2] and speakers[i + 1] and speakers[i + 2] != speakers[i + 1]:
                    guess, why = speakers[i + 2], "turns"
                elif 0 < i < len(run) - 1 and speakers[i - 1] and speakers[i - 1] == speakers[i + 1]:
                    guess, why = next(iter(pair - {speakers[i - 1]})), "turns"  # A, ?, A: the other one
                if to and len(pair - to) == 1 and (not guess or guess in to):
                    guess, why = next(iter(pair - to)), "addressee"
                if guess and guess not in to:
                    for k in by_para[p]:
                        who[k], rule[k] = guess, why
                    speakers[i] = guess
                    changed = True


def _turn_speaker(ks: list[int], who: list[str]) -> str | None:
    """The one speaker of a paragraph's quotes ("" when none is known; None when two are)."""
    names = {who[k] for k in ks if who[k]}
    return next(iter(names)) if len(names) == 1 else ("" if not names else None)


def label_spans(text: str, characters: CharacterList, narrator: str = NARRATOR) -> list[Span]:
    """Spans of ``text``: the quotes apart from the narration, each with its speaker and the rule that found it."""
    spans, pos = [], 0
    for a, b, speaker, why in attribute(text, characters):
        spans.append(Span(text[pos:a], narrator))
        spans.append(Span(text[a:b], speaker or DIALOGUE, rule=why))
        pos = b
    spans.append(Span(text[pos:], narrator))
    return merge_spans(spans)
