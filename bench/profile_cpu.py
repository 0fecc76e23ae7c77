"""Profile one generation loop on the full-size 0.6B shapes on a CPU (cProfile, one torch thread).

    .venv/bin/python bench/profile_cpu.py fast --max-new-tokens 16
    .venv/bin/python bench/profile_cpu.py qwen_tts --max-new-tokens 16

The first 5 chunks of the benchmark's story, greedy, 5 slots (the seed's batch of 5 for
``qwen_tts``), random weights with the released 0.6B CustomVoice shapes (``bench/models.py``).
Prints wall and CPU time of the call and the functions that took the most time. On a shared
machine, start both loops at once (two processes) so that they see the same load.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audiobook.settings import Settings  # noqa: E402
from audiobook.tts import TTS, GenerationOptions  # noqa: E402
from bench.models import eos_scale_for, full_size_models, set_eos_scale  # noqa: E402
from bench.run import CPU_FULL_CHUNKS, NARRATOR, SEED_BATCH, SPEAKER, workload  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("engine", choices=["fast", "qwen_tts"])
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--top", type=int, default=25, help="functions listed, by time spent in them")
    p.add_argument("--models-dir", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "audiobook-bench-models"))
    p.add_argument("--configs", default=str(ROOT.parent / "shared" / "qwen3-tts-configs"))
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    models = full_size_models(Path(args.models_dir) / "full", Path(args.configs), "Qwen3-TTS-12Hz-0.6B-CustomVoice",
                              device="cpu")
    settings = Settings(models_dir=str(models), model_size="0.6B", device="cpu", max_new_tokens=64,
                        dtype="float32", attention_mode="sdpa", do_sample=False,
                        engine=args.engine, batch_size=SEED_BATCH)
    tts = TTS(settings)
    model = tts.model("preset")
    set_eos_scale(model, eos_scale_for(model.model.config.talker_config.hidden_size))
    texts = workload(200)[:CPU_FULL_CHUNKS]
    tts.preset(texts[:2], SPEAKER, "", "en", GenerationOptions(max_new_tokens=3, do_sample=False))  # warm up
    opts = GenerationOptions(max_new_tokens=args.max_new_tokens, do_sample=False, repetition_penalty=1.05, seed=1234)
    profile = cProfile.Profile()
    wall, cpu = time.perf_counter(), time.process_time()
    profile.enable()
    wavs = tts.narrate(NARRATOR, texts, "en", opts)
    profile.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{args.engine}: {len(wavs)} chunks, wall {wall:.1f} s, CPU {cpu:.1f} s")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
