"""One process against N Ray workers on the same book: ``python bench/run.py --workers 2``.

Both sides run the app's real render loop (``render.render_events``) over the same book
with the same settings, greedy, so they make the same takes: the run checks that every
chunk came out with the same number of frames on both sides (equal work) before it
reports the ratio. The process renders with one torch thread, as each CPU worker does.
Model loading (and starting Ray) is timed apart from rendering, which is what the ratio
compares.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from audiobook import manifest as mf
from audiobook.books import Book, Chapter
from audiobook.render import RenderResult, render_events
from audiobook.settings import Settings
from audiobook.tts import TTS, GenerationOptions, Narrator
from audiobook.workers import WorkerPool

NARRATOR = Narrator(kind="preset", speaker="ryan")


@dataclass
class WorkersResult:
    model: str
    chunks: int
    frames: int
    one_process_s: float
    workers: int
    workers_s: float
    ratio: float  # one_process_s / workers_s
    same_work: bool  # every chunk has the same length on both sides
    workers_start_s: float  # Ray start, actors placed, models loaded (not in workers_s)
    per_worker_takes: list[int]


def eos_scaled_copy(models_dir: Path, scale: float, name: str = "Qwen3-TTS-12Hz-1.7B-CustomVoice") -> Path:
    """A copy of the checkpoint with the talker's EOS row at norm ``scale``, on disk (workers load from disk)."""
    import torch
    from safetensors.torch import load_file, save_file

    out = models_dir.parent / f"{models_dir.name}-eos{scale:.3f}"
    if (out / name / "model.safetensors").is_file():
        return out
    shutil.copytree(models_dir / name, out / name, dirs_exist_ok=True)
    config = json.loads((out / name / "config.json").read_text())
    eos = config["talker_config"]["codec_eos_token_id"]
    state = load_file(str(out / name / "model.safetensors"))
    key = next(k for k in state if k.endswith("talker.codec_head.weight"))
    with torch.no_grad():
        row = state[key][eos].float()
        state[key][eos] = (row / row.norm() * scale).to(state[key].dtype)
    save_file(state, str(out / name / "model.safetensors"), metadata={"format": "pt"})
    return out


def book_of(texts_by_chapter: list[tuple[str, list[str]]], repeat: int) -> Book:
    chapters = [Chapter(f"{title} {n + 1}" if repeat > 1 else title, "\n\n".join(paras))
                for n in range(repeat) for title, paras in texts_by_chapter]
    return Book("Workers Bench", chapters, language="en")


def bench_workers(models_dir: Path, model_label: str, story, repeat: int, max_new_tokens: int, workers: int,
                  chunk_chars: int = 200, batch_size: int = 5, log=print) -> WorkersResult:
    """Render the same book in this process and on ``workers`` CPU Ray actors; compare."""
    import torch

    settings = Settings(models_dir=str(models_dir), device="cpu", dtype="float32", do_sample=False,
                        max_new_tokens=max_new_tokens, batch_size=batch_size, chunk_chars=chunk_chars,
                        make_m4b=False, max_retries=0, duration_outlier_factor=20.0, runaway_margin_s=0.0,
                        verify="off")
    book = book_of(story, repeat)
    work = Path(tempfile.mkdtemp(prefix="audiobook-bench-workers-"))
    try:
        torch.set_num_threads(1)
        tts = TTS(settings)
        t0 = time.perf_counter()
        tts.model("preset")
        tts.narrate(NARRATOR, ["Warm up."], "en", GenerationOptions(max_new_tokens=8, do_sample=False))
        log(f"  {model_label:>6} one process: model loaded in {time.perf_counter() - t0:.1f}s")
        one = RenderResult(out_dir=work / "one")
        t0 = time.perf_counter()
        for _ in render_events(book, NARRATOR, settings, work / "one", tts, one):
            pass
        one_s = time.perf_counter() - t0
        tts.unload()
        log(f"  {model_label:>6} one process: {one.generated} chunks in {one_s:.2f}s")

        with WorkerPool(settings, workers=workers) as pool:
            t0 = time.perf_counter()
            pool.start()
            import ray

            ray.get([w.actor.narrate.remote(NARRATOR, ["Warm up."], "en", GenerationOptions(max_new_tokens=8, do_sample=False),
                                            None, None) for w in pool.workers])
            start_s = time.perf_counter() - t0
            log(f"  {model_label:>6} {workers} workers: Ray started and models loaded in {start_s:.1f}s")
            spread = RenderResult(out_dir=work / "workers")
            t0 = time.perf_counter()
            for _ in render_events(book, NARRATOR, settings, work / "workers", TTS(settings), spread, executor=pool):
                pass
            workers_s = time.perf_counter() - t0
            takes = [i.chunks for i in pool.infos()]
        log(f"  {model_label:>6} {workers} workers: {spread.generated} chunks in {workers_s:.2f}s (takes per worker {takes})")

        a, b = mf.load_manifest(work / "one"), mf.load_manifest(work / "workers")
        same = ({i: s.duration_s for i, s in a.chunks.items()} == {i: s.duration_s for i, s in b.chunks.items()}
                and a.count(mf.DONE, mf.SUSPECT) == len(a.chunks))
        frames = int(round(sum(s.duration_s for s in a.chunks.values()) * 12.5))
        return WorkersResult(model_label, len(a.chunks), frames, round(one_s, 3), workers, round(workers_s, 3),
                             round(one_s / workers_s, 3) if workers_s else 0.0, same, round(start_s, 2), takes)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def markdown_table(results: list[WorkersResult]) -> str:
    rows = ["| model | chunks | frames | one process s | workers | workers s | speed-up | same work | workers start s | takes per worker |",
            "|---|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in results:
        rows.append(f"| {r.model} | {r.chunks} | {r.frames} | {r.one_process_s:.2f} | {r.workers} | {r.workers_s:.2f} | "
                    f"{r.ratio:.2f}x | {'yes' if r.same_work else 'NO'} | {r.workers_start_s:.1f} | "
                    f"{', '.join(map(str, r.per_worker_takes))} |")
    return "\n".join(rows)


def records(results: list[WorkersResult]) -> list[dict]:
    return [asdict(r) for r in results]
