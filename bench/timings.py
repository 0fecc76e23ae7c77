"""Wall-clock timings that tests do not assert (a loaded machine would make them flake).

``python bench/timings.py``: how long reading a 5 MB, 60-chapter text book takes, and how long a
checkpoint download takes to give up when the hub cannot be reached. Each is run ``--repeat``
times; the report gives the fastest and the median with the process's CPU time beside the wall
time (on a shared machine the CPU time is the steadier figure).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audiobook import models  # noqa: E402
from audiobook.books import load_book  # noqa: E402
from audiobook.errors import AudiobookError  # noqa: E402

PARAGRAPH = ("It was the best of times, it was the worst of times, it was the age of wisdom. " * 5).strip()


def big_txt(folder: Path) -> Path:
    """About 5 MB of text in 60 chapters of 200 paragraphs."""
    block = "\n\n".join(PARAGRAPH for _ in range(200))
    path = folder / "big.txt"
    with path.open("w") as f:
        for i in range(60):
            f.write(f"\n\nChapter {i + 1}\n\n{block}")
    return path


def read_big_txt(folder: Path) -> None:
    book = load_book(big_txt(folder))
    assert len(book.chapters) == 60


def offline_download(folder: Path) -> None:
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{port}"
    try:
        models.download("Qwen3-TTS-12Hz-0.6B-Base", folder)
    except AudiobookError:
        return
    finally:
        os.environ.pop("HF_ENDPOINT", None)
    raise AssertionError("the download did not fail")


def timed(fn, repeat: int) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            w0, c0 = time.perf_counter(), time.process_time()
            fn(Path(tmp))
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
    return walls, cpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{'what':<36} {'wall min':>9} {'wall median':>12} {'cpu median':>11}")
    for name, fn in (("read a 5 MB, 60-chapter .txt", read_big_txt), ("give up a download when offline", offline_download)):
        walls, cpus = timed(fn, args.repeat)
        print(f"{name:<36} {min(walls):>8.2f}s {statistics.median(walls):>11.2f}s {statistics.median(cpus):>10.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
