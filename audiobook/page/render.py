"""The Render tab: pick a narrator, start, stop and resume a render, follow its progress and log."""

from __future__ import annotations

import functools
import html
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from audiobook.books import Book, formats_sentence
from audiobook.errors import AudiobookError
from audiobook.page.queue import build_queue_panel
from audiobook.page.voice_lab import narrator_choices, narrator_for
from audiobook.page.widgets import (IDLE_POLL_S, LOG_LINES, POLL_S, Backend, book_file_box, fmt_duration, keep_enabled,
                                   page_errors, status_text)
from audiobook.render import RenderState
from audiobook.serving import ServedFiles


def start_render(backend: Backend, book: Book | None, choice: str | None, redo_chunks: list[str] | None = None) -> str:
    """Start a background render of ``book``; refuses (AudiobookError) while another runs.

    Pressing it again after a stop, a crash or a reload continues from the manifest.
    """
    if book is None:
        raise AudiobookError(f"Load a book first: drop a {formats_sentence()} file in the Book file box.")
    backend.start_render(book, narrator_for(backend, choice), redo_chunks=redo_chunks or (), cast=book.cast)
    if redo_chunks:
        return f"Rendering {len(redo_chunks)} chunk{'s' if len(redo_chunks) != 1 else ''} of “{book.title}” again…"
    return f"Started “{book.title}”; chunks rendered before are kept, so Resume never redoes work."


def rerender_problems(backend: Backend, book: Book | None, choice: str | None) -> str:
    """Render the failed and suspect chunks of the last render again."""
    state = backend.render_state()
    ids = [c.id for c in list(state.failed) + list(state.suspect)]
    if not ids:
        raise AudiobookError("There are no failed or suspect chunks to render again.")
    return start_render(backend, book, choice, ids)


def stop_render(backend: Backend) -> str:
    """Ask the running render to stop after the takes in flight."""
    if not backend.render_state().running:
        return "Nothing is rendering."
    backend.stop_render()
    return "Stopping after the takes in flight… press Resume to continue later."


def render_phase(state: RenderState) -> str:
    if state.error:
        return "Failed"
    if state.running:
        return "Stopping" if state.stopping else "Rendering"
    if state.stopped:
        return "Stopped"
    if state.finished:
        return "Done" if not state.failed else "Done, with failed chunks"
    return "Idle"


def can_resume(state: RenderState) -> bool:
    """Resume has something to continue: the last render stopped or failed, and none runs now."""
    return not state.running and bool(state.stopped or state.error)


def render_buttons(state: RenderState, book: Book | None) -> dict[str, bool]:
    """Which of the Render tab's buttons have something to act on: Render and Add to queue a loaded book (Render
    while none runs), Stop a running render, Resume a stopped or failed one, the re-render its failed and
    suspect chunks."""
    loaded = book is not None
    return {"start": loaded and not state.running, "stop": state.running and not state.stopping,
            "resume": loaded and can_resume(state), "queue_add": loaded,
            "rerender": loaded and not state.running and bool(state.failed or state.suspect)}


def poll_pace(state: RenderState) -> float:
    """Seconds between the Render tab's polls: every second while a render runs, IDLE_POLL_S while none does
    (each poll costs the browser a pass over the page)."""
    return POLL_S if state.running else IDLE_POLL_S


def progress_html(state: RenderState) -> str:
    """The progress bar with chunks done/total, audio minutes, x-real-time and ETA."""
    if not state.chunks_total and not state.running and not state.error:
        return "<div class='render-progress'><div class='numbers'>No render yet.</div></div>"
    total, done = state.chunks_total, state.chunks_done
    pct = 100.0 * done / total if total else 0.0
    eta = fmt_duration(state.eta_s) if state.running and state.eta_s is not None else "—"
    title = f" “{html.escape(state.book_title)}”" if state.book_title else ""
    numbers = (f"<b>{render_phase(state)}</b>{title} · {done} / {total} chunks ({pct:.0f}%) · "
               f"{state.audio_s / 60:.1f} min of audio · {state.x_real_time:.2f}× real time · ETA {eta}")
    if state.failed_count or state.suspect_count:
        numbers += f" · {state.failed_count} failed, {state.suspect_count} suspect"
    error = f"<div class='render-error'>{html.escape(state.error)}</div>" if state.error else ""
    return (f"<div class='render-progress' data-percent='{pct:.0f}'>"
            f"<div class='bar'><div class='fill' style='width:{pct:.1f}%'></div></div>"
            f"<div class='numbers'>{numbers}</div>{error}</div>")


def log_text(state: RenderState) -> str:
    return "\n".join(state.log[-LOG_LINES:])


def problem_rows(state: RenderState) -> list[list[Any]]:
    """Failed and suspect chunks: status, chapter, chunk number, reason, text."""
    return [[c.status, f"{c.chapter}. {c.chapter_title}", c.index, c.reason, c.text]
            for c in list(state.failed) + list(state.suspect)]


def result_files(state: RenderState) -> dict[str, Any]:
    """Chapter files (for the player) and the m4b, srt and read-along epub downloads (None when absent)."""
    by_suffix = {Path(p).suffix.lower(): p for p in state.book_files}
    return {"chapters": list(state.chapter_files), "m4b": by_suffix.get(".m4b"), "srt": by_suffix.get(".srt"),
            "epub": by_suffix.get(".epub")}


def build_render_tab(backend: Backend, serve: ServedFiles, book_state: gr.State, status: gr.Markdown) -> SimpleNamespace:
    """Render: book file, narrator, Render/Stop/Resume, progress, log, problems and results."""
    B = backend
    with gr.Tab("Render", id="render"):
        with gr.Row():
            with gr.Column(scale=1):
                book_file, book_info = book_file_box("1. Book file", "render-book")
            with gr.Column(scale=1):
                narrator = gr.Dropdown([], label="2. Narrator", info="A saved voice from the Voice Lab, or a built-in speaker.",
                                       elem_id="render-narrator")
                refresh_narrators = gr.Button("Refresh the list", size="sm")
        with gr.Row():
            # Each enabled only while it has something to act on (render_buttons; the poll below keeps them so).
            render_btn = gr.Button("3. Render", variant="primary", interactive=False, elem_id="render-start")
            stop_btn = gr.Button("Stop", variant="stop", interactive=False, elem_id="render-stop")
            resume_btn = gr.Button("Resume", interactive=False, elem_id="render-resume")
            queue_add_btn = gr.Button("Add to queue", interactive=False, elem_id="render-queue-add")
        render_msg = gr.Markdown(elem_id="render-message")
        progress = gr.HTML(progress_html(RenderState()), elem_id="render-progress")
        log_box = gr.Textbox(label="Log", lines=8, max_lines=8, autoscroll=True, interactive=False, elem_id="render-log")
        with gr.Accordion("Failed and suspect chunks", open=False, elem_id="render-problems-box"):
            problems = gr.Dataframe(headers=["status", "chapter", "chunk", "reason", "text"], value=[], wrap=True,
                                    interactive=False, elem_id="render-problems")
            rerender_btn = gr.Button("Render these chunks again", interactive=False, elem_id="render-rerender")
        with gr.Column(visible=False, elem_id="render-results") as results_box:
            gr.Markdown("### Results")
            with gr.Row():
                chapter_pick = gr.Dropdown([], label="Chapter", elem_id="render-chapter-pick", scale=1)
                chapter_player = gr.Audio(label="Listen", type="filepath", interactive=False, elem_id="render-player", scale=2)
            with gr.Row():
                m4b_file = gr.File(label="Audiobook (.m4b)", interactive=False, height=80, elem_id="render-m4b")
                srt_file = gr.File(label="Subtitles (.srt)", interactive=False, height=80, elem_id="render-srt")
                epub_file = gr.File(label="Read-along book (.epub)", interactive=False, height=80, elem_id="render-epub")
            speakers = gr.Dataframe(headers=["speaker", "voice", "chunks", "seconds"], value=[], interactive=False,
                                    label="Who spoke", elem_id="render-speakers")
        results_key = gr.State(None)
        queue = build_queue_panel(B, queue_add_btn, book_state, narrator, render_msg)

    def on_narrators():
        choices = narrator_choices(B)
        return gr.update(choices=choices, value=choices[0][1] if choices else None)

    refresh_narrators.click(page_errors(on_narrators), None, narrator)
    started = [render_btn.click(page_errors(functools.partial(start_render, B)), [book_state, narrator], render_msg),
               resume_btn.click(page_errors(functools.partial(start_render, B)), [book_state, narrator], render_msg),
               rerender_btn.click(page_errors(functools.partial(rerender_problems, B)), [book_state, narrator], render_msg),
               queue.started]
    stop_btn.click(page_errors(functools.partial(stop_render, B)), None, render_msg)

    buttons = {"start": render_btn, "stop": stop_btn, "resume": resume_btn, "queue_add": queue_add_btn,
               "rerender": rerender_btn}
    keep_enabled(buttons, lambda book: render_buttons(B.render_state(), book), [book_state], [book_state])

    def on_tick(last_key, book):
        state = B.render_state()
        pace = gr.Timer(poll_pace(state))
        flags = render_buttons(state, book)
        files = result_files(state)
        key = (tuple(files["chapters"]), files["m4b"], files["srt"], files["epub"])
        # The results box gets an explicit visibility every time: an empty update would hide it again.
        out = [status_text(B), progress_html(state), log_text(state), problem_rows(state),
               gr.update(visible=bool(files["chapters"] or files["m4b"])),
               *[gr.update(interactive=flags[name]) for name in buttons]]
        if key == last_key:  # resending the players would restart what the user is listening to
            return out + [gr.skip()] * 6 + [last_key, pace]
        choices = [(Path(p).stem, serve(p)) for p in files["chapters"]]
        first = choices[0][1] if choices else None
        return out + [gr.update(choices=choices, value=first), first, serve(files["m4b"]), serve(files["srt"]),
                      serve(files["epub"]), B.speaker_rows(state.out_dir), key, pace]

    # Each tick sets the pace of the next (poll_pace); whatever starts a render from this page sets it back to
    # every second once the render has started.
    timer = gr.Timer(POLL_S)
    timer.tick(page_errors(on_tick), [results_key, book_state],
               [status, progress, log_box, problems, results_box, *buttons.values(), chapter_pick,
                chapter_player, m4b_file, srt_file, epub_file, speakers, results_key, timer],
               show_progress="hidden", concurrency_id="poll", concurrency_limit=4, trigger_mode="always_last")
    for event in started:
        event.then(lambda: gr.Timer(POLL_S), None, timer, show_progress="hidden")
    chapter_pick.change(serve.owned, chapter_pick, chapter_player, show_progress="hidden")

    def on_load():
        choices = narrator_choices(B)
        return [gr.update(choices=choices, value=choices[0][1] if choices else None)]

    return SimpleNamespace(book_file=book_file, book_info=book_info, narrator=narrator, queue=queue,
                           on_load=([narrator], on_load))
