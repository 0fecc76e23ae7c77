"""Render one book-like workload through every generation path and compare them honestly.

    python bench/run.py [--json OUT]          # CPU: tiny and medium random checkpoints
    python bench/run.py --gpu [--json OUT]    # GPU: full-size random checkpoints, bf16, sdpa
    python bench/run.py --sizes 0.6B          # CPU: full-size 0.6B shapes, float32, a few chunks (minutes)

Engines, all on the same chunks in one run:

- ``sequential``: qwen_tts, one chunk per call, book order;
- ``seed_design``: qwen_tts static batches of 5 in book order (the seed's design);
- ``render_bsN``: our render path's batching: length-sorted batches of N through ``TTS.narrate`` on qwen_tts;
- ``fast_bsN``: the fast engine (audiobook/engine.py), N slots, continuous batching.

Decoding is greedy on a checkpoint whose EOS row is shrunk so items stop at
different lengths; in float32 (the CPU run) greedy codes are identical in every
engine, so every engine produces the same frames and the comparison is at equal
work (checked: the ``same_lengths`` column). In bf16 (the GPU run) greedy codes
drift with the batch shape even inside qwen_tts, so lengths can differ a little;
``ratio_to_seed_design`` is therefore a throughput (frames/s) ratio, which equals
the wall-time ratio whenever the work is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audiobook.books import Chapter  # noqa: E402
from audiobook.doctor import reset_peak_rss, status_kb, trim_heap  # noqa: E402
from audiobook.batching import order_for_batches  # noqa: E402
from audiobook.settings import Settings  # noqa: E402
from audiobook.text import plan_chunks  # noqa: E402
from audiobook.tts import TTS, GenerationOptions, Narrator  # noqa: E402
from bench.models import cpu_models, eos_scale_for, full_size_models, random_whisper, set_eos_scale  # noqa: E402

FRAME_SAMPLES = 1920  # 24 kHz audio, 12.5 frames a second
FRAME_RATE = 12.5
SEED_BATCH = 5
FULL_SIZES = ("1.7B", "0.6B")  # released shapes, random weights (bench/models.py)
CPU_FULL_CHUNKS = 5
SPEAKER = "ryan"
NARRATOR = Narrator(kind="preset", speaker=SPEAKER)

# A short story in three chapters: paragraphs of uneven length, as books have.
STORY = [
    ("The Lighthouse", [
        "The lighthouse stood at the edge of the world, where the land gave up and the sea began.",
        "Every night its keeper climbed the stairs. He counted them as he went, one hundred and twelve, "
        "and at the top he rested his hand on the cold brass rail before he lit the lamp.",
        "Nobody had asked him to count. He did it because his father had done it, and because a man alone "
        "on a rock needs something that stays the same while the weather changes around him.",
        "Then he lit the lamp.",
    ]),
    ("The Storm", [
        "The storm came in from the west in the late afternoon, first as a grey line on the horizon, then as "
        "a wall of rain that swallowed the islands one by one.",
        "\"Hold fast,\" the keeper said to nobody.",
        "The windows shook in their frames. Water ran under the door and pooled on the stone floor, and the "
        "wind found every gap in the old walls and sang through it in a voice he had never heard before.",
        "He trimmed the wick, wound the clockwork that turned the lens, and sat down to wait.",
        "The light did not go out.",
    ]),
    ("Morning", [
        "By morning the sea was flat and bright, as if nothing had happened.",
        "A fishing boat rounded the point, low in the water with its catch, and the men on deck raised their "
        "hands to the tower. He raised his in return, though they could not have seen him behind the glass.",
        "He went down the stairs, counting, and made his breakfast.",
    ]),
]


@dataclass
class Result:
    """One engine's run over the whole workload (the JSON record)."""

    engine: str
    batch_size: int
    wall_s: float
    frames_per_s: float
    x_real_time: float
    peak_mem_mb: float
    ratio_to_seed_design: float = 0.0
    model: str = ""
    frames: int = 0
    extra_mem_mb: float = 0.0  # peak above the loaded model: what generating and decoding needed
    generation_mem_mb: float = 0.0  # of that, the peak before audio decoding: the generation loop's own
    decode_s: float = 0.0  # of wall_s, the speech tokenizer turning codes into audio (same work everywhere)
    cpu_s: float = 0.0  # CPU time of the process over the run: what the work cost, whatever else shares the machine
    ratio_cpu_to_seed_design: float = 0.0  # the seed design's cpu_s over this one's (same work: > 1 is cheaper)
    same_lengths: bool = True  # every item produced as many frames as in the seed design
    lengths: list[int] = field(default_factory=list)


def workload(chunk_chars: int, repeat: int = 1, chapters: int | None = None) -> list[str]:
    """The story (its first ``chapters`` chapters) cut into sentence-aligned chunks by the app's own planner,
    ``repeat`` times over."""
    parts = [Chapter(title, "\n\n".join(paras)) for title, paras in STORY[:chapters]] * repeat
    return [c.text for c in plan_chunks(parts, chunk_chars, "en")]


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak on a GPU, the process's peak RSS (VmHWM) on a CPU.

    ``mark_generation_end`` (called as audio decoding starts) records the peak of generation
    alone; ``restart`` (as decoding ends) starts a new peak window, so each batch's
    generation peak is seen apart from the previous batch's decoding.
    """

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.peak_mb = self.extra_mb = self.generation_mb = 0.0
        self._peak = self._generation = 0

    def _sample(self) -> int:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated()
        return status_kb("VmHWM") * 1024

    def _reset(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            reset_peak_rss()

    def mark_generation_end(self) -> None:
        self._generation = max(self._generation, self._sample())

    def restart(self) -> None:
        self._peak = max(self._peak, self._sample())
        self._reset()

    def __enter__(self):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            self.base = torch.cuda.memory_allocated()
        else:
            trim_heap()
            self.base = status_kb("VmRSS") * 1024
        self._reset()
        return self

    def __exit__(self, *exc):
        peak = max(self._peak, self._sample())
        self.peak_mb = peak / 2**20
        self.extra_mb = max(0.0, peak - self.base) / 2**20
        self.generation_mb = max(0.0, (self._generation or peak) - self.base) / 2**20


def _groups(engine: str, batch_size: int, texts: list[str]) -> list[list[int]]:
    """Which chunk indexes go to the model together, in call order."""
    ids = list(range(len(texts)))
    if engine == "fast":
        return [ids]  # one call: the engine keeps batch_size slots busy
    if engine == "render":
        ordered = [int(i) for i in order_for_batches([str(i) for i in ids], {str(i): t for i, t in enumerate(texts)},
                                                      "length", batch_size)]
        return [ordered[b : b + batch_size] for b in range(0, len(ordered), batch_size)]
    return [ids[b : b + batch_size] for b in range(0, len(ids), batch_size)]  # book order


def run_engine(tts: TTS, label: str, engine: str, batch_size: int, texts: list[str], opts: GenerationOptions,
               cuda: bool) -> Result:
    """Speak every chunk through one engine; wall time, frames and peak memory."""
    import torch

    tts.settings = tts.settings.updated(engine="fast" if engine == "fast" else "qwen_tts", batch_size=batch_size)
    lengths = [0] * len(texts)
    tokenizer = tts.model("preset").model.speech_tokenizer
    decode, decode_s = tokenizer.decode, [0.0]
    mem = PeakMemory(cuda)

    def timed_decode(items):
        mem.mark_generation_end()
        t0 = time.perf_counter()
        try:
            return decode(items)
        finally:
            if cuda:
                torch.cuda.synchronize()
            decode_s[0] += time.perf_counter() - t0
            mem.restart()

    tokenizer.decode = timed_decode
    try:
        with mem:
            start, cpu_start = time.perf_counter(), time.process_time()
            for group in _groups(engine, batch_size, texts):
                wavs = tts.narrate(NARRATOR, [texts[i] for i in group], "en", opts)
                for i, wav in zip(group, wavs):
                    lengths[i] = len(wav) // FRAME_SAMPLES
            if cuda:
                torch.cuda.synchronize()
            wall = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
    finally:
        del tokenizer.decode
    frames = sum(lengths)
    return Result(label, batch_size, round(wall, 3), round(frames / wall, 2), round(frames / FRAME_RATE / wall, 3),
                  round(mem.peak_mb, 1), frames=frames, extra_mem_mb=round(mem.extra_mb, 1),
                  generation_mem_mb=round(mem.generation_mb, 1),
                  decode_s=round(decode_s[0], 3), cpu_s=round(cpu, 3), lengths=lengths)


def bench_model(models_dir: Path, model_label: str, texts: list[str], max_new_tokens: int, render_sizes: list[int],
                fast_sizes: list[int], cuda: bool, model_size: str = "1.7B", eos_scale: float | None = None, log=print,
                sequential: bool = True) -> list[Result]:
    """Every engine over ``texts`` on one checkpoint, seed design first (the reference)."""
    settings = Settings(models_dir=str(models_dir), model_size=model_size, device="cuda" if cuda else "cpu",
                        max_new_tokens=max(64, max_new_tokens),
                        dtype="bfloat16" if cuda else "float32", attention_mode="sdpa", do_sample=False)
    tts = TTS(settings)
    model = tts.model("preset")
    set_eos_scale(model, eos_scale or eos_scale_for(model.model.config.talker_config.hidden_size))
    opts = GenerationOptions(max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.05, seed=1234)
    # Warm up both loops (first calls pay for lazy initialisation and, on CUDA, graph capture).
    for engine in ("qwen_tts", "fast"):
        tts.settings = tts.settings.updated(engine=engine, batch_size=SEED_BATCH)
        tts.preset(texts[:2], SPEAKER, "", "en", GenerationOptions(max_new_tokens=8, do_sample=False))
    plan = [("seed_design", "book", SEED_BATCH)] + ([("sequential", "book", 1)] if sequential else [])
    plan += [(f"render_bs{n}", "render", n) for n in render_sizes]
    plan += [(f"fast_bs{n}", "fast", n) for n in fast_sizes]
    results: list[Result] = []
    for label, engine, size in plan:
        r = run_engine(tts, label, engine, size, texts, opts, cuda)
        r.model = model_label
        results.append(r)
        log(f"  {model_label:>6} {label:<12} {r.wall_s:8.2f} s  {r.frames_per_s:8.1f} frames/s  "
            f"{r.x_real_time:7.2f}x real time  peak {r.peak_mem_mb:8.1f} MB (+{r.extra_mem_mb:.1f}, "
            f"generation +{r.generation_mem_mb:.1f})  "
            f"decode {r.decode_s:.2f} s  CPU {r.cpu_s:.2f} s", flush=True)
    seed = results[0]
    spread = sorted(seed.lengths)
    log(f"  {model_label:>6} frames per chunk: min {spread[0]}, median {spread[len(spread) // 2]}, max {spread[-1]} "
        f"(cap {max_new_tokens - 1})")
    for r in results:
        # Throughput ratio: the wall-time ratio when the work is the same (same_lengths), and
        # still fair in bf16, where greedy lengths drift with batch shape even inside qwen_tts.
        r.ratio_to_seed_design = round(r.frames_per_s / seed.frames_per_s, 3) if seed.frames_per_s else 0.0
        r.ratio_cpu_to_seed_design = round(seed.cpu_s / r.cpu_s, 3) if r.cpu_s else 0.0
        r.same_lengths = r.lengths == seed.lengths
    tts.unload()
    return results


@dataclass
class CheckResult:
    """The same render with the take check off and on (greedy, no retries: the same takes both times)."""

    model: str
    whisper: str
    batch_size: int
    chunks: int
    audio_s: float
    off_s: float
    on_s: float

    @property
    def overhead(self) -> float:
        """What the check adds, as a fraction of the render's wall time without it."""
        return (self.on_s - self.off_s) / self.off_s if self.off_s else 0.0


def bench_check(models_dir: Path, model_label: str, texts: list[str], max_new_tokens: int, cuda: bool,
                whisper_dir: Path, batch_size: int = 5, eos_scale: float | None = None) -> CheckResult:
    """Render ``texts`` (as a book) twice through ``render_events``: verify off, then on.

    The Whisper checkpoint is the one ``verify_model=auto`` picks for the device, with
    random weights of its released shapes (``bench.models.random_whisper``); both models
    are loaded before the clock starts.
    """
    import tempfile

    from audiobook import check
    from audiobook.books import Book
    from audiobook.render import RenderResult, render_events

    whisper = (check.GPU_MODEL if cuda else check.CPU_MODEL).split("/")[-1]
    folder = random_whisper(whisper_dir, whisper)
    if not cuda:  # the voice check's speaker encoder comes from a Base checkpoint of the same size
        from audiobook.tiny import build_tiny_models

        build_tiny_models(models_dir, names=["Qwen3-TTS-12Hz-1.7B-Base"], size=model_label)
    per = max(1, len(texts) // 3)
    chapters = [Chapter(f"Part {i + 1}", "\n\n".join(texts[i * per:(i + 1) * per] if i < 2 else texts[2 * per:]))
                for i in range(3)]
    book = Book("Check bench", chapters, language="en")
    base = dict(device="cuda" if cuda else "cpu", max_new_tokens=max_new_tokens, batch_size=batch_size,
                do_sample=False, max_retries=0, models_dir=str(models_dir), verify_model=str(folder),
                chunk_chars=max(map(len, texts)) + 1, make_m4b=False, engine="auto")
    tts = TTS(Settings(**base))
    model = tts.model("preset")
    set_eos_scale(model, eos_scale or eos_scale_for(model.model.config.talker_config.hidden_size))
    warm = check.TakeChecker(Settings(**base, verify="on"), tts.device(), NARRATOR, "en", tts=tts)
    warm.transcriber.transcribe([__import__("numpy").zeros(24000, dtype="float32")], 24000, "en", ["warm up"])
    times = {}
    for verify in ("off", "on"):
        settings = Settings(**base, verify=verify)
        tts.settings = settings
        with tempfile.TemporaryDirectory(prefix=f"check-bench-{verify}-") as out:
            result = RenderResult(out_dir=Path(out))
            t0 = time.perf_counter()
            for _ in render_events(book, NARRATOR, settings, Path(out), tts, result):
                pass
            times[verify] = time.perf_counter() - t0
            audio = result.audio_s
        print(f"  check {verify}: {times[verify]:.1f}s for {result.generated} takes, {audio:.1f}s of audio")
    return CheckResult(model_label, whisper, batch_size, len(texts), audio, times["off"], times["on"])


# ---- the real render beside the bare engine and the seed design ------------------------------


@dataclass
class RenderRow:
    """One row of ``--render``: mean over the rounds, wall and CPU time, at equal work."""

    row: str
    what: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    frames: int = 0
    x_real_time: float = 0.0
    peak_extra_mb: float = 0.0  # peak RSS above the loaded model
    vs_fast: float = 0.0  # this row's throughput over the bare engine's (fast_bsN), by wall time
    vs_seed: float = 0.0  # over the seed design's, by wall time
    vs_fast_cpu: float = 0.0  # the same by CPU time (what the work cost, whatever the machine's load)
    vs_seed_cpu: float = 0.0
    same_work: bool = True
    walls: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)


def _story_book(chapters: int | None = None):
    """The story as the book a user would load: its three chapters, or the first ``chapters`` (the planner cuts the
    workload's chunks from it)."""
    from audiobook.books import Book

    return Book("Render bench", [Chapter(title, "\n\n".join(paras)) for title, paras in STORY[:chapters]],
                language="en")


def bench_render(models_dir: Path, model_label: str, chunk_chars: int, max_new_tokens: int, batch: int, rounds: int,
                 work_dir: Path, eos_scale: float | None = None, log=print, only: list[str] | None = None,
                 chapters: int | None = None) -> list[RenderRow]:
    """``Backend.render`` (check off, check on with tiny Whisper; the stream and the old batch loop) beside the
    bare engine given every chunk in one call (``fast_bsN``) and the seed design, interleaved ``rounds`` times.
    ``only`` keeps those rows (by name, the batch size left out: ``render``, ``fast``, ``render_check``, ``loop``);
    the seed design and the bare engine always run, as the references."""
    import shutil

    import numpy as np

    from audiobook import check
    from audiobook import manifest as mf
    from audiobook.render import _Render
    from audiobook.tiny_whisper import build_tiny_whisper
    from backend import Backend

    whisper = build_tiny_whisper(work_dir / "whisper", names=["whisper-small"])["whisper-small"]
    texts = workload(chunk_chars, chapters=chapters)
    book = _story_book(chapters)
    be = Backend(root=work_dir, settings_path=work_dir / "user_settings.json", models_dir=str(models_dir))
    base = be.settings.updated(device="cpu", dtype="float32", max_new_tokens=max_new_tokens, batch_size=batch,
                               do_sample=False, max_retries=0, chunk_chars=chunk_chars, make_m4b=False,
                               engine="fast", verify="off", verify_model=str(whisper), duration_outlier_factor=20.0,
                               runaway_margin_s=0.0)
    be.apply_settings(base)
    model = be.tts.model("preset")
    set_eos_scale(model, eos_scale or eos_scale_for(model.model.config.talker_config.hidden_size))
    opts = GenerationOptions(max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=base.repetition_penalty,
                             seed=base.seed, temperature=base.temperature, top_k=base.top_k, top_p=base.top_p)
    planned = [c.text for c in plan_chunks(book.chapters, base.chunk_chars, "en")]
    if planned != texts:
        raise SystemExit("The render bench's book does not plan into the workload's chunks.")
    checker = check.TakeChecker(base.updated(verify="on"), "cpu", NARRATOR, "en", tts=be.tts)
    checker.transcriber.transcribe([np.zeros(24000, dtype="float32")], 24000, "en", ["one two three"])  # loaded before any clock
    for engine in ("qwen_tts", "fast"):  # first calls pay for lazy initialisation
        be.tts.settings = base.updated(engine=engine)
        be.tts.preset(texts[:2], SPEAKER, "", "en", GenerationOptions(max_new_tokens=8, do_sample=False))

    def render(settings, stream: bool):
        out = work_dir / "out"
        shutil.rmtree(out, ignore_errors=True)
        be.apply_settings(settings)
        _Render.use_stream = stream
        try:
            be.render(book, NARRATOR, out_dir=out)
        finally:
            _Render.use_stream = True
            be.apply_settings(base)
        m = mf.load_manifest(out)
        by_text = {st.text: round(st.duration_s * FRAME_RATE) for st in m.chunks.values()}
        return [by_text[t] for t in texts], m, out

    wavs_for_check: list = []

    def render_full_rows():
        from audiobook import stream

        stream.COMPACT = False
        try:
            return render(base, True)[0]
        finally:
            stream.COMPACT = True

    def check_alone():
        """The checks alone on the render's takes, in batches of ``batch`` (what the check stage does)."""
        c = check.TakeChecker(base.updated(verify="on"), "cpu", NARRATOR, "en", tts=be.tts)
        for i in range(0, len(wavs_for_check), batch):
            part = wavs_for_check[i:i + batch]
            c.check([t for t, _ in part], [w for _, w in part], 24000)
        return None

    def engine_row(engine):
        be.tts.settings = base
        r = run_engine(be.tts, engine, "fast" if engine.startswith("fast") else "book", batch if engine.startswith("fast")
                       else SEED_BATCH, texts, opts, cuda=False)
        return r.lengths

    rows = {
        "seed_design": ("qwen_tts static batches of 5, book order (the seed's design)", lambda: engine_row("seed_design")),
        f"fast_bs{batch}": (f"bare engine, every chunk in one call, {batch} slots", lambda: engine_row(f"fast_bs{batch}")),
        f"render_bs{batch}": ("Backend.render, check off: what a user's render gets", lambda: render(base, True)[0]),
        f"render_check_bs{batch}": ("Backend.render, check on (tiny Whisper and voice)",
                                    lambda: render(base.updated(verify="on"), True)[0]),
        f"loop_bs{batch}": ("Backend.render with the old batch loop (one call per batch), check off",
                            lambda: render(base, False)[0]),
        f"render_full_rows_bs{batch}": ("Backend.render with every slot's row computing to the end (no tail "
                                        "compaction), check off", lambda: render_full_rows()),
        "check_alone": ("the checks alone on the same takes, batches of the batch size", check_alone),
    }
    if only:
        keep = {"seed_design", f"fast_bs{batch}"} | {f"{name}_bs{batch}" for name in only} | set(only)
        rows = {name: row for name, row in rows.items() if name in keep}
    if "check_alone" in rows:
        # The takes the check row checks: one render's audio, read back once.
        _, m, out = render(base, True)
        import soundfile as sf

        wavs_for_check[:] = [(st.text, sf.read(out / st.file, dtype="float32")[0]) for st in m.chunks.values()]
    results = {name: RenderRow(name, what) for name, (what, _) in rows.items()}
    for n in range(rounds):
        for name, (_, fn) in rows.items():
            mem = PeakMemory(False)
            with mem:
                t0, c0 = time.perf_counter(), time.process_time()
                lengths = fn()
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            row = results[name]
            row.walls.append(round(wall, 2))
            row.wall_s += wall / rounds
            row.cpu_s += cpu / rounds
            row.peak_extra_mb = max(row.peak_extra_mb, mem.extra_mb)
            if lengths is not None:
                row.lengths = lengths
            log(f"  round {n + 1} {name:<18} {wall:7.2f} s wall  {cpu:7.2f} s CPU  +{mem.extra_mb:.0f} MB", flush=True)
    seed, fast = results["seed_design"], results[f"fast_bs{batch}"]
    for row in results.values():
        work = row.lengths or fast.lengths
        row.frames = sum(work)
        row.same_work = work == seed.lengths
        row.x_real_time = round(row.frames / FRAME_RATE / row.wall_s, 3)
        row.vs_fast = round(fast.wall_s / row.wall_s, 3)
        row.vs_seed = round(seed.wall_s / row.wall_s, 3)
        row.vs_fast_cpu = round(fast.cpu_s / row.cpu_s, 3)
        row.vs_seed_cpu = round(seed.cpu_s / row.cpu_s, 3)
    be.tts.unload()
    return list(results.values())


def render_table(rows: list[RenderRow]) -> str:
    out = ["| row | what | wall s (mean) | CPU s | x real time | vs fast_bsN (wall) | vs fast_bsN (CPU) | vs seed (wall) | "
           "vs seed (CPU) | +MB peak | same work |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r.row} | {r.what} | {r.wall_s:.2f} | {r.cpu_s:.2f} | {r.x_real_time:.2f} | {r.vs_fast:.2f}x | "
                   f"{r.vs_fast_cpu:.2f}x | {r.vs_seed:.2f}x | {r.vs_seed_cpu:.2f}x | {r.peak_extra_mb:.0f} | "
                   f"{'yes' if r.same_work else 'NO'} |")
    return "\n".join(out)


def machine() -> str:
    """The machine in words, for the table."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # pragma: no cover
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"


def markdown_table(results: list[Result]) -> str:
    """The README table."""
    rows = ["| model | engine | batch | wall s | of it decode s | CPU s | frames/s | x real time | peak MB | +MB all | "
            "+MB generation | vs seed | vs seed (CPU) | same work |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        rows.append(f"| {r.model} | {r.engine} | {r.batch_size} | {r.wall_s:.2f} | {r.decode_s:.2f} | {r.cpu_s:.2f} | {r.frames_per_s:.1f} | "
                    f"{r.x_real_time:.2f} | {r.peak_mem_mb:.0f} | {r.extra_mem_mb:.0f} | {r.generation_mem_mb:.0f} | "
                    f"{r.ratio_to_seed_design:.2f}x | {r.ratio_cpu_to_seed_design:.2f}x | "
                    f"{'yes' if r.same_lengths else 'NO'} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> list[Result]:
    """Parse arguments, run the benchmark, print the table and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", help="write the per-engine results to this JSON file")
    p.add_argument("--gpu", action="store_true", help="full-size random checkpoints on CUDA (bf16, sdpa)")
    p.add_argument("--sizes", help="checkpoints: tiny,medium (CPU default) or 1.7B,0.6B (full-size shapes; GPU default 1.7B)")
    p.add_argument("--chunks", type=int, help="use only the first N chunks of the workload")
    p.add_argument("--repeat", type=int, help="the story this many times over (CPU 1, GPU 2)")
    p.add_argument("--chunk-chars", type=int, default=200, help="chunk size of the planner (default 200)")
    p.add_argument("--max-new-tokens", type=int, help="frame cap per chunk (CPU 160, full size on a CPU 64, GPU 2048)")
    p.add_argument("--render-batch-sizes", help="batch sizes of the render path (default 1,5,10,20; none for full size on a CPU)")
    p.add_argument("--fast-batch-sizes", help="slot counts of the fast engine (default 5,10,20; 5 for full size on a CPU)")
    p.add_argument("--eos-scale", type=float, help="norm of the talker's EOS row (default: by hidden size)")
    p.add_argument("--no-sequential", action="store_true", help="leave out the batch-1 qwen_tts row (the slowest)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a shared 2-core machine two threads contend and run slower)")
    p.add_argument("--workers", type=int,
                   help="instead: one process against this many CPU Ray workers rendering the same book (default size medium)")
    p.add_argument("--models-dir", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "audiobook-bench-models"))
    p.add_argument("--configs", default=str(ROOT.parent / "shared" / "qwen3-tts-configs"),
                   help="released Qwen3-TTS configs (for full-size shapes)")
    p.add_argument("--check", action="store_true",
                   help="also render with the take check on beside the same render with it off (batch 5)")
    p.add_argument("--check-only", action="store_true", help="only the check comparison, no engine comparison")
    p.add_argument("--render", action="store_true",
                   help="instead: the real render (Backend.render, check off and on) beside fast_bsN and the seed "
                        "design, interleaved (default size medium, batch 5, 2 rounds)")
    p.add_argument("--render-rows", help="with --render: only these rows beside seed_design and fast_bsN "
                                         "(render,render_check,loop,render_full_rows,check_alone; default all)")
    p.add_argument("--dtypes", help="CPU: compare these dtype settings (float32,bfloat16,int8) on the fast engine "
                                    "instead of the engines (bench/dtypes.py)")
    p.add_argument("--dtype-threads", default="1,2", help="with --dtypes: torch thread counts (default 1,2)")
    p.add_argument("--chapters", type=int, help="with --render: only the story's first N chapters (default all three)")
    p.add_argument("--rounds", type=int, default=2,
                   help="with --render: interleaved rounds, mean kept; with --dtypes: interleaved rounds, best kept (default 2)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    cuda = args.gpu
    if cuda and not torch.cuda.is_available():
        p.error("--gpu needs a CUDA GPU")
    if args.workers:
        return _bench_workers(args)
    if args.render:
        return _bench_render(args)
    if args.dtypes:
        return _bench_dtypes(args)
    sizes = (args.sizes or ("1.7B" if cuda else "tiny,medium")).split(",")
    # Full-size shapes on a CPU run at about real time or slower: a few chunks, the seed design against
    # the engine at the same batch size, no sequential run, unless asked for.
    cpu_full = not cuda and any(size in FULL_SIZES for size in sizes)
    texts = workload(args.chunk_chars, args.repeat or (2 if cuda else 1))
    chunks = args.chunks or (CPU_FULL_CHUNKS if cpu_full else None)
    if chunks:
        texts = texts[:chunks]
    max_new = args.max_new_tokens or (2048 if cuda else 64 if cpu_full else 160)
    render_sizes = [int(x) for x in (args.render_batch_sizes if args.render_batch_sizes is not None
                                     else "" if cpu_full else "1,5,10,20").split(",") if x]
    fast_sizes = [int(x) for x in (args.fast_batch_sizes or ("5" if cpu_full else "5,10,20")).split(",") if x]
    print(f"Machine: {machine()}")
    print(f"Workload: {len(texts)} chunks of {min(map(len, texts))}-{max(map(len, texts))} characters, "
          f"greedy, max_new_tokens {max_new}")
    results: list[Result] = []
    checks: list[CheckResult] = []
    for size in sizes:
        full = cuda or size in FULL_SIZES
        if full:
            name = f"Qwen3-TTS-12Hz-{size}-CustomVoice"
            models = full_size_models(Path(args.models_dir) / "full", Path(args.configs), name,
                                      device="cuda" if cuda else "cpu")
        else:
            models = cpu_models(Path(args.models_dir) / size, size)
        if not args.check_only:
            results += bench_model(models, size, texts, max_new, render_sizes, fast_sizes, cuda,
                                   model_size=size if full else "1.7B", eos_scale=args.eos_scale,
                                   sequential=not ((cpu_full and full) or args.no_sequential))
        if args.check or args.check_only:
            checks.append(bench_check(models, size, texts, max_new, cuda, Path(args.models_dir) / "whisper",
                                      eos_scale=args.eos_scale))
    print(f"\n{machine()}\n")
    if results:
        print(markdown_table(results))
    if checks:
        print("\n| model | Whisper (random weights) | batch | chunks | audio s | check off s | check on s | check adds |")
        print("|---|---|---|---|---|---|---|---|")
        for c in checks:
            print(f"| {c.model} | {c.whisper} | {c.batch_size} | {c.chunks} | {c.audio_s:.1f} | {c.off_s:.1f} | "
                  f"{c.on_s:.1f} | {c.overhead:.0%} |")
    if args.json:
        records = [{k: v for k, v in asdict(r).items() if k != "lengths"} for r in results]
        Path(args.json).write_text(json.dumps({"machine": machine(), "chunks": len(texts), "max_new_tokens": max_new,
                                               "results": records,
                                               "check": [{**asdict(c), "overhead": c.overhead} for c in checks]},
                                              indent=2) + "\n")
    return results


def _bench_render(args) -> list:
    """``--render``: the real render beside the bare engine and the seed design (see ``bench_render``)."""
    import tempfile

    print(f"Machine: {machine()}")
    texts = workload(args.chunk_chars, chapters=args.chapters)
    batch = int((args.fast_batch_sizes or "5").split(",")[0])
    max_new = args.max_new_tokens or 160
    print(f"Workload: {len(texts)} chunks of {min(map(len, texts))}-{max(map(len, texts))} characters in "
          f"{args.chapters or len(STORY)} chapters, "
          f"greedy, max_new_tokens {max_new}, batch {batch}, {args.rounds} rounds interleaved")
    records = []
    for size in (args.sizes or "medium").split(","):
        models = cpu_models(Path(args.models_dir) / size, size)
        with tempfile.TemporaryDirectory(prefix="render-bench-") as work:
            rows = bench_render(models, size, args.chunk_chars, max_new, batch, args.rounds, Path(work),
                                eos_scale=args.eos_scale,
                                only=args.render_rows.split(",") if args.render_rows else None,
                                chapters=args.chapters)
        print(f"\n{machine()}, {size} checkpoint\n")
        print(render_table(rows))
        records.append({"size": size, "rows": [{k: v for k, v in asdict(r).items() if k != "lengths"} for r in rows]})
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "chunks": len(texts), "max_new_tokens": max_new,
                                               "render": records}, indent=2) + "\n")
    return records


def _bench_dtypes(args) -> list:
    """``--dtypes``: the CPU dtypes side by side on full-size random weights (bench/dtypes.py)."""
    from bench.dtypes import bench_dtypes, markdown_table as dtype_table

    size = (args.sizes or "0.6B").split(",")[0]
    name = f"Qwen3-TTS-12Hz-{size}-CustomVoice"
    models = full_size_models(Path(args.models_dir) / "full", Path(args.configs), name, device="cpu")
    texts = workload(args.chunk_chars, 1)[: args.chunks or CPU_FULL_CHUNKS]
    max_new = args.max_new_tokens or 64
    print(f"Machine: {machine()}")
    print(f"Workload: {size}, {len(texts)} chunks, greedy, max_new_tokens {max_new}, batch {len(texts)}")
    rows = bench_dtypes(models, size, texts, max_new, args.dtypes.split(","),
                        [int(n) for n in args.dtype_threads.split(",")], args.rounds, len(texts), args.eos_scale)
    print(f"\n{machine()}\n")
    print(dtype_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "dtypes": [asdict(r) for r in rows]}, indent=2) + "\n")
    return rows


def _bench_workers(args) -> list:
    """``--workers N``: the same book rendered by one process and by N Ray workers (bench/workers.py)."""
    from bench.workers import bench_workers, eos_scaled_copy, markdown_table, records

    print(f"Machine: {machine()}")
    results = []
    for size in (args.sizes or "medium").split(","):
        models = cpu_models(Path(args.models_dir) / size, size)
        import json as _json

        hidden = _json.loads((models / "Qwen3-TTS-12Hz-1.7B-CustomVoice" / "config.json").read_text())["talker_config"]["hidden_size"]
        models = eos_scaled_copy(models, args.eos_scale or eos_scale_for(hidden))
        results.append(bench_workers(models, size, STORY, args.repeat or 2, args.max_new_tokens or 160, args.workers,
                                     chunk_chars=args.chunk_chars))
    print(f"\n{machine()}\n")
    print(markdown_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "results": records(results)}, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
