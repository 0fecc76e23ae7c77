"""The device tensors of one decoding run: slots, KV caches and per-slot counters (``SlotState``).

``FastEngine`` (``audiobook/engine.py``) owns one and steps it; ``stream.Session`` keeps one
across calls. Views of the first slots share its memory, so a step computes only the slots
up to the highest speaking one; growing a cache or the trailing text replaces tensors, and
with them every captured graph that pointed at the old ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .engine import FastEngine
    from .qwen_prompts import Sampling

CODE_GROUPS = 16  # codebooks per frame: the talker's first, then the code predictor's 15


class SlotState:
    """Device tensors of one decoding run: slots, KV caches, per-slot counters."""

    def __init__(self, engine: "FastEngine", slots: int, trail_cap: int, capacity: int):
        e = engine
        dev, dt = e.device, e.dtype
        self.slots, self.trail_cap, self.capacity = slots, trail_cap, capacity
        # One cache per layer with keys then values on the head axis ``[S, 2 * kv_heads, positions, D]``
        # (the fused step writes both at once); ``kv`` and ``cp_kv`` are its (keys, values) views.
        self.kv_joint = [torch.zeros(slots, 2 * e.kv_heads, capacity, e.head_dim, device=dev, dtype=dt)
                         for _ in range(e.layers)]
        self.cp_kv_joint = [torch.zeros(slots, 2 * e.cp_kv_heads, CODE_GROUPS, e.cp_head_dim, device=dev, dtype=dt)
                            for _ in range(e.cp_layers)]
        self._split_caches()
        self.rows = torch.arange(slots, device=dev)
        self.tok = torch.zeros(slots, dtype=torch.long, device=dev)  # last first-codebook token
        self.hidden = torch.zeros(slots, e.hidden, device=dev, dtype=dt)  # talker's last normed hidden
        self.pos = torch.zeros(slots, dtype=torch.long, device=dev)  # next KV write position
        self.step = torch.zeros(slots, dtype=torch.long, device=dev)  # frames done for the item
        self.active = torch.zeros(slots, dtype=torch.long, device=dev)
        self.seen = torch.zeros(slots, e.vocab, dtype=torch.bool, device=dev)  # for repetition penalty
        self.marks = torch.ones(slots, 1, dtype=torch.bool, device=dev)  # what a step writes into ``seen``
        self.trail = torch.zeros(slots, trail_cap, e.hidden, device=dev, dtype=dt)
        self.trail_len = torch.zeros(slots, dtype=torch.long, device=dev)
        self.frame = torch.zeros(slots, CODE_GROUPS, dtype=torch.long, device=dev)  # output of a step
        self.logits = torch.zeros(slots, e.vocab, device=dev)  # the talker's raw first-codebook logits of a step
        self.suppress = torch.zeros(e.vocab, dtype=torch.bool, device=dev)  # codec ids never sampled
        self.seed = torch.zeros(slots, dtype=torch.long, device=dev)  # each slot's random stream (draw_keys)
        self.limit = torch.full((slots,), 1 << 30, dtype=torch.long, device=dev)  # most frames of the slot's take
        # After a step, per slot: 0 going on, 1 ended on its end code, 2 reached its frame limit,
        # 3 its first code was already the end code (no frame). Read by the host one step late.
        self.status = torch.zeros(slots, dtype=torch.long, device=dev)
        self.sampling: Sampling | None = None
        # The captured steps of this state, by (slot bucket, KV bucket), each with its own memory
        # pool; they point at this state's tensors, so they go when the tensors are replaced
        # (growth) or the sampling rules change, and all their memory with them.
        self.graphs: dict[tuple[int, int], Any] = {}
        self._views: dict[int, SlotState] = {}

    _PER_SLOT = ("rows", "tok", "hidden", "pos", "step", "active", "seen", "marks", "trail", "trail_len", "frame",
                 "logits", "seed", "limit", "status")

    def first_rows(self, n: int) -> "SlotState":
        """This state's first ``n`` slots as a state of their own, sharing its memory (this state when ``n`` covers all)."""
        if n >= self.slots:
            return self
        view = self._views.get(n)
        if view is None:
            view = object.__new__(SlotState)
            view.slots, view.trail_cap, view.capacity = n, self.trail_cap, self.capacity
            view.kv_joint = [c[:n] for c in self.kv_joint]
            view.cp_kv_joint = [c[:n] for c in self.cp_kv_joint]
            view._split_caches()
            for name in self._PER_SLOT:
                setattr(view, name, getattr(self, name)[:n])
            view.suppress, view.sampling, view.graphs, view._views = self.suppress, self.sampling, {}, {}
            self._views[n] = view
        return view

    def drop_graphs(self) -> None:
        """Forget the captured steps and the slot views (their tensors are about to change)."""
        self.graphs = {}
        self._views = {}

    def _split_caches(self) -> None:
        self.kv = [(c[:, : c.shape[1] // 2], c[:, c.shape[1] // 2 :]) for c in self.kv_joint]
        self.cp_kv = [(c[:, : c.shape[1] // 2], c[:, c.shape[1] // 2 :]) for c in self.cp_kv_joint]

    def grow(self, capacity: int) -> None:
        """Enlarge every KV cache to ``capacity`` positions, keeping what is written."""
        new = []
        for c in self.kv_joint:
            c2 = c.new_zeros(*c.shape[:2], capacity, c.shape[3])
            c2[:, :, : self.capacity] = c
            new.append(c2)
        self.kv_joint = new
        self._split_caches()
        self.capacity = capacity
        self.drop_graphs()  # they point at the old tensors

    def grow_trail(self, trail_cap: int) -> None:
        """Room for longer trailing text per slot, keeping what is there."""
        t = self.trail.new_zeros(self.slots, trail_cap, self.trail.shape[2])
        t[:, : self.trail_cap] = self.trail
        self.trail, self.trail_cap = t, trail_cap
        self.drop_graphs()  # they point at the old tensor

    def keep(self, engine: "FastEngine", rows: list[int]) -> "SlotState":
        """A smaller state holding only ``rows``, in that order (KV caches included)."""
        idx = torch.tensor(rows, device=self.rows.device)
        new = SlotState(engine, len(rows), self.trail_cap, self.capacity)
        for c, c2 in zip(self.kv_joint, new.kv_joint):
            c2.copy_(c[idx])
        for name in ("tok", "hidden", "pos", "step", "active", "seen", "trail", "trail_len", "seed", "limit"):
            getattr(new, name).copy_(getattr(self, name)[idx])
        new.suppress.copy_(self.suppress)
        new.sampling = self.sampling
        return new

    def _changed_by_a_step(self) -> tuple[torch.Tensor, ...]:
        return self.tok, self.hidden, self.pos, self.step, self.seen, self.frame, self.logits, self.status

    def write_index(self) -> torch.Tensor:
        """Where a step writes each slot's KV: its position, kept inside the cache whatever happens."""
        return self.pos.clamp_max(self.capacity - 1)

    def snapshot(self):
        """What one step changes: counters, tokens, outputs, and the KV entries it is about to write."""
        at = self.write_index()
        kv = [(k[self.rows, :, at].clone(), v[self.rows, :, at].clone()) for k, v in self.kv]
        return [t.clone() for t in self._changed_by_a_step()], at, kv

    def restore(self, saved) -> None:
        tensors, at, kv = saved
        for t, s in zip(self._changed_by_a_step(), tensors):
            t.copy_(s)
        for (k, v), (ks, vs) in zip(self.kv, kv):
            k[self.rows, :, at] = ks
            v[self.rows, :, at] = vs
