"""The Voice Lab tab: design, clone or pick a voice, hear it, keep it in the library."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from audiobook.errors import AudiobookError
from audiobook.models import MissingCheckpoint
from audiobook.page.models import follow_download
from audiobook.page.widgets import MODEL_WORK, SPEAKER_PREFIX, VOICE_PREFIX, Backend, keep_enabled, page_errors
from audiobook.previews import DEFAULT_REFERENCE_TEXT, VoicePreview
from audiobook.serving import ServedFiles
from audiobook.tts import LANGUAGES, PRESET, Narrator

MODE_DESIGN, MODE_CLONE, MODE_PRESET = "Design from a description", "Clone a clip", "Built-in speaker"
VOICE_LANGUAGES = ["auto", *LANGUAGES.values()]


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


def voice_buttons(preview: VoicePreview | None, name: str | None, picked: str | None,
                  new_name: str | None) -> dict[str, bool]:
    """Which of the Voice Lab's buttons have something to act on: a preview and a name for it (Save as voice),
    a voice picked in the library (Play, Delete, Export) and a new name for it (Rename)."""
    return {"save": preview is not None and bool((name or "").strip()), "play": bool(picked), "delete": bool(picked),
            "export": bool(picked), "rename": bool(picked) and bool((new_name or "").strip())}


def preview_button(mode: str, description: str | None, clip: str | None, speaker: str | None) -> dict[str, bool]:
    """Generate preview has something to hear: a description to design, a clip to clone, a speaker to pick."""
    given = {MODE_DESIGN: (description or "").strip(), MODE_CLONE: clip, MODE_PRESET: speaker}.get(mode)
    return {"preview": bool(given)}


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
                preview_btn = gr.Button("Generate preview", variant="primary", interactive=False, elem_id="voice-preview")
                need_btn = gr.Button("Download the model", visible=False, elem_id="voice-need-download")
                need_progress = gr.HTML(elem_id="voice-need-progress")
                need_name = gr.State(None)
            with gr.Column(scale=2):
                preview_audio = gr.Audio(label="Preview", type="filepath", interactive=False, elem_id="voice-preview-audio")
                preview_msg = gr.Markdown(elem_id="voice-preview-message")
                voice_name = gr.Textbox(label="Name", elem_id="voice-name")
                save_voice_btn = gr.Button("Save as voice", interactive=False, elem_id="voice-save")
                save_voice_msg = gr.Markdown(elem_id="voice-save-message")
        gr.Markdown("### Voice library")
        library = gr.Dataframe(headers=["name", "kind", "voice", "created"], value=[], interactive=False,
                               elem_id="voice-library")
        with gr.Row():
            lib_pick = gr.Dropdown([], label="Voice", elem_id="voice-lib-pick", scale=2)
            play_btn = gr.Button("Play", scale=1, interactive=False, elem_id="voice-play")
            delete_btn = gr.Button("Delete", variant="stop", scale=1, interactive=False, elem_id="voice-delete")
            export_btn = gr.Button("Export (.zip)", scale=1, interactive=False, elem_id="voice-export")
        with gr.Row():
            rename_to = gr.Textbox(label="Rename to", scale=2, elem_id="voice-rename-to")
            rename_voice_btn = gr.Button("Rename", scale=1, interactive=False, elem_id="voice-rename")
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

    preview_btn.click(page_errors(on_preview),
                      [mode, description, language, ref_text, seed, clip, transcript, x_vector, speaker, instruct],
                      [preview_state, preview_audio, preview_msg, need_btn, need_name, need_progress], **MODEL_WORK)

    def on_need_download(name):
        if not name:
            raise AudiobookError("Generate a preview first; it says which model it needs.")
        for bar, state in follow_download(B, name):
            done = state.done and not state.running
            yield bar, (gr.update(visible=False) if done else gr.skip()), (
                f"{name} is on this computer now; press Generate preview." if done else gr.skip())

    need_btn.click(page_errors(on_need_download), need_name, [need_progress, need_btn, preview_msg])

    def library_view(keep: str | None = None):
        rows = voice_rows(B)
        names_ = [r[0] for r in rows]
        return rows, gr.update(choices=names_, value=keep if keep in names_ else (names_[0] if names_ else None))

    def on_save_voice(p, name):
        message = save_voice(B, p, name)
        return [message, *library_view(name.strip()), gr.update(choices=narrator_choices(B))]

    save_voice_btn.click(page_errors(on_save_voice), [preview_state, voice_name],
                         [save_voice_msg, library, lib_pick, narrator])
    play_btn.click(page_errors(lambda name: serve(voice_audio(B, name))), lib_pick, lib_audio)

    def on_delete(name):
        if not name:
            raise AudiobookError("Pick a voice in the library first.")
        B.delete_voice(name)
        return [f"Deleted the voice “{name}”.", *library_view(), gr.update(choices=narrator_choices(B)), None]

    delete_btn.click(page_errors(on_delete), lib_pick, [lib_msg, library, lib_pick, narrator, lib_audio])

    def on_rename(old, new):
        if not old:
            raise AudiobookError("Pick a voice in the library first.")
        v = B.rename_voice(old, (new or "").strip())
        return [f"Renamed “{old}” to “{v.name}”.", *library_view(v.name), gr.update(choices=narrator_choices(B))]

    rename_voice_btn.click(page_errors(on_rename), [lib_pick, rename_to], [lib_msg, library, lib_pick, narrator])

    def on_export(name):
        if not name:
            raise AudiobookError("Pick a voice in the library first.")
        return serve(B.export_voice(name))

    export_btn.click(page_errors(on_export), lib_pick, exported)

    def on_import(path):
        if not path:
            return [gr.skip()] * 4
        v = B.import_voice(path)
        return [f"Imported the voice “{v.name}”.", *library_view(v.name), gr.update(choices=narrator_choices(B))]

    import_file.upload(page_errors(on_import), import_file, [lib_msg, library, lib_pick, narrator])
    buttons = {"save": save_voice_btn, "play": play_btn, "delete": delete_btn, "export": export_btn,
               "rename": rename_voice_btn}
    inputs = [preview_state, voice_name, lib_pick, rename_to]
    keep_enabled(buttons, voice_buttons, inputs, inputs)
    inputs = [mode, description, clip, speaker]
    keep_enabled({"preview": preview_btn}, preview_button, inputs, inputs)

    def on_load():
        speakers = B.speakers()
        return [gr.update(choices=[(s.capitalize(), s) for s in speakers], value=speakers[0] if speakers else None),
                gr.update(interactive=B.supports_instruct()), *library_view()]

    return SimpleNamespace(library=library, lib_pick=lib_pick, on_load=([speaker, instruct, library, lib_pick], on_load))
