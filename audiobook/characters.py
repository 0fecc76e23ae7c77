"""The characters of a book: who the text says speaks, their aliases, a guessed gender.

A ``Character`` is one person (or group) under one ``name``, with the other ways the
text names them (``aliases``: "Knightley" and "Mr. Knightley"; "the old gentleman" and
"the little gentleman"), a guessed ``gender`` ("male", "female" or "" when the text does
not tell) and whether the user ``hidden`` them (their quotes go to ``dialogue``).

``find_characters`` builds the list from the phrases that attribute quotes ("said the
Hatter", "Alice asked"), clustered: a short name joins the one longer name that holds
it, descriptors with the same head noun join ("the old gentleman", "the little
gentleman") unless their adjectives oppose ("old"/"young"). ``CharacterList.resolve``
finds who a phrase names; ``mentions`` finds where narration names them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Iterable

MALE, FEMALE = "male", "female"
GENDERS = ("", MALE, FEMALE)

_MALE_WORDS = set(
    "mr mr. sir lord king prince emperor duke earl baron count father brother son uncle nephew grandfather man "
    "gentleman boy husband monk priest lad fellow squire master mister colonel captain general herr monsieur "
    "señor don he him his himself".split())
_FEMALE_WORDS = set(
    "mrs mrs. miss ms ms. lady queen princess empress duchess countess baroness mother sister daughter aunt niece "
    "grandmother woman girl wife maid madam madame mistress dame frau fräulein mademoiselle señora doña "
    "she her hers herself".split())
# Titles before a name: they tell the gender and are not the name itself.
TITLES = ("mr", "mrs", "ms", "miss", "dr", "sir", "lady", "lord", "mme", "mlle", "herr", "frau", "st", "madam",
          "madame", "monsieur", "king", "queen", "prince", "princess", "captain", "colonel", "uncle", "aunt")
# Words before a head noun that tell nothing of who it is ("the two rogues", "all the people").
DETERMINERS = set("the a an his her their its my our your all both each two three four five several some".split())
# Adjectives that tell two people apart: "the old man" is not "the young man".
_OPPOSED = [{"old", "young"}, {"elder", "younger"}, {"eldest", "youngest"}, {"first", "second"}, {"tall", "short"},
            {"big", "little"}, {"fat", "thin"}, {"other"}]
# Common short forms of English first names, so that "Lizzy" finds "Elizabeth" when both are in the book.
NICKNAMES = {
    "lizzy": "elizabeth", "lizzie": "elizabeth", "eliza": "elizabeth", "beth": "elizabeth", "betsy": "elizabeth",
    "kitty": "catherine", "kate": "catherine", "jane": "jane", "jack": "john", "johnny": "john", "bill": "william",
    "will": "william", "willy": "william", "bob": "robert", "bobby": "robert", "rob": "robert", "dick": "richard",
    "tom": "thomas", "tommy": "thomas", "harry": "henry", "hal": "henry", "ned": "edward", "ted": "edward",
    "jim": "james", "jem": "james", "jamie": "james", "meg": "margaret", "maggie": "margaret", "peggy": "margaret",
    "polly": "mary", "molly": "mary", "sally": "sarah", "nell": "eleanor", "nelly": "eleanor", "fanny": "frances",
    "charley": "charles", "charlie": "charles", "joe": "joseph", "sam": "samuel", "ben": "benjamin", "fred": "frederick",
    "ted ": "theodore", "annie": "anne", "nan": "anne", "jo": "josephine", "pip": "philip", "phil": "philip"}


def norm(phrase: str) -> str:
    """A phrase as the list keys it: lower case, single spaces, no leading "the"/"his"..., no dots."""
    words = phrase.replace(".", "").replace("\u2019", "'").lower().split()
    while len(words) > 1 and (words[0] in DETERMINERS or words[:2] in (["one", "of"], ["each", "of"], ["some", "of"], ["all", "of"])):
        words = words[2:] if words[1:2] == ["of"] else words[1:]
    return " ".join(words)


GENERIC_HEADS = set("man woman person boy girl child fellow lad one voice".split())
GROUP_WORDS = set("people children folk crowd everybody everyone all others men women boys girls".split())


def is_group(name: str, others: Iterable[str] = ()) -> bool:
    """A group rather than one person ("the Town Councillors", "the people", "Swallows" beside "Swallow"):
    no "he" or "she" names it."""
    words = name.split()
    if words and words[-1].endswith("s") and any(norm(o) == norm(name)[:-1] or norm(o) == norm(name)[:-2] for o in others):
        return True
    if not words:
        return False
    last, low = words[-1].strip("."), words[-1].strip(".").lower()
    if low in GROUP_WORDS:
        return True
    if last[:1].isupper():
        return len(words) > 1 and low.endswith(("ers", "ors", "ies", "ows"))
    return low.endswith("s") and not low.endswith(("ss", "us", "is")) and len(low) > 3


def is_plural(phrase: str) -> bool:
    """A phrase naming several people: "the rogues", "the two swindlers", "the Sparrows" (not "Charles")."""
    words = phrase.split()
    if not words:
        return False
    low = words[-1].lower().strip(".")
    if low in GROUP_WORDS:
        return True
    plural = low.endswith("s") and not low.endswith(("ss", "us", "is")) and len(low) > 3
    determined = len(words) > 1 and words[0].lower() in DETERMINERS | {"other", "one"}
    return plural and (determined or not words[-1][:1].isupper()) and words[0].lower() != "one"


def _is_name(phrase: str) -> bool:
    """A proper name: its last word has a capital ("Gluck", "the Happy Prince"), not a descriptor ("the old man")."""
    words = phrase.split()
    return bool(words) and words[-1][:1].isupper()


def _core(phrase: str) -> list[str]:
    """A name's words without titles or determiners: "Mr. George Knightley" -> ["george", "knightley"]."""
    words = [w for w in norm(phrase).split() if w != "of"]
    return [w for w in words if w not in TITLES] or words  # "the Prince" alone: the title is the name


def _head(phrase: str) -> str:
    return norm(phrase).split()[-1] if phrase.split() else ""


def title_gender(phrase: str) -> str:
    """The gender a title or gendered noun in ``phrase`` tells ("Mrs. Bennet", "the old gentleman"), else ""."""
    words = [w.strip(".,") for w in phrase.lower().split()]
    male = any(w in _MALE_WORDS for w in words)
    female = any(w in _FEMALE_WORDS for w in words)
    return MALE if male and not female else FEMALE if female and not male else ""


@dataclass
class Character:
    """One speaker of a book under one ``name``; ``aliases`` are the other ways the text names them."""

    name: str
    aliases: list[str] = field(default_factory=list)
    gender: str = ""
    hidden: bool = False
    mentions: int = 0  # how often the text names them (in attributions and narration)
    group: bool = False  # "the rogues", "the Sparrows": no "he" or "she" names them
    fixed: bool = False  # from the user's cast: never merged into another by clustering

    def phrases(self) -> list[str]:
        return [self.name] + [a for a in self.aliases if a != self.name]


def _opposed(a: str, b: str) -> bool:
    wa, wb = set(norm(a).split()), set(norm(b).split())
    return any((wa & pair and wb & pair and wa & pair != wb & pair) or (len(pair) == 1 and (wa & pair) != (wb & pair))
               for pair in _OPPOSED)


class CharacterList:
    """Characters and the phrases that name them; ``resolve`` says who a phrase names ("" for no one known)."""

    def __init__(self, characters: Iterable[Character] = ()):
        self.characters: list[Character] = [replace(c, aliases=list(c.aliases)) for c in characters]
        self._index()

    def _index(self):
        self._exact: dict[str, Character] = {}
        self._words: dict[str, set[int]] = {}
        for i, c in enumerate(self.characters):
            for p in c.phrases():
                self._exact.setdefault(norm(p), c)
                if _is_name(p):
                    for w in _core(p):
                        self._words.setdefault(NICKNAMES.get(w, w), set()).add(i)

    def get(self, name: str) -> Character | None:
        return next((c for c in self.characters if c.name == name), None)

    def resolve(self, phrase: str) -> Character | None:
        """The character ``phrase`` names: by name or alias, a word of a longer name, or a descriptor's head noun."""
        key = norm(phrase)
        if not key:
            return None
        if key in self._exact:
            return self._exact[key]
        if _is_name(phrase):
            # Only the capitalised words name them: "the old Minister" is "Minister", "little Gluck" "Gluck".
            capitals = " ".join(w for w in phrase.split() if w[:1].isupper() or w.lower() == "of")
            if norm(capitals) in self._exact:
                return self._exact[norm(capitals)]
            core = [NICKNAMES.get(w, w) for w in _core(capitals)]
            sets = [self._words.get(w, set()) for w in core]
            owners = set.intersection(*sets) if sets else set()
            gender = title_gender(phrase)
            owners = {i for i in owners if not gender or self.characters[i].gender in ("", gender)}
            if len(owners) == 1:
                return self.characters[next(iter(owners))]
            return None
        same_head = [c for c in self.characters if any(self._same_person(p, phrase) for p in c.phrases())]
        return same_head[0] if len(same_head) == 1 else None

    @staticmethod
    def _same_person(known: str, phrase: str) -> bool:
        """Descriptors with the same head noun: "the old gentleman" is "the little gentleman"; but a plain
        "man" or "girl" is only the same when one's adjectives hold the other's ("the man", "the old man")."""
        if _is_name(known) or _head(known) != _head(phrase) or _opposed(known, phrase):
            return False
        if _head(phrase) in GENERIC_HEADS:
            a, b = set(norm(known).split()), set(norm(phrase).split())
            return a <= b or b <= a
        return True

    def add(self, phrase: str) -> Character:
        """The character ``phrase`` names; a new one when it names no one yet (its alias when it is a new form)."""
        found = self.resolve(phrase)
        display = display_name(phrase)
        if found is not None:
            found.group = found.group or is_plural(phrase)
            if norm(display) not in {norm(p) for p in found.phrases()}:
                found.aliases.append(display)
                self._index()
            return found
        c = Character(display, gender=title_gender(phrase), group=is_plural(phrase))
        self.characters.append(c)
        self._index()
        return c

    def mention_pattern(self) -> re.Pattern | None:
        """A pattern for every phrase naming a visible character (names, aliases, descriptors after "the")."""
        alts = []
        for c in self.characters:
            for p in c.phrases():
                words = p.split()
                if _is_name(p):
                    alts.append(r"\b" + r"\s+".join(re.escape(w) for w in words) + r"\b")
                    core = [w for w in words if w.lower().strip(".") not in TITLES]
                    if len(core) > 1:  # "Knightley" alone names "George Knightley"
                        alts.append(r"\b" + re.escape(core[-1]) + r"\b")
                else:
                    alts.append(r"\b(?:the|his|her|their|its|a|an)\s+(?:[a-z-]+\s+){0,2}" + re.escape(_head(p)) + r"\b")
        if not alts:
            return None
        return re.compile("|".join(sorted(set(alts), key=len, reverse=True)))


def display_name(phrase: str) -> str:
    """How a phrase is shown as a name: "the little Swallow" -> "Swallow", "the old gentleman" -> "Old gentleman"."""
    words = phrase.split()
    while len(words) > 1 and words[0].lower() in DETERMINERS | {"one", "of", "each", "some"}:
        words = words[1:]
    if _is_name(" ".join(words)):
        # Lower-case adjectives before a capitalised name go: "little Gluck", "the poor Prince".
        while len(words) > 1 and not words[0][:1].isupper():
            words = words[1:]
        return " ".join(words)
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def guess_genders(characters: CharacterList, text: str, quote_spans: list[tuple[int, int]] = ()) -> None:
    """Set the gender of each character the text tells: titles and gendered nouns first, then the pronouns
    that follow their name in the narration ("Gluck went to the window... he saw")."""
    pattern = characters.mention_pattern()
    if pattern is None:
        return
    votes: dict[str, Counter] = {}
    found = list(pattern.finditer(text))
    for n, m in enumerate(found):
        c = characters.resolve(m.group(0))
        if c is None:
            continue
        # The words after the name, up to the next name or quote mark: its first "he" or "she" votes.
        end = min(found[n + 1].start() if n + 1 < len(found) else len(text), m.end() + 100)
        tail = re.split(r"[\u201c\u201d\"\u00ab\u00bb]", text[m.end():end], maxsplit=1)[0]
        v = votes.setdefault(c.name, Counter())
        for w in re.findall(r"[a-z]+", tail.lower())[:14]:
            if w in ("he", "him", "his", "himself"):
                v[MALE] += 1
                break
            if w in ("she", "her", "hers", "herself"):
                v[FEMALE] += 1
                break
    for c in characters.characters:
        if c.gender:
            continue
        from_titles = {title_gender(p) for p in c.phrases()} - {""}
        if len(from_titles) == 1:
            c.gender = from_titles.pop()
            continue
        v = votes.get(c.name, Counter())
        if v[MALE] >= 2 * v[FEMALE] + 1:
            c.gender = MALE
        elif v[FEMALE] >= 2 * v[MALE] + 1:
            c.gender = FEMALE


def cluster_names(characters: CharacterList) -> None:
    """A name that is part of exactly one longer name joins it ("Knightley" -> "George Knightley")."""
    changed = True
    while changed:
        changed = False
        chars = characters.characters
        for short in sorted(chars, key=lambda c: len(c.name)):
            if not _is_name(short.name):
                continue
            core = {NICKNAMES.get(w, w) for w in _core(short.name)}
            longer = [c for c in chars if c is not short and _is_name(c.name) and len(_core(c.name)) > len(core)
                      and core <= {NICKNAMES.get(w, w) for w in _core(c.name)}
                      and (not short.gender or not c.gender or short.gender == c.gender)
                      and not (title_gender(short.name) and title_gender(c.name) and title_gender(short.name) != title_gender(c.name))]
            if len(longer) == 1 and not short.hidden and not short.fixed:
                target = longer[0]
                target.aliases += [p for p in short.phrases() if norm(p) not in {norm(x) for x in target.phrases()}]
                target.mentions += short.mentions
                chars.remove(short)
                characters._index()
                changed = True
                break
