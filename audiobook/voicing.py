"""Which voice reads each chunk of a render with a cast, and model calls that mix voices.

A ``Voicing`` maps the speakers of a book's spans to narrators: a character's mapped
voice; for an unmapped quoted speaker the ``dialogue`` voice when one is set; else the
book's narrator. A chunk's id then hashes its voice and its style. Chunks of cloned
voices and of built-in speakers need different models, so they go in separate calls; the
fast engine takes a different voice in every slot, qwen_tts's own loop one voice a call.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from .dialogue import DIALOGUE, NARRATOR
from .errors import AudiobookError
from .tts import CLONE, PRESET, GenerationOptions, Narrator

log = logging.getLogger(__name__)


@dataclass
class Voicing:
    """The voices of a render: ``narrator``, and ``voices`` by speaker name (a cast's mapped characters).

    ``prompt_for(narrator)`` gives a clone prompt (cached by the caller); prompts are kept
    here per voice once made.
    """

    narrator: Narrator
    voices: dict[str, Narrator] = field(default_factory=dict)
    prompt_for: Callable[[Narrator], object] | None = None
    _prompts: dict[str, object] = field(default_factory=dict, repr=False)
    _warned_style: bool = field(default=False, repr=False)

    def voice_for(self, speaker: str) -> Narrator:
        """The narrator that reads ``speaker``'s lines (mapped voice, else dialogue voice for speech, else the narrator)."""
        if speaker in self.voices:
            return self.voices[speaker]
        if speaker and speaker != NARRATOR and DIALOGUE in self.voices:
            return self.voices[DIALOGUE]
        return self.narrator

    @property
    def mixed(self) -> bool:
        return any(v != self.narrator for v in self.voices.values())

    # ---- planning -----------------------------------------------------------------

    def check(self, chunks, model_size: str) -> None:
        """Refuse styles the model would drop (the 0.6B models), with a sentence naming one line."""
        if model_size == "1.7B":
            return
        styled = next((c for c in chunks if c.style), None)
        if styled is not None:
            raise AudiobookError(
                f"The {model_size} models cannot follow a style instruction, and the line \"{styled.text[:60]}\" of "
                f"chapter {styled.chapter + 1} has the style '{styled.style}'; switch the model size to 1.7B in "
                "Advanced Settings, or remove the [style: ...] tags.")

    def key_of(self, make_key: Callable[[Narrator], object], base_digest: str) -> Callable:
        """``chunk -> (key digest, voice name)`` for ``manifest.plan_manifest``.

        The narrator's unstyled chunks keep the narrator's digest, so a book without a cast
        plans exactly as before; other chunks hash their voice's key and their style.
        """
        digests: dict[tuple, str] = {}

        def of(chunk) -> tuple[str, str]:
            voice = self.voice_for(chunk.speaker)
            name = voice.name or voice.speaker or "narrator"
            if voice == self.narrator and not chunk.style:
                return base_digest, name
            k = (voice, chunk.style)
            if k not in digests:
                digest = base_digest if voice == self.narrator else make_key(voice).digest()
                digests[k] = hashlib.sha256(f"{digest}\nstyle:{chunk.style}".encode("utf-8")).hexdigest() if chunk.style else digest
            return digests[k], name

        return of

    def order(self, queue: list[str], states: dict, fast: bool, window: int) -> list[str]:
        """Pending ids so that one model serves a long run (clones, then built-in speakers, narrator's kind first)
        and, without the fast engine, a batch holds one voice (sorted inside each window of ``window`` ids)."""
        job_rank = {self.narrator.job: 0}
        voice_of = {i: self.voice_for(states[i].speaker) for i in queue}
        out = list(queue)
        if not fast:
            out = []
            for w in range(0, len(queue), max(1, window)):
                part = queue[w : w + window]
                first = {}
                for i in part:
                    first.setdefault((voice_of[i], states[i].style), len(first))
                out += sorted(part, key=lambda i: first[(voice_of[i], states[i].style)])
        return sorted(out, key=lambda i: job_rank.get(voice_of[i].job, 1))

    # ---- generation -----------------------------------------------------------------

    def remember(self, voice: Narrator, prompt) -> None:
        """Use ``prompt`` as ``voice``'s clone prompt (the narrator's, made by the render already)."""
        if prompt is not None:
            self._prompts[repr(voice)] = prompt

    def prompt(self, voice: Narrator, tts) -> object:
        key = repr(voice)
        if key not in self._prompts:
            self._prompts[key] = (self.prompt_for(voice) if self.prompt_for else
                                  tts.clone_prompt(voice.ref_audio, voice.ref_text, voice.x_vector_only))
        return self._prompts[key]

    def narrate(self, tts, states: list, language: str | None, opts: GenerationOptions, fast: bool,
                slots: int | None = None) -> list[np.ndarray]:
        """One wav per chunk state, in order: one ``tts.narrate`` call per model (fast engine) or per voice and style.

        A style is a built-in speaker's instruction; cloned voices have no style input.
        """
        voices = []
        for s in states:
            v = self.voice_for(s.speaker)
            voices.append(replace(v, instruct=s.style) if s.style and v.kind == PRESET else v)
        groups: dict[tuple, list[int]] = {}
        for n, (s, v) in enumerate(zip(states, voices)):
            groups.setdefault((v.job,) if fast else (v.job, v), []).append(n)
        extra = {"slots": slots} if slots else {}
        wavs: list[np.ndarray | None] = [None] * len(states)
        for members in groups.values():
            who = [voices[n] for n in members]
            prompts = None
            if who[0].job == CLONE:
                if any(states[n].style for n in members) and not self._warned_style:
                    self._warned_style = True
                    log.warning("Cloned and designed voices have no style input in Qwen3-TTS; their lines are read without the style.")
                prompts = [self.prompt(v, tts) for v in who]
            got = tts.narrate(who, [states[n].text for n in members], language, opts, prompt=prompts, **extra)
            for n, wav in zip(members, got):
                wavs[n] = wav
        return wavs
