"""The one lock on the resident model (``ModelLock``), and ``holding_model``, which runs a method under it."""

from __future__ import annotations

import threading
from contextlib import contextmanager

from .errors import AudiobookError


class ModelLock:
    """The one lock on the resident model, shared by every caller: render, preview, doctor, workers.

    A caller holds it for as long as it needs the model and names itself in the user's words
    ("a render of 'Dracula'"). A caller that finds it held by another thread is refused at
    once with an AudiobookError naming the holder: a voice preview during a render is
    refused, not queued, so the page never hangs on a click. The holding thread may take it
    again (the render's own model calls do), and a holder may hand it to another thread (a
    render started from the page runs in its own thread).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._owner: int | None = None
        self._depth = 0
        self._guests: list[threading.Thread] = []  # threads working for the holder (a render's pipeline stages)
        self.holder = ""  # what holds it now, in the user's words ("" when free)

    def acquire(self, what: str, wait_s: float = 0.0) -> None:
        """Take the lock for ``what``, waiting at most ``wait_s`` seconds; raise AudiobookError when busy."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me or (self._owner is not None and self._is_guest(me)):
                self._depth += 1
                return
            if self._owner is not None and wait_s > 0:
                self._cond.wait_for(lambda: self._owner is None, timeout=wait_s)
            if self._owner is not None:
                raise AudiobookError(self.busy_message())
            self._owner, self._depth, self.holder = me, 1, what

    def release(self) -> None:
        with self._cond:
            me = threading.get_ident()
            if self._owner != me and not self._is_guest(me):
                raise RuntimeError("the model lock is released by a thread that does not hold it")
            self._depth -= 1
            if self._depth == 0:
                self._owner, self.holder = None, ""
                self._cond.notify_all()

    @contextmanager
    def shared_with(self, threads):
        """While the calling thread holds the lock, let ``threads`` (its helper threads) take it too."""
        threads = list(threads)
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("only the thread holding the model lock can share it")
            self._guests += threads
        try:
            yield
        finally:
            with self._cond:
                self._guests = [t for t in self._guests if t not in threads]

    def _is_guest(self, ident: int) -> bool:
        return any(t.ident == ident for t in self._guests)

    def hand_over(self, thread_id: int) -> None:
        """Give the lock (held once by this thread) to the thread ``thread_id``, which must release it."""
        with self._cond:
            if self._owner != threading.get_ident() or self._depth != 1:
                raise RuntimeError("only a thread holding the model lock once can hand it over")
            self._owner = thread_id

    @contextmanager
    def hold(self, what: str, wait_s: float = 0.0):
        self.acquire(what, wait_s)
        try:
            yield self
        finally:
            self.release()

    def held_by_other(self) -> bool:
        """True when another thread holds the lock (this thread would be refused)."""
        with self._cond:
            return self._owner is not None and self._owner != threading.get_ident()

    def busy_message(self) -> str:
        holder = self.holder or "another task"
        way_out = ", or stop the render" if holder.startswith("a render") else ""
        return f"The model is busy with {holder}; try again when it is done{way_out}."


def holding_model(method):
    """Run a TTS method under the model lock (re-entrant for the thread that already holds it)."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.lock.hold("speech generation"):
            return method(self, *args, **kwargs)

    return wrapper
