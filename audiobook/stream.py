"""The engine as a session that is fed: requests come in at any time, takes come out as they end.

A ``Session`` holds one ``FastEngine`` state with a fixed slot count for as long as it
lives (a whole render, and the next while the model and slot count stay). Each
``Request`` carries its prompt, its own seed and its own frame limit:

- a free slot takes the next waiting request at the very next step; requests admitted
  together are prefilled together in one batched forward;
- the slot count never changes, so a short tail, a retry or a small group never makes a
  new state on a GPU (never a new CUDA graph capture); on a CPU, where every row of a step
  costs time and there is no graph to keep, the state drops its idle rows once no request
  waits and at most half the slots speak (a book's tail), and takes them back as soon as a
  request comes (``compact``);
- every draw of a take comes from its own counter-based stream (``engine.draw_keys``), so a
  take depends only on its own prompt, seed and limit, never on its neighbours;
- a take that reaches its frame limit ends as a runaway in its own slot; the others never notice;
- which slots ended is read one step late: the step's ``status`` is copied to the host
  without waiting (``non_blocking``), and the host looks at it after launching the next
  step, so a GPU never waits for the host between steps.

The session is driven by one thread (``step``); ``submit`` may be called from any thread.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Any

import torch

from .engine import FastEngine, Prompt, Sampling, _KV_ROUND, _TRAIL_MIN
from .slot_state import CODE_GROUPS, SlotState

ENDED, RUNAWAY, EMPTY = 1, 2, 3  # a slot's status after a step (0: still speaking)
COMPACT = True  # False: every row computes to the end on a CPU too (the benchmark's reference row)


@dataclass
class Request:
    """One take to generate: its prompt, its own seed, its most frames, and the caller's tag."""

    prompt: Prompt
    seed: int
    limit: int = 0  # most frames; 0 or more than the sampling's cap: the cap (max_new_tokens - 1)
    tag: Any = None


@dataclass
class Finished:
    """A take that ended: its codes ``[frames, 16]`` (on the engine's device) and how it ended."""

    tag: Any
    codes: torch.Tensor
    runaway: bool  # it reached its frame limit without its end code
    request: Request


class Session:
    """A fed continuous-batching session over one engine with ``engine.slots`` slots and one sampling rule set."""

    def __init__(self, engine: FastEngine, sampling: Sampling, read_lag: int | None = None,
                 compact: bool | None = None):
        self.engine = engine
        self.sampling = sampling
        self.slots = engine.slots
        self.cap = max(sampling.max_new_tokens - 1, 0)  # qwen_tts never feeds back its last token
        dev = engine.device
        # On a GPU the host reads a step's status one step late; on a CPU nothing runs ahead, but
        # the same lag keeps both paths alike (``read_lag=0`` reads at once).
        self.read_lag = 1 if read_lag is None else int(read_lag)
        self._compact = compact
        self._waiting: collections.deque[Request] = collections.deque()
        self._lock = threading.Lock()
        self.owner: list[Request | None] = [None] * self.slots
        self._start: list[int] = [0] * self.slots  # the step at which the slot's take began
        self._pos: list[int] = [0] * self.slots  # host mirror of the KV write position
        self._longest_prompt = 0
        self.steps = 0  # decode steps run
        self._frames: collections.deque[torch.Tensor] = collections.deque()  # [S, 16] per step, from _base on
        self._base = 0
        pin = dev.type == "cuda"
        # One host buffer per step that may be unread at once: a status is never overwritten before it is read.
        self._buffers = self.read_lag + 1
        self._host = [torch.zeros(self.slots, dtype=torch.long, pin_memory=pin) for _ in range(self._buffers)]
        self._events: list[Any] = [None] * self._buffers
        self._unread: list[tuple[int, int]] = []  # (step, host buffer) written but not yet read
        self.state: SlotState = self._new_state()
        engine._state = self.state

    @property
    def compact(self) -> bool:
        """Whether idle rows are dropped at a tail: where no CUDA graph is replayed (a graph is per row count)."""
        return (COMPACT and not self.engine._graphs_on()) if self._compact is None else self._compact

    # ---- the caller's side ---------------------------------------------------------------

    def submit(self, request: Request) -> None:
        """Queue a request; a free slot takes it at the next step (any thread)."""
        with self._lock:
            self._waiting.append(request)

    def submit_first(self, request: Request) -> None:
        """Queue a request ahead of the others (a retake, so its chunk finishes soon)."""
        with self._lock:
            self._waiting.appendleft(request)

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def in_flight(self) -> list[Request]:
        """Requests holding a slot now."""
        return [r for r in self.owner if r is not None]

    @property
    def busy(self) -> bool:
        return any(r is not None for r in self.owner) or self.waiting() > 0

    def drop_waiting(self) -> list[Request]:
        """Take back every request not yet admitted (a Stop)."""
        with self._lock:
            out = list(self._waiting)
            self._waiting.clear()
        return out

    @torch.inference_mode()  # a state rebuilt inside a step holds inference tensors
    def drop_in_flight(self) -> list[Request]:
        """End every take in flight without a result (their slots are free again)."""
        out = []
        for slot, r in enumerate(self.owner):
            if r is not None:
                out.append(r)
                self._free(slot)
        self._unread.clear()
        return out

    def run(self) -> list[Finished]:
        """Step until every submitted request has ended; their takes in the order they ended."""
        out: list[Finished] = []
        while self.busy:
            out += self.step()
        return out

    # ---- one step ----------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> list[Finished]:
        """Admit waiting requests into free slots, run one decode step, return the takes seen ending."""
        finished: list[Finished] = []
        if len(self.owner) < self.slots and self.waiting():
            finished += self._resize(list(range(len(self.owner))))  # every slot again for the requests waiting
        self._admit()
        if not any(r is not None for r in self.owner):
            return finished
        st, e = self.state, self.engine
        need = max(p for p, r in zip(self._pos, self.owner) if r is not None) + 1
        if need > st.capacity:
            top = self._longest_prompt + max(self.sampling.max_new_tokens, 1) + self.read_lag + 1
            st.grow(max(need, min(top, 2 * st.capacity)))
        e._step(st, need, self.sampling, live=max(slot for slot, r in enumerate(self.owner) if r is not None) + 1)
        self._frames.append(st.frame.clone())
        buf = self.steps % self._buffers
        self._host[buf].copy_(st.status, non_blocking=True)
        if e.device.type == "cuda":
            ev = torch.cuda.Event()
            ev.record()
            self._events[buf] = ev
        self._unread.append((self.steps, buf))
        for slot, r in enumerate(self.owner):
            if r is not None:
                self._pos[slot] += 1
        self.steps += 1
        while len(self._unread) > self.read_lag:
            finished += self._read(*self._unread.pop(0))
        self._trim()
        live = [slot for slot, r in enumerate(self.owner) if r is not None]
        if self.compact and live and len(live) <= len(self.owner) // 2 and not self.waiting():
            finished += self._resize(live)  # a tail: only the speaking rows compute from now on
        return finished

    def _resize(self, rows: list[int]) -> list[Finished]:
        """Rebuild the state with ``rows`` (kept in that order), then as many parked rows as make the
        session's slot count when requests wait, else none. Statuses not yet read are read first
        (on a CPU nothing runs ahead); returns the takes they show ended."""
        finished: list[Finished] = []
        while self._unread:
            finished += self._read(*self._unread.pop(0))
        rows = [slot for slot in rows if self.owner[slot] is not None] if len(rows) < len(self.owner) else rows
        if not rows:
            return finished
        size = self.slots if self.waiting() else len(rows)
        order = rows + [rows[0]] * (size - len(rows))
        idx = torch.tensor(order, device=self.engine.device)
        new = self.state.keep(self.engine, order)
        new.active[len(rows):] = 0  # parked: they write at position 0 until a request comes
        new.pos[len(rows):] = 0
        self.state = self.engine._state = new
        pad = size - len(rows)
        self.owner = [self.owner[i] for i in rows] + [None] * pad
        self._start = [self._start[i] for i in rows] + [0] * pad
        self._pos = [self._pos[i] for i in rows] + [0] * pad
        self._frames = collections.deque(f[idx] for f in self._frames)
        pin = self.engine.device.type == "cuda"
        self._host = [torch.zeros(size, dtype=torch.long, pin_memory=pin) for _ in range(self._buffers)]
        return finished

    def _read(self, step: int, buf: int) -> list[Finished]:
        """The takes that ended at ``step``, from its status copied to the host."""
        ev = self._events[buf]
        if ev is not None:
            ev.synchronize()
        status = self._host[buf].tolist()
        out = []
        for slot, r in enumerate(self.owner):
            if r is None or self._start[slot] > step or not status[slot]:
                continue
            if status[slot] == EMPTY and step == self._start[slot]:
                codes = torch.zeros(0, CODE_GROUPS, dtype=torch.long, device=self.engine.device)
            else:
                first = self._start[slot] - self._base
                codes = torch.stack([self._frames[i][slot] for i in range(first, step - self._base + 1)])
                codes = codes[: self._audio_frames(codes)]
            out.append(Finished(r.tag, codes, status[slot] == RUNAWAY, r))
            self._free(slot)
        return out

    def _audio_frames(self, codes: torch.Tensor) -> int:
        """How many leading frames are audio: a control code (end, pad, think) never reaches the decoder."""
        control = min((self.sampling.eos_id, *self.sampling.suppress)) if self.sampling.suppress else self.sampling.eos_id
        bad = (codes[:, 0] >= control).nonzero()
        return int(bad[0, 0]) if bad.numel() else codes.shape[0]

    def _free(self, slot: int) -> None:
        self.owner[slot] = None
        # An idle slot still runs each step: park it where it writes in bounds.
        self.state.active[slot] = 0
        self.state.pos[slot] = 0
        self._pos[slot] = 0

    def _trim(self) -> None:
        """Drop the frames no slot's take needs any more."""
        starts = [self._start[s] for s, r in enumerate(self.owner) if r is not None]
        keep_from = min(starts) if starts else self.steps
        keep_from = min(keep_from, self.steps - self.read_lag)  # steps not read yet stay
        while self._base < keep_from and self._frames:
            self._frames.popleft()
            self._base += 1

    def _admit(self) -> None:
        free = [s for s, r in enumerate(self.owner) if r is None]
        if not free:
            return
        taken: list[tuple[int, Request]] = []
        with self._lock:
            while free and self._waiting:
                taken.append((free.pop(0), self._waiting.popleft()))
        if not taken:
            return
        s = self.sampling
        limits = [min(r.limit, self.cap) if r.limit > 0 else self.cap for _, r in taken]
        self._longest_prompt = max([self._longest_prompt] + [r.prompt.embeds.shape[0] for _, r in taken])
        try:
            self.engine._prefill_many(self.state, [slot for slot, _ in taken], [r.prompt for _, r in taken], s,
                                      seeds=[r.seed for _, r in taken], limits=limits)
        except BaseException:
            with self._lock:  # not admitted: they wait again, so a caller dropping the waiting gets them back
                self._waiting.extendleft(reversed([r for _, r in taken]))
            raise
        for slot, r in taken:
            self.owner[slot] = r
            self._start[slot] = self.steps
            self._pos[slot] = r.prompt.embeds.shape[0]

    def _new_state(self) -> SlotState:
        e = self.engine
        e._state = None  # the old caches and graph go before the new ones are made
        st = SlotState(e, self.slots, _TRAIL_MIN * 16, 2 * _KV_ROUND)
        st.sampling = self.sampling
        if self.sampling.suppress:
            st.suppress[list(self.sampling.suppress)] = True
        return st
