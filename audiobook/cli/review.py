"""The commands that look at a finished render: ``review``, ``fix`` and ``readalong``."""

from __future__ import annotations

from pathlib import Path


def cmd_readalong(args) -> int:
    """readalong OUTPUT_DIR [--source BOOK.epub]: the read-along EPUB of a finished render (nothing is rendered)."""
    backend = args.open_backend()
    made = backend.readalong(args.output_dir, args.source)
    print(made.summary())
    print(f"  {made.path}")
    return 0


def _fmt_score(v: float | None, pattern: str) -> str:
    return "-" if v is None else pattern.format(v)


def cmd_review(args) -> int:
    """review OUTPUT_DIR [--flagged] [--json FILE]: the chunks of a render with their check scores."""
    import json

    backend = args.open_backend(models_dir=getattr(args, "models_dir", None))
    rows = backend.review(args.output_dir, flagged=args.flagged)
    if args.json:
        from audiobook.files import atomic_write_text

        keys = ("id", "chapter", "index", "text", "status", "wer", "transcript", "voice_similarity", "duration_s", "attempts",
                "speaker", "voice", "rule", "reason", "book_text")
        atomic_write_text(Path(args.json), json.dumps([{k: r.to_dict()[k] for k in keys} for r in rows],
                                                      ensure_ascii=False, indent=1))
    print("chapter\tchunk\tid\tstatus\tseconds\tWER\tvoice\ttakes\tspeaker\ttext\twhy")
    for r in rows:
        text = r.text if len(r.text) <= 60 else r.text[:57] + "..."
        print(f"{r.chapter}\t{r.index}\t{r.id}\t{r.status}\t{r.duration_s:.1f}\t{_fmt_score(r.wer, '{:.0%}')}\t"
              f"{_fmt_score(r.voice_similarity, '{:.2f}')}\t{r.attempts}\t{r.speaker or 'narrator'}\t{text}\t{r.why or '-'}")
    flagged = sum(1 for r in rows if r.flagged)
    print(f"{len(rows)} chunks listed, {flagged} flagged.")
    return 0


def cmd_fix(args) -> int:
    """fix OUTPUT_DIR CHUNK_ID (--text T | --reroll | --accept): one chunk again, then its chapter and the book."""
    backend = args.open_backend(models_dir=args.models_dir)
    result = backend.fix_chunk(args.output_dir, args.chunk_id, text=args.text, reroll=args.reroll, accept=args.accept)
    if result is None:
        print(f"Accepted chunk {args.chunk_id} as it is.")
        return 0
    for rep in result.suspect + result.failed:
        print(f"{rep.status.capitalize()}: chapter {rep.chapter}, chunk {rep.index} [{rep.id}] ({rep.reason}): {rep.text}")
    print(f"Rendered {result.generated} chunk{'s' if result.generated != 1 else ''}.")
    for f in result.chapter_files + result.book_files:
        print(f"  {f}")
    return 0

