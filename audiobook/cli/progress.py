"""A long command's progress on the terminal: its bars, and Ctrl-C (the first stops, a second quits)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from audiobook.books import Book
from audiobook.render import Progress

STOPPING = "Stopping after the takes in flight; press Ctrl-C again to quit now."
QUIT_NOW = "Quit at once: the takes in flight are lost, the rest is kept; run the same command again to continue."
QUIT_STATUS = 130  # a shell's status for a command ended by Ctrl-C


def tqdm_progress(total_hint: int = 0):
    """A chunk bar on stderr and the ``on_progress`` that moves it (and writes the render's log lines above it)."""
    from tqdm import tqdm

    bar = tqdm(total=total_hint or None, unit="chunk", file=sys.stderr)

    def report(p: Progress) -> None:
        bar.total = p.chunks_total
        bar.n = p.chunks_done
        if p.message:
            bar.write(p.message)
        bar.set_postfix(audio=f"{p.audio_s / 60:.1f}min", xrt=f"{p.x_real_time:.2f}")
        bar.refresh()

    return bar, report


@contextmanager
def stop_on_ctrl_c(say: Callable[[str], None]) -> Iterator[Callable[[], bool]]:
    """While the block runs, the first Ctrl-C asks it to stop (the ``should_stop`` yielded turns true) and says
    so; a second one quits the process at once with status 130, losing only the work in flight (what is kept
    is already on disk: the manifest and the chunk files are written atomically)."""
    stop = threading.Event()

    def on_ctrl_c(signum, frame) -> None:
        if stop.is_set():
            quit_now()
        stop.set()
        say(STOPPING)

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield stop.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


def quit_now() -> None:
    """End the process here (no unwinding: a thread in the middle of a model step does not hold it up)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        os.write(2, f"\n{QUIT_NOW}\n".encode())
    except OSError:
        pass
    os._exit(QUIT_STATUS)


def load_book(backend, path) -> Book:
    """backend.load_book with a progress bar on stderr while scanned pages are read by OCR."""
    bar = None

    def progress(done: int, total: int, what: str) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="page", desc="OCR", file=sys.stderr)
        bar.n = done
        bar.refresh()

    try:
        return backend.load_book(path, on_progress=progress)
    finally:
        if bar is not None:
            bar.close()
