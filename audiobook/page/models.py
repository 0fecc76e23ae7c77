"""The Models and "Check this computer" panels of the Settings tab: checkpoints, downloads, the doctor."""

from __future__ import annotations

import html
from types import SimpleNamespace

import gradio as gr

from audiobook.errors import AudiobookError
from audiobook.page.widgets import MODEL_WORK, Backend, keep_enabled, page_errors
from audiobook.settings import BATCH_SLIDER_MAX


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
            download_btn = gr.Button("Download", scale=1, interactive=False, elem_id="models-download")
        progress = gr.HTML(elem_id="models-progress")

    def on_download(name):
        if not name:
            raise AudiobookError("Pick a checkpoint to download.")
        for bar, state in follow_download(B, name):
            yield bar, (model_rows(B) if not state.running else gr.skip())

    download_btn.click(page_errors(on_download), pick, [progress, table])
    keep_enabled({"download": download_btn}, lambda name: {"download": bool(name)}, [pick], [pick])
    panel.expand(page_errors(lambda: model_rows(B)), None, table)  # a preview may have downloaded one meanwhile
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

    check_btn.click(page_errors(on_check), None, [report_md, use_btn, report_json, suggested, controls["engine"]],
                    **MODEL_WORK)
    use_btn.click(page_errors(on_use), suggested, [use_msg, controls["batch_size"], use_btn])
