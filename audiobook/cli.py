"""The command line: its parser and one function per command (``python backend.py --help``).

``backend.py`` runs ``main`` with the ``Backend`` class; every command opens its Backend through
``args.open_backend`` (the package never imports ``backend.py``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from audiobook.books import Book
from audiobook.books.cast import Cast, load_cast, save_cast
from audiobook.dialogue import DIALOGUE
from audiobook.errors import AudiobookError
from audiobook.render import Progress
from audiobook.settings import SETTINGS_FILE, Settings
from audiobook.tts import PRESET, Narrator
from audiobook.voices import Voice

SAMPLE_BOOK = """Chapter 1: The Lighthouse

The lighthouse stood at the edge of the world. Every night its keeper climbed the stairs.

He counted them as he went, one hundred and twelve. Then he lit the lamp.

Chapter 2: The Storm

The storm came in from the west. "Hold fast," the keeper said. The light did not go out.
"""


def parse_chapters(text: str) -> list[int]:
    """'1,3-5' -> [1, 3, 4, 5]; AudiobookError on anything else."""
    out: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        try:
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise AudiobookError(f"'{part}' is not a chapter number or range; write chapters like 1,3-5.") from None
        if first < 1 or last < first:
            raise AudiobookError(f"'{part}' is not a chapter range; chapters count from 1, like 1,3-5.")
        out += [n for n in range(first, last + 1) if n not in out]
    if not out:
        raise AudiobookError("No chapters given; write chapters like 1,3-5.")
    return out


def _narrator_from_args(args, backend) -> Narrator:
    if getattr(args, "voice", None):
        return backend.narrator_for(args.voice)
    if getattr(args, "ref_audio", None):
        from audiobook.clips import load_clip

        load_clip(args.ref_audio)  # a missing or unreadable clip is a sentence before any model loads
        return Narrator(kind="clone", ref_audio=str(args.ref_audio), ref_text=args.ref_text or "",
                        x_vector_only=not args.ref_text)
    if getattr(args, "ref_text", None):
        raise AudiobookError("--ref-text is the transcript of a clip; give the clip with --ref-audio too.")
    speaker = getattr(args, "speaker", None)
    if not speaker:
        names = ", ".join(backend.speakers())
        raise AudiobookError("Choose who narrates: --voice NAME (a saved voice, see `backend.py voices`), "
                             f"--speaker NAME (a built-in speaker: {names}), or --ref-audio CLIP --ref-text WORDS.")
    return Narrator(kind=PRESET, speaker=speaker, instruct=getattr(args, "instruct", "") or "")


def _tqdm_progress(total_hint: int = 0):
    from tqdm import tqdm

    bar = tqdm(total=total_hint or None, unit="chunk", file=sys.stderr)

    def report(p: Progress) -> None:
        bar.total = p.chunks_total
        bar.n = p.chunks_done
        if p.message:
            bar.write(p.message)
        bar.set_postfix(audio=f"{p.audio_s / 60:.1f}min", xrt=f"{p.x_real_time:.2f}")
        bar.refresh()

    return bar, report


def cmd_render(args) -> int:
    backend = args.open_backend(models_dir=args.models_dir)
    if args.batch_size is not None:
        backend.apply_settings(backend.settings.updated(batch_size=args.batch_size))
    _apply_worker_args(backend, args)
    if args.verify:
        backend.apply_settings(backend.settings.updated(verify=args.verify))
    if args.readalong:
        backend.apply_settings(backend.settings.updated(make_readalong=True))
    chapters = parse_chapters(args.chapters) if args.chapters else ()
    book = _load_book(backend, args.book)  # a bad book is reported before any model loads
    narrator = _narrator_from_args(args, backend)
    cast = load_cast(args.cast) if args.cast else None
    if args.dialogue:
        cast = (cast or Cast()).with_voice(DIALOGUE, args.dialogue)
    bar, report = _tqdm_progress()
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def first_ctrl_c(signum, frame):  # the first Ctrl-C stops after the batch; a second one quits
        stop.set()
        bar.write("Stopping after the batch in flight (Ctrl-C again to quit now)...")
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, first_ctrl_c)
    try:
        result = backend.render(book, narrator, out_dir=args.output, on_progress=report, should_stop=stop.is_set,
                                redo_chunks=args.redo_chunk or (), redo_chapters=args.redo_chapter or (),
                                rebuild=args.rebuild, allow_incomplete=args.allow_incomplete, cast=cast,
                                chapters=chapters)
    finally:
        signal.signal(signal.SIGINT, previous)
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


def cmd_sample(args) -> int:
    """sample BOOK (--voice V | --speaker S) [--chapter N] [--seconds 60]: hear the voice in context."""
    backend = args.open_backend(models_dir=args.models_dir)
    book = _load_book(backend, args.book)
    narrator = _narrator_from_args(args, backend)
    print(backend.sample(book, narrator, chapter=args.chapter, seconds=args.seconds, out_path=args.output))
    return 0


def _apply_worker_args(backend, args) -> None:
    """``--workers`` and ``--ray-address`` for this run only (not saved)."""
    workers, address = getattr(args, "workers", None), getattr(args, "ray_address", None)
    if workers is not None or address is not None:
        backend.apply_settings(backend.settings.updated(
            workers=backend.settings.workers if workers is None else workers,
            ray_address=backend.settings.ray_address if address is None else address))


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
    if args.action == "remove":
        item = backend.queue_remove(args.n)
        print(f"Removed '{item.title}' from the queue.")
        return 0
    if args.action == "move":
        backend.queue_move(args.n, args.to)
        print(f"Moved item {args.n} to position {args.to}.")
        return 0
    if args.action == "retry":
        item = backend.queue_retry(args.n)
        print(f"'{item.title}' is queued again.")
        return 0
    _apply_worker_args(backend, args)
    bar, report = _tqdm_progress()
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def first_ctrl_c(signum, frame):
        stop.set()
        bar.write("Stopping after the batch in flight (Ctrl-C again to quit now)...")
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, first_ctrl_c)
    try:
        items = backend.run_queue(on_progress=report, should_stop=stop.is_set,
                                  on_item=lambda item: bar.write(f"Rendering '{item.title}' with {item.narrator_label}."))
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    for n, item in enumerate(items, 1):
        print("\t".join(str(x) for x in item.row(n)))
    if stop.is_set():
        print("Stopped; run `backend.py queue run` again to continue.")
    return 0 if all(i.status == "done" for i in items) else 1


def _print_voice(voice: Voice) -> None:
    what = {"designed": voice.description, "cloned": voice.reference_text or "(no transcript: x-vector only)",
            "preset": voice.speaker + (f" ({voice.instruct})" if voice.instruct else "")}[voice.kind]
    print(f"{voice.name}\t{voice.kind}\t{voice.language}\t{what}")


def cmd_voices(args) -> int:
    backend = args.open_backend(models_dir=args.models_dir)
    voices = backend.list_voices()
    if not voices:
        print(f"No saved voices in {backend.voices.root}.")
    for v in voices:
        _print_voice(v)
    return 0


def cmd_voice(args) -> int:
    """voice design|clone|preset NAME ... (saves the voice and writes its preview) and voice delete|rename|export|import."""
    backend = args.open_backend(models_dir=args.models_dir)
    if args.action == "delete":
        backend.delete_voice(args.name)
        print(f"Deleted the voice '{args.name}'.")
        return 0
    if args.action == "rename":
        voice = backend.rename_voice(args.name, args.new_name, overwrite=args.overwrite)
        print(f"Renamed to '{voice.name}' ({voice.folder}).")
        return 0
    if args.action == "export":
        print(backend.export_voice(args.name, args.output))
        return 0
    if args.action == "import":
        voice = backend.import_voice(args.zip, overwrite=args.overwrite, name=args.name)
        print(f"Imported the voice '{voice.name}' into {voice.folder}.")
        return 0
    if backend.voices.exists(args.name) and not args.overwrite:
        # ask before the slow part, not after it
        raise AudiobookError(f"A voice called '{args.name}' already exists; add --overwrite to replace it.")
    if args.action == "design":
        preview = backend.preview_design(args.description, args.language, args.text, args.seed)
    elif args.action == "clone":
        preview = backend.preview_clone(args.audio, args.text or "", args.language)
    else:
        preview = backend.preview_preset(args.speaker, args.instruct or "", args.language)
    for warning in preview.warnings:
        print(f"Note: {warning}", file=sys.stderr)
    voice = backend.save_voice(preview, args.name, overwrite=args.overwrite)
    print(f"Saved the {voice.kind} voice '{voice.name}' in {voice.folder}.")
    print(voice.preview_path)
    return 0


def cmd_tiny_models(args) -> int:
    from audiobook.tiny import build_tiny_models, build_tiny_whisper

    t0 = time.perf_counter()
    built = {**build_tiny_models(args.dir), **build_tiny_whisper(args.dir)}
    for name, path in built.items():
        print(f"{name}: {path}")
    print(f"Tiny checkpoints ready in {time.perf_counter() - t0:.1f}s; use --models-dir {args.dir}")
    return 0


def cmd_selftest(args) -> int:
    """Build tiny checkpoints, render the sample book through the whole pipeline, report."""
    from audiobook.tiny import build_tiny_models

    with tempfile.TemporaryDirectory(prefix="audiobook-selftest-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        build_tiny_models(tmp / "models")
        print(f"Built tiny checkpoints in {time.perf_counter() - t0:.1f}s")
        book_path = tmp / "sample.txt"
        book_path.write_text(SAMPLE_BOOK, encoding="utf-8")
        backend = args.open_backend(root=tmp, settings_path=tmp / SETTINGS_FILE, models_dir=str(tmp / "models"))
        backend.apply_settings(backend.settings.updated(device="cpu", max_new_tokens=256, batch_size=5))
        narrator = _narrator_from_args(argparse.Namespace(speaker=backend.speakers()[0]), backend)
        book = backend.load_book(book_path)
        result = backend.render(book, narrator, out_dir=tmp / "out", on_progress=lambda p: print(p.message) if p.message else None)
        print(f"Chapters: {len(book.chapters)}; chunks: {result.chunks}; batches: {result.batches}; "
              f"audio: {result.audio_s:.1f}s; render: {result.elapsed_s:.1f}s")
        ok = len(result.chapter_files) == len(book.chapters) and all(f.stat().st_size > 44 for f in result.chapter_files)
        print("Selftest passed." if ok else "Selftest FAILED: chapter files are missing.")
        return 0 if ok else 1


def cmd_doctor(args) -> int:
    """doctor [--json FILE]: check the device, checkpoints, engine, speed and memory; exit 1 if the engine disagrees."""
    import json

    backend = args.open_backend(models_dir=args.models_dir)
    report = backend.doctor(live=not args.no_live, on_step=lambda line: print(f"{line}...", file=sys.stderr))
    print(report.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        print(f"Saved the report to {args.json}; attach it to a bug report.")
    return 0 if report.ok else 1


def cmd_models(args) -> int:
    """models [--download NAME]: every checkpoint with its status; download one with a progress bar."""
    from tqdm import tqdm

    backend = args.open_backend(models_dir=args.models_dir)
    if args.download:
        bars = []  # made at the first report, once the hub has answered

        def report(p) -> None:
            if not bars:
                bars.append(tqdm(total=p.total_bytes, initial=p.done_bytes, unit="B", unit_scale=True,
                                 unit_divisor=1000, desc=p.name, file=sys.stderr))
            bars[0].n = p.done_bytes
            bars[0].refresh()

        try:
            got = backend.download_model(args.download, report)
        finally:
            for bar in bars:
                bar.close()
        print(f"Downloaded {got.name} to {got.path} ({got.status}).")
        return 0
    for c in backend.checkpoints():
        print(f"{c.name}\t{c.status}\t{c.path}\t{c.purpose}")
    return 0


def _load_book(backend, path) -> Book:
    """backend.load_book with a progress bar on stderr while scanned pages are read by OCR."""
    bar = None

    def progress(done: int, total: int, what: str) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="page", desc="OCR", file=sys.stderr)
        bar.n = done
        bar.refresh()

    try:
        return backend.load_book(path, on_progress=progress)
    finally:
        if bar is not None:
            bar.close()


def cmd_book(args) -> int:
    """book BOOK [--json OUT] [--chunks]: show what the reader found, optionally save the JSON book."""
    from audiobook.books import describe_book, save_book_json

    from audiobook.render import pronunciations_from_settings

    backend = args.open_backend()
    read = _load_book(backend, args.book)
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
    book = _load_book(backend, args.book)
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="backend.py", description="Render books into audiobooks with Qwen3-TTS.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more, and print the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("render", help="render a book into chapter files")
    p.add_argument("book", help="the book file (.txt, .md, .epub, .pdf, .json)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--speaker", help="a built-in speaker of the CustomVoice model")
    who.add_argument("--ref-audio", help="a reference clip to clone")
    who.add_argument("--voice", help="a saved voice (see `backend.py voices`)")
    p.add_argument("--ref-text", help="the transcript of --ref-audio (without it: x-vector-only cloning)")
    p.add_argument("--instruct", default="", help="a style instruction for a built-in speaker (1.7B only)")
    p.add_argument("--output", help="output folder (default: output/<book title>)")
    p.add_argument("--batch-size", type=setting_arg("batch_size", "--batch-size"), help="chunks per model call (1-64; more than 20 where the doctor measured room on a GPU)")
    p.add_argument("--workers", type=setting_arg("workers", "--workers"), help="Ray workers, one model each on a GPU (or a CPU); 0 renders in this process")
    p.add_argument("--ray-address", help="join this running Ray cluster (default: a local Ray for the render)")
    p.add_argument("--models-dir", help="folder holding the checkpoints")
    p.add_argument("--redo-chapter", type=positive_int("--redo-chapter"), action="append", metavar="N", help="render chapter N again (repeatable)")
    p.add_argument("--redo-chunk", action="append", metavar="ID", help="render the chunk with this id again (repeatable)")
    p.add_argument("--rebuild", action="store_true", help="rebuild a damaged manifest.json from the chunk files")
    p.add_argument("--allow-incomplete", action="store_true", help="assemble chapters even when some chunks failed")
    p.add_argument("--cast", metavar="CAST.json", help="characters mapped to voices (see `backend.py cast`)")
    p.add_argument("--dialogue", metavar="VOICE", help="the voice of quoted speech no character of the cast is mapped for")
    p.add_argument("--verify", choices=("on", "off", "auto"), help="check every take with Whisper (default: the setting)")
    p.add_argument("--chapters", metavar="LIST", help="render and assemble only these chapters, e.g. 1,3-5")
    p.add_argument("--readalong", action="store_true",
                   help="also write '<title> (read-along).epub': the text with the narration, highlighted as it is read")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("readalong", help="write the read-along EPUB 3 (text and narration in step) of a finished render")
    p.add_argument("output_dir", help="the book's output folder (holding manifest.json)")
    p.add_argument("--source", metavar="BOOK.epub",
                   help="the EPUB the book was read from, whose own pages to use (default: the copy kept with the render)")
    p.set_defaults(func=cmd_readalong)

    p = sub.add_parser("review", help="list the chunks of a render with their check scores")
    p.add_argument("output_dir", help="the book's output folder (holding manifest.json)")
    p.add_argument("--flagged", action="store_true", help="only suspect and failed chunks")
    p.add_argument("--json", metavar="FILE", help="also write the chunk records as JSON")
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("fix", help="render one chunk again (new text or seed) or accept it; re-assemble its chapter")
    p.add_argument("output_dir", help="the book's output folder (holding manifest.json)")
    p.add_argument("chunk_id", help="the chunk's id (see `review`)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--text", help="new text for the chunk")
    how.add_argument("--reroll", action="store_true", help="same text, another seed")
    how.add_argument("--accept", action="store_true", help="keep the take despite its flags")
    p.add_argument("--models-dir", help="folder holding the checkpoints")
    p.set_defaults(func=cmd_fix)

    p = sub.add_parser("sample", help="render the first minute of a chapter to hear a voice in context")
    p.add_argument("book", help="the book file (.txt, .md, .epub, .pdf, .json)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--voice", help="a saved voice")
    who.add_argument("--speaker", help="a built-in speaker")
    p.add_argument("--chapter", type=int, default=1, help="chapter number (default 1)")
    p.add_argument("--seconds", type=float, default=60.0, help="about how long (default 60)")
    p.add_argument("--output", help="wav file to write (default: output/<book>/samples/...)")
    p.add_argument("--models-dir", help="folder holding the checkpoints")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("queue", help="books that render one after another (output/queue.json)")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("add", help="queue a book with a voice and the current settings")
    a.add_argument("book", help="the book file (.txt, .md, .epub, .pdf, .json)")
    who = a.add_mutually_exclusive_group(required=True)
    who.add_argument("--voice", help="a saved voice (see `backend.py voices`)")
    who.add_argument("--speaker", help="a built-in speaker of the CustomVoice model")
    a.add_argument("--instruct", default="", help="a style instruction for a built-in speaker (1.7B only)")
    a.add_argument("--output", help="output folder (default: output/<book title>)")
    actions.add_parser("list", help="show the queue: book, voice, status, progress")
    a = actions.add_parser("remove", help="take item N out of the queue")
    a.add_argument("n", type=int)
    a = actions.add_parser("move", help="move item N to position TO")
    a.add_argument("n", type=int)
    a.add_argument("to", type=int)
    a = actions.add_parser("retry", help="put a failed item N back in line")
    a.add_argument("n", type=int)
    a = actions.add_parser("run", help="render the queued books one after another (continues after a crash)")
    a.add_argument("--workers", type=int, help="Ray workers, one model each on a GPU (or a CPU); 0 renders in this process")
    a.add_argument("--ray-address", help="join this running Ray cluster (default: a local Ray for each book)")
    for action in actions.choices.values():
        action.add_argument("--models-dir", help="folder holding the checkpoints")
        action.set_defaults(func=cmd_queue)

    p = sub.add_parser("voices", help="list the saved voices")
    p.add_argument("--models-dir", help="folder holding the checkpoints")
    p.set_defaults(func=cmd_voices)

    p = sub.add_parser("voice", help="design, clone or pick a voice and save it (prints its preview wav)")
    actions = p.add_subparsers(dest="action", required=True)
    for action, help_text in (("design", "design a voice from a description"),
                              ("clone", "clone a voice from a clip"),
                              ("preset", "save a built-in speaker as a voice")):
        a = actions.add_parser(action, help=help_text)
        a.add_argument("name", help="the voice's name")
        a.add_argument("--language", default="auto", help="language of the preview (default: auto)")
        a.add_argument("--overwrite", action="store_true", help="replace a voice of the same name")
        a.add_argument("--models-dir", help="folder holding the checkpoints")
        a.set_defaults(func=cmd_voice)
        if action == "design":
            a.add_argument("--description", required=True, help="what the voice sounds like")
            a.add_argument("--text", help="the reference passage it speaks (default: a built-in passage)")
            a.add_argument("--seed", type=setting_arg("seed", "--seed"), help="seed for the design (default: random)")
        elif action == "clone":
            a.add_argument("--audio", required=True, help="the clip: wav, mp3, flac, m4a or ogg")
            a.add_argument("--text", help="the words spoken in the clip (without: x-vector only, weaker likeness)")
        else:
            a.add_argument("--speaker", required=True, help="a built-in speaker (see the page's list)")
            a.add_argument("--instruct", help="a style instruction (1.7B only)")
    a = actions.add_parser("delete", help="delete a saved voice")
    a.add_argument("name")
    a = actions.add_parser("rename", help="rename a saved voice")
    a.add_argument("name")
    a.add_argument("new_name")
    a.add_argument("--overwrite", action="store_true", help="replace a voice that has the new name")
    a = actions.add_parser("export", help="zip a saved voice for sharing")
    a.add_argument("name")
    a.add_argument("--output", help="zip file or folder to write")
    a = actions.add_parser("import", help="add a voice from a zip")
    a.add_argument("zip")
    a.add_argument("--name", help="save it under another name")
    a.add_argument("--overwrite", action="store_true", help="replace a voice of the same name")
    for action in ("delete", "rename", "export", "import"):
        actions.choices[action].add_argument("--models-dir", help="folder holding the checkpoints")
        actions.choices[action].set_defaults(func=cmd_voice)

    p = sub.add_parser("book", help="show the chapters and chunks the reader finds in a book")
    p.add_argument("book", help="the book file (.txt, .md, .epub, .pdf, .json)")
    p.add_argument("--json", metavar="OUT", help="also save the book in the JSON book format")
    p.add_argument("--chunks", action="store_true", help="print every chunk too")
    p.add_argument("--chunk-chars", type=setting_arg("chunk_chars", "--chunk-chars"),
                   help="longest chunk in characters, 50-2000 (default: the saved setting)")
    p.set_defaults(func=cmd_book)

    p = sub.add_parser("doctor", help="check this computer: device, checkpoints, engine against qwen_tts, speed, batch size")
    p.add_argument("--models-dir", help="folder holding the checkpoints")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON (attach it to a bug report)")
    p.add_argument("--no-live", action="store_true", help="skip the live check (no model is loaded)")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("models", help="list the checkpoints and whether each is on disk; download one")
    p.add_argument("--models-dir", help="folder holding the checkpoints (default: the setting, else the Hugging Face cache)")
    p.add_argument("--download", metavar="NAME", help="download this checkpoint, e.g. Qwen3-TTS-12Hz-1.7B-Base "
                   "(a broken download resumes)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("cast", help="list the characters who speak in a book, with their lines and voices")
    p.add_argument("book", help="the book file (.txt, .md, .epub, .pdf, .json)")
    p.add_argument("--llm", action="store_true", help="label speakers with the language model of the llm_url setting")
    p.add_argument("--cast", metavar="CAST.json", help="start from this cast (its names and voices)")
    p.add_argument("--json", metavar="OUT", help="save the cast as JSON (for render --cast)")
    p.add_argument("--merge", nargs=2, metavar=("NAME", "OTHER"), help="OTHER is the same character as NAME")
    p.add_argument("--rename", nargs=2, metavar=("NAME", "NEW"), help="call NAME NEW from now on")
    p.add_argument("--split", nargs=2, metavar=("NAME", "ALIAS"), help="ALIAS of NAME is a character of their own")
    p.add_argument("--hide", metavar="NAME", help="read NAME's quotes with the dialogue voice")
    p.add_argument("--show", metavar="NAME", help="give a hidden character their quotes back")
    p.add_argument("--design", action="store_true", help="design, save and map a voice for each main character "
                   "(descriptions by the language model with --llm, else from the text)")
    p.add_argument("--only", action="append", metavar="NAME", help="with --design: only this character (repeatable)")
    p.set_defaults(func=cmd_cast)

    p = sub.add_parser("tiny-models", help="write tiny random-weight checkpoints (for trying the app without downloads)")
    p.add_argument("dir")
    p.set_defaults(func=cmd_tiny_models)

    p = sub.add_parser("selftest", help="prove the install works, using tiny checkpoints")
    p.add_argument("--models-dir", help="ignored: selftest builds its own tiny checkpoints")
    p.set_defaults(func=cmd_selftest)
    return parser


def setting_arg(name: str, flag: str):
    """An argparse type for a command-line value that must lie in a setting's range (a sentence when not)."""
    from dataclasses import fields

    meta = next(f.metadata for f in fields(Settings) if f.name == name)
    lo, hi = meta["range"]
    kind = Settings.kind(name)

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a {'whole ' if kind is int else ''}number, not '{text}'.") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{flag} must be between {lo:g} and {hi:g}, not {text}.")
        return value

    return parse


def positive_int(flag: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a whole number, not '{text}'.") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} counts from 1, not {text}.")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    """argparse that ends a refusal with one sentence (and the usage line), never a traceback."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        import re

        message = re.sub(r"^argument [^:]+: (?=--)", "", message)  # our own sentences name their flag already
        sentence = message[:1].upper() + message[1:]
        self.exit(2, f"Error: {sentence if sentence.endswith('.') else sentence + '.'}\n")


def main(argv: list[str] | None, open_backend: Callable[..., Any]) -> int:
    """Run the command line; ``open_backend(**options)`` makes the ``backend.Backend`` a command works with."""
    args = build_parser().parse_args(argv)
    args.open_backend = open_backend
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.verbose:
        logging.getLogger("sox").setLevel(logging.ERROR)  # a library's import-time note about an optional tool
    try:
        return args.func(args)
    except AudiobookError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
        return 130
    except Exception as e:  # the last resort: one sentence here, the traceback in a log file (and here with -v)
        from audiobook.errors import unexpected_sentence, write_error_log

        if args.verbose:
            import traceback

            traceback.print_exc()
        print(f"Error: {unexpected_sentence(e, write_error_log(e, 'backend'))}", file=sys.stderr)
        return 1
