"""OCR speed and word accuracy on a scanned book drawn at 200 dpi (the format tests' pages).

    .venv/bin/python bench/ocr_speed.py [PAGES]

Draws PAGES pages of known text (a running head, page numbers, a chapter heading every
4 pages) as 200 dpi images into a PDF, loads it (every page read by Tesseract, an empty
cache), and prints the share of words read right, pages per minute, the CPU seconds per
page (Tesseract's and ours) and the time of a second load from the cache.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_book_formats import PROSE, draw_page, word_accuracy  # noqa: E402

from audiobook.books import load_book  # noqa: E402


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    tmp = Path(tempfile.mkdtemp(prefix="ocr-speed-"))
    os.environ["AUDIOBOOK_OCR_CACHE"] = str(tmp / "cache")
    pages = [(f"Chapter {i // 4 + 1}" if i % 4 == 0 else None, [PROSE[(i + k) % len(PROSE)] for k in range(3)]) for i in range(n)]
    images = [draw_page(heading, paragraphs, i + 1) for i, (heading, paragraphs) in enumerate(pages)]
    path = tmp / "scan.pdf"
    images[0].save(path, save_all=True, append_images=images[1:], resolution=200)
    cpu, start = cpu_seconds(), time.perf_counter()
    book = load_book(path)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    accuracy = word_accuracy(" ".join(p for _, ps in pages for p in ps), " ".join(c.text for c in book.chapters))
    start = time.perf_counter()
    load_book(path)
    again = time.perf_counter() - start
    print(f"{n} pages: {accuracy:.2%} of words right; {wall:.1f} s wall = {n / wall * 60:.1f} pages per minute "
          f"on {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}); {cpu / n:.2f} CPU s per page; "
          f"second load from the cache {again * 1000:.0f} ms")
    print("\n".join(book.report.lines()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
