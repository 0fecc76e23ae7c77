"""The commands that render: ``render``, ``sample`` and ``queue``."""

from __future__ import annotations

from audiobook.books.cast import Cast, load_cast
from audiobook.cli.options import apply_worker_args, narrator_from_args, parse_chapters
from audiobook.cli.progress import load_book, stop_on_ctrl_c, tqdm_progress
from audiobook.dialogue import DIALOGUE


def cmd_render(args) -> int:
    """render BOOK (--voice V | --speaker S | --ref-audio CLIP) [...]: the book into chapter files; Ctrl-C stops
    after the takes in flight (run it again to continue), a second Ctrl-C quits at once."""
    backend = args.open_backend(models_dir=args.models_dir)
    if args.batch_size is not None:
        backend.apply_settings(backend.settings.updated(batch_size=args.batch_size))
    apply_worker_args(backend, args)
    if args.verify:
        backend.apply_settings(backend.settings.updated(verify=args.verify))
    if args.readalong:
        backend.apply_settings(backend.settings.updated(make_readalong=True))
    chapters = parse_chapters(args.chapters) if args.chapters else ()
    book = load_book(backend, args.book)  # a bad book is reported before any model loads
    narrator = narrator_from_args(args, backend)
    cast = load_cast(args.cast) if args.cast else None
    if args.dialogue:
        cast = (cast or Cast()).with_voice(DIALOGUE, args.dialogue)
    bar, report = tqdm_progress()
    try:
        with stop_on_ctrl_c(bar.write) as should_stop:
            result = backend.render(book, narrator, out_dir=args.output, on_progress=report, should_stop=should_stop,
                                    redo_chunks=args.redo_chunk or (), redo_chapters=args.redo_chapter or (),
                                    rebuild=args.rebuild, allow_incomplete=args.allow_incomplete, cast=cast,
                                    chapters=chapters)
    finally:
        bar.close()
    print(f"Rendered {result.generated} chunks in {result.batches} batches ({result.reused} of {result.chunks} were "
          f"already done), {result.audio_s:.1f}s of audio in {result.elapsed_s:.1f}s.")
    for rep in result.failed + result.suspect:
        print(f"{rep.status.capitalize()}: chapter {rep.chapter}, chunk {rep.index} [{rep.id}] ({rep.reason}): {rep.text}")
    for line in result.skipped_chapters:
        print(line)
    for line in result.log:
        if "read-along epub" in line.lower():  # made (or not) after the render, so not in the progress lines
            print(line)
    for f in result.chapter_files + result.book_files:
        print(f"  {f}")
    if result.stopped:
        print("Stopped; run the same command again to continue.")
    return 0 if result.complete and not result.suspect else 1


def cmd_sample(args) -> int:
    """sample BOOK (--voice V | --speaker S) [--chapter N] [--seconds 60]: hear the voice in context."""
    backend = args.open_backend(models_dir=args.models_dir)
    book = load_book(backend, args.book)
    narrator = narrator_from_args(args, backend)
    print(backend.sample(book, narrator, chapter=args.chapter, seconds=args.seconds, out_path=args.output))
    return 0


def cmd_queue(args) -> int:
    """queue add|list|remove|move|retry|run: the books that render one after another (output/queue.json)."""
    backend = args.open_backend(models_dir=getattr(args, "models_dir", None))
    if args.action == "add":
        item = backend.queue_add(args.book, voice=args.voice, speaker=args.speaker, instruct=args.instruct or "",
                                 output=args.output)
        print(f"Queued '{item.title}' with {item.narrator_label} as item {len(backend.queue_items())}.")
        return 0
    if args.action == "list":
        items = backend.queue_items()
        if not items:
            print(f"The queue is empty ({backend.queue.path}).")
        for n, item in enumerate(items, 1):
            print("\t".join(str(x) for x in item.row(n)))
            for f in item.book_files:
                print(f"\t{f}")
        return 0
    if args.action in ("remove", "move", "retry"):
        print(_queue_edit(backend, args))
        return 0
    apply_worker_args(backend, args)
    bar, report = tqdm_progress()
    try:
        with stop_on_ctrl_c(bar.write) as should_stop:
            items = backend.run_queue(on_progress=report, should_stop=should_stop,
                                      on_item=lambda item: bar.write(f"Rendering '{item.title}' with {item.narrator_label}."))
    finally:
        bar.close()
    for n, item in enumerate(items, 1):
        print("\t".join(str(x) for x in item.row(n)))
    if should_stop():
        print("Stopped; run `backend.py queue run` again to continue.")
    return 0 if all(i.status == "done" for i in items) else 1


def _queue_edit(backend, args) -> str:
    """queue remove|move|retry: make the change; the sentence that says what changed."""
    if args.action == "remove":
        return f"Removed '{backend.queue_remove(args.n).title}' from the queue."
    if args.action == "move":
        backend.queue_move(args.n, args.to)
        return f"Moved item {args.n} to position {args.to}."
    return f"'{backend.queue_retry(args.n).title}' is queued again."
