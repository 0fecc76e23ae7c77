"""A Ray worker's own stream: takes come in from the driver, go through one engine session, and leave as audio.

The driver (``workers.WorkerPool.stream``) feeds each worker up to twice its slot count of
takes through ``WorkerStream.exchange``, which also hands back every take decoded since the
last exchange. Inside the worker, as in the render's own pipeline (``pipeline.py``):

- the generation thread builds prompts with qwen_tts's own code (``TTS.capture``), gives
  them to the model's engine session (``stream.Session``) as slots free up, one model's
  voices at a time, and steps it; every take carries the seed and frame limit the driver
  gave it, so it is the same take on any worker;
- the decoding thread turns finished codes into audio in small groups (``TTS.decode_codes``),
  so what travels back through Ray is audio, not codes, and the driver needs no model.

Nothing here writes a file: the driver keeps, checks and writes every take. Out of memory
halves this worker's slot count and its lost takes go in again first; after a calm stretch
(``batching.BatchSizer``, as in the render's own pipeline) the slots double back towards the
count the stream was opened with. Any other model error fails the takes it touched, which the
driver reports as it does for its own.
"""

from __future__ import annotations

import collections
import logging
import pickle
import queue
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .batching import BatchSizer
from .pipeline import decode_takes, gather
from .tts import CLONE, is_out_of_memory, release_accelerator_memory

DECODE_GROUP = 8  # most takes decoded to audio in one padded batch
LOCK_WAIT_S = 600.0  # a stream call waits this long for a clone prompt another call is making
DROP_WAITING, DROP_ALL = 1, 2  # what a Stop takes back: the takes not yet in a slot, or every take

log = logging.getLogger(__name__)


@dataclass
class Take:
    """One take as the driver sends it: everything that decides its audio."""

    key: int  # the driver's name for it
    job: str  # the model it needs ("custom" presets, "clone")
    voice: Any  # its Narrator (style applied)
    text: str
    seed: int
    limit: int  # most frames
    prompt_key: str = ""  # a clone's prompt, sent once per worker (``exchange``'s ``prompts``)


@dataclass
class Done:
    """A take's result: its audio, or the error the model raised on it."""

    key: int
    wav: np.ndarray | None
    runaway: bool = False  # it reached its frame limit without its end code
    error: BaseException | None = None


class WorkerStream:
    """Generation and decoding threads over ``tts``'s engine session with ``slots`` slots."""

    def __init__(self, tts, slots: int, language: str | None, opts) -> None:
        self.tts, self.slots, self.language, self.opts = tts, max(1, int(slots)), language, opts
        self.sizer = BatchSizer(self.slots)  # the slot count after running out of memory, and its way back
        self.cond = threading.Condition()
        self.inbox: collections.deque[Take] = collections.deque()
        self.outbox: list[Done] = []
        self.prompts: dict[str, Any] = {}
        self.decode_q: queue.Queue = queue.Queue()
        self.decoding = 0  # takes handed to decoding and not yet in the outbox
        self.dropped: list[int] = []  # keys of takes dropped (a Stop) and not yet told
        self.drop_slots = False  # the generation thread ends the takes in its slots without a result
        self.closed = False
        self.threads = [threading.Thread(target=f, name=f"worker-{f.__name__.strip('_')}", daemon=True)
                        for f in (self._generate, self._decode)]
        for t in self.threads:
            t.start()

    # ---- the driver's side (Ray calls) -----------------------------------------------------

    def exchange(self, takes: list[Take], prompts: dict[str, Any], drop: int,
                 wait_s: float) -> tuple[list[Done], list[int]]:
        """Queue ``takes``; return the takes finished since the last call (waiting up to ``wait_s`` for one),
        and the keys of the takes dropped since then.

        ``drop`` (a Stop): 1 takes back every take not yet in a slot; 2 also ends the takes in slots
        without a result (the Stop's time for them is up).
        """
        with self.cond:
            self.prompts.update(prompts)
            self.inbox.extend(takes)
            if drop:
                self.dropped += [t.key for t in self.inbox]
                self.inbox.clear()
                self.drop_slots = self.drop_slots or drop >= DROP_ALL
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.outbox or self.dropped or self.closed, timeout=wait_s)
            out, self.outbox = self.outbox, []
            dropped, self.dropped = self.dropped, []
        return out, dropped

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.inbox.clear()
            self.cond.notify_all()
        self.decode_q.put(None)
        for t in self.threads:
            t.join(timeout=30)

    # ---- generation ----------------------------------------------------------------------

    def _generate(self) -> None:
        session, job = None, None
        while True:
            with self.cond:
                if self.closed:
                    return
                if self.drop_slots:
                    self.drop_slots = False
                    if session is not None:
                        self.dropped += [r.tag.key for r in session.drop_in_flight() + session.drop_waiting()]
                        self.cond.notify_all()
                busy = session is not None and session.busy
                if session is not None and session.slots != self.slots and not busy:
                    session = None  # drained: the next takes make a session of the new slot count
                if not busy and self.inbox and self.inbox[0].job != job:
                    if self.decoding:  # the other model's takes are decoded before it goes
                        self.cond.wait(0.02)
                        continue
                    job = self.inbox[0].job
                room = self.slots - (len(session.in_flight()) + session.waiting() if session is not None else 0)
                if session is not None and session.slots != self.slots:
                    room = 0  # a slot count about to change admits nothing until its takes are out
                items = self._take(room, job) if room > 0 else []
                if not busy and not items:
                    self.cond.wait(0.2)
                    continue
            if items:
                try:
                    session = self._submit(items, session)
                except Exception as e:  # noqa: BLE001 - these takes fail (or go in again), the stream goes on
                    if is_out_of_memory(e) and session is not None:
                        items += [r.tag for r in session.drop_in_flight() + session.drop_waiting()]
                        session = None
                    self._failed(items, e)
                    continue
            try:
                finished = session.step()
            except Exception as e:  # noqa: BLE001 - the takes in the session fail (or go in again)
                lost = [r.tag for r in session.drop_in_flight() + session.drop_waiting()]
                session = None
                self._failed(lost, e)
                continue
            if finished:
                with self.cond:
                    self.decoding += len(finished)
                for f in finished:
                    self.decode_q.put((f.tag, f.codes, f.runaway))
                grown = self.sizer.takes_done(len(finished), session.slots)
                if grown:
                    log.info(grown)
                    self.slots = self.sizer.current

    def _take(self, n: int, job: str | None) -> list[Take]:
        """Up to ``n`` waiting takes of ``job``, in order (the others keep their places). Under ``cond``."""
        out, rest = [], collections.deque()
        while self.inbox and len(out) < n:
            t = self.inbox.popleft()
            (out if t.job == job else rest).append(t)
        self.inbox.extendleft(reversed(rest))
        return out

    def _prompts_of(self, takes: list[Take]) -> list | None:
        return [self.prompts[t.prompt_key] for t in takes] if takes[0].job == CLONE else None

    def _submit(self, items: list[Take], session):
        from .stream import Request

        with self.tts.lock.hold("a render on this worker", wait_s=LOCK_WAIT_S):
            model, built, sampling = self.tts.capture([t.voice for t in items], [t.text for t in items],
                                                      self.language, self.opts, prompt=self._prompts_of(items))
            if session is None or session.engine.qmodel is not model.model or session.sampling != sampling:
                session = self.tts.session(model, sampling, self.slots)
        for t, prompt in zip(items, built):
            session.submit(Request(prompt, t.seed, t.limit, t))
        return session

    def _failed(self, takes: list[Take], e: BaseException) -> None:
        if is_out_of_memory(e) and self.slots > 1:
            # Fewer slots from now on; the lost takes go in again first, with their own seeds.
            release_accelerator_memory()
            log.info(self.sizer.shrink(self.slots))
            self.slots = self.sizer.current
            with self.cond:
                self.inbox.extendleft(reversed(takes))
            return
        error = _portable(e)
        with self.cond:
            self.outbox += [Done(t.key, None, error=error) for t in takes]
            self.cond.notify_all()

    # ---- decoding ---------------------------------------------------------------------------

    def _decode(self) -> None:
        while True:
            group, end = gather(self.decode_q, DECODE_GROUP, None)
            done: list[Done] = []
            for job in {t.job for t, _, _ in group}:
                part = [g for g in group if g[0].job == job]
                takes = [t for t, _, _ in part]
                try:
                    with self.tts.lock.hold("a render on this worker", wait_s=LOCK_WAIT_S):
                        wavs = decode_takes(self.tts, [t.voice for t in takes], [t.text for t in takes], self.language,
                                            self.opts, [c for _, c, _ in part], self._prompts_of(takes))
                    done += [Done(t.key, w, runaway) for (t, _, runaway), w in zip(part, wavs)]
                except Exception as e:  # noqa: BLE001 - these takes fail; the driver reports it
                    error = _portable(e)
                    done += [Done(t.key, None, error=error) for t in takes]
            with self.cond:
                self.outbox += done
                self.decoding -= len(group)
                self.cond.notify_all()
            if end:
                return


def _portable(e: BaseException) -> BaseException:
    """``e`` itself when it survives the trip to the driver, else a RuntimeError saying the same."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(e).__name__}: {e}")
