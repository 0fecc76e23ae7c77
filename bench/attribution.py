"""How often the book labeller gives a quote to the right speaker, on a hand-labelled set:

    python bench/attribution.py [--data bench/data/attribution.json] [--json OUT] [--record]

Each passage of the set is labelled as the app labels a book with no cast and no
language model (``books.cast.label_book``); every labelled quote is then looked up in
the spans. Reported: accuracy over all quotes (a quote left to ``dialogue`` counts as
wrong), precision over the quotes given a speaker, and both per rule that gave the
speaker. Quotes the set marks ``narrator`` (a nickname in quote marks, a title) are
words no one says and are not scored.

A predicted speaker is right when its name, without a leading "the"/"a"/"his"..., is
the labelled speaker's or one of that speaker's aliases in the set.

``--record`` writes the scores to ``bench/data/attribution-scores.json`` as "after";
the test suite checks that the labeller never scores below them. The "before" scores
there were measured with the labeller as it was before the rules (``said Name`` only).

Passages marked ``held_out`` were labelled after the rules were written and were not
looked at while tuning them; they are scored apart ("held out"), the others together
("developed on").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = ROOT / "bench" / "data" / "attribution.json"
SCORES = ROOT / "bench" / "data" / "attribution-scores.json"
_LEADING = {"the", "a", "an", "his", "her", "their", "its", "one", "of", "each", "all", "both", "two", "three"}


def _norm(name: str) -> str:
    words = name.lower().replace("-", " ").replace(".", "").split()
    while words and words[0] in _LEADING:
        words = words[1:]
    return " ".join(words)


def _right(predicted: str, gold: str, aliases: dict) -> bool:
    names = {_norm(gold)} | {_norm(a) for a in aliases.get(gold, [])}
    return _norm(predicted) in names


def label_passage(text: str, title: str = "Passage"):
    """The spans the app makes of one passage (no cast, no language model)."""
    from audiobook.books.cast import label_book
    from audiobook.books.model import Book, Chapter

    book, _ = label_book(Book(title, [Chapter(title, text)]))
    return book.chapters[0].spans


def _speaker_at(spans, start: int):
    """The span that holds the character at ``start``."""
    pos = 0
    for s in spans:
        if pos <= start < pos + len(s.text):
            return s
        pos += len(s.text)
    return None


def score(data: dict) -> dict:
    """Scores over the whole set and per passage and rule."""
    from audiobook.dialogue import DIALOGUE, NARRATOR

    total, held = Counter(), Counter()
    rules: dict[str, Counter] = {}
    passages = []
    for p in data["passages"]:
        spans = label_passage(p["text"], p["title"])
        c = Counter()
        for q in p["quotes"]:
            if q["speaker"] == NARRATOR:
                continue
            span = _speaker_at(spans, q["start"])
            who = span.speaker if span else DIALOGUE
            rule = (getattr(span, "rule", "") or "said") if who not in (DIALOGUE, NARRATOR) else "none"
            ok = who not in (DIALOGUE, NARRATOR) and _right(who, q["speaker"], p.get("aliases", {}))
            for counter in (c, held if p.get("held_out") else total, rules.setdefault(rule, Counter())):
                counter["quotes"] += 1
                counter["named"] += who not in (DIALOGUE, NARRATOR)
                counter["right"] += ok
        passages.append({"title": p["title"], "held_out": bool(p.get("held_out")), **_rates(c)})
    return {"all": _rates(total), "held_out": _rates(held), "passages": passages,
            "rules": {r: _rates(c) for r, c in sorted(rules.items())}}


def _rates(c: Counter) -> dict:
    return {"quotes": c["quotes"], "named": c["named"], "right": c["right"],
            "accuracy": round(c["right"] / c["quotes"], 4) if c["quotes"] else 0.0,
            "precision": round(c["right"] / c["named"], 4) if c["named"] else 0.0}


def _row(name: str, r: dict) -> str:
    return f"| {name} | {r['quotes']} | {r['named']} | {r['right']} | {100 * r['accuracy']:.1f} % | {100 * r['precision']:.1f} % |"


def report(scores: dict, recorded: dict | None = None) -> str:
    lines = ["| quotes of | quotes | named | right | accuracy | precision |", "|---|---:|---:|---:|---:|---:|"]
    before = (recorded or {}).get("before")
    if before:
        lines.append(_row("developed on, before (said Name only)", before["all"]))
    lines.append(_row("developed on", scores["all"]))
    if before and before.get("held_out", {}).get("quotes"):
        lines.append(_row("held out, before (said Name only)", before["held_out"]))
    if scores["held_out"]["quotes"]:
        lines.append(_row("held out", scores["held_out"]))
    lines += [_row(p["title"] + (" (held out)" if p["held_out"] else ""), p) for p in scores["passages"]]
    lines += [_row(f"rule: {r}", v) for r, v in scores["rules"].items()]
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--json", help="write the scores here")
    ap.add_argument("--record", action="store_true", help=f"record these scores as 'after' in {SCORES.name}")
    ap.add_argument("--record-before", action="store_true", help="record these scores as 'before' (the old labeller)")
    args = ap.parse_args(argv)
    data = json.loads(Path(args.data).read_text(encoding="utf-8"))
    scores = score(data)
    recorded = json.loads(SCORES.read_text()) if SCORES.exists() else {}
    print(report(scores, recorded))
    if args.record or args.record_before:
        recorded["before" if args.record_before else "after"] = scores
        SCORES.write_text(json.dumps(recorded, indent=1) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(scores, indent=1) + "\n")
    return scores


if __name__ == "__main__":
    main()
