"""Voices for the cast in one action: a description per main character, designed on one of their lines.

For each main character of a labelled book (``main_characters``: the ones who speak most,
not hidden, not ``dialogue``), ``design_cast``:

1. writes a voice description: by the language model when one is given, from the
   sentences of the book that describe the character and a few of their lines; else
   from what the text tells (``describe``): gender, age words in their names ("the old
   gentleman", "the little girl"), the speech verbs and adverbs used with them;
2. has the VoiceDesign model speak one of their own lines in that voice (the caller's
   ``preview``), saves it as a voice (``save``) and maps the character to it.

The narrator keeps its voice. A character can be designed again (``only``), or mapped
to another voice by hand as before.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable

from .attribution import quotes_of, who_phrases
from .characters import FEMALE, MALE, norm
from .dialogue import DIALOGUE, NARRATOR
from .errors import AudiobookError

MAX_DESIGNED = 8  # main characters designed at once
MIN_LINES = 2  # a main character speaks at least this often (unless no one does)
LINE_CHARS = (50, 220)  # the length of the line a voice is designed on
DESCRIPTION_CHARS = 300

_VERB_QUALITIES = {
    "soft, hushed": "whispered whispers murmured murmurs breathed".split(),
    "loud and forceful": "cried cries shouted shouts roared yelled exclaimed bellowed thundered screamed called".split(),
    "low and gruff": "muttered mutters grumbled growled snarled".split(),
    "sharp, clipped": "snapped hissed retorted sneered demanded".split(),
    "bright and cheerful": "laughed chirped chirruped twittered".split(),
    "weary, sad": "sighed moaned sobbed groaned".split(),
    "hesitant": "stammered faltered stuttered".split(),
    "pleading": "pleaded begged implored".split(),
}
_NOT_MANNER = set("only early family holy really nearly hardly merely certainly surely exactly suddenly immediately "
                  "presently directly finally actually probably likely lovely ugly silly".split())
_OLD = {"old", "elderly", "aged", "grandfather", "grandmother", "ancient", "gray", "grey"}
_CHILD = {"boy", "girl", "child", "little", "kid", "lad", "baby", "young"}
_SYSTEM = ("You write voice descriptions for a text-to-speech voice designer. Given what a book says about one "
           "character and some of their lines, answer with one or two sentences describing how their voice sounds: "
           "gender, age, pitch, pace, timbre and manner. Answer with the description only, no name, no quotes.")


def main_characters(cast, limit: int = MAX_DESIGNED) -> list:
    """The characters to design, most lines first: not hidden, not ``dialogue``, speaking at least MIN_LINES
    times (every character who speaks, when no one speaks that often)."""
    members = [m for m in (cast.members if cast else []) if m.name not in (DIALOGUE, NARRATOR) and not m.hidden and m.lines > 0]
    members.sort(key=lambda m: -m.lines)
    main = [m for m in members if m.lines >= MIN_LINES] or members
    return main[:limit]


def their_lines(book, name: str) -> list[str]:
    """What ``name`` says in the book, quote marks off, in book order."""
    out = []
    for ch in book.chapters:
        for s in ch.spans or []:
            if s.speaker == name and s.text.strip():
                out.append(" ".join(s.text.split()).strip("\"'\u201c\u201d\u2018\u2019\u00ab\u00bb\u201e\u300c\u300d ,"))
    return [line for line in out if line]


def design_line(book, name: str) -> str:
    """One of their own lines to design the voice on: the first of a good length, else their longest."""
    lines = their_lines(book, name)
    good = [line for line in lines if LINE_CHARS[0] <= len(line) <= LINE_CHARS[1]]
    if good:
        return good[0]
    if not lines:
        return ""
    longest = max(lines, key=len)
    return longest[:LINE_CHARS[1]].rsplit(" ", 1)[0] if len(longest) > LINE_CHARS[1] else longest


def _names_pattern(member) -> re.Pattern:
    words = [re.escape(p) for p in [member.name] + list(member.aliases) if p]
    return re.compile(r"\b(?:" + "|".join(sorted(words, key=len, reverse=True)) + r")\b", re.IGNORECASE)


def describing_sentences(book, member, limit: int = 8) -> list[str]:
    """Sentences of the narration that name the character, the longer (more telling) first, up to ``limit``."""
    pattern = _names_pattern(member)
    found = []
    for ch in book.chapters:
        for s in ch.spans or []:
            if s.speaker != NARRATOR:
                continue
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(s.text.split())):
                if pattern.search(sentence) and len(sentence) > 25 and sentence not in found:
                    found.append(sentence)
    return sorted(found[:40], key=len, reverse=True)[:limit]


def speech_manner(book, member) -> tuple[Counter, Counter]:
    """The speech verbs and the adverbs ("gruffly") the text uses when this character speaks."""
    verbs, adverbs = Counter(), Counter()
    keys = {norm(p) for p in [member.name] + list(member.aliases)}
    all_verbs = {v for vs in _VERB_QUALITIES.values() for v in vs}
    for ch in book.chapters:
        for q in quotes_of(ch.text):
            phrases = who_phrases(q)
            if not phrases or norm(phrases[0]) not in keys:
                continue
            around = (q.after[:80] + " " + q.before[-80:]).lower()
            verbs.update(w for w in re.findall(r"[a-z]+", around) if w in all_verbs)
            adverbs.update(w for w in re.findall(r"\b([a-z]{4,}ly)\b", around) if w not in _NOT_MANNER)
    return verbs, adverbs


def _adjective(adverb: str) -> str:
    """ "gruffly" -> "gruff", "happily" -> "happy", "ironically" -> "ironic", "terribly" -> "terrible"."""
    if adverb.endswith("ically"):
        return adverb[:-4]
    if adverb.endswith("ily"):
        return adverb[:-3] + "y"
    if adverb.endswith(("bly", "ply", "ntly")) and not adverb.endswith(("antly", "ently")) or adverb == "gently":
        return adverb[:-1] + "e"
    return adverb[:-2]


def describe(book, member) -> str:
    """A voice description from what the text tells of the character (no language model)."""
    words = set()
    for p in [member.name] + list(member.aliases):
        words |= set(norm(p).split())
    age = "elderly" if words & _OLD else "young" if words & _CHILD else ""
    if member.gender == MALE:
        who = "boy" if age == "young" and words & {"boy", "lad", "child", "little"} else "man"
    elif member.gender == FEMALE:
        who = "girl" if age == "young" and words & {"girl", "child", "little"} else "woman"
    else:
        who = "voice"
    if who in ("boy", "girl"):
        age = "young"
    verbs, adverbs = speech_manner(book, member)
    qualities = []
    for quality, vs in _VERB_QUALITIES.items():
        if sum(verbs[v] for v in vs) >= max(1, sum(verbs.values()) // 4):
            qualities.append((sum(verbs[v] for v in vs), quality))
    manner = [q for _, q in sorted(qualities, reverse=True)[:2]]
    manner += [_adjective(a) for a, _ in adverbs.most_common(2)]
    pitch = {"man": "a low, resonant voice", "woman": "a clear, warm voice", "boy": "a high, light voice",
             "girl": "a high, light voice"}.get(who, "a clear, natural voice")
    if age == "elderly":
        pitch = pitch.replace("a ", "a slightly worn, ", 1)
    head = f"An {age} {who}" if age == "elderly" else f"A {age} {who}" if age else f"A {who}" if who != "voice" else "A person"
    text = f"{head} with {pitch}"
    if manner:
        text += ", speaking in a " + ", ".join(dict.fromkeys(manner)) + " way"
    text += f", as the character {member.name} in a story read aloud."
    return text[:DESCRIPTION_CHARS]


def describe_with_llm(llm, book, member) -> str:
    """A voice description written by the language model; AudiobookError when it fails twice."""
    about = describing_sentences(book, member)
    lines = [line for line in their_lines(book, member.name) if len(line) > 15][:5]
    prompt = (f"Character: {member.name}" + (f" (also called {', '.join(member.aliases[:4])})" if member.aliases else "")
              + (f"; {member.gender}" if member.gender else "") + ".\n\n"
              + ("What the book says:\n" + "\n".join(f"- {s}" for s in about) + "\n\n" if about else "")
              + ("Some of their lines:\n" + "\n".join(f"- {line}" for line in lines) + "\n\n" if lines else "")
              + "Describe their voice.")
    last = ""
    for _ in (1, 2):
        answer = " ".join(llm.chat(_SYSTEM, prompt).split()).strip("\"' ")
        if 10 <= len(answer):
            return answer[:DESCRIPTION_CHARS]
        last = answer
    raise AudiobookError(f"The language model gave no voice description for {member.name}"
                         f"{f' (it said: {last!r})' if last else ''}.")


@dataclass
class Designed:
    """One character's new voice: its name, the description and the line it was designed on."""

    character: str
    voice: str
    description: str
    line: str
    wav_path: str = ""


def voice_name(book, character: str) -> str:
    """The saved voice's name: the character and the book, at most 80 characters."""
    title = " ".join((book.title or "").split())[:40]
    name = f"{character} ({title})" if title else character
    return name[:80]


def design_cast(book, preview: Callable[[str, str], object], save: Callable[[object, str], object], llm=None,
                only: list[str] | None = None, progress: Callable[[int, int, str], None] | None = None):
    """Design, save and map a voice for each main character (or the ones in ``only``) of a labelled ``book``.

    ``preview(description, line)`` returns a VoicePreview of the VoiceDesign model;
    ``save(preview, name)`` keeps it as a saved voice. Returns ``(book with the cast mapped,
    [Designed], warnings)``; a character whose design fails is skipped with a warning.
    """
    if book.cast is None or not book.cast.members:
        raise AudiobookError("Find the speakers first: this book has no cast yet.")
    if only:
        wanted = [book.cast.get(n) for n in only]
        missing = [n for n, m in zip(only, wanted) if m is None]
        if missing:
            raise AudiobookError(f"There is no character '{missing[0]}' in this book's cast.")
        todo = wanted
    else:
        todo = main_characters(book.cast)
    if not todo:
        raise AudiobookError("No character speaks in this book, so there is no one to design a voice for.")
    cast, done, warnings = book.cast, [], []
    for n, member in enumerate(todo):
        if progress:
            progress(n, len(todo), member.name)
        description = ""
        if llm is not None:
            try:
                description = describe_with_llm(llm, book, member)
            except AudiobookError as e:
                warnings.append(f"{member.name}: {e} The description was written from the text instead.")
        description = description or describe(book, member)
        line = design_line(book, member.name)
        try:
            made = preview(description, line)
            name = voice_name(book, member.name)
            save(made, name)
        except AudiobookError as e:
            warnings.append(f"{member.name}: the voice could not be designed ({e}).")
            continue
        cast = cast.with_voice(member.name, name)
        cast = type(cast)([replace(m, description=description) if m.name == member.name else m for m in cast.members])
        done.append(Designed(member.name, name, description, line, str(getattr(made, "wav_path", "") or "")))
    if progress:
        progress(len(todo), len(todo), "")
    return replace(book, cast=cast), done, warnings
