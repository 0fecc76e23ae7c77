"""The page's named endpoints for gradio_client (the same handlers as the page, plain inputs and outputs)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from audiobook.books import BOOK_EXTENSIONS
from audiobook.page.render import render_phase, result_files, start_render, stop_render
from audiobook.page.voice_lab import MODE_CLONE, MODE_DESIGN, MODE_PRESET, preview_notes, preview_voice, save_voice
from audiobook.page.widgets import SPEAKER_PREFIX, VOICE_PREFIX, Backend, page_errors
from audiobook.render import RenderState
from audiobook.serving import ServedFiles

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
        r = b.report
        return b, {"title": b.title, "author": b.author, "language": b.language,
                   "read_by": r.reader if r else "", "ocr_pages": r.ocr_pages if r else 0,
                   "warnings": list(r.warnings) if r else [],
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
        buttons[api_name].click(page_errors(fn), inputs, outputs, api_name=api_name, show_progress="hidden", **extra)


def hide_from_api(demo: gr.Blocks, public: tuple[str, ...]) -> None:
    """Make every event but the ``public`` ones private: the page still calls them, gradio_client does not see them."""
    for fn in demo.fns.values():
        if fn.api_name not in public:
            fn.api_visibility = "private"
