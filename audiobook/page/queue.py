"""The Queue panel of the Render tab: books that render one after another, and the Ray workers."""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import gradio as gr

from audiobook.books import Book, formats_sentence
from audiobook.errors import AudiobookError
from audiobook.page.widgets import POLL_S, SPEAKER_PREFIX, VOICE_PREFIX, Backend, page_errors, table_html
from audiobook.queue import COLUMNS as QUEUE_COLUMNS
from audiobook.workers import WORKER_COLUMNS


def add_to_queue(backend: Backend, book: Book | None, choice: str | None) -> tuple[str, list[list[Any]]]:
    """Queue the loaded book (with the page's edits) and narrator with the current settings."""
    if book is None:
        raise AudiobookError(f"Load a book first: drop a {formats_sentence()} file in the Book file box.")
    if not choice:
        raise AudiobookError("Choose a narrator first: a saved voice or a built-in speaker.")
    if choice.startswith(VOICE_PREFIX):
        item = backend.queue_add(book, voice=choice[len(VOICE_PREFIX):])
    elif choice.startswith(SPEAKER_PREFIX):
        item = backend.queue_add(book, speaker=choice[len(SPEAKER_PREFIX):])
    else:
        raise AudiobookError(f"Unknown narrator {choice!r}; choose one from the list.")
    rows = queue_rows(backend)
    return f"Queued “{item.title}” with {item.narrator_label} as item {len(rows)}.", rows


def queue_rows(backend: Backend) -> list[list[Any]]:
    """The queue table: #, book, voice, status, progress."""
    return [item.row(n) for n, item in enumerate(backend.queue_items(), 1)]


def _item_number(n: float | None) -> int:
    if n is None or int(n) < 1:
        raise AudiobookError("Type the number of a queue item (its # in the table) first.")
    return int(n)


def move_queue_item(backend: Backend, n: float | None, step: int) -> tuple[str, list[list[Any]], int]:
    """Move item ``n`` up (step -1) or down (+1); returns (message, rows, its new number)."""
    n = _item_number(n)
    count = len(backend.queue_items())
    to = max(1, min(count, n + step))
    backend.queue_move(n, to)
    return f"Moved item {n} to position {to}.", queue_rows(backend), to


def remove_queue_item(backend: Backend, n: float | None) -> tuple[str, list[list[Any]]]:
    item = backend.queue_remove(_item_number(n))
    return f"Removed “{item.title}” from the queue; its rendered files stay.", queue_rows(backend)


def retry_queue_item(backend: Backend, n: float | None) -> tuple[str, list[list[Any]]]:
    item = backend.queue_retry(_item_number(n))
    return f"“{item.title}” is queued again.", queue_rows(backend)


def run_queue(backend: Backend) -> str:
    """Render the queued books one after another in the background (Stop stops it after a batch)."""
    backend.start_queue()
    waiting = sum(1 for i in backend.queue_items() if i.status in ("queued", "running"))
    return f"Rendering the queue: {waiting} book{'s' if waiting != 1 else ''} to go. Stop pauses it; Run the queue goes on."


def queue_html(backend: Backend) -> str:
    return table_html(QUEUE_COLUMNS, queue_rows(backend), "The queue is empty: load a book, pick a narrator, press Add to queue.")


def workers_html(backend: Backend) -> str:
    return table_html(WORKER_COLUMNS, worker_rows(backend), "No Ray workers: the render runs in this process (workers = 0).")


def worker_rows(backend: Backend) -> list[list[Any]]:
    """The Ray workers of the current render: worker, doing, device, node, pid, calls, takes, restarts."""
    return backend.render_state().workers


def build_queue_panel(backend: Backend, add_btn: gr.Button, book_state: gr.State, narrator: gr.Dropdown,
                      message: gr.Markdown) -> SimpleNamespace:
    """The render queue (table, reorder, remove, run) and the workers of the running render."""
    B = backend
    with gr.Accordion("Queue", open=True, elem_id="queue-box"):
        table = gr.HTML(queue_html(B), elem_id="queue-table")
        with gr.Row():
            item = gr.Number(label="Item #", value=1, precision=0, minimum=1, scale=1, elem_id="queue-item")
            up_btn = gr.Button("Move up", size="sm", elem_id="queue-up")
            down_btn = gr.Button("Move down", size="sm", elem_id="queue-down")
            remove_btn = gr.Button("Remove", size="sm", elem_id="queue-remove")
            retry_btn = gr.Button("Queue again", size="sm", elem_id="queue-retry")
            run_btn = gr.Button("Run the queue", variant="primary", elem_id="queue-run")
    with gr.Accordion("Workers", open=False, elem_id="workers-box"):
        gr.Markdown("With the `workers` setting above 0, each Ray worker holds a model on its own GPU (or CPU); "
                    "this shows what each is doing.")
        workers = gr.HTML(workers_html(B), elem_id="workers-table")

    def html_of(handler):  # the handlers return rows; the page shows them as a table
        def run(*args):
            out = list(handler(*args))
            out[1] = table_html(QUEUE_COLUMNS, out[1], "The queue is empty.")
            return tuple(out)
        return run

    add_btn.click(page_errors(html_of(functools.partial(add_to_queue, B))), [book_state, narrator], [message, table])
    up_btn.click(page_errors(html_of(lambda n: move_queue_item(B, n, -1))), item, [message, table, item])
    down_btn.click(page_errors(html_of(lambda n: move_queue_item(B, n, +1))), item, [message, table, item])
    remove_btn.click(page_errors(html_of(functools.partial(remove_queue_item, B))), item, [message, table])
    retry_btn.click(page_errors(html_of(functools.partial(retry_queue_item, B))), item, [message, table])
    run_btn.click(page_errors(functools.partial(run_queue, B)), None, message)

    def on_tick():
        try:
            return queue_html(B), workers_html(B)
        except AudiobookError:  # a damaged queue file: the buttons say so when used
            return gr.skip(), workers_html(B)

    timer = gr.Timer(POLL_S)
    timer.tick(on_tick, None, [table, workers], show_progress="hidden", concurrency_id="poll-queue",
               concurrency_limit=2, trigger_mode="always_last")
    return SimpleNamespace(table=table, workers=workers, on_load=([table, workers], on_tick))
