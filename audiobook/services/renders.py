"""Renders for the Backend: blocking and background renders, samples, plans, stop and state.

Each function takes the ``backend.Backend`` first; ``Backend`` lists them as its methods.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable

from audiobook.books import Book, load_book
from audiobook.books.cast import Cast
from audiobook.errors import AudiobookError
from audiobook.manifest import Manifest
from audiobook.services import readalong as readalong_svc
from audiobook.render import Progress, RenderOptions, RenderResult, RenderState, plan_book, render_events
from audiobook.tts import PRESET, Narrator
from audiobook.workers import WorkerInfo, WorkerPool, executor_for

RENDER_BUSY = "A render is already running; stop it or wait for it to finish before starting another."
LOG_LINES_KEPT = 500  # the page shows the tail of the log; older lines stay in memory no longer


class RenderJob:
    """The state of one background render, updated by its thread and read by the page."""

    def __init__(self, state: RenderState):
        self.state = state
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.done = threading.Event()

    def update(self, p: Progress) -> None:
        with self.lock:
            st = self.state
            st.chunks_done, st.chunks_total, st.audio_s, st.elapsed_s = p.chunks_done, p.chunks_total, p.audio_s, p.elapsed_s
            st.x_real_time, st.eta_s, st.batch_size = p.x_real_time, p.eta_s, p.batch_size
            st.failed_count, st.suspect_count = p.failed, p.suspect
            if p.message:
                st.log = (st.log + p.message.split("\n"))[-LOG_LINES_KEPT:]

    def request_stop(self) -> None:
        self.stop.set()
        with self.lock:
            if self.state.running:
                self.state.stopping = True

    def run(self, render: Callable[[], RenderResult]) -> None:
        try:
            result = render()
            with self.lock:
                st = self.state
                st.failed, st.suspect, st.skipped_chapters = list(result.failed), list(result.suspect), list(result.skipped_chapters)
                st.chapter_files = [str(f) for f in result.chapter_files]
                st.book_files = [str(f) for f in result.book_files]
                st.stopped, st.finished = result.stopped, True
        except AudiobookError as e:
            self._fail(str(e))
        except Exception as e:  # the thread must never die silently: the page shows a sentence, the log the traceback
            from audiobook.errors import unexpected_sentence, write_error_log

            logging.getLogger(__name__).info("render failed", exc_info=True)
            self._fail(unexpected_sentence(e, write_error_log(e, "render")))
        finally:
            with self.lock:
                self.state.running = self.state.stopping = False
            self.done.set()

    def _fail(self, sentence: str) -> None:
        with self.lock:
            self.state.error = sentence
            self.state.log = (self.state.log + [sentence])[-LOG_LINES_KEPT:]

    def snapshot(self) -> RenderState:
        with self.lock:
            st = self.state
            return replace(st, log=list(st.log), failed=list(st.failed), suspect=list(st.suspect),
                           skipped_chapters=list(st.skipped_chapters), chapter_files=list(st.chapter_files),
                           book_files=list(st.book_files))


def narrator_label(narrator: Narrator) -> str:
    """A short file-name-safe name for a narrator (its saved name, speaker, or 'clone')."""
    from audiobook.audio import safe_filename

    return safe_filename(narrator.name or narrator.speaker or "clone")


def render(
    backend,
    book: Book | str | Path,
    narrator: Narrator | str,
    out_dir: str | Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    *,
    redo_chunks: tuple[str, ...] | list[str] = (),
    redo_chapters: tuple[int, ...] | list[int] = (),
    rebuild: bool = False,
    allow_incomplete: bool = False,
    cast: Cast | None = None,
    chapters: tuple[int, ...] | list[int] = (),
) -> RenderResult:
    """Render a book (a Book or a path) with ``narrator`` (a Narrator or a saved voice's name), blocking.

    Continues from ``<out_dir>/manifest.json``: only chunks not done yet are generated.
    ``redo_chunks`` (ids) and ``redo_chapters`` (1-based numbers) are rendered again;
    ``rebuild`` recovers a damaged manifest from the chunk files; ``allow_incomplete``
    assembles chapters whose failed chunks are left out; ``chapters`` (1-based) renders
    and assembles only those (the book files once every chapter is done). ``cast`` maps
    characters to voices (see ``render_cast``). Raises AudiobookError while another render runs.
    """
    book, narrator, target = render_inputs(backend, book, narrator, out_dir)
    with hold_for_render(backend, book):
        book, voicing = backend.render_cast(book, narrator, target, cast)
        options = RenderOptions(tuple(redo_chunks), tuple(int(n) for n in redo_chapters), rebuild, allow_incomplete,
                                tuple(int(n) for n in chapters))
        return render_with(backend, book, narrator, target, options, on_progress, should_stop, voicing)


def hold_for_render(backend, book: Book | str, what: str = "a render"):
    """Take the model lock for a render of ``book`` (a Book or its title); a render or preview
    already holding it is a sentence."""
    from audiobook.model_lock import ModelLock

    lock: ModelLock = backend.tts.lock
    if lock.held_by_other() and lock.holder.startswith("a render"):
        raise AudiobookError(RENDER_BUSY)
    title = book.title if isinstance(book, Book) else book
    return lock.hold(f"{what} of '{title or 'a book'}'")


def render_inputs(backend, book, narrator, out_dir) -> tuple[Book, Narrator, Path]:
    if not isinstance(book, Book):
        path, book = book, load_book(book)
        readalong_svc.remember_source(backend, book, path)
    if isinstance(narrator, str):
        narrator = backend.narrator_for(narrator)
    return book, narrator, Path(out_dir) if out_dir else backend.book_dir(book)


def render_with(backend, book, narrator, target, options, on_progress, should_stop, voicing=None,
                settings=None) -> RenderResult:
    """One render; ``settings`` (a queued book's snapshot) is used instead of the current ones."""
    settings = settings or backend.settings
    result = RenderResult(out_dir=target)
    backend.tts.settings = settings
    try:
        with executor_for(settings, backend.tts) as executor:  # workers > 0: Ray workers render the batches
            backend._executor = executor
            maker = executor if isinstance(executor, WorkerPool) else None
            prompt = (lambda: backend.clone_prompt_for(narrator, maker)) if narrator.kind != PRESET else None
            if voicing is not None:
                voicing.prompt_for = lambda voice: backend.clone_prompt_for(voice, maker)
            for progress in render_events(book, narrator, settings, target, backend.tts, result, should_stop,
                                          options, clone_prompt=prompt, executor=executor, voicing=voicing):
                if on_progress:
                    on_progress(progress)
        readalong_svc.after_render(backend, book, target, result, settings)
    finally:
        if backend.tts.settings is settings:  # unless the settings were changed meanwhile
            backend.tts.settings = backend.settings
    return result


def worker_infos(backend) -> list[WorkerInfo]:
    """The Ray workers of the current (or last) render and what each is doing; empty without workers."""
    return backend._executor.infos() if backend._executor is not None else []


def sample(backend, book: Book | str | Path, narrator: Narrator | str, chapter: int = 1, seconds: float = 60.0,
           out_path: str | Path | None = None) -> Path:
    """Render about the first ``seconds`` of a chapter with ``narrator`` into one wav; return its path."""
    from audiobook.review import render_sample

    book, narrator, target = render_inputs(backend, book, narrator, None)
    with hold_for_render(backend, book, "a sample"):
        prompt = backend.clone_prompt_for(narrator) if narrator.kind != PRESET else None
        out = Path(out_path) if out_path else target / "samples" / f"sample-chapter-{chapter}-{narrator_label(narrator)}.wav"
        return render_sample(book, narrator, backend.settings, backend.tts, chapter, seconds, out, prompt)


def render_plan(backend, book: Book | str | Path, narrator: Narrator | str, out_dir: str | Path | None = None,
                cast: Cast | None = None) -> Manifest:
    """What a render would start from: every chapter's chunks (ids, text, status), without a model."""
    book, narrator, target = render_inputs(backend, book, narrator, out_dir)
    book, voicing = backend.render_cast(book, narrator, target, cast, save=False)
    return plan_book(book, narrator, backend.settings, target, voicing=voicing)


def start_render(
    backend,
    book: Book | str | Path,
    narrator: Narrator | str,
    out_dir: str | Path | None = None,
    *,
    redo_chunks: tuple[str, ...] | list[str] = (),
    redo_chapters: tuple[int, ...] | list[int] = (),
    rebuild: bool = False,
    allow_incomplete: bool = False,
    cast: Cast | None = None,
) -> RenderState:
    """Start rendering in a background thread and return at once; follow it with ``render_state``.

    Same arguments as ``render``. Raises AudiobookError when a render is already running
    or the book or voice cannot be read (before anything starts).
    """
    book, narrator, target = render_inputs(backend, book, narrator, out_dir)
    options = RenderOptions(tuple(redo_chunks), tuple(int(n) for n in redo_chapters), rebuild, allow_incomplete)

    def prepare():
        nonlocal book
        book, voicing = backend.render_cast(book, narrator, target, cast)
        job = RenderJob(RenderState(running=True, book_title=book.title, out_dir=str(target)))
        return job, lambda: render_with(backend, book, narrator, target, options, job.update, job.stop.is_set, voicing)

    return start_job(backend, hold_for_render(backend, book), prepare, "render")


def start_job(backend, hold, prepare, name: str) -> RenderState:
    """Run a render-like job in a background thread that holds the model lock.

    ``hold`` is taken here, so a busy model is refused before anything starts; ``prepare()``
    returns the job and the function its thread runs. The lock passes to that thread and is
    released when it ends.
    """
    hold.__enter__()
    handed = threading.Event()
    try:
        job, body = prepare()

        def work() -> None:
            handed.wait()
            try:
                job.run(body)
            finally:
                hold.__exit__(None, None, None)

        thread = threading.Thread(target=work, name=name, daemon=True)
        thread.start()
        backend.tts.lock.hand_over(thread.ident)
    except BaseException:
        hold.__exit__(None, None, None)
        raise
    backend._job = job
    handed.set()
    return job.snapshot()


def stop_render(backend) -> RenderState:
    """Ask the background render to stop after the batch in flight; returns the state at once."""
    if backend._job is None:
        return RenderState()
    backend._job.request_stop()
    return backend._job.snapshot()


def render_state(backend) -> RenderState:
    """A snapshot of the background render (the last one, when none runs), with its workers."""
    state = backend._job.snapshot() if backend._job else RenderState()
    state.workers = [w.row() for w in backend.worker_infos()]
    return state


def wait_render(backend, timeout: float | None = None) -> RenderState:
    """Block until the background render ends (or ``timeout`` seconds pass); return its state."""
    if backend._job is not None:
        backend._job.done.wait(timeout)
    return backend.render_state()
