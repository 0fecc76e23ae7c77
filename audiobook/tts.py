"""Qwen3-TTS: which checkpoint serves which job, loading one model at a time, batched generation."""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .clips import load_clip
from .clone_cache import clone_prompt_key, file_sha1, load_clone_prompt, save_clone_prompt
from .errors import AudiobookError
from .files import SAMPLE_RATE
from .model_lock import ModelLock, holding_model

log = logging.getLogger(__name__)

FRAME_RATE = 12.5  # codec frames per second of the 12 Hz tokenizer

# Jobs, in the user's words: which model does what (see DESIGN.md).
DESIGN, CLONE, PRESET = "design", "clone", "preset"
_JOB_KIND = {DESIGN: "VoiceDesign", CLONE: "Base", PRESET: "CustomVoice"}
_JOB_MODEL_TYPE = {DESIGN: "voice_design", CLONE: "base", PRESET: "custom_voice"}

LANGUAGES = {
    "en": "English", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "de": "German",
    "fr": "French", "ru": "Russian", "pt": "Portuguese", "es": "Spanish", "it": "Italian",
}


def checkpoint_name(job: str, model_size: str) -> str:
    """Folder name of the released checkpoint for a job; voice design only exists at 1.7B."""
    if job not in _JOB_KIND:
        raise ValueError(f"unknown job {job!r}")
    size = "1.7B" if job == DESIGN else model_size
    return f"Qwen3-TTS-12Hz-{size}-{_JOB_KIND[job]}"


def hub_id(job: str, model_size: str) -> str:
    return f"Qwen/{checkpoint_name(job, model_size)}"


def resolve_checkpoint(job: str, model_size: str, models_dir: str | os.PathLike | None) -> str:
    """A local folder under ``models_dir`` when it holds the checkpoint, else the Hugging Face id."""
    if models_dir:
        local = Path(models_dir).expanduser() / checkpoint_name(job, model_size)
        if (local / "config.json").is_file():
            return str(local)
    return hub_id(job, model_size)


def load_error_message(e: BaseException, job: str, model_size: str, source: str) -> str:
    """The sentence for a model on disk that did not load: out of memory, or an incomplete or damaged folder.

    (A model that is not on disk never gets here: ``models.require`` names its download first.)
    """
    name = checkpoint_name(job, model_size)
    if is_out_of_memory(e):
        return (f"There is not enough memory to load the model {name}; close other programs that use the GPU, "
                "or choose the 0.6B model size or the cpu device in Advanced Settings.")
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    return (f"The model folder {source} could not be loaded ({reason}); it is incomplete or damaged, so download "
            f"it again in the Models panel or with `backend.py models --download {name}`.")


# The built-in speakers of the released CustomVoice checkpoints (both sizes).
RELEASED_SPEAKERS = ("aiden", "dylan", "eric", "ono_anna", "ryan", "serena", "sohee", "uncle_fu", "vivian")


def _cached_hub_file(repo_id: str, filename: str) -> Path | None:
    """A file of a Hugging Face checkpoint when it is already in the local cache, else None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, filename)
    except Exception:
        return None
    return Path(found) if isinstance(found, str) else None


def speakers_in_config(config_path: Path) -> list[str]:
    """Speaker names a CustomVoice checkpoint lists in its config.json (lower case, sorted)."""
    import json

    try:
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    spk = (config.get("talker_config") or {}).get("spk_id") or {}
    return sorted(str(name).lower() for name in spk)


def language_name(code_or_name: str | None, supported: list[str] | None = None) -> str:
    """Map 'en'/'English'/'auto' to the model's language name; unknown languages fall back to Auto."""
    if not code_or_name or code_or_name.lower() == "auto":
        return "Auto"
    name = LANGUAGES.get(code_or_name.lower().split("-")[0], code_or_name)
    if supported is not None and name.lower() not in {s.lower() for s in supported}:
        return "Auto"
    return name.capitalize() if name.islower() else name


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a CUDA (or other accelerator) out-of-memory error."""
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except Exception:  # pragma: no cover - torch always present in the app
        pass
    return isinstance(exc, (RuntimeError, MemoryError)) and "out of memory" in str(exc).lower()


@dataclass(frozen=True)
class GenerationOptions:
    """What changes the audio of a chunk besides its text and voice."""

    max_new_tokens: int = 4096
    do_sample: bool = True
    temperature: float = 0.9
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.05
    seed: int = 1234

    @classmethod
    def from_settings(cls, s) -> "GenerationOptions":
        return cls(s.max_new_tokens, s.do_sample, s.temperature, s.top_k, s.top_p, s.repetition_penalty, s.seed)

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the qwen_tts generate_* calls (talker and sub-talker alike)."""
        return dict(
            max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            repetition_penalty=self.repetition_penalty,
            subtalker_dosample=self.do_sample,
            subtalker_temperature=self.temperature,
            subtalker_top_k=self.top_k,
            subtalker_top_p=self.top_p,
        )


@dataclass(frozen=True)
class Narrator:
    """Who speaks a render: a built-in speaker (preset) or a cloned reference clip (clone).

    Designed voices narrate as clones of their saved reference clip and its known text.
    """

    kind: str  # PRESET or CLONE
    speaker: str = ""
    instruct: str = ""
    ref_audio: str = ""  # path to the reference wav
    ref_text: str = ""
    x_vector_only: bool = False
    name: str = ""

    @property
    def job(self) -> str:
        return PRESET if self.kind == PRESET else CLONE

    def identity(self) -> dict[str, Any]:
        """What about this narrator changes the audio (for cache keys)."""
        d = {"kind": self.kind, "speaker": self.speaker.lower(), "instruct": self.instruct,
             "ref_text": self.ref_text, "x_vector_only": self.x_vector_only}
        if self.ref_audio:
            d["ref_audio_sha1"] = file_sha1(self.ref_audio)
        return d


@dataclass
class LoadedModel:
    job: str
    source: str
    model: Any  # qwen_tts.Qwen3TTSModel
    engine: Any = None  # audiobook.engine.FastEngine over this model, built on first fast call
    session: Any = None  # audiobook.stream.Session over ``engine``, kept across renders


@dataclass
class TTS:
    """Owns the one resident Qwen3-TTS model and turns lists of texts into lists of wavs.

    ``settings`` is an ``audiobook.settings.Settings``. Models load lazily on first use and
    switching jobs unloads the previous model to free memory.
    """

    settings: Any
    loaded: LoadedModel | None = None
    lock: ModelLock = field(default_factory=ModelLock, repr=False)  # see ModelLock: every model user takes it
    # Called with (job, source) after each load; lets tests and the status line observe loads.
    on_load: Callable[[str, str], None] | None = None
    _engine_failed: bool = field(default=False, repr=False)
    _hook: threading.local = field(default_factory=threading.local, repr=False)

    # ---- device and loading ---------------------------------------------------------

    def device(self) -> str:
        import torch

        wanted = self.settings.device
        if wanted == "cuda" and not torch.cuda.is_available():
            raise AudiobookError("The device setting is 'cuda' but no CUDA GPU is available; choose 'auto' or 'cpu'.")
        if wanted == "auto":
            return "cuda:0" if torch.cuda.is_available() else "cpu"
        return "cuda:0" if wanted == "cuda" else "cpu"

    def dtype(self):
        import torch

        from .precision import check_dtype

        if self.settings.dtype != "auto":
            check_dtype(self.settings.dtype, self.device())
            # int8: the model loads in float32; the fast engine's decode step reads int8 weights.
            return torch.float32 if self.settings.dtype == "int8" else getattr(torch, self.settings.dtype)
        device = self.device()
        if device.startswith("cuda"):
            major, _ = torch.cuda.get_device_capability(0)
            return torch.bfloat16 if major >= 8 else torch.float16
        return torch.float32

    def attention(self) -> str:
        mode = self.settings.attention_mode
        if mode == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
            raise AudiobookError("Attention 'flash_attention_2' needs the flash-attn package, which is not installed; use 'sdpa'.")
        return mode

    def exclusive(self, what: str = "a check of this computer"):
        """Hold the one model lock for ``what`` (``with tts.exclusive():``): no other caller in between;
        refused with a sentence while another caller (a render) holds it."""
        return self.lock.hold(what)

    def model(self, job: str):
        """The qwen_tts model for ``job``, loading it (and unloading any other) when needed.

        Takes the model lock: while another thread holds it (a render), this raises AudiobookError.
        """
        with self.lock.hold("loading a model"):
            source = resolve_checkpoint(job, self.settings.model_size, self.settings.models_dir)
            if not Path(source).is_dir():
                # Never a silent multi-gigabyte download: the cached snapshot, or a sentence naming the download.
                from .models import require

                source = require(checkpoint_name(job, self.settings.model_size), self.settings.models_dir or None).path
            if self.loaded and self.loaded.job == job and self.loaded.source == source:
                return self.loaded.model
            self.unload()
            model = self._load(job, source)
            self.loaded = LoadedModel(job, source, model)
            if self.on_load:
                self.on_load(job, source)
            return model

    def _load(self, job: str, source: str):
        import torch
        from qwen_tts import Qwen3TTSModel

        log.info("Loading %s on %s", source, self.device())
        kwargs = dict(device_map=self.device(), dtype=self.dtype(), attn_implementation=self.attention())
        try:
            model = Qwen3TTSModel.from_pretrained(source, **kwargs)
        except AudiobookError:
            raise
        except Exception as e:
            release_accelerator_memory()
            log.info("Loading %s failed", source, exc_info=True)
            raise AudiobookError(load_error_message(e, job, self.settings.model_size, source)) from None
        got = getattr(model.model, "tts_model_type", None)
        if got != _JOB_MODEL_TYPE[job]:
            raise AudiobookError(f"The model at {source} is a '{got}' model, but {job} needs a '{_JOB_MODEL_TYPE[job]}' model.")
        torch.set_grad_enabled(False)
        return model

    def unload(self) -> None:
        with self.lock.hold("unloading the model"):
            if self.loaded is None:
                return
            self.loaded = None
            release_accelerator_memory()

    def status(self) -> dict[str, Any]:
        """Device, loaded model and GPU memory, for the status line."""
        import torch

        info: dict[str, Any] = {"device": self.device(), "model": self.loaded.source if self.loaded else None}
        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            info["gpu_name"] = torch.cuda.get_device_name(0)
            info["gpu_used_mb"] = (total - free) / 2**20
            info["gpu_total_mb"] = total / 2**20
        return info

    # ---- what the models offer --------------------------------------------------------

    def speakers(self) -> list[str]:
        """Built-in speakers, read from the checkpoint's config without loading (or downloading) the model."""
        source = resolve_checkpoint(PRESET, self.settings.model_size, self.settings.models_dir)
        if self.loaded and self.loaded.source == source:
            return sorted(str(s).lower() for s in (self.loaded.model.get_supported_speakers() or []))
        config = Path(source) / "config.json" if Path(source).is_dir() else _cached_hub_file(source, "config.json")
        listed = speakers_in_config(config) if config else []
        # Not downloaded yet: the released checkpoints' speakers, so the page never starts a 4 GB download.
        return listed or list(RELEASED_SPEAKERS)

    def supports_instruct(self) -> bool:
        """Built-in speakers take a style instruction only on the 1.7B CustomVoice model."""
        return self.settings.model_size == "1.7B"

    def check_instruct(self, instruct: str) -> None:
        """Refuse a style instruction that the model would silently drop (the 0.6B built-in speakers)."""
        if instruct and instruct.strip() and not self.supports_instruct():
            raise AudiobookError(
                f"The {self.settings.model_size} built-in speakers cannot follow a style instruction; "
                "leave the instruction empty or switch the model size to 1.7B in Advanced Settings."
            )

    # ---- generation -------------------------------------------------------------------

    def uses_fast_engine(self, opts: GenerationOptions | None = None) -> bool:
        """True when generation runs on ``audiobook.engine`` (settings 'fast' or 'auto').

        With greedy decoding both loops give identical codes (tests/test_engine.py); with
        sampling the engine draws from the same distribution. 'auto' falls back to qwen_tts's
        own loop for the rest of the session if the engine ever fails on this machine.
        """
        mode = getattr(self.settings, "engine", "qwen_tts")
        return mode == "fast" or (mode == "auto" and not self._engine_failed)

    def _run(self, model, opts: GenerationOptions, call: Callable[[], Any], slots: int | None = None) -> Any:
        """Run one qwen_tts ``generate_*`` call, on the fast engine when the settings allow.

        ``slots`` is how many items the engine decodes at once (default: the batch size); the
        call may hold more texts than that: a slot whose item ends takes the next one.
        """
        hook = getattr(self._hook, "fn", None)
        if hook is not None:  # capture or decode_codes: this thread intercepts the call
            return hook(model, call)
        if not self.uses_fast_engine(opts):
            return call()
        from .engine import FastEngine

        slots = max(1, int(slots or self.settings.batch_size))
        with self.lock.hold("speech generation"):  # the engine's caches and graphs serve one call at a time
            loaded = self.loaded
            try:
                int8 = self.settings.dtype == "int8"
                if loaded is None or loaded.model is not model:
                    return FastEngine(model.model, slots=slots, int8=int8).generate_wavs(call)
                loaded.session = None  # a one-call run replaces the engine's state
                if loaded.engine is None or loaded.engine.slots != slots or loaded.engine.int8 != int8:
                    loaded.engine = None  # free the old caches before the new ones are made
                    loaded.engine = FastEngine(model.model, slots=slots, int8=int8)
                return loaded.engine.generate_wavs(call)
            except Exception as e:
                if is_out_of_memory(e) or self.settings.engine == "fast":
                    raise
                log.warning("The fast engine failed (%s); using qwen_tts's own generation from now on.", e)
                self._engine_failed = True
                if loaded is not None:
                    loaded.engine = None
                release_accelerator_memory()
        return call()

    # ---- the stream: prompts for the engine session, audio from its codes -------------------

    @contextmanager
    def _intercepted(self, fn):
        self._hook.fn = fn
        try:
            yield
        finally:
            self._hook.fn = None

    def capture(self, narrator, texts: list[str], language: str | None, opts: GenerationOptions, prompt=None):
        """``(model, prompts, sampling)`` that ``narrate`` with these arguments would generate from, built by
        qwen_tts's own code; nothing is generated. ``narrator`` and ``prompt`` as for ``narrate``."""
        from .qwen_prompts import Captured, capture_prompts

        box: dict[str, Any] = {}

        def grab(model, call):
            def generate(**inputs):
                box["inputs"] = inputs
                raise Captured

            with _generate_on_this_thread(model.model, generate):
                try:
                    call()
                except Captured:
                    pass
            box["model"] = model
            raise Captured

        with self._intercepted(grab):
            try:
                self.narrate(narrator, texts, language, opts, prompt=prompt)
            except Captured:
                pass
        prompts, sampling = capture_prompts(box["model"].model, box["inputs"])
        return box["model"], prompts, sampling

    def decode_codes(self, narrator, texts: list[str], language: str | None, opts: GenerationOptions, codes: list,
                     prompt=None) -> list[np.ndarray]:
        """The wavs of generated ``codes`` (one ``[frames, 16]`` tensor per text), exactly as ``narrate`` decodes
        them (a clone's reference codes go in front and are cut off again)."""
        def replay(model, call):
            with _generate_on_this_thread(model.model, lambda **kw: (list(codes), [None] * len(codes))):
                return call()

        with self._intercepted(replay):
            return self.narrate(narrator, texts, language, opts, prompt=prompt)

    def session(self, model, sampling, slots: int):
        """The engine session of the loaded ``model`` (kept while its slot count and sampling rules stay)."""
        from .engine import FastEngine
        from .stream import Session

        loaded = self.loaded
        int8 = self.settings.dtype == "int8"
        if loaded is None or loaded.model is not model:
            return Session(FastEngine(model.model, slots=slots, int8=int8), sampling)
        old = loaded.session
        if old is None or old.slots != slots or old.sampling != sampling or old.engine.int8 != int8:
            loaded.session = loaded.engine = None  # free the old caches before the new ones are made
            loaded.engine = FastEngine(model.model, slots=slots, int8=int8)
            loaded.session = Session(loaded.engine, sampling)
        loaded.session.drop_waiting()
        loaded.session.drop_in_flight()
        return loaded.session

    def _lang(self, model, language: str | None, n: int) -> list[str]:
        return [language_name(language, model.get_supported_languages())] * n

    @holding_model
    def design(self, texts: list[str], instruct: str, language: str | None, opts: GenerationOptions,
               slots: int | None = None) -> list[np.ndarray]:
        """Speak ``texts`` in a voice described by ``instruct`` (VoiceDesign model)."""
        model = self.model(DESIGN)
        _seed(opts.seed)
        wavs, _ = self._run(model, opts, lambda: model.generate_voice_design(
            text=list(texts), instruct=[instruct] * len(texts), language=self._lang(model, language, len(texts)),
            **opts.generate_kwargs(),
        ), slots)
        return [np.asarray(w, dtype=np.float32) for w in wavs]

    @holding_model
    def clone_prompt(self, ref_audio: str | tuple, ref_text: str = "", x_vector_only: bool = False):
        """The Base model's clone prompt (speaker embedding, and reference codes in ICL mode)."""
        model = self.model(CLONE)
        if not x_vector_only and not ref_text.strip():
            raise AudiobookError("Cloning with the reference clip's words needs its transcript; type it, or turn on x-vector-only mode.")
        items = model.create_voice_clone_prompt(ref_audio=ref_audio, ref_text=ref_text or None, x_vector_only_mode=x_vector_only)
        return items[0]

    def cached_clone_prompt(self, narrator: Narrator, cache: Path | None):
        """The clone prompt for ``narrator``: read from ``cache`` when it was made from the same clip,
        text and checkpoint, else computed (and written to ``cache`` when one is given)."""
        if not Path(narrator.ref_audio).is_file():
            raise AudiobookError(f"The reference clip {narrator.ref_audio} of voice '{narrator.name or '?'}' is missing.")
        key = None
        if cache is not None:
            source = resolve_checkpoint(CLONE, self.settings.model_size, self.settings.models_dir)
            key = clone_prompt_key(narrator.ref_audio, narrator.ref_text, narrator.x_vector_only, source)
            prompt = load_clone_prompt(cache, key)
            if prompt is not None:
                log.info("Using the cached clone prompt %s", cache)
                return prompt
        wav = load_clip(narrator.ref_audio)  # decoded here: no first-call librosa delay, any format
        prompt = self.clone_prompt((wav, SAMPLE_RATE), narrator.ref_text, narrator.x_vector_only)
        if cache is not None:
            save_clone_prompt(cache, key, prompt)
        return prompt

    @holding_model
    def clone(self, texts: list[str], prompt, language: str | None, opts: GenerationOptions,
              slots: int | None = None) -> list[np.ndarray]:
        """Speak ``texts`` in a cloned voice; ``prompt`` comes from ``clone_prompt`` and is reused.

        ``prompt`` may also be a list, one prompt per text: a cast's voices in one call."""
        model = self.model(CLONE)
        _seed(opts.seed)
        prompts = list(prompt) if isinstance(prompt, list) else [prompt] * len(texts)
        wavs, _ = self._run(model, opts, lambda: model.generate_voice_clone(
            text=list(texts), language=self._lang(model, language, len(texts)),
            voice_clone_prompt=prompts, non_streaming_mode=True, **opts.generate_kwargs(),
        ), slots)
        return [np.asarray(w, dtype=np.float32) for w in wavs]

    @holding_model
    def preset(self, texts: list[str], speaker: str | list[str], instruct: str | list[str], language: str | None, opts: GenerationOptions,
               slots: int | None = None) -> list[np.ndarray]:
        """Speak ``texts`` with a built-in CustomVoice speaker.

        ``speaker`` and ``instruct`` may also be lists, one per text: a cast's voices in one call."""
        instructs = list(instruct) if isinstance(instruct, list) else [instruct] * len(texts)
        speakers = list(speaker) if isinstance(speaker, list) else [speaker] * len(texts)
        for line in set(instructs):
            self.check_instruct(line)
        model = self.model(PRESET)
        known = model.get_supported_speakers() or []
        for name in set(speakers):
            if known and name.lower() not in known:
                raise AudiobookError(f"There is no built-in speaker called '{name}'; choose one of: {', '.join(sorted(known))}.")
        _seed(opts.seed)
        wavs, _ = self._run(model, opts, lambda: model.generate_custom_voice(
            text=list(texts), speaker=speaker if isinstance(speaker, str) else speakers,
            language=self._lang(model, language, len(texts)),
            instruct=(instruct or None) if isinstance(instruct, str) else [i or "" for i in instructs], **opts.generate_kwargs(),
        ), slots)
        return [np.asarray(w, dtype=np.float32) for w in wavs]

    @holding_model
    def narrate(self, narrator: Narrator | list[Narrator], texts: list[str], language: str | None, opts: GenerationOptions,
                prompt=None, slots: int | None = None) -> list[np.ndarray]:
        """One batched call: one wav per text, in input order. ``prompt`` is the cached clone prompt;
        ``slots`` caps how many texts the fast engine decodes at once.

        ``narrator`` may be a list, one per text, all of one kind (built-in speakers, each with its
        own instruction, or clones, with ``prompt`` a list of their prompts): a cast in one call."""
        if isinstance(narrator, list):
            if {n.job for n in narrator} != {narrator[0].job} or len(narrator) != len(texts):
                raise ValueError("one call takes one narrator per text, all built-in speakers or all clones")
            if narrator[0].kind == PRESET:
                return self.preset(texts, [n.speaker for n in narrator], [n.instruct for n in narrator], language, opts, slots)
            return self.clone(texts, list(prompt), language, opts, slots)
        if narrator.kind == PRESET:
            return self.preset(texts, narrator.speaker, narrator.instruct, language, opts, slots)
        if prompt is None:
            prompt = self.clone_prompt(narrator.ref_audio, narrator.ref_text, narrator.x_vector_only)
        return self.clone(texts, prompt, language, opts, slots)


class _PerThreadGenerate:
    """A model's ``generate`` that a thread may shadow for itself alone (``_generate_on_this_thread``)."""

    def __init__(self, qmodel) -> None:
        self.qmodel, self.local = qmodel, threading.local()

    def __call__(self, *args, **kwargs):
        fn = getattr(self.local, "fn", None)
        return fn(*args, **kwargs) if fn is not None else type(self.qmodel).generate(self.qmodel, *args, **kwargs)


_PER_THREAD_LOCK = threading.Lock()


@contextmanager
def _generate_on_this_thread(qmodel, fn):
    """Shadow ``qmodel.generate`` with ``fn`` for the calling thread only: a render's pipeline captures prompts
    on one thread while it decodes codes on another, through the same model (an instance-wide shadow let one
    thread's call run the other's ``generate``)."""
    with _PER_THREAD_LOCK:
        shadow = vars(qmodel).get("generate")
        if not isinstance(shadow, _PerThreadGenerate):
            shadow = qmodel.generate = _PerThreadGenerate(qmodel)
    before = getattr(shadow.local, "fn", None)
    shadow.local.fn = fn
    try:
        yield
    finally:
        shadow.local.fn = before


def release_accelerator_memory() -> None:
    """Return cached GPU memory to the driver (after an out-of-memory error or an unload)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort only
        pass


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(int(seed))
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(int(seed))
