"""Hearing a voice before it is saved: the model speaks a designed, cloned or built-in voice.

Each ``preview_*`` drives the TTS model once and returns a ``VoicePreview``: the draft
``Voice`` record, the reference clip to keep with it and the audio to play. The library
(``voices.py``) saves the one the user liked.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .clips import MIN_CLIP_S, SILENT_PEAK, level_reference, prepare_clip
from .errors import AudiobookError
from .files import SAMPLE_RATE
from .tts import CLONE, DESIGN, PRESET, TTS, GenerationOptions, checkpoint_name
from .voices import BUILTIN, CLONED, DESIGNED, Voice

# About 15 s of speech with varied vowels, consonants, a question and an exclamation.
DEFAULT_REFERENCE_TEXT = (
    "Good evening, and welcome. Tonight I will read you a story about a quiet village by the sea, "
    "where the fishermen sang while they mended their nets. Did you hear that? "
    "Somewhere a dog barked twice, the church bell rang, and the wind whispered through the yellow reeds. "
    "What a strange, beautiful night it was!"
)
DEFAULT_TEST_LINE = (
    "Every story begins with a single voice. Listen closely, and tell me whether this one suits the tale."
)
XVECTOR_COST = (
    "Without a transcript the voice is cloned from its sound alone (x-vector only mode): the likeness "
    "is weaker and the rhythm of the clip is not carried over; add the words spoken in the clip for a closer match."
)


@dataclass
class VoicePreview:
    """A voice heard but not yet saved: the draft record, its reference clip and the audio to play.

    ``audio`` is what the user hears (for a designed voice: the reference clip itself; otherwise the
    test line); ``reference`` is the clip to save (None for presets); ``wav_path`` holds ``audio``.
    """

    voice: Voice
    audio: np.ndarray
    reference: np.ndarray | None = None
    wav_path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def preview_design(tts: TTS, description: str, language: str = "auto", text: str | None = None,
                   seed: int | None = None, opts: GenerationOptions | None = None) -> VoicePreview:
    """The VoiceDesign model speaks ``text`` (default: a reference passage) in the described voice.

    ``seed`` None picks a new one, so calling again regenerates; the seed used is in ``voice.seed``.
    """
    description = (description or "").strip()
    if not description:
        raise AudiobookError("Describe the voice to design, for example 'a warm, elderly British storyteller, slow and calm'.")
    text = (text or "").strip() or DEFAULT_REFERENCE_TEXT
    seed = random.randrange(2**31 - 1) if seed is None else int(seed)
    opts = replace(opts or GenerationOptions.from_settings(tts.settings), seed=seed)
    wav = level_reference(tts.design([text], description, language, opts)[0])
    if wav.size == 0 or float(np.abs(wav).max()) < SILENT_PEAK:
        raise AudiobookError("The design model produced no sound for this description; try again with another seed.")
    warnings = []
    if len(wav) / SAMPLE_RATE < MIN_CLIP_S:
        warnings.append(f"The designed clip is only {len(wav) / SAMPLE_RATE:.1f} s long; regenerate for a fuller reference.")
    voice = Voice(name="", kind=DESIGNED, description=description, language=language or "auto",
                  reference_text=text, model=checkpoint_name(DESIGN, tts.settings.model_size), seed=seed)
    return VoicePreview(voice=voice, audio=wav, reference=wav, warnings=warnings)


def preview_clone(tts: TTS, clip_path: str | os.PathLike, transcript: str = "", language: str = "auto",
                  test_line: str | None = None, opts: GenerationOptions | None = None) -> VoicePreview:
    """Prepare an uploaded clip and let the Base model speak a test line in its voice."""
    transcript = " ".join((transcript or "").split())
    clip = prepare_clip(clip_path, has_transcript=bool(transcript))
    warnings = list(clip.warnings)
    if not transcript:
        warnings.append(XVECTOR_COST)
    prompt = tts.clone_prompt((clip.wav, SAMPLE_RATE), transcript, x_vector_only=not transcript)
    opts = opts or GenerationOptions.from_settings(tts.settings)
    spoken = tts.clone([(test_line or "").strip() or DEFAULT_TEST_LINE], prompt, language, opts)[0]
    voice = Voice(name="", kind=CLONED, language=language or "auto", reference_text=transcript,
                  model=checkpoint_name(CLONE, tts.settings.model_size),
                  notes=f"Cloned from {Path(clip_path).name}.")
    return VoicePreview(voice=voice, audio=spoken, reference=clip.wav, warnings=warnings)


def preview_preset(tts: TTS, speaker: str, instruct: str = "", language: str = "auto",
                   test_line: str | None = None, opts: GenerationOptions | None = None) -> VoicePreview:
    """A built-in CustomVoice speaker (with an optional style instruction) speaks a test line."""
    speaker = (speaker or "").strip()
    instruct = (instruct or "").strip()
    if not speaker:
        raise AudiobookError("Choose a built-in speaker.")
    tts.check_instruct(instruct)
    opts = opts or GenerationOptions.from_settings(tts.settings)
    spoken = tts.preset([(test_line or "").strip() or DEFAULT_TEST_LINE], speaker, instruct, language, opts)[0]
    voice = Voice(name="", kind=BUILTIN, speaker=speaker.lower(), instruct=instruct, language=language or "auto",
                  model=checkpoint_name(PRESET, tts.settings.model_size))
    return VoicePreview(voice=voice, audio=spoken)
