"""Judging a transcript against the book's text: the alignment, and the rules a listener applies.

``judge`` is the one function a take goes through (the render calls it for every take, the
corpus in ``tests/data/check_corpus.json`` runs through it). It normalises both sides alike
(``words.words``), aligns them word by word and fails the take, whatever its word error rate,
when one of the rules below sees what a listener would hear:

========== ==================================================================================
loop       a short phrase said three or more times in a row, more often than the text has it
repeat     a phrase of ``RUN`` words said more often than the text says it (a doubled sentence)
skip       ``RUN`` or more words in a row of the text not heard (a skipped sentence)
extra      ``RUN`` or more words in a row heard that the text does not have (babble)
tail       more than ``TAIL_S`` of speech after the last word of the text (Whisper's segment times)
number     a number of the text missing or changed ("said 1492 for 1942")
negation   a negation of the text missing, or one added ("not", "nicht", "pas", "не", 不, ない)
ending     the last ``MISSING_END_WORDS`` or more words of the text not heard
wer        a word error rate above the setting (``max_wer``)
========== ==================================================================================

``RUN`` is 5 words; Chinese is compared character by character and Japanese kana by kana, so
there it is 8 characters (a Chinese word is 1.5 to 2 characters) and 12 kana (a Japanese word
is about 3 kana read aloud). A text of three words or fewer passes with one substitution that
sounds alike (a title such as "Prologue" heard as "Prolog"): one word is a third of its words.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

from .words import is_number, names, negations, number_value, script_of, words

RUN = {"words": 5, "zh": 8, "ja": 12}
TAIL_S = 1.5
MISSING_END_WORDS = 2
SHORT_TEXT_WORDS = {"words": 3, "ja": 8, "zh": 0}
SENTENCE_WORDS = {"words": 3, "zh": 5, "ja": 8}  # a whole sentence this long, skipped or said twice, fails too
SOUNDS_ALIKE = 0.6  # similarity of two words' sound keys at which a short text's one substitution passes
NAME_MATCH = 0.8  # spelling similarity at which a name Whisper spells its own way is the same word
LOOP_MIN_REPEATS = 3
LOOP_MIN_REPEATS_ONE_WORD = 4
LOOP_MAX_PHRASE = 8
MAX_JOIN = 3  # words one side may write as one ("to-day" / "today", "Zimmer Tür" / "Zimmertür")

EQUAL, SUBSTITUTED, DELETED, INSERTED = "=", "s", "d", "i"
RULES = ("loop", "repeat", "skip", "extra", "tail", "number", "negation", "ending", "wer")


@dataclass(frozen=True)
class Op:
    """One step of an alignment: ``ref`` words of the text against ``hyp`` words heard.

    ``i``/``j`` are the index of the first ref/hyp word; an equal step may join several words
    of one side into one of the other (compounds, a dictionary's respelling)."""

    op: str
    ref: tuple[str, ...]
    hyp: tuple[str, ...]
    i: int
    j: int


@dataclass(frozen=True)
class Segment:
    """A stretch of speech as Whisper timed it."""

    start: float
    end: float
    text: str
    words: tuple = ()  # (word, start, end) where Whisper was asked for word times (the word_timings setting)

    def to_dict(self) -> dict:
        d = {"start": round(self.start, 2), "end": round(self.end, 2), "text": self.text}
        if self.words:
            d["words"] = [{"word": w, "start": round(s, 2), "end": round(e, 2)} for w, s, e in self.words]
        return d

    @classmethod
    def of(cls, s) -> "Segment":
        if isinstance(s, Segment):
            return s
        if isinstance(s, dict):
            return cls(float(s["start"]), float(s["end"]), str(s.get("text", "")))
        start, end, text = s
        return cls(float(start), float(end), str(text))


@dataclass(frozen=True)
class Verdict:
    """What the transcript says about a take: ``rule`` is "" when it passes, else the rule that
    failed it, and ``reason`` says why in words. ``span`` is ``(side, start, end)``: the words
    of the text ("ref") or of the transcript ("hyp") the rule is about, for marking the diff."""

    rule: str
    reason: str
    wer: float
    transcript: str
    span: tuple[str, int, int] | None = None

    @property
    def passed(self) -> bool:
        return not self.rule


# ---- comparing words -----------------------------------------------------------------------------


def _ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def same_name(a: str, b: str) -> bool:
    """Two spellings of one name: both 4+ letters, neither inside the other, spelled nearly alike."""
    if len(a) < 4 or len(b) < 4 or a in b or b in a or is_number(a) or is_number(b):
        return False
    return _ratio(a, b) >= NAME_MATCH


_SOUND = [(r"ph", "f"), (r"[ck]h", "k"), (r"q", "k"), (r"c(?=[eiy])", "s"), (r"c", "k"), (r"z", "s"), (r"v", "f"),
          (r"w", "f"), (r"(?<=.)[aeiouyäöüéèêàâîïôûœ]+", ""), (r"(.)\1+", r"\1"), (r"(?<=.)h", "")]


def sound_key(word: str) -> str:
    """A rough key of how a word sounds: vowels after the first letter and doubled letters dropped,
    letters that sound alike merged ("Prologue" and "Prolog" -> "prlg")."""
    key = word.casefold()
    for pattern, repl in _SOUND:
        key = re.sub(pattern, repl, key)
    return key


def sounds_alike(a: str, b: str) -> bool:
    return _ratio(sound_key(a), sound_key(b)) >= SOUNDS_ALIKE or _ratio(a, b) >= SOUNDS_ALIKE


def align(ref: Sequence[str], hyp: Sequence[str], name_words: frozenset[str] = frozenset(),
          respellings: Mapping[str, set[str]] | None = None, joins: bool = True) -> list[Op]:
    """The cheapest alignment of ``hyp`` (what was heard) to ``ref`` (the text).

    Words are equal when spelled alike, when a name of the text (``name_words``) is spelled
    nearly alike, when up to ``MAX_JOIN`` words of one side written together are the other's
    word (``joins``), or when a text word's ``respellings`` (the pronunciation dictionary,
    written without spaces) is what was heard."""
    n, m = len(ref), len(hyp)
    respellings = respellings or {}
    inf = n + m + 1
    cost = [[inf] * (m + 1) for _ in range(n + 1)]
    back: list[list[tuple[int, int, str] | None]] = [[None] * (m + 1) for _ in range(n + 1)]
    cost[0][0] = 0
    multi = joins or bool(respellings)
    spans = [(a, b) for a in range(1, MAX_JOIN + 1) for b in range(1, MAX_JOIN + 1) if (a, b) != (1, 1)]

    def equal(r: Sequence[str], h: Sequence[str]) -> bool:
        rj, hj = "".join(r), "".join(h)
        if rj == hj and (joins or len(r) == len(h) == 1):
            return True
        if rj in respellings and hj in respellings[rj]:
            return True
        return len(r) == len(h) == 1 and r[0] in name_words and same_name(r[0], h[0])

    for i in range(n + 1):
        for j in range(m + 1):
            c = cost[i][j]
            if i == 0 and j == 0:
                continue
            best, how = c, back[i][j]
            if i and cost[i - 1][j] + 1 < best:
                best, how = cost[i - 1][j] + 1, (1, 0, DELETED)
            if j and cost[i][j - 1] + 1 < best:
                best, how = cost[i][j - 1] + 1, (0, 1, INSERTED)
            if i and j:
                eq = equal(ref[i - 1:i], hyp[j - 1:j])
                step = cost[i - 1][j - 1] + (0 if eq else 1)
                if step < best or (step == best and eq):
                    best, how = step, (1, 1, EQUAL if eq else SUBSTITUTED)
            if multi and i and j:
                for a, b in spans:
                    if a <= i and b <= j and cost[i - a][j - b] < best and equal(ref[i - a:i], hyp[j - b:j]):
                        best, how = cost[i - a][j - b], (a, b, EQUAL)
            cost[i][j], back[i][j] = best, how
    ops: list[Op] = []
    i, j = n, m
    while i or j:
        a, b, op = back[i][j]
        ops.append(Op(op, tuple(ref[i - a:i]), tuple(hyp[j - b:j]), i - a, j - b))
        i, j = i - a, j - b
    ops.reverse()
    return ops


def word_error_rate(ops: Sequence[Op]) -> float:
    """(substitutions + deletions + insertions) / words of the text; joined words count as equal."""
    ref_words = sum(len(op.ref) for op in ops)
    errors = sum(1 for op in ops if op.op != EQUAL)
    if ref_words == 0:
        return 0.0 if errors == 0 else 1.0
    return errors / ref_words


# ---- the rules -------------------------------------------------------------------------------------


def _quote(ws: Sequence[str], cjk: bool) -> str:
    """Words for a reason: all of a few, else the first and last of them."""
    sep, most, head, tail = ("", 16, 6, 4) if cjk else (" ", 7, 3, 2)
    if len(ws) > most:
        return f"{sep.join(ws[:head])} ... {sep.join(ws[-tail:])}"
    return sep.join(ws)


def _stretches(ops: Sequence[Op]) -> list[tuple[int, int]]:
    """(first, last+1) op indices of each stretch of differences between two equal words."""
    out, start = [], None
    for k, op in enumerate(ops):
        if op.op != EQUAL and start is None:
            start = k
        elif op.op == EQUAL and start is not None:
            out.append((start, k))
            start = None
    if start is not None:
        out.append((start, len(ops)))
    return out


def longest_run(ops: Sequence[Op], kind: str) -> tuple[list[str], int, int]:
    """The most words of one ``kind`` (deleted or inserted) in one stretch of differences, with the
    index of their first and last word (in the text for deletions, in the transcript for insertions)."""
    best: tuple[list[str], int, int] = ([], 0, 0)
    for start, end in _stretches(ops):
        found = [op for op in ops[start:end] if op.op == kind]
        if not found:
            continue
        ws = [w for op in found for w in (op.ref if kind == DELETED else op.hyp)]
        if len(ws) > len(best[0]):
            first = found[0].i if kind == DELETED else found[0].j
            last = found[-1].i + 1 if kind == DELETED else found[-1].j + 1
            best = (ws, first, last)
    return best


def repeated_phrase(hyp: Sequence[str], ref: Sequence[str], n: int) -> tuple[list[str], int, int, int]:
    """The longest phrase (of ``n`` words or more) heard more often than the text has it: (phrase, times
    heard, times in the text, index of its last hearing); an empty phrase when there is none."""
    grams = Counter(tuple(hyp[k:k + n]) for k in range(len(hyp) - n + 1))
    in_text = Counter(tuple(ref[k:k + n]) for k in range(len(ref) - n + 1))
    over = [k for k in range(len(hyp) - n + 1) if grams[tuple(hyp[k:k + n])] > max(1, in_text[tuple(hyp[k:k + n])])]
    if not over:
        return [], 0, 0, 0
    groups: list[list[int]] = []
    for k in over:
        if groups and k == groups[-1][-1] + 1:
            groups[-1].append(k)
        else:
            groups.append([k])
    longest = max(len(g) for g in groups)
    group = [g for g in groups if len(g) == longest][-1]
    g0 = tuple(hyp[group[0]:group[0] + n])
    return list(hyp[group[0]:group[-1] + n]), grams[g0], in_text[g0], group[0]


def _repeats_in_a_row(ws: Sequence[str], n: int) -> list[tuple[int, int]]:
    out, i = [], 0
    while i + 2 * n <= len(ws):
        k = 1
        while i + (k + 1) * n <= len(ws) and list(ws[i + k * n:i + (k + 1) * n]) == list(ws[i:i + n]):
            k += 1
        if k > 1:
            out.append((i, k))
            i += k * n
        else:
            i += 1
    return out


def find_loop(heard: Sequence[str], text: Sequence[str]) -> str:
    """A short phrase the take repeats in a row more often than its text does, as 'phrase' xN; '' when none."""
    best, best_len = "", 0
    for n in range(1, LOOP_MAX_PHRASE + 1):
        need = LOOP_MIN_REPEATS_ONE_WORD if n == 1 else LOOP_MIN_REPEATS
        for start, k in _repeats_in_a_row(heard, n):
            phrase = list(heard[start:start + n])
            if k < need:
                continue
            in_text = max((kk for s, kk in _repeats_in_a_row(text, n) if list(text[s:s + n]) == phrase), default=1)
            if k > in_text and k * n > best_len:
                best, best_len = f"'{' '.join(phrase)}' x{k}", k * n
    return best


def missing_ending(ops: Sequence[Op]) -> list[str]:
    """Words at the end of the text that were not heard at all (after the last word that was)."""
    missing: list[str] = []
    for op in reversed(ops):
        if op.op == DELETED:
            missing[:0] = op.ref
        elif op.op != INSERTED:
            break
    return missing


def speech_after_text(ops: Sequence[Op], segments: Sequence[Segment], language: str) -> tuple[float, list[str]]:
    """Seconds of speech Whisper timed after the last word of the text was heard, and the words of it."""
    heard_to = max((op.j + len(op.hyp) for op in ops if op.op in (EQUAL, SUBSTITUTED) and op.hyp), default=0)
    if not segments or not heard_to:
        return 0.0, []
    after, extra, seen = 0.0, [], 0
    for seg in segments:
        ws = words(seg.text, language)
        if seen + len(ws) <= heard_to:
            seen += len(ws)
            continue
        tail = ws[max(0, heard_to - seen):]
        if ws:
            after += max(0.0, seg.end - seg.start) * len(tail) / len(ws)
        extra += tail
        seen += len(ws)
    return round(after, 2), extra


def _numbers(ws: Sequence[str], language: str) -> list[tuple[str, str, int]]:
    """The numbers of a normalised text: (written together, as written, index of its first word); a
    number of several words ("10 30", "одна тысяча восемьсот") is one."""
    out: list[tuple[str, str, int]] = []
    k = 0
    while k < len(ws):
        if not is_number(ws[k], language):
            k += 1
            continue
        start = k
        while k < len(ws) and is_number(ws[k], language):
            k += 1
        out.append(("".join(ws[start:k]), " ".join(ws[start:k]), start))
    return out


def _number_problem(ref: Sequence[str], hyp: Sequence[str], language: str) -> tuple[str, int] | None:
    said_in_text, heard = _numbers(ref, language), _numbers(hyp, language)
    missing = Counter(key for key, _, _ in said_in_text) - Counter(key for key, _, _ in heard)
    if not missing:
        return None
    extra = Counter(key for key, _, _ in heard) - Counter(key for key, _, _ in said_in_text)
    key, written, where = next(n for n in said_in_text if n[0] in missing)
    said = next((w for k, w, _ in heard if k in extra), None)
    written = number_value(written, language)
    return (f"said {number_value(said, language)} for {written}" if said else f"did not say {written}"), where


def _negation_problem(ref, hyp, ops, language) -> tuple[str, tuple[str, int, int] | None] | None:
    in_text, heard = negations(list(ref), language), negations(list(hyp), language)
    cjk = script_of(language) != "words"
    if len(heard) < len(in_text):
        lost = Counter(in_text) - Counter(heard)
        word = next(iter(lost)) if lost else in_text[-1]
        where = next((op.i for op in ops if op.op in (DELETED, SUBSTITUTED) and word in "".join(op.ref)), None)
        if where is None:
            return f"lost a negation ('{word}')", None
        around = ref[max(0, where - 2):where + 3]
        return f"lost the negation '{word}' ('{_quote(around, cjk)}')", ("ref", where, where + 1)
    if len(heard) > len(in_text):
        added = Counter(heard) - Counter(in_text)
        word = next(iter(added)) if added else heard[-1]
        where = next((op.j for op in ops if op.op in (INSERTED, SUBSTITUTED) and word in "".join(op.hyp)), None)
        return f"added a negation ('{word}') the text does not have", (("hyp", where, where + 1)
                                                                         if where is not None else None)
    return None


def sentence_spans(text: str, ref: Sequence[str], language: str) -> list[tuple[int, int]]:
    """(first, last+1) word indices of each sentence of the text in ``ref`` (its normalised words);
    none when the sentences, normalised one by one, do not add up to ``ref``."""
    from ..text import split_sentences

    spans, k = [], 0
    for sentence in split_sentences(" ".join((text or "").split()), language):
        ws = words(sentence, language)
        n = len(ws)
        if list(ref[k:k + n]) != ws:
            return []
        spans.append((k, k + n))
        k += n
    return spans if k == len(ref) else []


def whole_sentence_problem(ops: Sequence[Op], ref: Sequence[str], hyp: Sequence[str], spans, script: str):
    """A sentence of ``SENTENCE_WORDS`` or more skipped whole, or said more often than the text has it:
    (rule, words, span, times heard) or None. Shorter than ``RUN`` words, the run rules would not see it."""
    need = SENTENCE_WORDS[script]
    deleted = set()
    for op in ops:
        if op.op == DELETED:
            deleted.update(range(op.i, op.i + len(op.ref)))
    for a, b in spans:
        if b - a >= need and all(k in deleted for k in range(a, b)):
            return "skip", list(ref[a:b]), ("ref", a, b), 0
    for a, b in spans:
        sentence = list(ref[a:b])
        if b - a < need:
            continue
        n = b - a
        heard = [j for j in range(len(hyp) - n + 1) if list(hyp[j:j + n]) == sentence]
        in_text = sum(1 for j in range(len(ref) - n + 1) if list(ref[j:j + n]) == sentence)
        if len(heard) > in_text:
            return "repeat", sentence, ("hyp", heard[-1], heard[-1] + n), len(heard)
    return None


def _short_text_passes(ops: Sequence[Op], ref: Sequence[str], script: str) -> bool:
    """A text of a few words with one substitution that sounds alike, and nothing else wrong."""
    if not ref or len(ref) > SHORT_TEXT_WORDS[script]:
        return False
    wrong = [op for op in ops if op.op != EQUAL]
    return len(wrong) == 1 and wrong[0].op == SUBSTITUTED and sounds_alike(wrong[0].ref[0], wrong[0].hyp[0])


def respelling_table(pairs: Mapping[str, str] | Sequence[tuple[str, str]] | None,
                     language: str) -> dict[str, set[str]]:
    """A pronunciation dictionary ({written: respelled}) as normalised words written together, so that
    a text word matches what the dictionary made the voice say as well as its written form."""
    table: dict[str, set[str]] = {}
    for written, spoken in dict(pairs or {}).items():
        key, value = "".join(words(written, language)), "".join(words(spoken, language))
        if key and value and key != value:
            table.setdefault(key, set()).add(value)
    return table


def judge(text: str, heard: str, language: str = "en", segments: Sequence = (),
          respellings: Mapping[str, str] | None = None, max_wer: float = 0.3) -> Verdict:
    """The verdict on a take of ``text`` (the book's own words) that Whisper heard as ``heard``.

    ``segments`` are Whisper's timed segments of the take (for the tail rule); ``respellings``
    the pronunciation dictionary ({written: respelled}) the voice was given."""
    script = script_of(language)
    ref, hyp = words(text, language), words(heard, language)
    table = respelling_table(respellings, language)
    ops = align(ref, hyp, names(text, language), table, joins=script == "words")
    wer = round(word_error_rate(ops), 4)
    heard = (heard or "").strip()
    cjk = script != "words"
    run = RUN[script]

    def fail(rule: str, reason: str, span=None) -> Verdict:
        return Verdict(rule, reason, wer, heard, span)

    loop = find_loop(hyp, ref)
    if loop:
        return fail("loop", f"repeats itself ({loop})")
    phrase, times, in_text, at = repeated_phrase(hyp, ref, run)
    if phrase:
        said = {2: "twice", 3: "three times"}.get(times, f"{times} times")
        has = {0: "does not have it", 1: "has it once", 2: "has it twice"}.get(in_text, f"has it {in_text} times")
        return fail("repeat", f"said '{_quote(phrase, cjk)}' {said} (the text {has})", ("hyp", at, at + len(phrase)))
    whole = whole_sentence_problem(ops, ref, hyp, sentence_spans(text, ref, language), script)
    if whole and whole[0] == "repeat":
        said = {2: "twice", 3: "three times"}.get(whole[3], f"{whole[3]} times")
        return fail("repeat", f"said '{_quote(whole[1], cjk)}' {said} (the text has it once)", whole[2])
    skipped, first, last = longest_run(ops, DELETED)
    if whole and whole[0] == "skip" and len(skipped) < run:
        return fail("skip", f"skipped '{_quote(whole[1], cjk)}'", whole[2])
    if len(skipped) >= run:
        return fail("skip", f"skipped '{_quote(skipped, cjk)}'", ("ref", first, last))
    extra, first, last = longest_run(ops, INSERTED)
    if len(extra) >= run:
        return fail("extra", f"said '{_quote(extra, cjk)}', which the text does not have", ("hyp", first, last))
    tail_s, tail = speech_after_text(ops, [Segment.of(s) for s in segments or ()], language)
    if tail_s > TAIL_S:
        quoted = f" ('{_quote(tail, cjk)}')" if tail else ""
        return fail("tail", f"{tail_s:.1f} s of speech after the last word{quoted}",
                    ("hyp", len(hyp) - len(tail), len(hyp)) if tail else None)
    number = _number_problem(ref, hyp, language)
    if number:
        return fail("number", number[0], ("ref", number[1], number[1] + 1))
    negation = _negation_problem(ref, hyp, ops, language)
    if negation:
        return fail("negation", *negation)
    ending = missing_ending(ops)
    if len(ending) >= MISSING_END_WORDS:
        return fail("ending", f"swallowed its ending ('{_quote(ending, cjk)}' not heard)",
                    ("ref", len(ref) - len(ending), len(ref)))
    if wer > max_wer and not _short_text_passes(ops, ref, script):
        return fail("wer", f"says other words than its text (word error rate {wer:.0%})")
    return Verdict("", "", wer, heard)


def marked_diff(text: str, heard: str, language: str = "en", respellings: Mapping[str, str] | None = None,
                span: Sequence | None = None) -> list[tuple[str, str | None]]:
    """Words for showing a take against its text: ``(word, None)`` when it matches, else
    ``(word, "missing")`` for a text word not heard and ``(heard, "heard")`` for a word said instead
    or in addition. Words inside a rule's ``span`` (``Verdict.span``) are marked ``"flagged"``."""
    script = script_of(language)
    ref, hyp = words(text, language), words(heard, language)
    ops = align(ref, hyp, names(text, language), respelling_table(respellings, language), joins=script == "words")
    side, lo, hi = tuple(span) if span else ("", 0, 0)

    def mark(kind: str, k: int, which: str) -> str:
        return "flagged" if which == side and lo <= k < hi else kind

    out: list[tuple[str, str | None]] = []
    for op in ops:
        if op.op == EQUAL:
            out += [(w, None) for w in op.ref]
            continue
        out += [(w, mark("missing", op.i + k, "ref")) for k, w in enumerate(op.ref)]
        out += [(w, mark("heard", op.j + k, "hyp")) for k, w in enumerate(op.hyp)]
    return out
