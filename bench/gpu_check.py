"""The fast engine's first GPU run: every CUDA-graph rule checked on the full-size 1.7B random checkpoint.

    python bench/gpu_check.py [--configs DIR] [--models-dir DIR]

Runs ``audiobook/engine.py`` with ``engine=fast`` (no fallback) in bf16 and prints one
line per check, then exits 1 if any failed. Without CUDA it says so and exits 0.

- captures: at least one graph captured, every first replay passed the runtime guard, no fallback;
- replay = eager: graph replays against the eager step at the same KV length, greedy codes bit-identical;
- recapture: across item counts, text lengths, sampling rules and KV growth, twice over,
  with ``torch.cuda.memory_reserved()`` no higher in the second round than in the first;
- KV boundary: an item ending at KV position capacity-1 while other slots go on (small KV rounding);
- seeded: a seeded sampled call repeated (capturing, then replaying) gives identical codes;
- sampler: the captured sampler replayed many times draws each code with its softmax
  probability after temperature, top-k and top-p (histogram);
- teacher-forced: qwen_tts's greedy codes fed through the engine, top-1 agreement >= 99 %.

The checks other than the first three also run on the CPU (tests/test_gpu_check.py runs
them on the tiny checkpoint, where graphs are not used).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SPEAKER = "ryan"
TEXTS = [
    "The lighthouse stood at the edge of the world.",
    "Then he lit the lamp.",
    "Every night its keeper climbed the stairs, one hundred and twelve of them, and at the top he "
    "rested his hand on the cold brass rail before he lit the lamp.",
    "The storm came in from the west in the late afternoon.",
    "Hold fast.",
    "The windows shook in their frames and water ran under the door.",
    "By morning the sea was flat and bright, as if nothing had happened.",
    "He went down the stairs, counting, and made his breakfast.",
]
TOP1_TARGET = 0.99
HISTOGRAM_TOLERANCE = 0.01


@dataclass
class Rig:
    """The loaded CustomVoice checkpoint and where it runs."""

    tts: Any  # audiobook.tts.TTS, engine "fast"
    model: Any  # the qwen_tts wrapper (Qwen3TTSModel)
    device: Any  # torch.device
    cuda: bool


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name:<15} {self.detail}"


class _Stop(Exception):
    pass


def prompts_for(rig: Rig, texts: list[str], **kw):
    """qwen_tts's prompts and sampling rules for a CustomVoice call on ``texts`` (nothing generated)."""
    from audiobook.engine import capture_prompts

    box: dict[str, Any] = {}

    def generate(**inputs):
        box.update(inputs)
        raise _Stop

    kw = {"max_new_tokens": 64, "do_sample": False, "subtalker_dosample": False, **kw}
    rig.model.model.generate = generate
    try:
        rig.model.generate_custom_voice(text=texts, speaker=SPEAKER, language=["english"] * len(texts), **kw)
    except _Stop:
        pass
    finally:
        del rig.model.model.generate
    return capture_prompts(rig.model.model, box)


def _sampled(s):
    return replace(s, do_sample=True, temperature=0.9, top_k=50, top_p=0.95,
                   sub_do_sample=True, sub_temperature=0.9, sub_top_k=50, sub_top_p=0.95)


def _engine(rig: Rig, slots: int):
    from audiobook.engine import FastEngine

    return FastEngine(rig.model.model, slots=slots, cuda_graphs=rig.cuda)


def _sync(rig: Rig) -> None:
    import torch

    if rig.cuda:
        torch.cuda.synchronize()


def _guard_failures(engine) -> list[str]:
    return [c.describe() for c in engine.graph_checks if not c.ok]


# ---- checks (each returns a Check; the first three need CUDA) ----------------------------------


def check_captures(rig: Rig) -> Check:
    """A render-like call through TTS captures graphs, passes the guard and never falls back."""
    from audiobook.graphs import cuda_graphs_off
    from audiobook.tts import GenerationOptions

    rig.tts.settings = rig.tts.settings.updated(engine="fast", batch_size=4)
    wavs = rig.tts.preset(TEXTS[:6], SPEAKER, "", "en", GenerationOptions(max_new_tokens=128, do_sample=False))
    engine = rig.tts.loaded.engine
    checks = engine.graph_checks if engine is not None else []
    bad = _guard_failures(engine) if engine is not None else ["no engine"]
    ok = len(wavs) == 6 and len(checks) >= 1 and not bad and cuda_graphs_off() is None and not rig.tts._engine_failed
    return Check("captures", ok, f"{len(checks)} captured, guard failures {bad or 0}, graphs off: {cuda_graphs_off()}")


def check_replay_equals_eager(rig: Rig, steps: int = 24) -> Check:
    """At every step of a run, the graph's replay and the eager step (same state, same KV length) agree bit for bit."""
    import torch

    prompts, s = prompts_for(rig, TEXTS[:8], max_new_tokens=256)
    engine = _engine(rig, 8)
    differing, max_diff = 0, 0.0
    with torch.inference_mode():
        st = engine._prepare(prompts, s)
        for slot, prompt in enumerate(prompts):
            engine._prefill(st, slot, prompt, s)
        need = max(p.embeds.shape[0] for p in prompts) + 1
        engine._step(st, need, s)  # captures, and the guard checks the first replay
        (rows, kv_len), graph = next(iter(st.graphs.items()))  # every slot speaks: rows is all of them
        for _ in range(steps):
            saved = st.snapshot()
            engine._graph_step(st, s, kv_len)
            eager = (st.frame.clone(), st.tok.clone(), st.logits.clone())
            st.restore(saved)
            graph.replay()
            differing += int(not (torch.equal(eager[0], st.frame) and torch.equal(eager[1], st.tok)))
            max_diff = max(max_diff, float((eager[2] - st.logits).abs().max()))
    _sync(rig)
    ok = differing == 0 and engine.graph_checks and engine.graph_checks[0].ok
    return Check("replay=eager", bool(ok), f"{steps} steps x 8 slots: {differing} steps with different codes, "
                                           f"largest logit difference {max_diff:.3g}")


def check_recapture_memory(rig: Rig) -> Check:
    """New states (item counts, text lengths), sampling changes and KV growth, twice: memory stays flat."""
    import torch

    from audiobook import engine as engine_mod

    engine = _engine(rig, 8)
    short, s = prompts_for(rig, TEXTS[:3], max_new_tokens=64)
    mixed, _ = prompts_for(rig, TEXTS[:8], max_new_tokens=64)
    long, _ = prompts_for(rig, [" ".join(TEXTS)] * 5, max_new_tokens=64)
    grow = replace(s, suppress=s.suppress + (s.eos_id,), max_new_tokens=engine_mod._KV_ROUND * 3)
    calls = [(short, s), (mixed, s), (long, _sampled(s)), (short, grow), (mixed, _sampled(s))]
    rounds: list[list[float]] = []
    captures = []
    with torch.inference_mode():
        for _ in range(2):
            reserved = []
            before = len(engine.graph_checks)
            for prompts, rules in calls:
                torch.manual_seed(0)
                engine.generate_codes(prompts, rules)
                _sync(rig)
                reserved.append(torch.cuda.memory_reserved() / 2**20)
            rounds.append(reserved)
            captures.append(len(engine.graph_checks) - before)
    bad = _guard_failures(engine)
    ok = max(rounds[1]) <= max(rounds[0]) and min(captures) >= len(calls) and not bad
    return Check("recapture", ok, f"captures per round {captures}, reserved MB round 1 {[round(x) for x in rounds[0]]}, "
                                  f"round 2 {[round(x) for x in rounds[1]]}, guard failures {bad or 0}")


def check_kv_boundary(rig: Rig) -> Check:
    """An item whose last frame is written at KV position capacity-1 while other slots go on (KV rounding 8)."""
    import torch

    from audiobook import engine as engine_mod

    prompts, s = prompts_for(rig, TEXTS[:5], max_new_tokens=64)
    by_length = sorted(prompts, key=lambda p: p.embeds.shape[0])
    prompts = [by_length[0], by_length[1], by_length[4], by_length[2], by_length[3]]  # slot 2: the longest
    longest = by_length[4].embeds.shape[0]
    capacity = -(-(longest + 16) // 8) * 8
    s = replace(s, suppress=s.suppress + (s.eos_id,), max_new_tokens=capacity - longest + 1)
    saved = engine_mod._KV_ROUND
    engine_mod._KV_ROUND = 8
    try:
        with torch.inference_mode():
            engine = _engine(rig, 3)
            codes = engine.generate_codes(prompts, s)
            _sync(rig)  # a write past the cache would be a device-side assert, raised here
            engine_mod._KV_ROUND = saved
            alone = _engine(rig, 5).generate_codes(prompts, s)
    finally:
        engine_mod._KV_ROUND = saved
    lengths_ok = [c.shape[0] for c in codes] == [s.max_new_tokens - 1] * 5
    same = sum(torch.equal(a, b) for a, b in zip(codes, alone))
    # float32 codes do not depend on the batch; in bf16 other slot counts pick other kernels.
    ok = lengths_ok and not _guard_failures(engine) and (rig.cuda or same == 5)
    return Check("kv-boundary", ok, f"capacity {capacity}, 5 items x {s.max_new_tokens - 1} frames in 3 slots: "
                                    f"lengths {'right' if lengths_ok else 'WRONG'}, {same}/5 items equal to a 5-slot run")


def check_seeded(rig: Rig) -> Check:
    """Same seed, same codes: a call that captures, the same call replaying, and again after a state change."""
    import torch

    prompts, s = prompts_for(rig, TEXTS[:4], max_new_tokens=96)
    s = _sampled(s)
    engine = _engine(rig, 4)

    def run(items, seed=1234):
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = engine.generate_codes(items, s)
        _sync(rig)
        return out

    first = run(prompts)
    again = run(prompts)
    run(prompts[:3], seed=7)  # another item count: a new state and a new capture
    after = run(prompts)
    same = [all(torch.equal(a, b) for a, b in zip(first, other)) for other in (again, after)]
    return Check("seeded", all(same) and not _guard_failures(engine),
                 f"repeated: {'identical' if same[0] else 'DIFFERENT'}, after a state change: "
                 f"{'identical' if same[1] else 'DIFFERENT'} ({sum(c.shape[0] for c in first)} frames)")


def expected_probs(logits, temperature: float, top_k: int, top_p: float):
    """Hugging Face's warpers in their order, computed in float64 on one row of logits."""
    import torch

    z = logits.double() / temperature
    kth = torch.topk(z, top_k).values[-1]
    z = z.masked_fill(z < kth, float("-inf"))
    p = z.softmax(-1)
    order = p.argsort()
    drop = p[order].cumsum(0) <= 1 - top_p
    drop[-1] = False
    p[order[drop]] = 0
    return p / p.sum()


def check_sampler(rig: Rig, rows: int = 4096, replays: int = 50) -> Check:
    """The sampler (captured as a graph on CUDA) replayed many times: its histogram is the warped softmax."""
    import torch

    from audiobook.graphs import capture_stream, record_graph
    from audiobook.sampling import choose

    temperature, top_k, top_p = 0.8, 6, 0.9
    row = torch.tensor([2.0, 1.6, 1.0, 0.4, 0.0, -0.5, -1.0, -3.0], device=rig.device)
    logits = row.repeat(rows, 1)
    picks = torch.zeros(rows, dtype=torch.long, device=rig.device)

    def draw():
        picks.copy_(choose(logits, True, temperature, top_k, top_p))

    counts = torch.zeros(row.numel(), device=rig.device)
    with torch.inference_mode():
        if rig.cuda:
            with capture_stream(rig.device):
                draw()  # warm-up
                graph = record_graph(draw, rig.device)
            step = graph.replay
        else:
            step = draw
        draws = []
        for _ in range(replays):
            step()
            counts += torch.bincount(picks, minlength=row.numel())
            draws.append(picks[:64].clone())
    _sync(rig)
    freq = (counts / counts.sum()).cpu().double()
    want = expected_probs(row.cpu(), temperature, top_k, top_p)
    worst = float((freq - want).abs().max())
    fresh = len({tuple(d.tolist()) for d in draws}) == replays  # every replay drew new numbers
    return Check("sampler", worst <= HISTOGRAM_TOLERANCE and fresh,
                 f"{rows * replays} draws: largest frequency error {worst:.4f} (limit {HISTOGRAM_TOLERANCE}), "
                 f"replays {'all differ' if fresh else 'REPEAT'}")


def check_teacher_forced(rig: Rig, max_new_tokens: int = 200) -> Check:
    """qwen_tts's greedy codes fed through the engine: the engine's top-1 pick agrees at >= 99 % of them."""
    from audiobook.agreement import compare_with_qwen_tts

    texts = TEXTS[:3]
    model = rig.model
    result = compare_with_qwen_tts(model.model, lambda: model.generate_custom_voice(
        text=texts, speaker=SPEAKER, language=["english"] * len(texts), do_sample=False, subtalker_dosample=False,
        max_new_tokens=max_new_tokens, repetition_penalty=1.05))
    _sync(rig)
    return Check("teacher-forced", result.top1_agreement >= TOP1_TARGET,
                 f"top-1 agreement {result.top1_agreement:.2%} (first codebook {result.first_code_agreement:.2%}, "
                 f"{result.frames} frames), largest logit difference {result.max_logit_diff:.3g}, free-running equal "
                 f"frames {list(result.equal_frames)} of {list(result.reference_frames)}")


CUDA_CHECKS: list[Callable[[Rig], Check]] = [check_captures, check_replay_equals_eager, check_recapture_memory]
CHECKS: list[Callable[[Rig], Check]] = [check_kv_boundary, check_seeded, check_sampler, check_teacher_forced]


def check_name(check: Callable[[Rig], Check]) -> str:
    """The name a check prints: ``check_kv_boundary`` is ``kv-boundary``."""
    return check.__name__.removeprefix("check_").replace("_", "-")


def chosen_checks(only: str | None) -> list[Callable[[Rig], Check]]:
    """Every check, or those named in ``only`` (comma-separated, in the run's own order)."""
    every = CUDA_CHECKS + CHECKS
    if not only:
        return every
    wanted = {name.strip() for name in only.split(",") if name.strip()}
    if unknown := wanted - {check_name(c) for c in every}:
        raise ValueError(f"There is no check named {', '.join(sorted(unknown))}; the checks are "
                         f"{', '.join(check_name(c) for c in every)}.")
    return [c for c in every if check_name(c) in wanted]


def run_checks(rig: Rig, checks: list[Callable[[Rig], Check]], out=print) -> list[Check]:
    """Each check in turn; an exception is that check's failure (with its message), never the end of the run."""
    results = []
    for check in checks:
        start = time.perf_counter()
        try:
            result = check(rig)
        except Exception as e:  # noqa: BLE001 - report and go on to the next check
            result = Check(check_name(check), False, f"{type(e).__name__}: {e}")
        result.detail += f" [{time.perf_counter() - start:.1f} s]"
        out(result.line(), flush=True)
        results.append(result)
    return results


def gpu_rig(models_dir: Path, configs: Path, dtype: str = "bfloat16") -> Rig:
    """The full-size 1.7B CustomVoice random checkpoint on CUDA (bf16 unless told), with varied greedy lengths."""
    import torch

    from audiobook.settings import Settings
    from audiobook.tts import TTS
    from bench.models import PRESET_MODEL, eos_scale_for, full_size_models, set_eos_scale

    models = full_size_models(models_dir / "full", configs, PRESET_MODEL)
    settings = Settings(models_dir=str(models), model_size="1.7B", device="cuda", dtype=dtype,
                        attention_mode="sdpa", engine="fast", do_sample=False, max_new_tokens=1024)
    tts = TTS(settings)
    model = tts.model("preset")
    set_eos_scale(model, eos_scale_for(model.model.config.talker_config.hidden_size))
    return Rig(tts, model, torch.device("cuda"), True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models-dir", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "audiobook-bench-models"))
    p.add_argument("--configs", default=str(ROOT.parent / "shared" / "qwen3-tts-configs"),
                   help="released Qwen3-TTS configs (the full-size shapes)")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"],
                   help="weights and activations (default bfloat16, what users get; float32 tells rounding from a bug)")
    p.add_argument("--only", help="run only these checks (comma-separated): "
                   + ", ".join(check_name(c) for c in CUDA_CHECKS + CHECKS))
    args = p.parse_args(argv)
    try:
        checks = chosen_checks(args.only)
    except ValueError as e:
        p.error(str(e))

    import torch

    if not torch.cuda.is_available():
        print("No CUDA GPU on this machine: the GPU checks did not run (they need an NVIDIA GPU).")
        return 0
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    start = time.perf_counter()
    rig = gpu_rig(Path(args.models_dir), Path(args.configs), args.dtype)
    print(f"Loaded the full-size 1.7B random checkpoint ({args.dtype}) in {time.perf_counter() - start:.0f} s", flush=True)
    results = run_checks(rig, checks)
    failed = [r.name for r in results if not r.ok]
    print(f"{len(results) - len(failed)}/{len(results)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
