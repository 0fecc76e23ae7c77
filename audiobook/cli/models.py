"""The commands about models and this computer: ``models``, ``doctor``, ``tiny-models`` and ``selftest``."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from audiobook.cli.options import narrator_from_args
from audiobook.settings import SETTINGS_FILE

SAMPLE_BOOK = """Chapter 1: The Lighthouse

The lighthouse stood at the edge of the world. Every night its keeper climbed the stairs.

He counted them as he went, one hundred and twelve. Then he lit the lamp.

Chapter 2: The Storm

The storm came in from the west. "Hold fast," the keeper said. The light did not go out.
"""



def cmd_tiny_models(args) -> int:
    from audiobook.tiny import build_tiny_models
    from audiobook.tiny_whisper import build_tiny_whisper

    t0 = time.perf_counter()
    built = {**build_tiny_models(args.dir), **build_tiny_whisper(args.dir)}
    for name, path in built.items():
        print(f"{name}: {path}")
    print(f"Tiny checkpoints ready in {time.perf_counter() - t0:.1f}s; use --models-dir {args.dir}")
    return 0


def cmd_selftest(args) -> int:
    """Build tiny checkpoints, render the sample book through the whole pipeline, report."""
    from audiobook.tiny import build_tiny_models

    with tempfile.TemporaryDirectory(prefix="audiobook-selftest-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        build_tiny_models(tmp / "models")
        print(f"Built tiny checkpoints in {time.perf_counter() - t0:.1f}s")
        book_path = tmp / "sample.txt"
        book_path.write_text(SAMPLE_BOOK, encoding="utf-8")
        backend = args.open_backend(root=tmp, settings_path=tmp / SETTINGS_FILE, models_dir=str(tmp / "models"))
        backend.apply_settings(backend.settings.updated(device="cpu", max_new_tokens=256, batch_size=5))
        narrator = narrator_from_args(argparse.Namespace(speaker=backend.speakers()[0]), backend)
        book = backend.load_book(book_path)
        result = backend.render(book, narrator, out_dir=tmp / "out", on_progress=lambda p: print(p.message) if p.message else None)
        print(f"Chapters: {len(book.chapters)}; chunks: {result.chunks}; batches: {result.batches}; "
              f"audio: {result.audio_s:.1f}s; render: {result.elapsed_s:.1f}s")
        ok = len(result.chapter_files) == len(book.chapters) and all(f.stat().st_size > 44 for f in result.chapter_files)
        print("Selftest passed." if ok else "Selftest FAILED: chapter files are missing.")
        return 0 if ok else 1


def cmd_doctor(args) -> int:
    """doctor [--json FILE]: check the device, checkpoints, engine, speed and memory; exit 1 if the engine disagrees."""
    import json

    backend = args.open_backend(models_dir=args.models_dir)
    report = backend.doctor(live=not args.no_live, on_step=lambda line: print(f"{line}...", file=sys.stderr))
    print(report.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        print(f"Saved the report to {args.json}; attach it to a bug report.")
    return 0 if report.ok else 1


def cmd_models(args) -> int:
    """models [--download NAME]: every checkpoint with its status; download one with a progress bar."""
    from tqdm import tqdm

    backend = args.open_backend(models_dir=args.models_dir)
    if args.download:
        bars = []  # made at the first report, once the hub has answered

        def report(p) -> None:
            if not bars:
                bars.append(tqdm(total=p.total_bytes, initial=p.done_bytes, unit="B", unit_scale=True,
                                 unit_divisor=1000, desc=p.name, file=sys.stderr))
            bars[0].n = p.done_bytes
            bars[0].refresh()

        try:
            got = backend.download_model(args.download, report)
        finally:
            for bar in bars:
                bar.close()
        print(f"Downloaded {got.name} to {got.path} ({got.status}).")
        return 0
    for c in backend.checkpoints():
        print(f"{c.name}\t{c.status}\t{c.path}\t{c.purpose}")
    return 0

