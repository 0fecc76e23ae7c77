"""The Settings tab: every setting grouped as a user thinks of them, saved or reset."""

from __future__ import annotations

import importlib.util
from dataclasses import fields
from types import SimpleNamespace
from typing import Any

import gradio as gr

from audiobook.page.models import build_doctor_panel, build_models_panel, model_rows
from audiobook.page.widgets import Backend, page_errors
from audiobook.settings import BATCH_SLIDER_MAX, FOLDER_SETTINGS, Settings

# Advanced Settings, grouped as a user thinks of them; fields not named here land in "Other".
SETTING_GROUPS: list[tuple[str, list[str]]] = [
    ("Speed and memory", ["batch_size", "attention_mode", "max_new_tokens", "engine", "batch_order", "workers", "ray_address"]),
    ("Model", ["model_size", "models_dir", "device", "dtype", "language"]),
    ("Text", ["chunk_chars"]),
    ("Sampling", ["do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "seed"]),
    ("Quality checks", ["max_retries", "runaway_margin_s", "duration_outlier_factor", "verify", "verify_model",
                        "max_wer", "min_voice_similarity", "word_timings"]),
    ("Pauses (milliseconds)", ["pause_chunk_ms", "pause_paragraph_ms", "pause_title_ms", "pause_chapter_ms", "pause_speaker_ms"]),
    ("Cast", ["llm_url", "llm_model", "llm_timeout_s"]),
    ("Output", ["loudness_lufs", "true_peak_db", "chapter_format", "make_m4b", "make_book_mp3", "make_readalong", "output_dir", "voices_dir"]),
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
    "word_timings": "Time every word (Whisper; karaoke subtitles)",
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
    "make_readalong": "Make a read-along EPUB (text and narration in step)",
    "output_dir": "Output folder",
    "voices_dir": "Voices folder",
    "workers": "Workers (Ray)",
    "ray_address": "Ray cluster address",
}


def label_for(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


def attention_choices() -> list[str]:
    """sdpa and eager always; flash_attention_2 only when the flash-attn package is installed."""
    choices = ["sdpa", "eager"]
    if importlib.util.find_spec("flash_attn") is not None:
        choices.append("flash_attention_2")
    return choices


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


def setting_control(name: str, value: Any, locked: bool = False) -> gr.components.Component:
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
                            controls[name] = setting_control(name, getattr(B.settings, name),
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

    save_btn.click(page_errors(on_save), inputs, [settings_msg] + error_outputs)
    reset_btn.click(page_errors(on_reset), None, [settings_msg] + inputs + error_outputs)
    return SimpleNamespace(controls=controls, on_load=(inputs + [models.table],
                                                       lambda: settings_values(B.settings) + [model_rows(B)]))
