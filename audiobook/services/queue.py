"""The render queue for the Backend: add, move, remove, retry, and run the books one after another.

Each function takes the ``backend.Backend`` first; ``Backend`` lists them as its methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from audiobook.books import Book, load_book
from audiobook.errors import AudiobookError
from audiobook.queue import QueueItem
from audiobook.queue import run_queue as run_items
from audiobook.queue import settings_for, snapshot
from audiobook.render import Progress, RenderOptions, RenderResult, RenderState
from audiobook.services.renders import LOG_LINES_KEPT, RenderJob, hold_for_render, render_with, start_job
from audiobook.tts import PRESET, Narrator


def queue_add(backend, book: Book | str | Path, voice: str | None = None, speaker: str | None = None,
              instruct: str = "", output: str | Path | None = None) -> QueueItem:
    """Queue a book (a file, or a loaded and perhaps edited Book) with a saved voice or a built-in speaker.

    The current settings are kept with it. The book file is read when its turn comes, so a
    damaged file fails then, with its sentence; a missing file or voice is refused now.
    """
    from audiobook.books import BOOK_EXTENSIONS, save_book_json
    from audiobook.files import safe_filename

    if bool(voice) == bool(speaker):
        raise AudiobookError("Queue a book with either a saved voice or a built-in speaker.")
    if voice:
        backend.get_voice(voice)
    else:
        known = backend.speakers()
        if known and speaker.lower() not in known:
            raise AudiobookError(f"There is no built-in speaker called '{speaker}'; choose one of: {', '.join(known)}.")
        backend.tts.check_instruct(instruct)
    if isinstance(book, Book):  # the page's book, with the user's edits: kept as a JSON book
        import uuid

        path = backend.output_root / "queued-books" / f"{safe_filename(book.title or 'book')}-{uuid.uuid4().hex[:8]}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_book_json(book, path)
        title = book.title or path.stem
    else:
        path = backend.resolve(str(book)).resolve()
        if not path.is_file():
            raise AudiobookError(f"There is no book file at {path}.")
        if path.suffix.lower() not in BOOK_EXTENSIONS:
            raise AudiobookError(f"Cannot read '{path.suffix or path.name}' files; use {', '.join(BOOK_EXTENSIONS)}.")
        title = path.stem
    item = QueueItem(book=str(path), title=title, voice=voice or "", speaker=(speaker or "").lower(),
                     instruct=instruct or "", output=str(backend.resolve(str(output))) if output else "",
                     settings=snapshot(backend.settings))
    return backend.queue.add(item)


def queue_remove(backend, n: int) -> QueueItem:
    """Remove item ``n`` (1-based); its rendered files stay where they are."""
    return backend.queue.remove(n)


def queue_move(backend, n: int, to: int) -> list[QueueItem]:
    """Move item ``n`` to position ``to`` (1-based)."""
    return backend.queue.move(n, to)


def queue_retry(backend, n: int) -> QueueItem:
    """Put a failed item back in line."""
    return backend.queue.retry(n)


def run_queue(backend, on_progress: Callable[[Progress], None] | None = None, should_stop: Callable[[], bool] = lambda: False,
              on_item: Callable[[QueueItem], None] | None = None) -> list[QueueItem]:
    """Render the queued books one after another (blocking); returns the items at the end.

    The book in progress when a run was killed continues from its manifest; a book that
    fails is marked failed with its sentence and the next one starts.
    """
    with hold_for_render(backend, "the queue"):
        return run_items(backend.queue, lambda item, progress: render_queued_item(backend, item, progress, on_progress, should_stop),
                         should_stop, on_item)


def render_queued_item(backend, item: QueueItem, progress, on_progress, should_stop) -> RenderResult:
    book = load_book(item.book)
    narrator = backend.narrator_for(item.voice) if item.voice else Narrator(kind=PRESET, speaker=item.speaker,
                                                                          instruct=item.instruct)
    target = Path(item.output) if item.output else backend.book_dir(book)
    if book.title and book.title != item.title:
        backend.queue.update(item.id, title=book.title)

    def report(p: Progress) -> None:
        progress(p)
        if on_progress:
            on_progress(p)

    return render_with(backend, book, narrator, target, RenderOptions(), report, should_stop,
                        settings=settings_for(item, backend.settings))


def start_queue(backend) -> RenderState:
    """Run the queue in a background thread (the page); follow it with ``render_state`` and ``queue_items``."""
    if backend.queue.next_item() is None:
        raise AudiobookError("There is no book waiting in the queue; add one first.")

    def prepare():
        job = RenderJob(RenderState(running=True, book_title="Queue"))
        last = [RenderResult(out_dir=backend.output_root)]

        def on_item(item: QueueItem) -> None:
            with job.lock:
                st = job.state
                st.book_title, st.out_dir, st.chunks_done, st.chunks_total = item.title, item.output, 0, 0
                st.log = (st.log + [f"Queue: rendering {item.title} with {item.narrator_label}."])[-LOG_LINES_KEPT:]

        def render_item(item: QueueItem, progress) -> RenderResult:
            try:
                last[0] = render_queued_item(backend, item, progress, job.update, job.stop.is_set)
            except AudiobookError as e:
                with job.lock:
                    job.state.log = (job.state.log + [f"Queue: {item.title} failed: {e}"])[-LOG_LINES_KEPT:]
                raise
            return last[0]

        return job, lambda: (run_items(backend.queue, render_item, job.stop.is_set, on_item), last[0])[1]

    return start_job(backend, hold_for_render(backend, "the queue"), prepare, "queue")
