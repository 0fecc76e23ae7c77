"""Voices for the Backend: previews (design, clone, preset), the saved-voice library, narrators and clone prompts.

Each function takes the ``backend.Backend`` first; ``Backend`` lists them as its methods.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from audiobook.errors import file_errors
from audiobook.previews import VoicePreview
from audiobook.tts import PRESET, TTS, Narrator
from audiobook.voices import Voice


def preview_design(backend, description: str, language: str = "auto", text: str | None = None,
                   seed: int | None = None) -> VoicePreview:
    """The VoiceDesign model speaks the reference passage (``text``) in the described voice.

    Call again (``seed`` None) to regenerate; ``save_voice`` keeps the one the user liked.
    """
    from audiobook import previews

    with backend.tts.lock.hold("a voice preview"):  # refused with a sentence while a render holds the model
        preview = previews.preview_design(backend.tts, description, language, text, seed)
    return keep_preview(backend, preview)


def preview_clone(backend, audio_path: str | Path, transcript: str = "", language: str = "auto",
                  test_line: str | None = None) -> VoicePreview:
    """Check and prepare a clip, then speak a test line in its voice (x-vector only without transcript)."""
    from audiobook import previews

    with backend.tts.lock.hold("a voice preview"):  # refused with a sentence while a render holds the model
        preview = previews.preview_clone(backend.tts, audio_path, transcript, language, test_line)
    return keep_preview(backend, preview)


def preview_preset(backend, speaker: str, instruct: str = "", language: str = "auto",
                   test_line: str | None = None) -> VoicePreview:
    """A built-in speaker speaks a test line; an instruction on a model that cannot follow one is an error."""
    from audiobook import previews

    with backend.tts.lock.hold("a voice preview"):  # refused with a sentence while a render holds the model
        preview = previews.preview_preset(backend.tts, speaker, instruct, language, test_line)
    return keep_preview(backend, preview)


def keep_preview(backend, preview: VoicePreview) -> VoicePreview:
    """Write the preview audio where the page can play it; old previews are pruned."""
    import uuid

    from audiobook.audio import write_wav

    folder = Path(tempfile.gettempdir()) / "audiobook-previews"
    folder.mkdir(parents=True, exist_ok=True)
    for old in sorted(folder.glob("*.wav"), key=lambda f: f.stat().st_mtime)[:-30]:
        old.unlink(missing_ok=True)
    preview.wav_path = write_wav(folder / f"{preview.voice.kind}-{uuid.uuid4().hex[:10]}.wav", preview.audio)
    return preview


def save_voice(backend, preview: VoicePreview, name: str, notes: str | None = None, overwrite: bool = False) -> Voice:
    """Save a previewed voice under ``name``; a taken name is an error unless ``overwrite``."""
    from dataclasses import replace

    voice = replace(preview.voice, name=name, notes=preview.voice.notes if notes is None else notes)
    with file_errors(f"save the voice '{name}' in {backend.voices.root}"):
        return backend.voices.save(voice, preview.reference, preview.audio, overwrite=overwrite)


def rename_voice(backend, old: str, new: str, overwrite: bool = False) -> Voice:
    with file_errors(f"rename the voice '{old}' in {backend.voices.root}"):
        return backend.voices.rename(old, new, overwrite=overwrite)


def delete_voice(backend, name: str) -> None:
    with file_errors(f"delete the voice '{name}' from {backend.voices.root}"):
        backend.voices.delete(name)


def import_voice(backend, zip_path: str | Path, overwrite: bool = False, name: str | None = None) -> Voice:
    """Add a voice from an exported zip (safely extracted); a taken name is an error unless ``overwrite``."""
    with file_errors(f"import the voice into {backend.voices.root}"):
        return backend.voices.import_zip(zip_path, overwrite=overwrite, name=name)


def export_voice(backend, name: str, dest: str | Path | None = None) -> Path:
    """Zip a voice for sharing; returns the zip's path."""
    with file_errors(f"export the voice '{name}'" + (f" to {dest}" if dest else "")):
        return backend.voices.export_zip(name, dest)


def narrator_for(backend, voice: str | Voice) -> Narrator:
    """The narrator of a saved voice (by name): designed/cloned clone their clip, presets name a speaker."""
    from audiobook import voices

    voice = voice if isinstance(voice, Voice) else backend.get_voice(voice)
    narrator = voices.narrator_for(voice)
    if narrator.kind == PRESET:
        backend.tts.check_instruct(narrator.instruct)
    return narrator


def clone_prompt_for(backend, narrator: Narrator, maker=None):
    """The clone prompt for a render: loaded from the voice's cache when fresh, else computed and cached.

    ``maker`` computes it (a ``WorkerPool``, so that this process loads no model); default: our model.
    """
    from audiobook import voices

    if narrator.kind == PRESET:
        return None
    cache = voices.prompt_cache_path(narrator, backend.tts.settings.model_size)
    if maker is not None:  # a pool has the settings and the clone_prompt that a TTS uses here
        return TTS.cached_clone_prompt(maker, narrator, cache)
    return backend.tts.cached_clone_prompt(narrator, cache)
