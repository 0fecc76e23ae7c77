"""Check this computer: device, checkpoints, the fast engine against qwen_tts, speed, and a batch size that fits.

``run_doctor`` returns a :class:`DoctorReport`; its JSON is what a user attaches to a bug report.
The live check runs on the user's own built-in-speaker checkpoint:

- the fast engine against qwen_tts's own ``generate`` with greedy decoding on two short texts:
  in float32 the codes must be equal; in bf16/fp16 greedy codes drift with the batch shape even
  inside qwen_tts, so qwen_tts's codes are fed through the engine (teacher-forced) and 99 % of its
  picks must agree; the report also says for how many leading frames the free-running codes agree;
- x real time (seconds of audio per second) at batch 1 and at the chosen batch size, with the
  user's own sampling settings;
- the memory one more batch slot costs, measured: the fast engine runs items forced to an exact
  length at one slot and at several, at two lengths; the difference per slot, as a line in the KV
  length, is extrapolated to ``max_new_tokens``. On a GPU it is the CUDA allocator's peak and free
  memory; on a CPU the process's peak RSS and the memory the system has available, which a CPU
  rarely runs out of: there, the speed numbers say more about the batch size to use.
"""

from __future__ import annotations

import ctypes
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .files import SAMPLE_RATE
from .tts import PRESET, TTS, GenerationOptions, checkpoint_name, language_name

TEXTS = (
    "The lighthouse stood at the edge of the world.",
    "Every night its keeper climbed the stairs and lit the lamp.",
)
SPEED_TEXTS = (
    "The storm came in from the west in the late afternoon.",
    "He trimmed the wick, wound the clockwork, and sat down to wait.",
    "By morning the sea was flat and bright, as if nothing had happened.",
    "A fishing boat rounded the point, low in the water with its catch.",
)
COMPARE_FRAMES = {"cuda": 64, "cpu": 48}  # frames per text in the engine comparison
SPEED_FRAMES = {"cuda": 160, "cpu": 64}  # most frames per text in the speed runs
MEMORY_FRAMES = {"cuda": (16, 112), "cpu": (8, 40)}  # forced lengths of the memory runs
MEMORY_SLOTS = 4
MAX_BATCH = 64  # the engine's most slots (GPU): the batch_size setting's upper limit
MAX_BATCH_CPU = 20  # on a CPU more slots than this only add latency
MEMORY_HEADROOM = 0.9  # leave a tenth of free memory for the allocator and audio decoding
FRAME_RATE = 12.5


@dataclass
class DoctorReport:
    """What ``doctor`` found; ``to_dict`` is the JSON."""

    device: str = ""
    gpu_name: str | None = None
    gpu_free_bytes: int | None = None
    gpu_total_bytes: int | None = None
    memory_available_bytes: int | None = None  # system RAM a process can still get
    dtype: str = ""
    attention: str = ""
    engine: str = ""  # the engine setting when the check ran
    torch: str = ""
    cpu: str = ""
    checkpoints: list[dict] = field(default_factory=list)
    live_check_checkpoint: str | None = None
    engine_matches_reference: bool | None = None
    frames_compared: list[int] = field(default_factory=list)  # reference frames per text
    frames_equal: list[int] = field(default_factory=list)  # leading frames where both loops agree
    comparison: str = ""  # "codes" (float32: greedy codes equal) or "teacher-forced" (bf16/fp16)
    top1_agreement: float | None = None  # teacher-forced: share of the engine's picks equal to qwen_tts's
    max_logit_diff: float | None = None  # teacher-forced: largest first-codebook logit difference
    x_real_time: dict[str, float] = field(default_factory=dict)  # {"batch_1": .., "batch_N": ..}
    x_real_time_by_dtype: dict[str, float] = field(default_factory=dict)  # CPU: each dtype it runs, at the batch size
    batch_size: int = 0
    memory_kind: str = ""  # "cuda allocator" or "process RSS"
    per_slot_bytes: int | None = None  # one more slot at max_new_tokens
    per_slot_bytes_measured: dict[str, int] = field(default_factory=dict)  # per slot at each forced length
    max_new_tokens: int = 0
    suggested_batch_size: int | None = None
    engine_switched: bool = False
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ok(self) -> bool:
        return self.engine_matches_reference is not False

    def summary(self) -> str:
        """A few lines for the page and the command line."""
        from .models import human_bytes

        lines = [f"Device: {self.device}" + (f" ({self.gpu_name})" if self.gpu_name else "") + f", {self.dtype}, "
                 f"attention {self.attention}, engine setting {self.engine}."]
        if self.gpu_total_bytes:
            lines.append(f"GPU memory: {human_bytes(self.gpu_free_bytes or 0)} free of {human_bytes(self.gpu_total_bytes)}.")
        elif self.memory_available_bytes:
            lines.append(f"Memory available: {human_bytes(self.memory_available_bytes)}.")
        for c in self.checkpoints:
            lines.append(f"  {c['name']}: {'on disk' if c['present'] else 'not downloaded'}"
                         + (f", {human_bytes(c['bytes'])} at {c['path']}" if c["present"] else ""))
        if self.live_check_checkpoint:
            verdict = {True: "agrees with", False: "DISAGREES with", None: "was not compared with"}[self.engine_matches_reference]
            frames = ", ".join(f"{e} of {n}" for e, n in zip(self.frames_equal, self.frames_compared))
            lines.append(f"Live check on {self.live_check_checkpoint}: the fast engine {verdict} qwen_tts "
                         f"(frames equal: {frames}).")
            if self.x_real_time:
                speed = ", ".join(f"{v:.2f}x at {k.replace('_', ' ')}" for k, v in self.x_real_time.items())
                lines.append(f"Speed (x real time): {speed}.")
            if self.x_real_time_by_dtype:
                speed = ", ".join(f"{v:.2f}x in {k}" for k, v in self.x_real_time_by_dtype.items())
                lines.append(f"Speed on this CPU by dtype setting (x real time at batch {self.batch_size}): {speed}.")
            if self.per_slot_bytes:
                lines.append(f"One batch slot at max_new_tokens {self.max_new_tokens} costs "
                             f"{human_bytes(self.per_slot_bytes)} ({self.memory_kind}).")
            if self.suggested_batch_size:
                lines.append(f"Suggested batch size: {self.suggested_batch_size} (now {self.batch_size}).")
        lines += self.notes
        return "\n".join(lines)


# ---- measuring memory --------------------------------------------------------------------------


class PeakMemory:
    """Peak memory of a block above its start: the CUDA allocator's on a GPU, the process's RSS on a CPU."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.bytes = 0

    def __enter__(self):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            trim_heap()
            reset_peak_rss()
            self.base = status_kb("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = status_kb("VmHWM") * 1024
        self.bytes = max(0, peak - self.base)


def trim_heap() -> None:
    """Hand freed heap pages back to the system, so an earlier run's leftovers don't hide this one's peak."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def reset_peak_rss() -> None:
    """Linux resets the peak RSS (VmHWM) to the current RSS when 5 is written to clear_refs."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # pragma: no cover - without it the peak is the whole process's
        pass


def status_kb(key: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:  # pragma: no cover - not Linux
        pass
    return 0


def available_ram() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return None


def cpu_name() -> str:
    import os

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:  # pragma: no cover
        pass
    return f"{name}, {os.cpu_count()} cores"


# ---- the checks ---------------------------------------------------------------------------------


def system_info(tts: TTS, report: DoctorReport) -> None:
    """Device, GPU, memory, dtype and attention as the app would use them."""
    import torch

    report.device = tts.device()
    report.dtype = "int8" if tts.settings.dtype == "int8" else str(tts.dtype()).replace("torch.", "")
    report.attention = tts.attention()
    report.engine = tts.settings.engine
    report.torch = torch.__version__
    report.cpu = cpu_name()
    report.memory_available_bytes = available_ram()
    if report.device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info()
        report.gpu_name = torch.cuda.get_device_name(0)
        report.gpu_free_bytes, report.gpu_total_bytes = int(free), int(total)


def live_checkpoint(tts: TTS) -> str | None:
    """The built-in-speaker checkpoint to run the live check on: the user's size first, then the other."""
    from .models import checkpoint

    sizes = [tts.settings.model_size] + [s for s in ("1.7B", "0.6B") if s != tts.settings.model_size]
    for size in sizes:
        if checkpoint(checkpoint_name(PRESET, size), tts.settings.models_dir or None).present:
            return size
    return None


def _greedy_codes(tts: TTS, model, speaker: str, frames: int):
    """qwen_tts's greedy codes for ``TEXTS`` and the ``generate`` arguments it used."""
    seen: dict[str, Any] = {}
    real = model.model.generate

    def spy(**kw):
        codes, hidden = real(**kw)
        seen["codes"], seen["inputs"] = [c.clone() for c in codes], kw
        return codes, hidden

    opts = GenerationOptions(max_new_tokens=frames + 1, do_sample=False, repetition_penalty=1.05)
    model.model.generate = spy
    try:
        language = language_name("en", model.get_supported_languages())
        model.generate_custom_voice(text=list(TEXTS), speaker=speaker, language=[language] * len(TEXTS),
                                    **opts.generate_kwargs())
    finally:
        del model.model.generate
    return seen["codes"], seen["inputs"]


def compare_engine(tts: TTS, model, speaker: str, frames: int) -> tuple[list[int], list[int]]:
    """Greedy codes of qwen_tts and of the fast engine for ``TEXTS``: (reference frames, equal leading frames)."""
    from .engine import FastEngine, capture_prompts

    reference, inputs = _greedy_codes(tts, model, speaker, frames)
    prompts, sampling = capture_prompts(model.model, inputs)
    ours = FastEngine(model.model, slots=len(TEXTS)).generate_codes(prompts, sampling)
    compared, equal = [], []
    for ref, got in zip(reference, ours):
        n = min(len(ref), len(got))
        same = (ref[:n].cpu() == got[:n].cpu()).all(dim=1).tolist()
        agree = same.index(False) if False in same else n
        compared.append(int(len(ref)))
        equal.append(int(agree))  # all of them only when the lengths agree too
    return compared, equal


def compare_teacher_forced(model, speaker: str, frames: int, int8: bool = False):
    """Half precision or int8: qwen_tts's greedy codes fed through the engine (``agreement.compare_with_qwen_tts``)."""
    from .agreement import compare_with_qwen_tts

    language = language_name("en", model.get_supported_languages())
    opts = GenerationOptions(max_new_tokens=frames + 1, do_sample=False, repetition_penalty=1.05)
    return compare_with_qwen_tts(model.model, lambda: model.generate_custom_voice(
        text=list(TEXTS), speaker=speaker, language=[language] * len(TEXTS), **opts.generate_kwargs()), int8=int8)


TOP1_NEEDED = 0.99  # teacher-forced share of equal picks that half precision must reach


def matches(compared: list[int], equal: list[int]) -> bool:
    """float32: every frame of every text equal, lengths included (``equal`` is the leading frames that are)."""
    return all(e == c for e, c in zip(equal, compared))


def measure_speed(tts: TTS, speaker: str, batch: int, frames: int) -> float:
    """x real time of one call speaking ``batch`` texts with the user's settings (after a short warm-up)."""
    opts = replace(GenerationOptions.from_settings(tts.settings), max_new_tokens=frames)
    texts = [SPEED_TEXTS[i % len(SPEED_TEXTS)] for i in range(batch)]
    tts.preset(texts, speaker, "", "en", replace(opts, max_new_tokens=4), slots=batch)
    t0 = time.perf_counter()
    wavs = tts.preset(texts, speaker, "", "en", opts, slots=batch)
    _sync(tts)
    wall = time.perf_counter() - t0
    audio_s = sum(len(w) for w in wavs) / SAMPLE_RATE
    return round(audio_s / wall, 3) if wall > 0 else 0.0


def measure_cpu_dtypes(tts: TTS, speaker: str, batch: int, frames: int,
                       say: Callable[[str], None] = lambda line: None) -> dict[str, float]:
    """x real time on this CPU for every dtype it runs (audiobook/precision.py), at ``batch``.

    float32 and int8 share the float32 model; bfloat16 loads the checkpoint again in bfloat16.
    The model loaded when it ends is the one the user's own setting loads.
    """
    from .precision import cpu_choices

    settings = tts.settings
    speeds: dict[str, float] = {}

    def load_dtype(name: str) -> str:
        return "bfloat16" if name == "bfloat16" else "float32"

    def loaded_dtype() -> str | None:
        if tts.loaded is None:
            return None
        return str(tts.loaded.model.model.talker.codec_head.weight.dtype).replace("torch.", "")

    try:
        for name in cpu_choices():
            say(f"Measuring speed in {name}")
            if loaded_dtype() not in (None, load_dtype(name)):
                tts.unload()
            tts.settings = settings.updated(dtype=name)
            speeds[name] = measure_speed(tts, speaker, batch, frames)
    finally:
        tts.settings = settings
        if loaded_dtype() not in (None, str(tts.dtype()).replace("torch.", "")):
            tts.unload()
    return speeds


def _sync(tts: TTS) -> None:
    import torch

    if tts.device().startswith("cuda"):
        torch.cuda.synchronize()


def measure_slot_cost(tts: TTS, model, speaker: str, lengths: tuple[int, int], slots: int,
                      max_new_tokens: int) -> tuple[int | None, dict[str, int]]:
    """Bytes one more fast-engine slot needs at ``max_new_tokens``, from runs forced to exact lengths.

    Runs ``slots`` items and one item at each of two lengths; per slot = (peak(slots) - peak(1)) / (slots - 1)
    at each length; a line through the two, in KV positions, gives the cost at ``max_new_tokens``.
    Returns (bytes or None when memory did not grow with the slots, {"frames_N": bytes per slot}).
    """
    from .engine import FastEngine, capture_prompts

    _, inputs = _greedy_codes(tts, model, speaker, 2)
    prompts, sampling = capture_prompts(model.model, inputs)
    prompt = prompts[0]
    prompt_len = prompt.embeds.shape[0]
    cuda = tts.device().startswith("cuda")
    per_slot: dict[int, float] = {}
    for n in lengths:
        forced = replace(sampling, min_new_tokens=n, max_new_tokens=n + 1)  # exactly n frames each
        peaks = {}
        for k in (1, slots):
            with PeakMemory(cuda) as mem:
                engine = FastEngine(model.model, slots=k)
                engine.generate_codes([prompt] * k, forced)
                del engine
            peaks[k] = mem.bytes
        per_slot[n] = (peaks[slots] - peaks[1]) / (slots - 1)
    measured = {f"frames_{n}": int(v) for n, v in per_slot.items()}
    (n1, c1), (n2, c2) = sorted(per_slot.items())
    if c2 <= 0:
        return None, measured
    per_position = (c2 - c1) / (n2 - n1)
    if per_position <= 0:
        # Too small to see between two short runs (a CPU's RSS moves in pages): scale by KV positions instead.
        return int(c2 * (prompt_len + max_new_tokens) / (prompt_len + n2)), measured
    return int(c2 + per_position * (max_new_tokens - n2)), measured


def free_memory(tts: TTS) -> int | None:
    """Memory a render could still use with the model loaded: free GPU memory, or available RAM."""
    import torch

    if tts.device().startswith("cuda"):
        torch.cuda.empty_cache()
        return int(torch.cuda.mem_get_info()[0])
    return available_ram()


def suggest_batch_size(free: int | None, per_slot: int | None, most: int = MAX_BATCH) -> int | None:
    if not free or not per_slot or per_slot <= 0:
        return None
    return max(1, min(most, int(free * MEMORY_HEADROOM // per_slot)))


def run_doctor(tts: TTS, checkpoints: list[dict], live: bool = True,
               on_step: Callable[[str], None] | None = None) -> DoctorReport:
    """Everything the doctor reports. ``tts`` carries the user's settings; nothing is saved here.

    ``on_step`` hears a short line as each part starts (the page's progress, the CLI's log).
    The model lock is held for the live check, so no render or preview runs in between.
    """
    say = on_step or (lambda line: None)
    t0 = time.perf_counter()
    report = DoctorReport(checkpoints=checkpoints, batch_size=int(tts.settings.batch_size),
                          max_new_tokens=int(tts.settings.max_new_tokens))
    say("Looking at the device")
    system_info(tts, report)
    if not live:
        report.notes.append("The live check was skipped.")
        return report
    size = live_checkpoint(tts)
    if size is None:
        report.notes.append(
            f"No built-in-speaker checkpoint is on this computer, so the live check did not run; download "
            f"{checkpoint_name(PRESET, tts.settings.model_size)} (Models panel or `backend.py models --download`) and run it again.")
        return report
    kind = "cuda" if report.device.startswith("cuda") else "cpu"
    settings = tts.settings
    with tts.exclusive():
        try:
            if size != settings.model_size:
                tts.settings = settings.updated(model_size=size)
            model = tts.model(PRESET)
            report.live_check_checkpoint = tts.loaded.source if tts.loaded else checkpoint_name(PRESET, size)
            speaker = sorted(model.get_supported_speakers() or ["ryan"])[0]
            say("Comparing the fast engine with qwen_tts (greedy)")
            if report.dtype == "float32":
                report.comparison = "codes"
                report.frames_compared, report.frames_equal = compare_engine(tts, model, speaker, COMPARE_FRAMES[kind])
                report.engine_matches_reference = matches(report.frames_compared, report.frames_equal)
            else:
                report.comparison = "teacher-forced"
                agreement = compare_teacher_forced(model, speaker, COMPARE_FRAMES[kind], int8=report.dtype == "int8")
                report.frames_compared = list(agreement.reference_frames)
                report.frames_equal = list(agreement.equal_frames)
                report.top1_agreement = round(agreement.top1_agreement, 5)
                report.max_logit_diff = round(agreement.max_logit_diff, 4)
                report.engine_matches_reference = agreement.top1_agreement >= TOP1_NEEDED
                if report.engine_matches_reference:
                    report.notes.append(
                        f"In {report.dtype} greedy codes drift with the batch shape even inside qwen_tts, so the engine "
                        f"is judged on qwen_tts's own codes fed through it: {agreement.top1_agreement:.1%} of its picks "
                        f"agree; running freely, the first {', '.join(map(str, report.frames_equal))} frames are equal.")
            if not report.engine_matches_reference:
                report.notes.append(
                    "The fast engine's codes differ from qwen_tts's own on this computer, so the engine setting "
                    "is switched to qwen_tts (slower, but the reference); please attach this report to a bug report.")
                report.engine_switched = True
                tts.settings = tts.settings.updated(engine="qwen_tts")
            batch = max(1, int(settings.batch_size))
            say("Measuring speed at batch 1")
            report.x_real_time["batch_1"] = measure_speed(tts, speaker, 1, SPEED_FRAMES[kind])
            if batch > 1:
                say(f"Measuring speed at batch {batch}")
                report.x_real_time[f"batch_{batch}"] = measure_speed(tts, speaker, batch, SPEED_FRAMES[kind])
            if kind == "cpu" and not report.engine_switched:
                report.x_real_time_by_dtype = measure_cpu_dtypes(tts, speaker, batch, SPEED_FRAMES[kind], say)
            say("Measuring the memory of one batch slot")
            report.memory_kind = "cuda allocator" if kind == "cuda" else "process RSS"
            report.per_slot_bytes, report.per_slot_bytes_measured = measure_slot_cost(
                tts, model, speaker, MEMORY_FRAMES[kind], MEMORY_SLOTS, report.max_new_tokens)
            report.suggested_batch_size = suggest_batch_size(free_memory(tts), report.per_slot_bytes,
                                                             MAX_BATCH if kind == "cuda" else MAX_BATCH_CPU)
            if report.suggested_batch_size is None:
                report.notes.append("Memory did not grow measurably with more batch slots here, so there is "
                                    "no memory-based batch size to suggest.")
            elif kind == "cpu":
                report.notes.append(
                    "On a CPU the suggestion only says what fits in memory; speed decides: compare the x real "
                    "time at batch 1 and at your batch size.")
            if tts.settings.engine == "qwen_tts" and report.suggested_batch_size:
                report.notes.append("The suggestion is for the fast engine; qwen_tts's own loop keeps every step's "
                                    "hidden states and fits fewer chunks.")
        finally:
            tts.settings = settings  # the caller saves a switched engine setting
    report.elapsed_s = round(time.perf_counter() - t0, 1)
    return report
