"""The CPU user's dtypes side by side: x real time and teacher-forced agreement with float32.

    python bench/run.py --sizes 0.6B --dtypes float32,bfloat16,int8 [--dtype-threads 1,2] [--rounds 2]

Full-size random weights of the released shapes (bench/models.py), greedy, the fast engine at
the render's batch size over the workload's first chunks. Rows are interleaved (each round
runs every thread count and dtype once, in turn) because the machine is shared: ratios
measured side by side mean more than any single time; CPU time is printed beside wall time.

Agreement: qwen_tts's own greedy codes in float32 are fed through the engine in each dtype
(``agreement.compare_with_qwen_tts``), and the share of the engine's picks equal to float32's
is reported (first codebook and the 15 code-predictor groups).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

FRAME_SAMPLES = 1920
SAMPLE_RATE = 24000


@dataclass
class DtypeRow:
    dtype: str
    threads: int
    x_real_time: float  # best round
    wall_s: float
    cpu_s: float
    audio_s: float
    agreement: float | None = None  # teacher-forced share of picks equal to float32's


def bench_dtypes(models_dir: Path, size: str, texts: list[str], max_new_tokens: int, dtypes: list[str],
                 threads: list[int], rounds: int, batch: int, eos_scale: float | None, log=print) -> list[DtypeRow]:
    import torch

    from audiobook.agreement import compare_with_qwen_tts
    from audiobook.precision import dtype_problem
    from audiobook.settings import Settings
    from audiobook.tts import TTS, GenerationOptions, Narrator
    from bench.models import eos_scale_for, set_eos_scale

    for d in dtypes:
        problem = dtype_problem(d, "cpu")
        if problem:
            raise SystemExit(problem)
    narrator = Narrator(kind="preset", speaker="ryan")
    opts = GenerationOptions(max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.05, seed=1234)
    base = Settings(models_dir=str(models_dir), model_size=size, device="cpu", max_new_tokens=max(64, max_new_tokens),
                    attention_mode="sdpa", do_sample=False, engine="fast", batch_size=batch)
    # One model per load dtype: float32 serves float32 and int8; bfloat16 is its own load.
    loads: dict[str, TTS] = {}
    for d in dtypes:
        load = "bfloat16" if d == "bfloat16" else "float32"
        if load not in loads:
            tts = TTS(base.updated(dtype=load))
            model = tts.model("preset")
            set_eos_scale(model, eos_scale or eos_scale_for(model.model.config.talker_config.hidden_size))
            loads[load] = tts

    def tts_for(d: str) -> TTS:
        tts = loads["bfloat16" if d == "bfloat16" else "float32"]
        tts.settings = base.updated(dtype=d)
        return tts

    for d in dtypes:  # warm up: lazy tables, int8 weights
        tts_for(d).narrate(narrator, texts[:1], "en", GenerationOptions(max_new_tokens=4, do_sample=False))
    best: dict[tuple[str, int], DtypeRow] = {}
    for r in range(rounds):
        for n in threads:
            torch.set_num_threads(n)
            for d in dtypes:
                tts = tts_for(d)
                t0, c0 = time.perf_counter(), time.process_time()
                wavs = tts.narrate(narrator, texts, "en", opts)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                audio = sum(len(w) for w in wavs) / SAMPLE_RATE
                row = DtypeRow(d, n, round(audio / wall, 3), round(wall, 2), round(cpu, 2), round(audio, 2))
                log(f"  round {r + 1} {d:>8} {n} thread(s): {row.x_real_time:.3f}x real time, "
                    f"wall {row.wall_s:.1f} s, CPU {row.cpu_s:.1f} s, {row.audio_s:.1f} s of audio", flush=True)
                if (d, n) not in best or row.x_real_time > best[(d, n)].x_real_time:
                    best[(d, n)] = row
    torch.set_num_threads(max(threads))
    reference = loads["float32"] if "float32" in loads else None
    if reference is not None:
        model = reference.model("preset")
        call = lambda: model.generate_custom_voice(  # noqa: E731
            text=texts, speaker="ryan", language=["english"] * len(texts), do_sample=False, subtalker_dosample=False,
            max_new_tokens=max_new_tokens, repetition_penalty=1.05)
        for d in dtypes:
            other = loads["bfloat16"].model("preset").model if d == "bfloat16" else None
            agreement = compare_with_qwen_tts(model.model, call, engine_model=other, int8=d == "int8")
            log(f"  {d}: {agreement.top1_agreement:.2%} of picks equal float32's "
                f"(first codebook {agreement.first_code_agreement:.2%}, {agreement.frames} frames)", flush=True)
            for n in threads:
                best[(d, n)].agreement = round(agreement.top1_agreement, 4)
    return [best[(d, n)] for n in threads for d in dtypes]


def markdown_table(rows: list[DtypeRow]) -> str:
    lines = ["| dtype | threads | x real time | wall s | CPU s | audio s | picks equal to float32 |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        agree = f"{r.agreement:.2%}" if r.agreement is not None else "-"
        lines.append(f"| {r.dtype} | {r.threads} | {r.x_real_time:.3f} | {r.wall_s:.1f} | {r.cpu_s:.1f} | "
                     f"{r.audio_s:.1f} | {agree} |")
    return "\n".join(lines)
