"""The Queue panel of the Render tab: books that render one after another, and the Ray workers."""

from __future__ import annotations

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
        raise AudiobookError("Select a book in the queue table first.")
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


def queue_note(rows: list[list[Any]], picked: int | None) -> str:
    """The line under the queue table: what is selected, or how to select (or fill) it."""
    if not rows:
        return "The queue is empty: load a book, pick a narrator, press Add to queue."
    if picked and 1 <= picked <= len(rows):
        return f"Selected: item {picked}, “{rows[picked - 1][1]}”."
    return "Select a book in the table to move it, remove it or queue it again."


def can_run_queue(backend: Backend, rows: list[list[Any]]) -> bool:
    """Run the queue has work: a book waits, and no render runs."""
    return not backend.render_state().running and any(r[3] == "queued" for r in rows)


def workers_html(backend: Backend) -> str:
    return table_html(WORKER_COLUMNS, worker_rows(backend), "No Ray workers: the render runs in this process (workers = 0).")


def worker_rows(backend: Backend) -> list[list[Any]]:
    """The Ray workers of the current render: worker, doing, device, node, pid, calls, takes, restarts."""
    return backend.render_state().workers


def build_queue_panel(backend: Backend, add_btn: gr.Button, book_state: gr.State, narrator: gr.Dropdown,
                      message: gr.Markdown) -> SimpleNamespace:
    """The render queue (table, reorder, remove, run) and the workers of the running render.

    A row is chosen by selecting it in the table; the buttons that act on a row wait for one.
    """
    B = backend
    with gr.Accordion("Queue", open=False, elem_id="queue-box") as queue_box:
        table = gr.Dataframe(headers=QUEUE_COLUMNS, value=[], interactive=False, wrap=True, elem_id="queue-table")
        picked = gr.State(None)  # the item number selected in the table
        shown = gr.State(None)  # the rows on screen, so the poll resends only a change
        note = gr.Markdown(elem_id="queue-note")
        with gr.Row():
            up_btn = gr.Button("Move up", size="sm", interactive=False, elem_id="queue-up")
            down_btn = gr.Button("Move down", size="sm", interactive=False, elem_id="queue-down")
            remove_btn = gr.Button("Remove", size="sm", interactive=False, elem_id="queue-remove")
            retry_btn = gr.Button("Queue again", size="sm", interactive=False, elem_id="queue-retry")
            run_btn = gr.Button("Run the queue", variant="primary", interactive=False, elem_id="queue-run")
    with gr.Accordion("Workers", open=False, elem_id="workers-box") as workers_box:
        gr.Markdown("With the `workers` setting above 0, each Ray worker holds a model on its own GPU (or CPU); "
                    "this shows what each is doing.")
        workers = gr.HTML(workers_html(B), elem_id="workers-table")
    row_btns = [up_btn, down_btn, remove_btn, retry_btn]

    def view(rows, n):
        """The table and everything that follows from it and the selected item ``n``."""
        n = n if n and 1 <= n <= len(rows) else None
        return [rows, rows, n, queue_note(rows, n), gr.update(interactive=can_run_queue(B, rows)),
                *[gr.update(interactive=n is not None)] * len(row_btns)]

    outputs = [table, shown, picked, note, run_btn, *row_btns]

    def on_add(book, choice):
        text, rows = add_to_queue(B, book, choice)
        return [text, *view(rows, None)]

    def on_pick(rows, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return view(rows or [], None if row is None else row + 1)[2:]

    def on_move(n, step):
        text, rows, to = move_queue_item(B, n, step)
        return [text, *view(rows, to)]

    def on_remove(n):
        text, rows = remove_queue_item(B, n)
        return [text, *view(rows, None)]

    def on_retry(n):
        text, rows = retry_queue_item(B, n)
        return [text, *view(rows, n)]

    def on_run():
        text = run_queue(B)
        return [text, gr.update(interactive=False)]

    add_btn.click(page_errors(on_add), [book_state, narrator], [message, *outputs])
    table.select(page_errors(on_pick), shown, outputs[2:])
    up_btn.click(page_errors(lambda n: on_move(n, -1)), picked, [message, *outputs])
    down_btn.click(page_errors(lambda n: on_move(n, +1)), picked, [message, *outputs])
    remove_btn.click(page_errors(on_remove), picked, [message, *outputs])
    retry_btn.click(page_errors(on_retry), picked, [message, *outputs])
    started = run_btn.click(page_errors(on_run), None, [message, run_btn])

    def on_tick(last, n):
        try:
            rows = queue_rows(B)
        except AudiobookError:  # a damaged queue file: the buttons say so when used
            return [gr.skip()] * len(outputs) + [workers_html(B)]
        if rows == last:  # resending the table would clear the user's selection
            return [gr.skip()] * 4 + [gr.update(interactive=can_run_queue(B, rows))] + [gr.skip()] * len(row_btns) \
                + [workers_html(B)]
        return view(rows, n) + [workers_html(B)]

    # The poll runs only while the Queue or Workers panel is open (both start closed): each poll costs the
    # browser a pass over the page, and a closed panel shows nothing to update.
    timer = gr.Timer(POLL_S, active=False)
    timer.tick(on_tick, [shown, picked], [*outputs, workers], show_progress="hidden", concurrency_id="poll-queue",
               concurrency_limit=2, trigger_mode="always_last")
    panels = gr.State(())  # the names of the open panels

    def opened(panels_open, name, now_open):
        now = set(panels_open or ()) | {name} if now_open else set(panels_open or ()) - {name}
        return tuple(sorted(now)), gr.Timer(active=bool(now))

    for box, name in ((queue_box, "queue"), (workers_box, "workers")):
        box.expand(lambda p, name=name: opened(p, name, True), panels, [panels, timer], show_progress="hidden").then(
            on_tick, [shown, picked], [*outputs, workers], show_progress="hidden")
        box.collapse(lambda p, name=name: opened(p, name, False), panels, [panels, timer], show_progress="hidden")
    def on_load():
        try:
            rows = queue_rows(B)
        except AudiobookError:  # a damaged queue file: the buttons say so when used
            rows = []
        return view(rows, None) + [workers_html(B)]

    return SimpleNamespace(table=table, workers=workers, started=started, on_load=([*outputs, workers], on_load))
