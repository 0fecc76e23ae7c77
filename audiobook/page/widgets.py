"""What the tabs share: the page's constants and CSS, formatting, tables, and one error guard for every handler."""

from __future__ import annotations

import functools
import html
import inspect
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import gradio as gr

from audiobook.books import BOOK_EXTENSIONS, formats_label
from audiobook.errors import AudiobookError

# The backend.Backend that app.py hands to every tab; the package never imports backend.py.
Backend = Any
log = logging.getLogger("app")
POLL_S = 1.0  # how often the page asks the backend for the render state while a render runs
IDLE_POLL_S = 5.0  # and while none runs: each poll costs the browser a pass over the page
LOG_LINES = 200  # the live log shows the newest lines only
SPEAKER_PREFIX, VOICE_PREFIX = "speaker:", "voice:"
MODEL_WORK = dict(concurrency_id="model", concurrency_limit=1)  # one model call at a time
CSS = """
.field-error, .field-error * { color: #b91c1c !important; font-size: 0.9em; }
.status-line { font-size: 0.9em; opacity: 0.85; }
.render-progress .bar { height: 18px; border-radius: 9px; background: var(--neutral-200, #e5e7eb); overflow: hidden; }
.render-progress .fill { height: 100%; background: var(--color-accent, #f97316); }
.render-progress .numbers { margin-top: 6px; font-variant-numeric: tabular-nums; }
.queue-table { width: 100%; border-collapse: collapse; font-size: 0.92em; }
.queue-table th, .queue-table td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--border-color-primary, #e5e7eb); }
.queue-empty { opacity: 0.75; font-size: 0.92em; padding: 4px 0; }
.render-progress .render-error { margin-top: 6px; color: var(--error-text-color, #b91c1c); }
"""


def fmt_duration(seconds: float | None) -> str:
    """``75`` -> ``1:15``; ``3725`` -> ``1:02:05``; None -> an em dash."""
    if seconds is None:
        return "—"
    s = int(round(max(seconds, 0)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def status_text(backend: Backend) -> str:
    """The status line: device, loaded model and GPU memory when on CUDA."""
    try:
        info = backend.tts.status()
    except AudiobookError as e:
        return f"⚠️ {e}"
    model = info.get("model")
    parts = [f"**Device:** {info.get('device', '?')}",
             f"**Model:** {Path(model).name if model else 'none loaded yet'}"]
    if "gpu_total_mb" in info:
        parts.append(f"**GPU memory:** {info['gpu_used_mb'] / 1024:.1f} / {info['gpu_total_mb'] / 1024:.1f} GB"
                     + (f" ({info['gpu_name']})" if info.get("gpu_name") else ""))
    return " · ".join(parts)


def table_html(headers: list[str], rows: list[list[Any]], empty: str) -> str:
    """A small read-only table (the queue, the workers) as HTML."""
    if not rows:
        return f"<div class='queue-empty'>{html.escape(empty)}</div>"
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='queue-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page_errors(fn: Callable) -> Callable:
    """Show an AudiobookError as its sentence on the page; anything else as one sentence naming the log
    file that holds its traceback. Never a traceback on the page."""
    if getattr(fn, "_page_safe", False):
        return fn

    if inspect.isgeneratorfunction(fn):  # a handler that streams updates (a download's progress bar)

        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except AudiobookError as e:
                raise gr.Error(str(e), print_exception=False) from None
            except Exception as e:  # a bug: one sentence on the page, the traceback in a log file
                from audiobook.errors import unexpected_sentence, write_error_log

                log.info("Unexpected error in %s", getattr(fn, "__name__", "handler"), exc_info=True)
                raise gr.Error(unexpected_sentence(e, write_error_log(e, "page")), print_exception=False) from None

        streaming._page_safe = True
        return streaming

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AudiobookError as e:
            raise gr.Error(str(e), print_exception=False) from None
        except gr.Error:
            raise
        except Exception as e:  # a bug: one sentence on the page, the traceback in a log file
            from audiobook.errors import unexpected_sentence, write_error_log

            log.info("Unexpected error in %s", getattr(fn, "__name__", "handler"), exc_info=True)
            raise gr.Error(unexpected_sentence(e, write_error_log(e, "page")), print_exception=False) from None

    wrapper._page_safe = True
    return wrapper


def guard_every_handler(demo: gr.Blocks) -> None:
    """Wrap every event handler of the page in ``page_errors`` (those wired without it too)."""

    for block_fn in demo.fns.values():
        fn = block_fn.fn
        if fn is None or getattr(fn, "_page_safe", False):
            continue
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(f"the page handler {block_fn.name} must not be async to be guarded")
        block_fn.fn = page_errors(fn)


def build_status_line(backend: Backend) -> SimpleNamespace:
    """The line under the title: device, loaded model, GPU memory (refreshed by the render tab's poll)."""
    status = gr.Markdown(elem_classes=["status-line"], elem_id="status-line")
    return SimpleNamespace(status=status, on_load=([status], lambda: [status_text(backend)]))


def cover_image(data: bytes):
    """The cover bytes as an image the page can show (None when unreadable)."""
    import io

    try:
        from PIL import Image

        return Image.open(io.BytesIO(data)).convert("RGB")
    except Exception:  # a broken cover only hides the picture
        return None


def book_file_box(label: str, elem_prefix: str) -> tuple[gr.File, gr.Markdown]:
    """A box to drop a book file in (its label lists the formats read) and the line saying what was read."""
    file = gr.File(label=f"{label} ({formats_label()})", file_types=list(BOOK_EXTENSIONS), type="filepath",
                   height=110, elem_id=f"{elem_prefix}-file")
    return file, gr.Markdown("No book loaded yet.", elem_id=f"{elem_prefix}-info")


def keep_enabled(buttons: dict[str, gr.Button], decide: Callable[..., dict[str, bool]], inputs: list,
                 triggers: list) -> None:
    """Enable each of ``buttons`` exactly while it has something to act on: ``decide(*inputs)`` says which (a flag
    for each button's key), whenever one of ``triggers`` changes (the buttons are made with ``interactive=False``)."""

    def update(*values):
        flags = decide(*values)
        updates = [gr.update(interactive=bool(flags[key])) for key in buttons]
        return updates if len(updates) > 1 else updates[0]  # one output takes one value, not a list of one

    for trigger in triggers:
        trigger.change(update, inputs, list(buttons.values()), show_progress="hidden")

