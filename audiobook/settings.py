"""``user_settings.json`` as a typed object: defaults, validation with clear errors, atomic save."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import AudiobookError
from .files import atomic_write_text

SETTINGS_FILE = "user_settings.json"

ATTENTION_MODES = ("sdpa", "eager", "flash_attention_2")
MODEL_SIZES = ("1.7B", "0.6B")
DEVICES = ("auto", "cuda", "cpu")
DTYPES = ("auto", "bfloat16", "float16", "float32", "int8")
OUTPUT_FORMATS = ("wav", "flac", "mp3")
BATCH_ORDERS = ("length", "book")
ENGINES = ("auto", "fast", "qwen_tts")
VERIFY_MODES = ("off", "auto", "on")
BATCH_SLIDER_MAX = 20  # the page's batch size slider ends here unless the doctor measured room for more


def _num(lo: float, hi: float, help: str = "") -> dict:
    return {"range": (lo, hi), "help": help}


def _choice(options: tuple, help: str = "") -> dict:
    return {"choices": options, "help": help}


@dataclass
class Settings:
    """Every user setting, with its default. Field metadata holds the allowed values."""

    # Generation
    batch_size: int = field(default=5, metadata=_num(1, 64, "Chunks sent to the model at once. If you run out of GPU memory, lower this."))
    attention_mode: str = field(default="sdpa", metadata=_choice(ATTENTION_MODES, "Attention kernel used by the model."))
    max_new_tokens: int = field(default=4096, metadata=_num(64, 8192, "Longest a chunk may run, in 12.5 Hz frames (4096 is about 5.5 minutes)."))
    model_size: str = field(default="1.7B", metadata=_choice(MODEL_SIZES, "1.7B sounds best; 0.6B is faster and smaller."))
    models_dir: str = field(default="", metadata={"folder": True, "help": "Folder holding downloaded checkpoints (empty: use the Hugging Face cache)."})
    device: str = field(default="auto", metadata=_choice(DEVICES, "auto picks CUDA when present."))
    dtype: str = field(default="auto", metadata=_choice(DTYPES, "auto: bfloat16 on recent GPUs, float16 on older ones, float32 on CPU. On a CPU, bfloat16 (where the CPU has bfloat16 instructions) and int8 (int8 weights in the decode step) are faster; the doctor measures each."))
    engine: str = field(default="auto", metadata=_choice(ENGINES, "auto: our continuous-batching engine, falling back to qwen_tts's own generate if it fails; fast: the engine only; qwen_tts: the library's own generate."))
    batch_order: str = field(default="length", metadata=_choice(BATCH_ORDERS, "length: batch chunks of similar length together; book: in reading order."))
    language: str = field(default="auto", metadata={"help": "Language of the narration (auto: from the book)."})
    workers: int = field(default=0, metadata=_num(0, 64, "0: render in this process. N: N Ray workers, each with its own model, on one GPU each (or the CPU without GPUs)."))
    ray_address: str = field(default="", metadata={"help": "A running Ray cluster to join with workers, e.g. 10.0.0.5:6379 (empty: start a local Ray for each render)."})
    # Text
    chunk_chars: int = field(default=500, metadata=_num(50, 2000, "Longest chunk of text sent to the model, in characters."))
    pronunciations_file: str = field(default="", metadata={"folder": True, "help": "A JSON file of whole-word replacements, e.g. {\"Hermione\": \"Her-my-oh-nee\"} (empty: none)."})
    # Sampling
    do_sample: bool = field(default=True, metadata={"help": "Sample (natural) or greedy (repeatable)."})
    temperature: float = field(default=0.9, metadata=_num(0.05, 2.0))
    top_k: int = field(default=50, metadata=_num(0, 1000))
    top_p: float = field(default=1.0, metadata=_num(0.05, 1.0))
    repetition_penalty: float = field(default=1.05, metadata=_num(1.0, 2.0))
    seed: int = field(default=1234, metadata=_num(0, 2**31 - 1))
    # Quality checks
    max_retries: int = field(default=2, metadata=_num(0, 10, "Times a chunk that fails the checks is generated again."))
    runaway_margin_s: float = field(default=2.0, metadata=_num(0.0, 60.0))
    duration_outlier_factor: float = field(default=3.0, metadata=_num(1.5, 20.0))
    verify: str = field(default="auto", metadata=_choice(VERIFY_MODES, "Transcribe every take with Whisper and compare it with its text and voice; auto: on when a CUDA GPU is present."))
    verify_model: str = field(default="auto", metadata={"help": "Whisper checkpoint that checks takes (auto: openai/whisper-large-v3-turbo on a GPU, openai/whisper-small on a CPU); a folder of that name in the models folder is used first."})
    max_wer: float = field(default=0.3, metadata=_num(0.0, 2.0, "Highest word error rate a take may have before it is taken again."))
    min_voice_similarity: float = field(default=0.5, metadata=_num(0.0, 1.0, "Lowest similarity of a take's voice to the narrator's before it is taken again."))
    word_timings: bool = field(default=False, metadata={"help": "With verify on, Whisper also times every word (karaoke subtitles, word highlighting in the read-along player); it costs Whisper time."})
    # Pauses (milliseconds)
    pause_chunk_ms: int = field(default=250, metadata=_num(0, 5000))
    pause_paragraph_ms: int = field(default=600, metadata=_num(0, 5000))
    pause_title_ms: int = field(default=1000, metadata=_num(0, 10000))
    pause_chapter_ms: int = field(default=2000, metadata=_num(0, 10000))
    pause_speaker_ms: int = field(default=400, metadata=_num(0, 5000, "Pause where another speaker of the cast takes over inside a paragraph."))
    # Cast: an optional language model that labels who speaks (any OpenAI-compatible server)
    llm_url: str = field(default="", metadata={"help": "OpenAI-compatible endpoint that labels speakers, e.g. http://127.0.0.1:11434/v1 (Ollama) or http://127.0.0.1:1234/v1 (LM Studio); empty: none."})
    llm_model: str = field(default="", metadata={"help": "The model name that endpoint serves, e.g. qwen2.5:7b-instruct."})
    llm_context_tokens: int = field(default=8192, metadata=_num(1024, 1048576, "The language model's context in tokens: a chapter is sent in pieces that fit it, with room for the answer."))
    llm_timeout_s: float = field(default=120.0, metadata=_num(5.0, 1800.0, "Seconds to wait for one answer of the language model."))
    # Output
    loudness_lufs: float = field(default=-18.0, metadata=_num(-40.0, -5.0))
    true_peak_db: float = field(default=-1.5, metadata=_num(-10.0, 0.0))
    chapter_format: str = field(default="wav", metadata=_choice(OUTPUT_FORMATS))
    make_m4b: bool = field(default=True)
    make_book_mp3: bool = field(default=False)
    make_readalong: bool = field(default=False, metadata={"help": "Also write '<title> (read-along).epub': the book's text with the narration, highlighted sentence by sentence (EPUB 3 media overlays)."})
    output_dir: str = field(default="output", metadata={"folder": True})
    voices_dir: str = field(default="voices", metadata={"folder": True})

    # ---- validation -------------------------------------------------------------

    def validate(self) -> "Settings":
        """Raise AudiobookError naming the first bad key; return self when all are good."""
        for f in fields(self):
            value = getattr(self, f.name)
            kind = _kind(f)
            if kind is bool:
                if not isinstance(value, bool):
                    raise AudiobookError(f"Setting '{f.name}' must be true or false, not {value!r}.")
                continue
            if kind is int:
                if isinstance(value, bool) or not isinstance(value, int):
                    if isinstance(value, float) and value.is_integer():
                        value = int(value)
                        setattr(self, f.name, value)
                    else:
                        raise AudiobookError(f"Setting '{f.name}' must be a whole number, not {value!r}.")
            elif kind is float:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise AudiobookError(f"Setting '{f.name}' must be a number, not {value!r}.")
                value = float(value)
                setattr(self, f.name, value)
            elif kind is str and not isinstance(value, str):
                raise AudiobookError(f"Setting '{f.name}' must be text, not {value!r}.")
            if "range" in f.metadata:
                lo, hi = f.metadata["range"]
                if not lo <= value <= hi:
                    raise AudiobookError(f"Setting '{f.name}' must be between {_fmt(lo)} and {_fmt(hi)}, not {_fmt(value)}.")
            if "choices" in f.metadata and value not in f.metadata["choices"]:
                options = ", ".join(f.metadata["choices"])
                raise AudiobookError(f"Setting '{f.name}' must be one of {options}, not {value!r}.")
        return self

    # ---- conversion -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Settings":
        """Build from a dict (unknown keys are an error, missing keys take defaults)."""
        if not isinstance(data, dict):
            raise AudiobookError("Settings must be a JSON object of key: value pairs.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AudiobookError(f"Unknown setting '{unknown[0]}'; known settings are: {', '.join(sorted(known))}.")
        return cls(**data).validate()

    def updated(self, **changes: Any) -> "Settings":
        """A validated copy with some values changed."""
        return Settings.from_dict({**self.to_dict(), **changes})

    @staticmethod
    def kind(name: str) -> type:
        """The Python type of a setting's value: int, float, bool or str."""
        for f in fields(Settings):
            if f.name == name:
                return _kind(f)
        raise KeyError(name)


# Settings that name a place on this computer: a page served to the network cannot change them.
FOLDER_SETTINGS = tuple(f.name for f in fields(Settings) if f.metadata.get("folder"))


def _kind(f: dataclasses.Field) -> type:
    return {"int": int, "float": float, "bool": bool, "str": str}.get(str(f.type), type(f.default))


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def load_settings(path: str | os.PathLike = SETTINGS_FILE) -> Settings:
    """Read settings from ``path``; a missing file means defaults. Broken files raise, never get replaced."""
    p = Path(path)
    if not p.exists():
        return Settings()
    try:
        data = json.loads(p.read_text(encoding="utf-8") or "{}")
    except json.JSONDecodeError as e:
        raise AudiobookError(f"{p.name} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); fix or delete it.") from None
    except OSError as e:
        raise AudiobookError(f"Could not read {p}: {e.strerror}.") from None
    try:
        return Settings.from_dict(data)
    except TypeError as e:  # pragma: no cover - from_dict checks keys first
        raise AudiobookError(f"{p.name} has a bad value: {e}.") from None
    except AudiobookError as e:
        raise AudiobookError(f"{p.name}: {e}") from None


def save_settings(settings: Settings, path: str | os.PathLike = SETTINGS_FILE) -> Path:
    """Validate and write settings atomically (temp file, fsync, rename)."""
    settings.validate()
    p = Path(path)
    atomic_write_text(p, json.dumps(settings.to_dict(), indent=2) + "\n")
    return p
