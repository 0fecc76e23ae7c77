"""The Gradio page: builds it and wires its events to ``backend.Backend``; no logic of its own.

Run ``python app.py --help``. The page listens on 127.0.0.1 unless ``--listen`` or ``--share``.
Handlers are plain module-level functions taking the backend first, so tests call them directly.
The page is built by one function per tab (``build_render_tab``, ``build_book_tab``,
``build_voice_tab``, ``build_settings_tab``) plus ``build_status_line``; ``build_app`` only
composes them. Every handler turns AudiobookError into a readable page message.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import html
import importlib.util
import inspect
import logging
import os
import secrets
import sys
import tempfile
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import gradio as gr

from audiobook.books import BOOK_EXTENSIONS, Book
from audiobook.errors import AudiobookError
from audiobook.models import MissingCheckpoint
from audiobook.queue import COLUMNS as QUEUE_COLUMNS
from audiobook.render import RenderState
from audiobook.serving import ServedFiles, blocked_paths, serving_for
from audiobook.settings import BATCH_SLIDER_MAX, FOLDER_SETTINGS, Settings
from audiobook.tts import LANGUAGES, PRESET, Narrator
from audiobook.workers import WORKER_COLUMNS
from audiobook.previews import DEFAULT_REFERENCE_TEXT, VoicePreview
from backend import ROOT, Backend

log = logging.getLogger("app")

POLL_S = 1.0  # how often the page asks the backend for the render state
LOG_LINES = 200  # the live log shows the newest lines only
SPEAKER_PREFIX, VOICE_PREFIX = "speaker:", "voice:"
WORDS_PER_MINUTE = 150  # a calm narration pace, for the estimates in the chapter table
MODE_DESIGN, MODE_CLONE, MODE_PRESET = "Design from a description", "Clone a clip", "Built-in speaker"
VOICE_LANGUAGES = ["auto", *LANGUAGES.values()]
MODEL_WORK = dict(concurrency_id="model", concurrency_limit=1)  # one model call at a time

# Advanced Settings, grouped as a user thinks of them; fields not named here land in "Other".
SETTING_GROUPS: list[tuple[str, list[str]]] = [
    ("Speed and memory", ["batch_size", "attention_mode", "max_new_tokens", "engine", "batch_order", "workers", "ray_address"]),
    ("Model", ["model_size", "models_dir", "device", "dtype", "language"]),
    ("Text", ["chunk_chars"]),
    ("Sampling", ["do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "seed"]),
    ("Quality checks", ["max_retries", "runaway_margin_s", "duration_outlier_factor", "verify", "verify_model",
                        "max_wer", "min_voice_similarity"]),
    ("Pauses (milliseconds)", ["pause_chunk_ms", "pause_paragraph_ms", "pause_title_ms", "pause_chapter_ms", "pause_speaker_ms"]),
    ("Cast", ["llm_url", "llm_model", "llm_timeout_s"]),
    ("Output", ["loudness_lufs", "true_peak_db", "chapter_format", "make_m4b", "make_book_mp3", "output_dir", "voices_dir"]),
]

LABELS = {
    "batch_size": "Batch size",
    "attention_mode": "Attention",
    "max_new_tokens": "Max new tokens",
    "model_size": "Model size",
    "models_dir": "Models folder",
    "dtype": "Data type",
    "chunk_chars": "Chunk size (characters)",
    "do_sample": "Sample (off: greedy, repeatable)",
    "top_k": "Top-k",
    "top_p": "Top-p",
    "runaway_margin_s": "Runaway margin (seconds)",
    "verify": "Check every take (Whisper)",
    "verify_model": "Checking model",
    "max_wer": "Highest word error rate",
    "min_voice_similarity": "Lowest voice similarity",
    "duration_outlier_factor": "Duration outlier factor",
    "pause_chunk_ms": "Between chunks",
    "pause_paragraph_ms": "After a paragraph",
    "pause_title_ms": "After a title",
    "pause_chapter_ms": "Between chapters",
    "pause_speaker_ms": "Where another speaker takes over",
    "llm_url": "Language model address (OpenAI-compatible, for finding who speaks)",
    "llm_model": "Language model name",
    "llm_timeout_s": "Language model timeout (seconds)",
    "loudness_lufs": "Loudness target (LUFS)",
    "true_peak_db": "True peak (dB)",
    "chapter_format": "Chapter file format",
    "make_m4b": "Make an .m4b audiobook",
    "make_book_mp3": "Make one .mp3 of the whole book",
    "output_dir": "Output folder",
    "voices_dir": "Voices folder",
    "workers": "Workers (Ray)",
    "ray_address": "Ray cluster address",
}

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


# ---- small formatting helpers -------------------------------------------------------------


def label_for(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


def fmt_duration(seconds: float | None) -> str:
    """``75`` -> ``1:15``; ``3725`` -> ``1:02:05``; None -> an em dash."""
    if seconds is None:
        return "—"
    s = int(round(max(seconds, 0)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def attention_choices() -> list[str]:
    """sdpa and eager always; flash_attention_2 only when the flash-attn package is installed."""
    choices = ["sdpa", "eager"]
    if importlib.util.find_spec("flash_attn") is not None:
        choices.append("flash_attention_2")
    return choices


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


# ---- Advanced Settings --------------------------------------------------------------------


def setting_names() -> list[str]:
    """Every Settings field, in the order the page shows them."""
    listed = [n for _, names in SETTING_GROUPS for n in names]
    known = [f.name for f in fields(Settings)]
    return [n for n in listed if n in known] + [n for n in known if n not in listed]


def setting_groups() -> list[tuple[str, list[str]]]:
    known = {f.name for f in fields(Settings)}
    groups = [(title, [n for n in names if n in known]) for title, names in SETTING_GROUPS]
    listed = {n for _, names in groups for n in names}
    other = [f.name for f in fields(Settings) if f.name not in listed]
    return [g for g in groups if g[1]] + ([("Other", other)] if other else [])


def settings_values(settings: Settings) -> list[Any]:
    """The control values for ``settings``, in ``setting_names()`` order."""
    return [getattr(settings, n) for n in setting_names()]


def save_settings(backend: Backend, values: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Save the page's settings; returns (message, {name: error}). Nothing is written on errors."""
    errors = backend.save_changed_settings(values, label_for)
    if errors:
        n = len(errors)
        return f"Not saved: {n} setting{'s need' if n != 1 else ' needs'} fixing (see the red notes).", errors
    return f"Saved to {backend.settings_path.name}.", {}


def reset_settings(backend: Backend) -> tuple[str, list[Any]]:
    """Restore every default (and save them); returns (message, control values)."""
    s = backend.reset_settings()
    return f"Defaults restored and saved to {backend.settings_path.name}.", settings_values(s)


# ---- books --------------------------------------------------------------------------------


def book_summary(book: Book | None) -> str:
    if book is None:
        return "No book loaded yet."
    words = sum(c.words for c in book.chapters)
    by = f" by {book.author}" if book.author else ""
    n = len(book.chapters)
    return (f"**{book.title}**{by} · {n} chapter{'s' if n != 1 else ''} · {words:,} words · "
            f"about {fmt_duration(words / WORDS_PER_MINUTE * 60)} of audio")


def chapter_rows(book: Book | None) -> list[list[Any]]:
    """Rows of the chapter table: number, title, words, estimated minutes."""
    if book is None:
        return []
    return [[i + 1, c.title, c.words, round(c.words / WORDS_PER_MINUTE, 1)] for i, c in enumerate(book.chapters)]


NO_VOICE = "(narrator)"  # the cast table's word for a character without a voice of their own


def cast_rows(book: Book | None) -> list[list[Any]]:
    """Rows of the cast table: character, lines, voice, one of their lines."""
    if book is None or book.cast is None:
        return []
    return [[m.name, m.lines, m.voice or NO_VOICE, m.preview] for m in book.cast.members]


def span_parts(book: Book | None, index: int | None) -> tuple[list[tuple[str, str | None]], list[list[Any]]]:
    """A chapter's text marked with who speaks it (narration unmarked), and its parts as table rows."""
    if book is None or index is None or not book.chapters[int(index)].spans:
        return [], []
    spans = book.chapters[int(index)].spans
    marked = [(s.text, None if s.speaker == "narrator" and not s.style else s.speaker + (f" ({s.style})" if s.style else ""))
              for s in spans]
    rows = [[k + 1, s.speaker, s.style, " ".join(s.text.split())] for k, s in enumerate(spans) if s.text.strip()]
    return marked, rows


def chapter_choices(book: Book | None) -> list[tuple[str, int]]:
    return [(f"{i + 1}. {c.title}", i) for i, c in enumerate(book.chapters)] if book else []


# ---- voices -------------------------------------------------------------------------------


def narrator_choices(backend: Backend) -> list[tuple[str, str]]:
    """(label, value) pairs for the narrator dropdown: saved voices first, then built-in speakers."""
    choices = [(f"{v.name} ({v.kind} voice)", VOICE_PREFIX + v.name) for v in backend.list_voices()]
    choices += [(f"{s.capitalize()} (built-in speaker)", SPEAKER_PREFIX + s) for s in backend.speakers()]
    return choices


def narrator_for(backend: Backend, choice: str | None) -> Narrator:
    """The Narrator for a narrator dropdown value."""
    if not choice:
        raise AudiobookError("Choose a narrator first: a saved voice or a built-in speaker.")
    if choice.startswith(SPEAKER_PREFIX):
        return Narrator(kind=PRESET, speaker=choice[len(SPEAKER_PREFIX):])
    if choice.startswith(VOICE_PREFIX):
        return backend.narrator_for(choice[len(VOICE_PREFIX):])
    raise AudiobookError(f"Unknown narrator {choice!r}; choose one from the list.")


def preview_voice(backend: Backend, mode: str, *, description: str = "", language: str = "auto", text: str = "",
                  seed: float | None = None, clip: str | None = None, transcript: str = "", x_vector_only: bool = False,
                  speaker: str = "", instruct: str = "") -> VoicePreview:
    """Hear a voice before saving it: design (description), clone (clip) or preset (speaker)."""
    if mode == MODE_DESIGN:
        return backend.preview_design(description, language, text or None, None if seed in (None, "") else int(seed))
    if mode == MODE_CLONE:
        if not clip:
            raise AudiobookError("Upload or record a clip of the voice to clone (5 to 15 seconds of clear speech).")
        return backend.preview_clone(clip, "" if x_vector_only else transcript, language)
    if mode == MODE_PRESET:
        return backend.preview_preset(speaker, instruct, language)
    raise ValueError(f"unknown mode {mode!r}")


def preview_notes(preview: VoicePreview) -> str:
    lines = [f"Preview ready: {preview.duration_s:.1f} s" + (f", seed {preview.voice.seed}" if preview.voice.seed is not None else "")
             + ". Listen, then name it and press Save as voice."]
    lines += [f"⚠️ {w}" for w in preview.warnings]
    return "\n\n".join(lines)


def save_voice(backend: Backend, preview: VoicePreview | None, name: str) -> str:
    """Save the previewed voice under ``name``; returns a message."""
    if preview is None:
        raise AudiobookError("Make a preview first, then save it.")
    if not (name or "").strip():
        raise AudiobookError("Give the voice a name first.")
    voice = backend.save_voice(preview, name.strip())
    return f"Saved the voice “{voice.name}”; pick it as the narrator on the Render tab."


def voice_rows(backend: Backend) -> list[list[str]]:
    """The library table: name, kind, what it is, created."""
    rows = []
    for v in backend.list_voices():
        what = v.description or (f"{v.speaker.capitalize()}" + (f": {v.instruct}" if v.instruct else "") if v.speaker else v.notes)
        rows.append([v.name, v.kind, what, (v.created or "")[:16].replace("T", " ")])
    return rows


def voice_audio(backend: Backend, name: str | None) -> str | None:
    """The clip to play for a saved voice: its preview, else its reference clip."""
    if not name:
        raise AudiobookError("Pick a voice in the library first.")
    v = backend.get_voice(name)
    path = v.preview_path or v.reference_path
    if path is None or not Path(path).is_file():
        raise AudiobookError(f"The voice “{name}” has no clip to play.")
    return str(path)


# ---- render -------------------------------------------------------------------------------


def start_render(backend: Backend, book: Book | None, choice: str | None, redo_chunks: list[str] | None = None) -> str:
    """Start a background render of ``book``; refuses (AudiobookError) while another runs.

    Pressing it again after a stop, a crash or a reload continues from the manifest.
    """
    if book is None:
        raise AudiobookError("Load a book first: drop a .txt, .md, .epub, .pdf or .json file in the Book file box.")
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
    """Ask the running render to stop after its current batch."""
    if not backend.render_state().running:
        return "Nothing is rendering."
    backend.stop_render()
    return "Stopping after the current batch… press Resume to continue later."


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
    """Chapter files (for the player) and the m4b and srt downloads (None when absent)."""
    by_suffix = {Path(p).suffix.lower(): p for p in state.book_files}
    return {"chapters": list(state.chapter_files), "m4b": by_suffix.get(".m4b"), "srt": by_suffix.get(".srt")}


# ---- checkpoints and the computer check -------------------------------------------------------


def model_rows(backend: Backend) -> list[list[str]]:
    """The Models panel's table: checkpoint, status, where, what it is for."""
    return [[c.name, c.status, c.path, c.purpose] for c in backend.checkpoints()]


def download_html(state) -> str:
    """A progress bar (bytes and time left) for a checkpoint download, or its sentence when it failed."""
    text = html.escape(state.describe())
    if not state.name:
        return ""
    if state.error:
        return f'<div class="download-error" data-state="error">{text}</div>'
    fraction = state.progress.fraction if state.progress else 0.0
    phase = "done" if state.done else "running"
    return (f'<div class="download" data-state="{phase}" data-fraction="{fraction:.4f}">'
            f'<progress max="1" value="{fraction:.4f}" style="width:100%"></progress>'
            f'<div class="download-text">{text}</div></div>')


DOWNLOAD_POLL_S = 0.5


def follow_download(backend: Backend, name: str):
    """Start downloading ``name`` and yield the progress bar's HTML until it ends (the last one says how)."""
    import time

    backend.start_download(name)
    while True:
        state = backend.download_state()
        yield download_html(state), state
        if not state.running:
            return
        time.sleep(DOWNLOAD_POLL_S)


def doctor_markdown(report) -> str:
    return "```\n" + report.summary() + "\n```"


# ---- queue and workers --------------------------------------------------------------------


def add_to_queue(backend: Backend, book: Book | None, choice: str | None) -> tuple[str, list[list[Any]]]:
    """Queue the loaded book (with the page's edits) and narrator with the current settings."""
    if book is None:
        raise AudiobookError("Load a book first: drop a .txt, .md, .epub, .pdf or .json file in the Book file box.")
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


def table_html(headers: list[str], rows: list[list[Any]], empty: str) -> str:
    """A small read-only table (the queue, the workers) as HTML."""
    if not rows:
        return f"<div class='queue-empty'>{html.escape(empty)}</div>"
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='queue-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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

    add_btn.click(_page_errors(html_of(functools.partial(add_to_queue, B))), [book_state, narrator], [message, table])
    up_btn.click(_page_errors(html_of(lambda n: move_queue_item(B, n, -1))), item, [message, table, item])
    down_btn.click(_page_errors(html_of(lambda n: move_queue_item(B, n, +1))), item, [message, table, item])
    remove_btn.click(_page_errors(html_of(functools.partial(remove_queue_item, B))), item, [message, table])
    retry_btn.click(_page_errors(html_of(functools.partial(retry_queue_item, B))), item, [message, table])
    run_btn.click(_page_errors(functools.partial(run_queue, B)), None, message)

    def on_tick():
        try:
            return queue_html(B), workers_html(B)
        except AudiobookError:  # a damaged queue file: the buttons say so when used
            return gr.skip(), workers_html(B)

    timer = gr.Timer(POLL_S)
    timer.tick(on_tick, None, [table, workers], show_progress="hidden", concurrency_id="poll-queue",
               concurrency_limit=2, trigger_mode="always_last")
    return SimpleNamespace(table=table, workers=workers, on_load=([table, workers], on_tick))


# ---- errors on the page, setting controls --------------------------------------------------


def _page_errors(fn: Callable) -> Callable:
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


def _guard_every_handler(demo: gr.Blocks) -> None:
    """Wrap every event handler of the page in ``_page_errors`` (those wired without it too)."""

    for block_fn in demo.fns.values():
        fn = block_fn.fn
        if fn is None or getattr(fn, "_page_safe", False):
            continue
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(f"the page handler {block_fn.name} must not be async to be guarded")
        block_fn.fn = _page_errors(fn)


def _setting_control(name: str, value: Any, locked: bool = False) -> gr.components.Component:
    """The right control for one setting, from its metadata (read-only when ``locked``)."""
    f = next(f for f in fields(Settings) if f.name == name)
    help_text = f.metadata.get("help") or None
    label, elem_id = label_for(name), f"setting-{name}"
    if locked:
        note = "Set on the computer running the app: a page served to the network cannot change folders."
        return gr.Textbox(value=value, label=label, info=note, interactive=False, elem_id=elem_id)
    if name == "batch_size":
        lo, hi = f.metadata["range"][0], max(BATCH_SLIDER_MAX, int(value or 0))  # more after the doctor finds room
        return gr.Slider(lo, hi, value=value, step=1, label=label, elem_id=elem_id,
                         info="Chunks sent to the model at once. If you run out of GPU memory, lower this.")
    if name == "attention_mode":
        return gr.Dropdown(attention_choices(), value=value, label=label, info=help_text, elem_id=elem_id)
    kind = Settings.kind(name)
    if kind is bool:
        return gr.Checkbox(value=value, label=label, info=help_text, elem_id=elem_id)
    if "choices" in f.metadata:
        return gr.Dropdown(list(f.metadata["choices"]), value=value, label=label, info=help_text, elem_id=elem_id)
    if kind in (int, float):
        # No min/max on the control: the backend's check writes the sentence shown under it.
        lo, hi = f.metadata.get("range", (None, None))
        info = " ".join(x for x in (help_text, f"From {lo:,} to {hi:,}." if lo is not None else None) if x) or None
        return gr.Number(value=value, label=label, info=info, precision=0 if kind is int else None, elem_id=elem_id)
    return gr.Textbox(value=value, label=label, info=help_text, elem_id=elem_id)


# ---- the page: one builder per tab ----------------------------------------------------------
# Each builder makes its tab's components and wires the tab's own events. It returns what the
# rest of the page needs from it (a ``SimpleNamespace``), including ``on_load``: the outputs it
# fills when the page opens and the function that computes them; ``build_app`` joins those into
# the one page-load event.


def build_status_line(backend: Backend) -> SimpleNamespace:
    """The line under the title: device, loaded model, GPU memory (refreshed by the render tab's poll)."""
    status = gr.Markdown(elem_classes=["status-line"], elem_id="status-line")
    return SimpleNamespace(status=status, on_load=([status], lambda: [status_text(backend)]))


def build_render_tab(backend: Backend, serve: ServedFiles, book_state: gr.State, status: gr.Markdown) -> SimpleNamespace:
    """Render: book file, narrator, Render/Stop/Resume, progress, log, problems and results."""
    B = backend
    with gr.Tab("Render", id="render"):
        with gr.Row():
            with gr.Column(scale=1):
                book_file = gr.File(label="1. Book file (.txt .md .epub .pdf .json)", file_types=list(BOOK_EXTENSIONS),
                                    type="filepath", height=110, elem_id="render-book-file")
                book_info = gr.Markdown("No book loaded yet.", elem_id="render-book-info")
            with gr.Column(scale=1):
                narrator = gr.Dropdown([], label="2. Narrator", info="A saved voice from the Voice Lab, or a built-in speaker.",
                                       elem_id="render-narrator")
                refresh_narrators = gr.Button("Refresh the list", size="sm")
        with gr.Row():
            render_btn = gr.Button("3. Render", variant="primary", elem_id="render-start")
            stop_btn = gr.Button("Stop", variant="stop", elem_id="render-stop")
            resume_btn = gr.Button("Resume", elem_id="render-resume")
            queue_add_btn = gr.Button("Add to queue", elem_id="render-queue-add")
        render_msg = gr.Markdown(elem_id="render-message")
        progress = gr.HTML(progress_html(RenderState()), elem_id="render-progress")
        log_box = gr.Textbox(label="Log", lines=8, max_lines=8, autoscroll=True, interactive=False, elem_id="render-log")
        with gr.Accordion("Failed and suspect chunks", open=False, elem_id="render-problems-box"):
            problems = gr.Dataframe(headers=["status", "chapter", "chunk", "reason", "text"], value=[], wrap=True,
                                    interactive=False, elem_id="render-problems")
            rerender_btn = gr.Button("Render these chunks again", elem_id="render-rerender")
        with gr.Column(visible=False, elem_id="render-results") as results_box:
            gr.Markdown("### Results")
            with gr.Row():
                chapter_pick = gr.Dropdown([], label="Chapter", elem_id="render-chapter-pick", scale=1)
                chapter_player = gr.Audio(label="Listen", type="filepath", interactive=False, elem_id="render-player", scale=2)
            with gr.Row():
                m4b_file = gr.File(label="Audiobook (.m4b)", interactive=False, height=80, elem_id="render-m4b")
                srt_file = gr.File(label="Subtitles (.srt)", interactive=False, height=80, elem_id="render-srt")
            speakers = gr.Dataframe(headers=["speaker", "voice", "chunks", "seconds"], value=[], interactive=False,
                                    label="Who spoke", elem_id="render-speakers")
        results_key = gr.State(None)
        queue = build_queue_panel(B, queue_add_btn, book_state, narrator, render_msg)

    def on_narrators():
        choices = narrator_choices(B)
        return gr.update(choices=choices, value=choices[0][1] if choices else None)

    refresh_narrators.click(_page_errors(on_narrators), None, narrator)
    render_btn.click(_page_errors(functools.partial(start_render, B)), [book_state, narrator], render_msg)
    resume_btn.click(_page_errors(functools.partial(start_render, B)), [book_state, narrator], render_msg)
    stop_btn.click(_page_errors(functools.partial(stop_render, B)), None, render_msg)
    rerender_btn.click(_page_errors(functools.partial(rerender_problems, B)), [book_state, narrator], render_msg)

    def on_tick(last_key):
        state = B.render_state()
        files = result_files(state)
        key = (tuple(files["chapters"]), files["m4b"], files["srt"])
        # The results box gets an explicit visibility every time: an empty update would hide it again.
        out = [status_text(B), progress_html(state), log_text(state), problem_rows(state),
               gr.update(visible=bool(files["chapters"] or files["m4b"]))]
        if key == last_key:  # resending the players would restart what the user is listening to
            return out + [gr.skip()] * 5 + [last_key]
        choices = [(Path(p).stem, serve(p)) for p in files["chapters"]]
        first = choices[0][1] if choices else None
        return out + [gr.update(choices=choices, value=first), first, serve(files["m4b"]), serve(files["srt"]),
                      B.speaker_rows(state.out_dir), key]

    timer = gr.Timer(POLL_S)
    timer.tick(_page_errors(on_tick), results_key,
               [status, progress, log_box, problems, results_box, chapter_pick, chapter_player, m4b_file, srt_file, speakers,
                results_key],
               show_progress="hidden", concurrency_id="poll", concurrency_limit=4, trigger_mode="always_last")
    chapter_pick.change(serve.owned, chapter_pick, chapter_player, show_progress="hidden")

    def on_load():
        choices = narrator_choices(B)
        return [gr.update(choices=choices, value=choices[0][1] if choices else None)]

    return SimpleNamespace(book_file=book_file, book_info=book_info, narrator=narrator, queue=queue,
                           on_load=([narrator], on_load))


def build_book_tab(backend: Backend, serve: ServedFiles, book_state: gr.State, render: SimpleNamespace) -> SimpleNamespace:
    """Book: load a book (here or on the Render tab), see its chapters and cover, edit and save it."""
    B = backend
    with gr.Tab("Book", id="book"):
        with gr.Row():
            with gr.Column(scale=3):
                book_file = gr.File(label="Book file (.txt .md .epub .pdf .json)", file_types=list(BOOK_EXTENSIONS),
                                    type="filepath", height=110, elem_id="book-file")
                book_info = gr.Markdown("No book loaded yet.", elem_id="book-info")
            cover = gr.Image(label="Cover", interactive=False, height=180, scale=1, elem_id="book-cover")
        chapters = gr.Dataframe(headers=["#", "title", "words", "minutes"], value=[], interactive=False,
                                elem_id="book-chapters", label="Chapters")
        with gr.Accordion("Edit chapters", open=True):
            with gr.Row():
                chapter_sel = gr.Dropdown([], label="Chapter", elem_id="book-chapter", scale=2)
                new_title = gr.Textbox(label="New title", elem_id="book-new-title", scale=2)
                rename_btn = gr.Button("Rename", scale=1, elem_id="book-rename")
            chapter_text = gr.Textbox(label="Chapter text (paragraphs separated by a blank line)", lines=6, max_lines=14,
                                      elem_id="book-text")
            text_btn = gr.Button("Keep this text", size="sm", elem_id="book-set-text")
            with gr.Row():
                numbers = gr.Textbox(label="Chapter numbers", placeholder="2, 3", scale=2, elem_id="book-numbers",
                                     info="Merge or drop these chapters; or list every chapter in a new order and press Reorder.")
                merge_btn = gr.Button("Merge", scale=1, elem_id="book-merge")
                drop_btn = gr.Button("Drop", scale=1, elem_id="book-drop")
                reorder_btn = gr.Button("Reorder", scale=1, elem_id="book-reorder")
            with gr.Row():
                save_book_btn = gr.Button("Save the edited book (.json)", elem_id="book-save")
                saved_book = gr.File(label="Edited book", interactive=False, height=80, elem_id="book-saved")
        cast = build_cast_panel(B, serve, book_state, chapter_sel, render.narrator)

    def show_book(book):
        image = _cover_image(book.cover) if book is not None and book.cover else None
        return (book, book_summary(book), book_summary(book), chapter_rows(book),
                gr.update(choices=chapter_choices(book), value=None), image)

    book_outputs = [book_state, render.book_info, book_info, chapters, chapter_sel, cover]
    for upload in (render.book_file, book_file):
        upload.upload(_page_errors(lambda path: show_book(B.load_book(path))), upload, book_outputs)

    def pick_chapter(book, index):
        if book is None or index is None:
            return "", ""
        return book.chapters[int(index)].title, book.chapters[int(index)].text

    chapter_sel.change(pick_chapter, [book_state, chapter_sel], [new_title, chapter_text], show_progress="hidden")
    rename_btn.click(_page_errors(lambda b, i, t: show_book(B.edit_book(b, "rename", i, t))),
                     [book_state, chapter_sel, new_title], book_outputs)
    text_btn.click(_page_errors(lambda b, i, t: show_book(B.edit_book(b, "text", i, t))),
                   [book_state, chapter_sel, chapter_text], book_outputs)
    for btn, action in ((merge_btn, "merge"), (drop_btn, "drop"), (reorder_btn, "reorder")):
        btn.click(_page_errors(functools.partial(lambda a, b, v: show_book(B.edit_book(b, a, None, v)), action)),
                  [book_state, numbers], book_outputs)
    save_book_btn.click(_page_errors(lambda b: serve(B.save_book(b))), book_state, saved_book)
    # Whatever changed the book (a new file, an edit, the cast), the cast panel shows it (its message stays).
    book_state.change(lambda b, c: cast.show(b, c)[:-1], [book_state, chapter_sel], cast.views[:-1], show_progress="hidden")
    return SimpleNamespace(book_file=book_file, book_info=book_info, chapters=chapters)


def build_cast_panel(backend: Backend, serve: ServedFiles, book_state: gr.State, chapter_sel: gr.Dropdown,
                     narrator: gr.Dropdown) -> SimpleNamespace:
    """The Book tab's cast: find who speaks, map characters to voices, hear a line, fix a part's speaker."""
    B = backend
    with gr.Accordion("Cast: who speaks", open=True, elem_id="cast-box"):
        gr.Markdown("Quotes and `[voice: Name]` lines give characters their own voices. Map each one to a saved "
                    "voice or a built-in speaker; those left to *(narrator)* are read by the narrator (quotes by "
                    "*dialogue*'s voice when it has one).")
        with gr.Row():
            find_btn = gr.Button("Find who speaks", elem_id="cast-find", scale=1)
            use_llm = gr.Checkbox(label="Ask the language model (llm_url in Advanced Settings)", value=False,
                                  elem_id="cast-llm", scale=2)
        cast_msg = gr.Markdown(elem_id="cast-message")
        table = gr.Dataframe(headers=["character", "lines", "voice", "one of their lines"], value=[], wrap=True,
                             interactive=False, elem_id="cast-table", label="Cast")
        with gr.Row():
            who = gr.Dropdown([], label="Character", elem_id="cast-character", scale=2)
            voice = gr.Dropdown([], label="Voice", elem_id="cast-voice", scale=2)
            map_btn = gr.Button("Use this voice", elem_id="cast-map", scale=1)
            hear_btn = gr.Button("Hear their line", elem_id="cast-hear", scale=1)
        line_audio = gr.Audio(label="Their line", type="filepath", interactive=False, elem_id="cast-line-audio")
        marked = gr.HighlightedText(label="Who speaks what (the chapter picked above)", combine_adjacent=False,
                                    show_legend=True, elem_id="cast-spans")
        parts = gr.Dataframe(headers=["part", "speaker", "style", "text"], value=[], wrap=True, interactive=False,
                             elem_id="cast-parts", label="Parts of the chapter")
        with gr.Row():
            part_no = gr.Number(label="Part", precision=0, elem_id="cast-part", scale=1)
            part_speaker = gr.Textbox(label="Speaker", elem_id="cast-part-speaker", scale=2)
            part_style = gr.Textbox(label="Style (1.7B models)", placeholder="whispering", elem_id="cast-part-style", scale=2)
            part_btn = gr.Button("Change this part", elem_id="cast-part-set", scale=1)

    def show(book, chapter, message=""):
        names = [m.name for m in book.cast.members] if book is not None and book.cast else []
        voices = [(NO_VOICE, "")] + [(v, v) for v in B.cast_voices()]
        text, rows = span_parts(book, chapter)
        return (cast_rows(book), gr.update(choices=names, value=names[0] if names else None),
                gr.update(choices=voices), text, rows, message)

    views = [table, who, voice, marked, parts, cast_msg]

    def on_find(book, chapter, llm):
        if book is None:
            raise AudiobookError("Load a book first.")
        labelled, warnings = B.label_book(book, llm=bool(llm))
        n = len(labelled.cast.members)
        message = f"Found {n} speaker{'s' if n != 1 else ''} besides the narrator." + "".join(f"\n\n⚠ {w}" for w in warnings)
        return (labelled, *show(labelled, chapter, message))

    def on_map(book, name, chosen):
        if book is None or not name:
            raise AudiobookError("Find who speaks first, then pick a character.")
        book = B.map_voice(book, name, chosen or "")
        return book, cast_rows(book), f"{name} is read by {chosen or 'the narrator'}."

    def on_part(book, chapter, part, speaker, style):
        if book is None or chapter is None:
            raise AudiobookError("Pick a chapter above first.")
        if not part:
            raise AudiobookError("Give the number of the part to change (the first column of the parts table).")
        book = B.edit_span(book, int(chapter), int(part) - 1, speaker or None, style)
        return (book, *show(book, chapter, f"Part {int(part)} is now read as {speaker or 'before'}"
                                           f"{f' ({style})' if style else ''}."))

    find_btn.click(_page_errors(on_find), [book_state, chapter_sel, use_llm], [book_state, *views])
    map_btn.click(_page_errors(on_map), [book_state, who, voice], [book_state, table, cast_msg])
    hear_btn.click(_page_errors(lambda b, name, choice: serve(str(B.hear_line(
        b, name, narrator_for(B, choice) if choice else None)))), [book_state, who, narrator], line_audio)
    part_btn.click(_page_errors(on_part), [book_state, chapter_sel, part_no, part_speaker, part_style], [book_state, *views])
    chapter_sel.change(lambda b, c: span_parts(b, c), [book_state, chapter_sel], [marked, parts], show_progress="hidden")

    def on_voice_pick(book, name):  # the voice dropdown shows the picked character's voice
        member = book.cast.get(name) if book is not None and book.cast and name else None
        return gr.update(value=member.voice if member else "")

    who.change(on_voice_pick, [book_state, who], voice, show_progress="hidden")
    return SimpleNamespace(show=show, views=views)


def build_voice_tab(backend: Backend, serve: ServedFiles, narrator: gr.Dropdown) -> SimpleNamespace:
    """Voice Lab: design, clone or pick a voice, preview it, save it; the library of saved voices."""
    B = backend
    preview_state = gr.State(None)
    with gr.Tab("Voice Lab", id="voices"):
        mode = gr.Radio([MODE_DESIGN, MODE_CLONE, MODE_PRESET], value=MODE_DESIGN, label="Make a voice", elem_id="voice-mode")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Group(visible=True) as design_box:
                    description = gr.Textbox(label="Describe the voice", lines=2, elem_id="voice-description",
                                             placeholder="A warm, elderly British storyteller, slow and calm")
                    ref_text = gr.Textbox(label="Reference passage it speaks (the clip saved with the voice)",
                                          value=DEFAULT_REFERENCE_TEXT, lines=3, elem_id="voice-ref-text")
                    seed = gr.Number(label="Seed (empty: a new voice each time)", value=None, precision=0, elem_id="voice-seed")
                with gr.Group(visible=False) as clone_box:
                    clip = gr.Audio(label="Clip to clone (5-15 s of clear speech)", sources=["upload", "microphone"],
                                    type="filepath", elem_id="voice-clip")
                    transcript = gr.Textbox(label="What the clip says", lines=2, elem_id="voice-transcript")
                    x_vector = gr.Checkbox(label="No transcript: clone from the sound alone (x-vector only; a weaker likeness)",
                                           elem_id="voice-xvector")
                with gr.Group(visible=False) as preset_box:
                    speaker = gr.Dropdown([], label="Built-in speaker", elem_id="voice-speaker")
                    instruct = gr.Textbox(label="Style instruction (1.7B model only)", elem_id="voice-instruct",
                                          placeholder="Speak slowly, with a gentle smile")
                language = gr.Dropdown(VOICE_LANGUAGES, value="auto", label="Language", elem_id="voice-language")
                preview_btn = gr.Button("Generate preview", variant="primary", elem_id="voice-preview")
                need_btn = gr.Button("Download the model", visible=False, elem_id="voice-need-download")
                need_progress = gr.HTML(elem_id="voice-need-progress")
                need_name = gr.State(None)
            with gr.Column(scale=2):
                preview_audio = gr.Audio(label="Preview", type="filepath", interactive=False, elem_id="voice-preview-audio")
                preview_msg = gr.Markdown(elem_id="voice-preview-message")
                voice_name = gr.Textbox(label="Name", elem_id="voice-name")
                save_voice_btn = gr.Button("Save as voice", elem_id="voice-save")
                save_voice_msg = gr.Markdown(elem_id="voice-save-message")
        gr.Markdown("### Voice library")
        library = gr.Dataframe(headers=["name", "kind", "voice", "created"], value=[], interactive=False,
                               elem_id="voice-library")
        with gr.Row():
            lib_pick = gr.Dropdown([], label="Voice", elem_id="voice-lib-pick", scale=2)
            play_btn = gr.Button("Play", scale=1, elem_id="voice-play")
            delete_btn = gr.Button("Delete", variant="stop", scale=1, elem_id="voice-delete")
            export_btn = gr.Button("Export (.zip)", scale=1, elem_id="voice-export")
        with gr.Row():
            rename_to = gr.Textbox(label="Rename to", scale=2, elem_id="voice-rename-to")
            rename_voice_btn = gr.Button("Rename", scale=1, elem_id="voice-rename")
        with gr.Row():
            lib_audio = gr.Audio(label="Saved voice", type="filepath", interactive=False, elem_id="voice-lib-audio")
            exported = gr.File(label="Exported voice", interactive=False, height=80, elem_id="voice-exported")
            import_file = gr.File(label="Import a voice (.zip)", file_types=[".zip"], type="filepath", height=80,
                                  elem_id="voice-import")
        lib_msg = gr.Markdown(elem_id="voice-lib-message")

    def on_mode(m):
        return [gr.update(visible=m == MODE_DESIGN), gr.update(visible=m == MODE_CLONE), gr.update(visible=m == MODE_PRESET)]

    mode.change(on_mode, mode, [design_box, clone_box, preset_box], show_progress="hidden")

    def on_preview(m, desc, lang, text, sd, clip_path, trans, xv, spk, instr):
        try:
            p = preview_voice(B, m, description=desc, language=lang, text=text, seed=sd, clip=clip_path,
                              transcript=trans, x_vector_only=xv, speaker=spk, instruct=instr)
        except MissingCheckpoint as e:  # say which download it needs and offer it, instead of a silent wait
            return (gr.skip(), gr.skip(), str(e), gr.update(visible=True, value=f"Download {e.name}"), e.name, "")
        return p, serve(p.wav_path), preview_notes(p), gr.update(visible=False), None, gr.skip()

    preview_btn.click(_page_errors(on_preview),
                      [mode, description, language, ref_text, seed, clip, transcript, x_vector, speaker, instruct],
                      [preview_state, preview_audio, preview_msg, need_btn, need_name, need_progress], **MODEL_WORK)

    def on_need_download(name):
        if not name:
            raise AudiobookError("Generate a preview first; it says which model it needs.")
        for bar, state in follow_download(B, name):
            done = state.done and not state.running
            yield bar, (gr.update(visible=False) if done else gr.skip()), (
                f"{name} is on this computer now; press Generate preview." if done else gr.skip())

    need_btn.click(_page_errors(on_need_download), need_name, [need_progress, need_btn, preview_msg])

    def library_view(keep: str | None = None):
        rows = voice_rows(B)
        names_ = [r[0] for r in rows]
        return rows, gr.update(choices=names_, value=keep if keep in names_ else (names_[0] if names_ else None))

    def on_save_voice(p, name):
        message = save_voice(B, p, name)
        return [message, *library_view(name.strip()), gr.update(choices=narrator_choices(B))]

    save_voice_btn.click(_page_errors(on_save_voice), [preview_state, voice_name],
                         [save_voice_msg, library, lib_pick, narrator])
    play_btn.click(_page_errors(lambda name: serve(voice_audio(B, name))), lib_pick, lib_audio)

    def on_delete(name):
        if not name:
            raise AudiobookError("Pick a voice in the library first.")
        B.delete_voice(name)
        return [f"Deleted the voice “{name}”.", *library_view(), gr.update(choices=narrator_choices(B)), None]

    delete_btn.click(_page_errors(on_delete), lib_pick, [lib_msg, library, lib_pick, narrator, lib_audio])

    def on_rename(old, new):
        if not old:
            raise AudiobookError("Pick a voice in the library first.")
        v = B.rename_voice(old, (new or "").strip())
        return [f"Renamed “{old}” to “{v.name}”.", *library_view(v.name), gr.update(choices=narrator_choices(B))]

    rename_voice_btn.click(_page_errors(on_rename), [lib_pick, rename_to], [lib_msg, library, lib_pick, narrator])

    def on_export(name):
        if not name:
            raise AudiobookError("Pick a voice in the library first.")
        return serve(B.export_voice(name))

    export_btn.click(_page_errors(on_export), lib_pick, exported)

    def on_import(path):
        if not path:
            return [gr.skip()] * 4
        v = B.import_voice(path)
        return [f"Imported the voice “{v.name}”.", *library_view(v.name), gr.update(choices=narrator_choices(B))]

    import_file.upload(_page_errors(on_import), import_file, [lib_msg, library, lib_pick, narrator])

    def on_load():
        speakers = B.speakers()
        return [gr.update(choices=[(s.capitalize(), s) for s in speakers], value=speakers[0] if speakers else None),
                gr.update(interactive=B.supports_instruct()), *library_view()]

    return SimpleNamespace(library=library, lib_pick=lib_pick, on_load=([speaker, instruct, library, lib_pick], on_load))


def build_settings_tab(backend: Backend) -> SimpleNamespace:
    """Advanced Settings: one control per setting, grouped, with a red note under each bad value."""
    B = backend
    names = setting_names()
    with gr.Tab("Advanced Settings", id="settings"):
        controls: dict[str, gr.components.Component] = {}
        errors: dict[str, gr.Markdown] = {}
        for title, group in setting_groups():
            with gr.Accordion(title, open=title in ("Speed and memory", "Model")):
                with gr.Row(equal_height=False):
                    for name in group:
                        with gr.Column(min_width=220, scale=2 if name == "batch_size" else 1):
                            controls[name] = _setting_control(name, getattr(B.settings, name),
                                                              B.lock_folders and name in FOLDER_SETTINGS)
                            errors[name] = gr.Markdown("", elem_classes=["field-error"], container=False,
                                                       elem_id=f"error-{name}")
        with gr.Row():
            save_btn = gr.Button("Save", variant="primary", elem_id="settings-save")
            reset_btn = gr.Button("Reset to defaults", elem_id="settings-reset")
        settings_msg = gr.Markdown(elem_id="settings-message")
        models = build_models_panel(B)
        build_doctor_panel(B, controls)

    inputs = [controls[n] for n in names]
    error_outputs = [errors[n] for n in names]

    def on_save(*values):
        message, errs = save_settings(B, dict(zip(names, values)))
        return [message] + [errs.get(n, "") for n in names]

    def on_reset():
        message, values = reset_settings(B)
        return [message] + values + ["" for _ in names]

    save_btn.click(_page_errors(on_save), inputs, [settings_msg] + error_outputs)
    reset_btn.click(_page_errors(on_reset), None, [settings_msg] + inputs + error_outputs)
    return SimpleNamespace(controls=controls, on_load=(inputs + [models.table],
                                                       lambda: settings_values(B.settings) + [model_rows(B)]))


def build_models_panel(backend: Backend) -> SimpleNamespace:
    """Models: every checkpoint with its status; download one with a progress bar (a broken one resumes)."""
    B = backend
    with gr.Accordion("Models", open=False, elem_id="models-panel") as panel:
        gr.Markdown("Checkpoints download only when you ask, into the models folder when it is set, else into "
                    "the Hugging Face cache. A download that broke off resumes where it stopped.")
        table = gr.Dataframe(headers=["checkpoint", "status", "where", "used for"], value=[], interactive=False,
                             wrap=True, elem_id="models-table")
        with gr.Row():
            pick = gr.Dropdown([c.name for c in B.checkpoints()], label="Checkpoint", scale=3, elem_id="models-pick")
            download_btn = gr.Button("Download", scale=1, elem_id="models-download")
        progress = gr.HTML(elem_id="models-progress")

    def on_download(name):
        if not name:
            raise AudiobookError("Pick a checkpoint to download.")
        for bar, state in follow_download(B, name):
            yield bar, (model_rows(B) if not state.running else gr.skip())

    download_btn.click(_page_errors(on_download), pick, [progress, table])
    panel.expand(_page_errors(lambda: model_rows(B)), None, table)  # a preview may have downloaded one meanwhile
    return SimpleNamespace(table=table)


def build_doctor_panel(backend: Backend, controls: dict[str, gr.components.Component]) -> None:
    """Check this computer: device, checkpoints, the fast engine against qwen_tts, speed, a batch size that fits."""
    B = backend
    with gr.Accordion("Check this computer", open=False, elem_id="doctor-panel"):
        gr.Markdown("About 20 s on a GPU (longer on a CPU) with your built-in-speaker checkpoint: the fast engine "
                    "against qwen_tts, speed at batch 1 and at your batch size, and the memory one more chunk in a "
                    "batch costs, from which it suggests a batch size. Nothing else runs meanwhile.")
        check_btn = gr.Button("Check this computer", elem_id="doctor-run")
        report_md = gr.Markdown(elem_id="doctor-report")
        use_btn = gr.Button("Use suggested batch size", visible=False, elem_id="doctor-use-batch")
        use_msg = gr.Markdown(elem_id="doctor-use-message")
        with gr.Accordion("Report as JSON (attach it to a bug report)", open=False):
            report_json = gr.Code(language="json", interactive=False, elem_id="doctor-json")
        suggested = gr.State(None)

    def on_check():
        import json

        report = B.doctor()
        n = report.suggested_batch_size
        offer = bool(n) and n != B.settings.batch_size
        use = gr.update(visible=offer, value=f"Use suggested batch size ({n})" if offer else "Use suggested batch size")
        return (doctor_markdown(report), use, json.dumps(report.to_dict(), indent=2), n,
                gr.update(value=B.settings.engine))

    def on_use(n):
        if not n:
            raise AudiobookError("Run the check first; it suggests a batch size.")
        B.save_settings(batch_size=int(n))
        slider = gr.update(value=int(n), maximum=max(BATCH_SLIDER_MAX, int(n)))  # the measured room, past 20 on a big GPU
        return f"Saved: batch size {int(n)}.", slider, gr.update(visible=False)

    check_btn.click(_page_errors(on_check), None, [report_md, use_btn, report_json, suggested, controls["engine"]],
                    **MODEL_WORK)
    use_btn.click(_page_errors(on_use), suggested, [use_msg, controls["batch_size"], use_btn])


# ---- review -------------------------------------------------------------------------------------

REVIEW_HEADERS = ["chunk", "speaker", "text", "seconds", "WER", "voice", "status", "takes"]


def review_books(backend: Backend) -> list[str]:
    """Names of the rendered books (folders under the output folder holding a render), newest first."""
    return [p.name for p in backend.rendered_books()]


def review_folder(backend: Backend, name: str | None) -> Path:
    """The book folder a Review tab choice names; AudiobookError when there is none."""
    if not name:
        raise AudiobookError("Pick a rendered book first (render one on the Render tab).")
    folder = (backend.output_root / name).resolve()
    if folder.parent != backend.output_root.resolve() or not (folder / "manifest.json").is_file():
        raise AudiobookError(f"There is no render called '{name}' in the output folder.")
    return folder


def review_chapters(backend: Backend, name: str | None) -> list[tuple[str, int]]:
    from audiobook.review import load_render

    m = load_render(review_folder(backend, name))
    return [(f"{i + 1}. {ch.title}", i + 1) for i, ch in enumerate(m.chapters)]


def review_table(backend: Backend, name: str | None, chapter: int | None, flagged: bool) -> tuple[list[list[Any]], list[str]]:
    """The chunk table of a chapter (rows for the page) and the chunk id of each row."""
    rows = backend.review(review_folder(backend, name), flagged=flagged, chapter=chapter)
    table = [[r.index, r.speaker or "narrator", r.text if len(r.text) <= 80 else r.text[:77] + "...", round(r.duration_s, 1),
              "" if r.wer is None else f"{r.wer:.0%}", "" if r.voice_similarity is None else f"{r.voice_similarity:.2f}",
              r.status + (" (edited)" if r.edited else ""), r.attempts] for r in rows]
    return table, [r.id for r in rows]


def review_chunk(backend: Backend, name: str | None, chunk: str | None):
    """What the page shows for one chunk: its audio, its transcript against its text, its text, a note."""
    from audiobook.audio import read_wav
    from audiobook.check import marked_diff

    folder = review_folder(backend, name)
    row = next((r for r in backend.review(folder) if r.id == chunk), None)
    if row is None:
        raise AudiobookError("That chunk is no longer in this render; pick another row.")
    audio = None
    if row.file and (folder / row.file).is_file():
        wav, sr = read_wav(folder / row.file)
        audio = (sr, wav)
    language = load_manifest_language(folder)
    diff = marked_diff(row.text, row.transcript, language) if row.transcript is not None else [(row.text, None)]
    diff = [(word + " ", kind) for word, kind in diff]  # the page joins neighbouring words of one kind
    who = f" — {row.speaker}, read by {row.voice}" if row.speaker and row.speaker != "narrator" and row.voice else ""
    note = (f"Chapter {row.chapter}, chunk {row.index}{who} — {row.status}"
            + (f": {row.reason}" if row.reason else "")
            + ("" if row.transcript is not None else " (not checked: no transcript)"))
    return audio, diff, row.text, note


def load_manifest_language(folder: Path) -> str:
    from audiobook.review import load_render

    lang = load_render(folder).key.get("language") or "en"
    return "en" if lang == "auto" else lang


def build_review_tab(backend: Backend, serve: ServedFiles, book_state: gr.State) -> SimpleNamespace:
    """Review: a rendered book's chunks with their check scores; play, edit, re-roll or keep one; rebuild; sample."""
    B = backend
    with gr.Tab("Review", id="review"):
        with gr.Row():
            book_pick = gr.Dropdown([], label="Rendered book", elem_id="review-book", scale=2)
            chapter_pick = gr.Dropdown([], label="Chapter", elem_id="review-chapter", scale=2)
            flagged_only = gr.Checkbox(True, label="Only flagged chunks", elem_id="review-flagged", scale=1)
            refresh_btn = gr.Button("Refresh", size="sm", elem_id="review-refresh", scale=1)
        table = gr.Dataframe(headers=REVIEW_HEADERS, value=[], wrap=True, interactive=False, elem_id="review-table")
        ids = gr.State([])
        chunk_id = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                chunk_note = gr.Markdown("Pick a chunk in the table.", elem_id="review-note")
                player = gr.Audio(label="Take", type="numpy", interactive=False, elem_id="review-player")
                heard = gr.HighlightedText(label="What the check heard (missing: in the text, not heard; heard: said instead)",
                                           color_map={"missing": "red", "heard": "orange"}, combine_adjacent=True,
                                           elem_id="review-heard")
            with gr.Column(scale=1):
                text_box = gr.Textbox(label="Text", lines=4, elem_id="review-text")
                with gr.Row():
                    reroll_btn = gr.Button("Re-roll", elem_id="review-reroll")
                    render_btn = gr.Button("Render edited text", variant="primary", elem_id="review-render")
                    keep_btn = gr.Button("Keep", elem_id="review-keep")
                chunk_msg = gr.Markdown(elem_id="review-message")
        with gr.Row():
            rebuild_btn = gr.Button("Rebuild changed chapters and the m4b", variant="primary", elem_id="review-rebuild")
            m4b_file = gr.File(label="Audiobook (.m4b)", interactive=False, height=80, elem_id="review-m4b")
        rebuild_msg = gr.Markdown(elem_id="review-rebuild-message")
        with gr.Accordion("Sample: hear a voice in context before a long render", open=False, elem_id="review-sample-box"):
            with gr.Row():
                sample_voice = gr.Dropdown([], label="Voice", elem_id="review-sample-voice")
                sample_chapter = gr.Number(1, label="Chapter", precision=0, minimum=1, elem_id="review-sample-chapter")
                sample_seconds = gr.Number(60, label="Seconds", minimum=1, elem_id="review-sample-seconds")
                sample_btn = gr.Button("Sample", elem_id="review-sample")
            sample_player = gr.Audio(label="Sample", type="numpy", interactive=False, elem_id="review-sample-player")
            gr.Markdown("The sample reads the book loaded on the Render tab.")

    def show_table(name, chapter, flagged):
        rows, row_ids = review_table(B, name, chapter, flagged)
        return rows, row_ids

    def on_book(name):
        if not name:
            return gr.update(choices=[], value=None), [], []
        chapters = review_chapters(B, name)
        rows, row_ids = review_table(B, name, None, True)
        return gr.update(choices=[("All chapters", 0)] + chapters, value=0), rows, row_ids

    def on_filter(name, chapter, flagged):
        return show_table(name, chapter or None, flagged)

    def on_select(name, row_ids, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if row is None or row >= len(row_ids):
            return [gr.skip()] * 5
        chunk = row_ids[row]
        audio, diff, text, note = review_chunk(B, name, chunk)
        return chunk, audio, diff, text, note

    def after_fix(name, chapter, flagged, message, new_id=None):
        rows, row_ids = show_table(name, chapter or None, flagged)
        out = [message, rows, row_ids]
        if new_id:
            audio, diff, text, note = review_chunk(B, name, new_id)
            return out + [new_id, audio, diff, text, note]
        return out + [gr.skip()] * 5

    def on_render(name, chapter, flagged, chunk, text):
        if not chunk:
            raise AudiobookError("Pick a chunk in the table first.")
        before = {r.id for r in B.review(review_folder(B, name))}
        result = B.fix_chunk(review_folder(B, name), chunk, text=text, assemble=False)
        after = [r for r in B.review(review_folder(B, name)) if r.id not in before]
        new = after[0].id if after else chunk
        return after_fix(name, chapter, flagged, f"Rendered the chunk ({result.generated} take kept); press Rebuild "
                         "to hear it in its chapter.", new)

    def on_reroll(name, chapter, flagged, chunk):
        if not chunk:
            raise AudiobookError("Pick a chunk in the table first.")
        B.fix_chunk(review_folder(B, name), chunk, reroll=True, assemble=False)
        return after_fix(name, chapter, flagged, "Took the chunk again with another seed; press Rebuild to hear it in "
                         "its chapter.", chunk)

    def on_keep(name, chapter, flagged, chunk):
        if not chunk:
            raise AudiobookError("Pick a chunk in the table first.")
        B.fix_chunk(review_folder(B, name), chunk, accept=True)
        return after_fix(name, chapter, flagged, "Kept as it is (accepted).", chunk)

    def on_rebuild(name):
        result = B.rebuild_book(review_folder(B, name))
        m4b = next((p for p in result.book_files if p.suffix == ".m4b"), None)
        if m4b is None:
            note = "Chapters rebuilt; the m4b is written once every chapter is complete."
        else:
            note = f"Rebuilt: {', '.join(p.name for p in result.chapter_files + result.book_files)}."
        return note, serve(m4b) if m4b else None

    def on_sample(book, choice, chapter, seconds):
        from audiobook.audio import read_wav

        if book is None:
            raise AudiobookError("Load a book on the Render tab first; the sample reads its chapter.")
        path = B.sample(book, narrator_for(B, choice), chapter=int(chapter or 1), seconds=float(seconds or 60),
                        out_path=Path(tempfile.gettempdir()) / "audiobook-previews" / f"sample-{secrets.token_hex(6)}.wav")
        wav, sr = read_wav(path)
        path.unlink(missing_ok=True)
        return sr, wav

    fix_outputs = [chunk_msg, table, ids, chunk_id, player, heard, text_box, chunk_note]
    book_pick.change(_page_errors(on_book), book_pick, [chapter_pick, table, ids])
    chapter_pick.change(_page_errors(on_filter), [book_pick, chapter_pick, flagged_only], [table, ids])
    flagged_only.change(_page_errors(on_filter), [book_pick, chapter_pick, flagged_only], [table, ids])
    table.select(_page_errors(on_select), [book_pick, ids], [chunk_id, player, heard, text_box, chunk_note])
    render_btn.click(_page_errors(on_render), [book_pick, chapter_pick, flagged_only, chunk_id, text_box], fix_outputs)
    reroll_btn.click(_page_errors(on_reroll), [book_pick, chapter_pick, flagged_only, chunk_id], fix_outputs)
    keep_btn.click(_page_errors(on_keep), [book_pick, chapter_pick, flagged_only, chunk_id], fix_outputs)
    rebuild_btn.click(_page_errors(on_rebuild), book_pick, [rebuild_msg, m4b_file])
    sample_btn.click(_page_errors(on_sample), [book_state, sample_voice, sample_chapter, sample_seconds], sample_player)

    def on_refresh():
        books = review_books(B)
        return gr.update(choices=books, value=books[0] if books else None)

    refresh_btn.click(_page_errors(on_refresh), None, book_pick)

    def on_load():
        books = review_books(B)
        voices = narrator_choices(B)
        return [gr.update(choices=books, value=books[0] if books else None),
                gr.update(choices=voices, value=voices[0][1] if voices else None)]

    return SimpleNamespace(on_load=([book_pick, sample_voice], on_load))


def _wire_page_load(demo: gr.Blocks, parts: list[SimpleNamespace]) -> None:
    """One page-load event that fills what each part asked for (the settings on disk, the voices, ...)."""
    outputs = [c for part in parts for c in part.on_load[0]]

    def on_load():
        return [v for part in parts for v in part.on_load[1]()]

    demo.load(_page_errors(on_load), None, outputs)


def build_app(backend: Backend) -> gr.Blocks:
    """The whole page, wired to ``backend``: the status line and one builder per tab."""
    serve = served_files()  # finished files reach the browser only as copies in a folder of their own
    with gr.Blocks(title="Audiobook") as demo:
        gr.Markdown("# Audiobook\nMake or pick a voice in the **Voice Lab**, load a book, press **Render**.")
        status = build_status_line(backend)
        book_state = gr.State(None)
        render = build_render_tab(backend, serve, book_state, status.status)
        build_book_tab(backend, serve, book_state, render)
        voices = build_voice_tab(backend, serve, render.narrator)
        review = build_review_tab(backend, serve, book_state)
        settings = build_settings_tab(backend)
        _wire_page_load(demo, [status, render, render.queue, voices, review, settings])
        build_api(backend, serve)
    hide_from_api(demo, API_NAMES)
    _guard_every_handler(demo)
    return demo


# ---- the API (gradio_client) ---------------------------------------------------------------

# The page's public actions, as gradio_client calls them; every other event is private.
API_NAMES = ("load_book", "render", "stop", "resume", "render_state", "voices",
             "design_voice", "clone_voice", "preset_voice", "save_voice")


def api_choice(backend: Backend, narrator: str | None) -> str:
    """A narrator for the API: ``voice:NAME``, ``speaker:NAME``, or a plain saved-voice or speaker name."""
    value = (narrator or "").strip()
    if not value or value.startswith((VOICE_PREFIX, SPEAKER_PREFIX)):
        return value
    if value.lower() in backend.speakers() and value.lower() not in {v.name.lower() for v in backend.list_voices()}:
        return SPEAKER_PREFIX + value.lower()
    return VOICE_PREFIX + backend.get_voice(value).name  # a sentence naming the saved voices when there is none


def state_summary(state: RenderState) -> dict[str, Any]:
    """The render state as plain data for the API."""
    total = state.chunks_total
    return {
        "phase": render_phase(state), "book": state.book_title, "running": state.running, "stopping": state.stopping,
        "stopped": state.stopped, "finished": state.finished, "error": state.error,
        "chunks_done": state.chunks_done, "chunks_total": total,
        "percent": round(100.0 * state.chunks_done / total, 1) if total else 0.0,
        "failed": state.failed_count, "suspect": state.suspect_count, "audio_s": round(state.audio_s, 2),
        "x_real_time": round(state.x_real_time, 3), "eta_s": state.eta_s, "log": state.log[-20:],
        "skipped_chapters": list(state.skipped_chapters),
    }


def build_api(B: Backend, serve: ServedFiles) -> None:
    """Named endpoints for gradio_client over the same handlers as the page, with plain inputs and outputs.

    Inside a ``gr.Blocks``; its components are hidden. A client's session keeps its own book and
    voice preview between calls, as a browser tab does.
    """
    book, preview = gr.State(None), gr.State(None)
    with gr.Column(visible=False, elem_id="api"):
        book_file = gr.File(type="filepath", file_types=list(BOOK_EXTENSIONS), label="book")
        narrator = gr.Textbox(label="narrator")
        description, text = gr.Textbox(label="description"), gr.Textbox(label="text")
        language = gr.Textbox(value="auto", label="language")
        seed = gr.Number(value=None, precision=0, label="seed")
        clip = gr.File(type="filepath", label="clip")
        transcript, speaker = gr.Textbox(label="transcript"), gr.Textbox(label="speaker")
        instruct, name = gr.Textbox(label="instruct"), gr.Textbox(label="name")
        message, info = gr.Textbox(label="message"), gr.JSON(label="info")
        audio = gr.File(label="audio")
        m4b, srt = gr.File(label="m4b"), gr.File(label="srt")
        chapters = gr.File(file_count="multiple", label="chapters")
        buttons = {n: gr.Button(visible=False) for n in API_NAMES}

    def on_load_book(path):
        b = B.load_book(path)
        return b, {"title": b.title, "author": b.author, "language": b.language,
                   "chapters": [{"number": i + 1, "title": c.title, "words": c.words} for i, c in enumerate(b.chapters)]}

    def on_render(b, who):
        return start_render(B, b, api_choice(B, who))

    def on_state():
        state = B.render_state()
        files = result_files(state)
        return state_summary(state), serve(files["m4b"]), serve(files["srt"]), [serve(p) for p in files["chapters"]]

    def on_voices():
        return {"voices": [{"name": v.name, "kind": v.kind, "description": v.description, "speaker": v.speaker,
                            "created": v.created} for v in B.list_voices()],
                "speakers": B.speakers()}

    def previewer(mode):
        def run(*values):
            keys = {MODE_DESIGN: ("description", "language", "text", "seed"), MODE_CLONE: ("clip", "transcript", "language"),
                    MODE_PRESET: ("speaker", "instruct", "language")}[mode]
            p = preview_voice(B, mode, **{k: v for k, v in zip(keys, values) if v not in (None, "")})
            return p, serve(p.wav_path), preview_notes(p)
        return run

    def on_save_voice(p, voice_name):
        return save_voice(B, p, voice_name)

    model = dict(concurrency_id="model", concurrency_limit=1)
    wire = [
        ("load_book", on_load_book, [book_file], [book, info], {}),
        ("render", on_render, [book, narrator], message, {}),
        ("resume", on_render, [book, narrator], message, {}),
        ("stop", lambda: stop_render(B), None, message, {}),
        ("render_state", on_state, None, [info, m4b, srt, chapters], dict(concurrency_id="poll", concurrency_limit=4)),
        ("voices", on_voices, None, info, {}),
        ("design_voice", previewer(MODE_DESIGN), [description, language, text, seed], [preview, audio, message], model),
        ("clone_voice", previewer(MODE_CLONE), [clip, transcript, language], [preview, audio, message], model),
        ("preset_voice", previewer(MODE_PRESET), [speaker, instruct, language], [preview, audio, message], model),
        ("save_voice", on_save_voice, [preview, name], message, {}),
    ]
    for api_name, fn, inputs, outputs, extra in wire:
        buttons[api_name].click(_page_errors(fn), inputs, outputs, api_name=api_name, show_progress="hidden", **extra)


def hide_from_api(demo: gr.Blocks, public: tuple[str, ...]) -> None:
    """Make every event but the ``public`` ones private: the page still calls them, gradio_client does not see them."""
    for fn in demo.fns.values():
        if fn.api_name not in public:
            fn.api_visibility = "private"


def _cover_image(data: bytes):
    """The cover bytes as an image the page can show (None when unreadable)."""
    import io

    try:
        from PIL import Image

        return Image.open(io.BytesIO(data)).convert("RGB")
    except Exception:  # a broken cover only hides the picture
        return None


# ---- command line -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="app.py", description="The audiobook page (Gradio).")
    p.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    p.add_argument("--listen", action="store_true", help="listen on all network interfaces, not only this computer")
    p.add_argument("--share", action="store_true", help="make a public gradio.live link (the page itself stays on 127.0.0.1)")
    p.add_argument("--auth", metavar="USER:PASSWORD",
                   help="ask for this login (with --listen or --share and no --auth, a password is made up and printed)")
    p.add_argument("--models-dir", help="folder holding the checkpoints (overrides the setting, not saved)")
    p.add_argument("--root", default=os.environ.get("AUDIOBOOK_ROOT", str(ROOT)),
                   help="project folder holding user_settings.json, output/ and voices/ (default: this folder)")
    return p


def served_files() -> ServedFiles:
    """A new folder for the page's copies of finished files, inside Gradio's upload folder (which it serves)."""
    from gradio.utils import get_upload_folder

    served = ServedFiles(Path(get_upload_folder()) / f"audiobook-{secrets.token_hex(8)}")
    atexit.register(served.clear)  # the copies go when the app ends
    return served


def project_places(backend: Backend) -> list[Path]:
    """Everything of the project the server must refuse to hand out by path."""
    s = backend.settings
    places = [backend.root, backend.output_root, backend.resolve(s.voices_dir), backend.settings_path]
    places += [backend.resolve(getattr(s, k)) for k in ("models_dir", "pronunciations_file") if getattr(s, k)]
    return places


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        serving = serving_for(args.listen, args.share, args.auth)
        backend = Backend(root=args.root, models_dir=args.models_dir, lock_folders=serving.network)
    except AudiobookError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    from gradio.utils import get_upload_folder

    try:
        return _launch(args, serving, backend, get_upload_folder())
    except AudiobookError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the last resort: one sentence, the traceback in a log file
        from audiobook.errors import unexpected_sentence, write_error_log

        if isinstance(e, OSError) and "port" in str(e).lower():
            print(f"Error: The port {args.port} is taken by another program; start with --port and another number, "
                  "or stop that program.", file=sys.stderr)
            return 2
        print(f"Error: {unexpected_sentence(e, write_error_log(e, 'app'))}", file=sys.stderr)
        return 1


def _launch(args, serving, backend: Backend, upload_folder: str) -> int:
    demo = build_app(backend)
    demo.queue(default_concurrency_limit=1)  # each event one at a time; previews also share one 'model' slot
    if serving.login_line():
        print(serving.login_line(), flush=True)
    demo.launch(
        server_name=serving.host,
        server_port=args.port,
        share=serving.share,
        auth=serving.auth,
        allowed_paths=[],
        blocked_paths=blocked_paths(project_places(backend), keep_open=[upload_folder]),
        css=CSS,
        footer_links=[],
        show_error=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
