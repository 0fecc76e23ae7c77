"""The commands that read a book: ``book`` (what the reader found) and ``cast`` (who speaks, with which voice)."""

from __future__ import annotations

import sys

from audiobook.books.cast import load_cast, save_cast
from audiobook.cli.progress import load_book


def cmd_book(args) -> int:
    """book BOOK [--json OUT] [--chunks]: show what the reader found, optionally save the JSON book."""
    from audiobook.books import describe_book, save_book_json

    from audiobook.render import pronunciations_from_settings

    backend = args.open_backend()
    read = load_book(backend, args.book)
    settings = backend.settings
    chunk_chars = args.chunk_chars or settings.chunk_chars
    # The chunks of a render by the narrator alone (markup speakers kept); the cast a render with a cast would use.
    print(describe_book(read, chunk_chars, show_chunks=args.chunks, pronunciations=pronunciations_from_settings(settings)))
    book, _ = backend.label_book(read)
    if book.cast.members:
        print("\nCast: " + ", ".join(f"{m.name} ({m.lines})" for m in book.cast.members))
    if args.json:
        print(f"Saved the JSON book to {save_book_json(book, args.json)}")
    return 0


def cmd_cast(args) -> int:
    """cast BOOK [--llm] [--json OUT] [--merge A B | --rename A NEW | --split A ALIAS | --hide A | --show A]
    [--design [--only NAME]]: the characters who speak, their lines and voices; edits and designed voices
    are saved in output/<book>/cast.json."""
    backend = args.open_backend()
    book = load_book(backend, args.book)
    labelled, warnings = backend.label_book(book, load_cast(args.cast) if args.cast else None, llm=args.llm)
    for w in warnings:
        print(f"Warning: {w}", file=sys.stderr)
    for action in ("merge", "rename", "split", "hide", "show"):
        value = getattr(args, action)
        if value:
            names = value if isinstance(value, list) else [value]
            labelled = backend.edit_cast(labelled, action, names[0], names[1] if len(names) > 1 else "")
            print(f"Saved the cast with the {action} to {backend.cast_path(labelled)}")
    if args.design:
        def progress(done: int, total: int, who: str) -> None:
            if who:
                print(f"Designing {who}'s voice ({done + 1} of {total})...", flush=True)

        labelled, designed, warnings = backend.design_cast(labelled, llm=args.llm, only=args.only or None, progress=progress)
        for w in warnings:
            print(f"Warning: {w}", file=sys.stderr)
        for d in designed:
            print(f"{d.character}: the voice '{d.voice}', \"{d.description}\", designed on \"{d.line[:60]}\"")
        print(f"Saved the cast to {backend.cast_path(labelled)}")
    members = labelled.cast.members
    if not members:
        print("No one but the narrator speaks in this book (no quotes or [voice: Name] markup found).")
    width = max([len(m.name) for m in members] + [9])
    for m in members:
        also = f"  (also {', '.join(m.aliases)})" if m.aliases else ""
        print(f"{m.name:<{width}}  {m.lines:>5}  {m.gender or '-':<6}  {m.voice or '(narrator)':<16}  "
              f"{'hidden  ' if m.hidden else ''}{m.preview[:60]}{also}")
    if args.json:
        print(f"Saved the cast to {save_cast(labelled.cast, args.json)}")
    return 0

