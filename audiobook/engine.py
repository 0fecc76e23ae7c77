"""Fast generation: continuous batching over qwen_tts's own talker and code predictor.

``qwen_tts`` runs a batch until its longest item ends, keeps every layer's hidden
state of every step, and calls Hugging Face ``generate`` for the code predictor at
every frame. This module keeps the model and its prompts and replaces only the loop:

- prompts are built by qwen_tts itself: its ``generate`` runs up to the call of
  ``talker.generate``, which is intercepted (``capture_prompts``), so design,
  clone (ICL and x-vector) and preset prompts are exactly qwen_tts's;
- ``slots`` items decode together; a slot whose item ends takes the next pending
  item at once (continuous batching), so no compute is spent on finished rows;
- the talker's KV cache is one preallocated tensor per layer, grown by doubling
  only when an item runs long; nothing else is kept but the codes;
- one decode step (15 code-predictor steps, one talker step, sampling) uses fixed
  shapes per (slot bucket, KV bucket): the slots up to the highest speaking one, the KV
  positions up to the longest item, each rounded up; on CUDA each bucket's step is
  captured once as a CUDA graph and replayed.

Correctness contract: with greedy decoding (``do_sample=False`` and
``subtalker_dosample=False``) the codes equal qwen_tts's ``generate`` for every
item. With sampling the logits processors are the same (repetition penalty,
minimum two frames, suppressed control codes, temperature, top-k, top-p), so the
distribution is the same; each item's random stream is seeded from torch's global
generator (seed it with ``torch.manual_seed`` before a call, as the qwen_tts path does),
through the Gumbel-max form of multinomial sampling that CUDA graphs can capture
(``audiobook/sampling.py``). A
seeded call is reproducible for the same inputs and slot count, but its draws are
not the qwen_tts path's draws.

Around the engine: ``qwen_prompts.py`` takes the prompts and sampling rules from qwen_tts,
``slot_state.py`` holds a run's device tensors, ``step.py`` is the fused decode step,
``sampling.py`` the picks, ``graphs.py`` the CUDA-graph capture and its guard, and
``agreement.py`` measures the engine against qwen_tts.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Callable

import torch

from .graphs import GraphCaptureError, GraphCheck, capture_stream, compare_step, cuda_graphs_off, record_graph, turn_graphs_off
from .qwen_prompts import Prompt, Sampling, capture_prompts, override
from .sampling import choose as _choose, draw_keys, step_noise
from .slot_state import CODE_GROUPS, SlotState
from .step import FusedStep, attend, kv_bucket

log = logging.getLogger(__name__)

MAX_SLOTS = 64  # most items one engine decodes at once (the batch_size setting's limit)
# A step computes the slots up to the highest speaking one, rounded up to one of these counts
# (at most the state's slots): each count is one CUDA graph per KV bucket, captured once.
SLOT_BUCKETS = (1, 2, 4, 8, 16, 32, MAX_SLOTS)
EAGER_KV_BUCKET = 32  # without graphs nothing is gained by coarse KV buckets: attention reads whole blocks of this
_KV_ROUND = 256  # KV capacity grows in whole blocks of this many positions
_TRAIL_MIN = 8
_DECODE_GROUP = 8  # most items decoded to audio in one padded batch


class _Forced:
    """Teacher forcing for one step: the codes fed instead of the picks, and the picks themselves."""

    def __init__(self, codes: torch.Tensor, next_tok: torch.Tensor):
        self.codes = codes  # [S, 15] code-predictor codes of the frame
        self.next_tok = next_tok  # [S] the next frame's first code
        self.first_picks: torch.Tensor | None = None
        self.group_picks: torch.Tensor | None = None


class FastEngine:
    """Continuous-batching generation over one loaded ``Qwen3TTSForConditionalGeneration``.

    ``slots`` items decode at once. Each step computes the slots up to the highest speaking
    one (rounded up to a ``SLOT_BUCKETS`` count) and attends over the KV positions up to the
    longest item (rounded up to a KV bucket, ``step.kv_bucket``); ``buckets`` counts the steps
    run in each (slot bucket, KV bucket). ``cuda_graphs`` (default: on when the model is on
    CUDA) captures one decode step per (slot bucket, KV bucket) as a CUDA graph, lazily, and
    replays it for every later step in that bucket while the state lives (a session's whole
    render). The first replay of every graph is checked against the same step run eagerly
    (``graph_checks``); on a mismatch graphs are off for the session (``cuda_graphs_off``).
    """

    def __init__(self, qmodel, slots: int = 8, cuda_graphs: bool | None = None, fused: bool = True,
                 int8: bool = False):
        self.qmodel = qmodel
        self.talker = qmodel.talker
        self.cp = self.talker.code_predictor
        tc = self.talker.config
        cc = self.cp.config
        first = self.talker.model.layers[0].self_attn
        cp_first = self.cp.model.layers[0].self_attn
        self.slots = max(1, min(MAX_SLOTS, int(slots)))
        self.device = self.talker.codec_head.weight.device
        self.dtype = self.talker.codec_head.weight.dtype
        self.layers, self.hidden, self.vocab = tc.num_hidden_layers, tc.hidden_size, tc.vocab_size
        self.heads, self.kv_heads, self.head_dim = tc.num_attention_heads, tc.num_key_value_heads, first.head_dim
        self.cp_layers, self.cp_heads = cc.num_hidden_layers, cc.num_attention_heads
        self.cp_kv_heads, self.cp_head_dim = cc.num_key_value_heads, cp_first.head_dim
        self.cp_vocab = self.cp.lm_head[0].weight.shape[0]
        self.mrope_section = first.rope_scaling["mrope_section"]
        self.mrope_interleaved = first.rope_scaling.get("interleaved", False)
        if cuda_graphs is None:
            cuda_graphs = self.device.type == "cuda"
        self.cuda_graphs = bool(cuda_graphs) and self.device.type == "cuda"
        self.graph_checks: list[GraphCheck] = []  # one per captured graph: its first replay against the eager step
        self.buckets: collections.Counter = collections.Counter()  # steps run per (slot bucket, KV bucket)
        self._state: SlotState | None = None
        # Rotary tables of the code predictor: its positions are 0..15 at every frame.
        cp_pos = torch.arange(CODE_GROUPS, device=self.device)[None]
        probe = torch.zeros(1, device=self.device, dtype=self.dtype)
        self._cp_cos, self._cp_sin = self.cp.model.rotary_emb(probe, cp_pos)
        # The step's layer math on fused weights (audiobook/step.py); None: through the model's modules.
        self.int8 = bool(int8)
        self.fused = FusedStep(self.talker, self._cp_cos, self._cp_sin, int8=self.int8) if fused or int8 else None

    # ---- public -------------------------------------------------------------------------

    def generate_wavs(self, call: Callable[[], Any]) -> Any:
        """Run a qwen_tts wrapper call (``generate_voice_design/clone/custom_voice``) on this engine.

        qwen_tts validates, tokenizes, builds prompts and decodes audio as always; only
        ``Qwen3TTSForConditionalGeneration.generate`` is replaced, for this call only.
        """

        def generate(**inputs):
            prompts, sampling = capture_prompts(self.qmodel, inputs)
            codes = self.generate_codes(prompts, sampling)
            return codes, [None] * len(codes)

        tokenizer = self.qmodel.speech_tokenizer
        decode = tokenizer.decode

        def decode_in_groups(items):
            # qwen_tts decodes a call's items as one padded batch; a call here may hold a whole
            # chapter, so decode a few items of similar length at a time: bounded memory, little
            # padding.
            size = min(self.slots, _DECODE_GROUP)
            if not isinstance(items, list) or len(items) <= size:
                return decode(items)
            order = sorted(range(len(items)), key=lambda i: len(items[i]["audio_codes"]))
            wavs, rate = [None] * len(items), None
            for g in range(0, len(order), size):
                group = order[g : g + size]
                part, rate = decode([items[i] for i in group])
                for i, wav in zip(group, part):
                    wavs[i] = wav
            return wavs, rate

        with override(self.qmodel, "generate", generate), override(tokenizer, "decode", decode_in_groups):
            return call()

    @torch.inference_mode()
    def generate_codes(self, prompts: list[Prompt], sampling: Sampling) -> list[torch.Tensor]:
        """Codes ``[frames, 16]`` for every prompt, in input order (qwen_tts's ``generate`` result)."""
        if not prompts:
            return []
        s = sampling
        state = self._prepare(prompts, s)
        results: list[torch.Tensor | None] = [None] * len(prompts)
        pending = list(range(len(prompts)))[::-1]  # pop() takes them in input order
        owner: list[int | None] = [None] * state.slots
        pos = [0] * state.slots  # host mirror of state.pos, so capacity needs no sync
        frames: list[list[torch.Tensor]] = [[] for _ in range(state.slots)]
        max_frames = s.max_new_tokens - 1  # qwen_tts never feeds back the last token

        def admit(slot: int) -> None:
            while pending:
                item = pending.pop()
                owner[slot] = item
                # Each item's random stream is seeded from torch's generator in admission order,
                # so a call seeded with ``torch.manual_seed`` reproduces itself.
                seed = int(torch.randint(0, 1 << 32, (1,)))
                first = int(self._prefill_many(state, [slot], [prompts[item]], s, seeds=[seed])[0])
                pos[slot] = prompts[item].embeds.shape[0]
                frames[slot] = []
                if max_frames <= 0 or first == s.eos_id:
                    results[item] = torch.zeros(0, CODE_GROUPS, dtype=torch.long, device=self.device)
                    continue
                return
            owner[slot] = None
            state.active[slot] = 0
            state.pos[slot] = 0  # an idle slot still runs each step: park it where it writes in bounds

        for slot in range(state.slots):
            admit(slot)
        while any(o is not None for o in owner):
            need = max(p for p, o in zip(pos, owner) if o is not None) + 1
            if need > state.capacity:
                state.grow(min(self._capacity_for(prompts, s), max(need, 2 * state.capacity)))
            self._step(state, need, s, live=max(i for i, o in enumerate(owner) if o is not None) + 1)
            frame = state.frame.clone()
            ended = ((state.tok == s.eos_id) | (state.step >= max_frames)).tolist()
            for slot, item in enumerate(owner):
                if item is None:
                    continue
                frames[slot].append(frame[slot])
                pos[slot] += 1
                if ended[slot]:
                    results[item] = torch.stack(frames[slot])
                    admit(slot)
            live = [slot for slot, item in enumerate(owner) if item is not None]
            if not self._graphs_on() and not pending and live and len(live) <= state.slots // 2:
                # The tail of a call: on a CPU every row costs time, so keep only the speaking slots.
                state = self._state = state.keep(self, live)
                owner, pos, frames = [owner[i] for i in live], [pos[i] for i in live], [frames[i] for i in live]
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def _teacher_forced(self, prompts: list[Prompt], s: Sampling, refs: list[torch.Tensor]):
        """Feed each item's reference codes ``[T, 16]`` through the engine.

        Returns per item: the raw first-codebook logits of frames ``0..T`` ``[T+1, V]``, the
        engine's own greedy first-codebook picks there ``[T+1]``, and its code-predictor picks
        ``[T, 15]`` given the reference's earlier groups.
        """
        st = self._prepare(prompts, s)
        n = len(prompts)
        assert st.slots == n, "teacher forcing needs one slot per item"
        lengths = [r.shape[0] for r in refs]
        logits: list[list[torch.Tensor]] = [[] for _ in range(n)]
        firsts: list[list[int]] = [[] for _ in range(n)]
        groups: list[list[torch.Tensor]] = [[] for _ in range(n)]
        pos = [0] * n

        def park(slot: int) -> None:
            st.active[slot] = 0
            st.pos[slot] = 0

        for i, prompt in enumerate(prompts):
            firsts[i].append(self._prefill(st, i, prompt, s))
            logits[i].append(st.logits[i].clone())
            pos[i] = prompt.embeds.shape[0]
            if lengths[i] == 0:
                park(i)
                continue
            st.tok[i] = refs[i][0, 0]
            st.seen[i] = False
            st.seen[i, refs[i][0, 0]] = True
        for t in range(max(lengths, default=0)):
            live = [i for i in range(n) if t < lengths[i]]
            need = max(pos[i] for i in live) + 1
            if need > st.capacity:
                st.grow(min(self._capacity_for(prompts, s), max(need, 2 * st.capacity)))
            codes = torch.zeros(n, CODE_GROUPS - 1, dtype=torch.long, device=self.device)
            next_tok = torch.zeros(n, dtype=torch.long, device=self.device)
            for i in live:
                codes[i] = refs[i][t, 1:]
                next_tok[i] = refs[i][t + 1, 0] if t + 1 < lengths[i] else s.eos_id
            force = _Forced(codes, next_tok)
            self._step_eager(st, need, s, force)
            picks = force.first_picks.tolist()
            for i in live:
                logits[i].append(st.logits[i].clone())
                firsts[i].append(picks[i])
                groups[i].append(force.group_picks[i].clone())
                pos[i] += 1
                if t + 1 == lengths[i]:
                    park(i)
        empty = torch.zeros(0, CODE_GROUPS - 1, dtype=torch.long, device=self.device)
        return [(torch.stack(logits[i]), torch.tensor(firsts[i]), torch.stack(groups[i]) if groups[i] else empty)
                for i in range(n)]

    # ---- setup --------------------------------------------------------------------------

    def _capacity_for(self, prompts: list[Prompt], s: Sampling) -> int:
        return max(p.embeds.shape[0] for p in prompts) + max(s.max_new_tokens, 1)

    def _prepare(self, prompts: list[Prompt], s: Sampling) -> SlotState:
        slots = min(self.slots, len(prompts))
        trail = max(_TRAIL_MIN, 1 << (max(p.trailing.shape[0] for p in prompts)).bit_length())
        longest = max(p.embeds.shape[0] for p in prompts)
        first = min(self._capacity_for(prompts, s), -(-(longest + 2 * _KV_ROUND) // _KV_ROUND) * _KV_ROUND)
        st = self._state
        # A call starts at the capacity a fresh engine would give it (a grown cache is not kept):
        # a step's KV bucket stops at the capacity, so the same call computes the same numbers
        # whatever ran before, and one long item does not hold the larger cache for good.
        if st is None or st.slots != slots or st.trail_cap < trail or st.capacity != first:
            self._state = st = None  # the old caches and graphs go before the new ones are made
            st = self._state = SlotState(self, slots, trail, first)
        st.active.zero_()
        st.pos.zero_()
        st.step.zero_()
        if st.sampling != s:
            st.drop_graphs()  # sampling rules are baked into the graphs
            st.sampling = s
            st.suppress.zero_()
            if s.suppress:
                st.suppress[list(s.suppress)] = True
        return st

    # ---- prefill: qwen_tts's own talker forward over one prompt ---------------------------

    def _prefill(self, st: SlotState, slot: int, prompt: Prompt, s: Sampling) -> int:
        """Run one prompt through the talker, store its KV in ``slot`` and pick its first code."""
        return int(self._prefill_many(st, [slot], [prompt], s)[0])

    def _prefill_many(self, st: SlotState, slots: list[int], prompts: list[Prompt], s: Sampling,
                      seeds: list[int] | None = None, limits: list[int] | None = None) -> torch.Tensor:
        """Prefill several prompts in one batched talker forward, each into its slot; their first codes ``[n]``.

        Prompts are padded on the right: with the causal mask a real position never sees a
        pad, and the pads' KV entries lie where decoding writes before it ever reads. ``seeds``
        and ``limits`` set the slots' random streams and frame limits (kept as they are when None).
        Nothing is read back to the host.
        """
        from transformers.cache_utils import DynamicCache

        n = len(prompts)
        lengths = [p.embeds.shape[0] for p in prompts]
        longest = max(lengths)
        if longest > st.capacity:
            st.grow(-(-longest // _KV_ROUND) * _KV_ROUND)
        trail = max(p.trailing.shape[0] for p in prompts) + 1
        if trail > st.trail_cap:
            st.grow_trail(1 << (trail - 1).bit_length())
        if n == 1:
            embeds = prompts[0].embeds[None]
        else:
            embeds = prompts[0].embeds.new_zeros(n, longest, prompts[0].embeds.shape[1])
            for i, p in enumerate(prompts):
                embeds[i, : lengths[i]] = p.embeds
        cache = DynamicCache()
        out = self.talker.model(inputs_embeds=embeds, past_key_values=cache, use_cache=True)
        idx = torch.tensor(slots, device=self.device)
        ends = torch.tensor([x - 1 for x in lengths], device=self.device)
        for layer, (k, v) in enumerate(st.kv):
            keys, values = _layer_kv(cache, layer)
            k[idx, :, :longest] = keys
            v[idx, :, :longest] = values
        hidden = out.last_hidden_state[torch.arange(n, device=self.device), ends]  # [n, D]
        logits = self.talker.codec_head(hidden).float()
        st.logits[idx] = logits
        if seeds is not None:
            st.seed[idx] = torch.tensor([int(x) & 0xFFFFFFFF for x in seeds], device=self.device)
        if limits is not None:
            st.limit[idx] = torch.tensor(limits, dtype=torch.long, device=self.device)
        seen = torch.zeros(n, self.vocab, dtype=torch.bool, device=self.device)
        zero = torch.zeros(n, dtype=torch.long, device=self.device)
        keys = draw_keys(st.seed[idx], zero, 0) if s.do_sample else None
        tok = self._pick_first(logits, seen, zero, st.suppress, s, keys)
        st.tok[idx] = tok
        st.hidden[idx] = hidden
        st.pos[idx] = torch.tensor(lengths, device=self.device)
        st.step[idx] = 0
        seen.scatter_(1, tok[:, None], True)
        st.seen[idx] = seen
        trails = st.trail.new_empty(n, st.trail_cap, st.trail.shape[2])
        for i, p in enumerate(prompts):
            trails[i] = p.pad
            m = min(p.trailing.shape[0], st.trail_cap - 1)
            trails[i, :m] = p.trailing[:m]
        st.trail[idx] = trails
        st.trail_len[idx] = torch.tensor([min(p.trailing.shape[0], st.trail_cap - 1) for p in prompts], device=self.device)
        st.active[idx] = 1
        st.status[idx] = 0
        return tok

    # ---- one decode step for every slot -----------------------------------------------------

    def _step(self, st: SlotState, need: int, s: Sampling, live: int | None = None) -> None:
        """One decode step of ``st``: ``need`` KV positions hold the longest item, slots ``live`` and up are idle.

        The step runs over the slot bucket holding the ``live`` first slots and the KV bucket
        holding ``need`` positions: with CUDA graphs, the bucket's graph (captured the first
        time the bucket comes up, then replayed); without, the same buckets eagerly.
        """
        rows = slot_bucket(live or st.slots, st.slots)
        graphs = self._graphs_on()
        kv_len = kv_bucket(need, st.capacity, None if graphs else EAGER_KV_BUCKET)
        self.buckets[(rows, kv_len)] += 1
        part = st.first_rows(rows)
        if not graphs:
            self._step_eager(part, kv_len, s)
            return
        graph = st.graphs.get((rows, kv_len))
        if graph is None:
            try:
                graph = st.graphs[(rows, kv_len)] = self._capture(part, s, kv_len)
            except Exception as e:
                self._state = None  # its caches are not to be trusted again
                turn_graphs_off(f"Capturing the decode step as a CUDA graph failed ({e}); "
                                 "CUDA graphs are off for this session.")
                raise GraphCaptureError(f"Capturing the decode step as a CUDA graph failed ({e}).") from e
            if not self._replay_checked(part, graph, kv_len, s):
                st.drop_graphs()
            return
        graph.replay()

    def _graphs_on(self) -> bool:
        return self.cuda_graphs and cuda_graphs_off() is None

    def _replay_checked(self, st: SlotState, graph, kv_len: int, s: Sampling) -> bool:
        """A new graph's first replay, judged against the same step run eagerly at the same KV length.

        Both start from the same state and random numbers. A graph that recorded the wrong
        buffer raises nothing and writes wrong audio, so on any difference graphs go off for
        the session, one warning says so, and this step and all later ones run eagerly.
        Returns whether the graph passed.
        """
        saved, rng = st.snapshot(), self._rng_state()
        self._graph_step(st, s, kv_len)
        eager = (st.frame.clone(), st.tok.clone(), st.logits.clone())
        st.restore(saved)
        self._set_rng_state(rng)
        graph.replay()
        rows = st.active.bool()  # idle slots compute on leftovers: only the speaking ones are judged
        check = compare_step(eager, (st.frame, st.tok, st.logits), rows, self.dtype, st.slots, kv_len)
        self.graph_checks.append(check)
        if check.ok:
            return True
        turn_graphs_off(
            f"A CUDA graph's replay differed from the same step run without it ({check.describe()}); "
            "CUDA graphs are off for this session and generation goes on without them.")
        st.restore(saved)
        self._set_rng_state(rng)
        self._step_eager(st, kv_len, s)
        return False

    def _capture(self, st: SlotState, s: Sampling, kv_len: int):
        """Record one decode step over ``kv_len`` KV positions as a CUDA graph (state is left as found)."""
        log.debug("Capturing a CUDA graph: %d slots, KV length %d of %d", st.slots, kv_len, st.capacity)
        with capture_stream(self.device):
            self._warm_up(st, s, kv_len)
            return self._record(st, s, kv_len)

    def _record(self, st: SlotState, s: Sampling, kv_len: int):
        """The captured step as a graph to replay (recording runs nothing)."""
        return record_graph(lambda: self._graph_step(st, s, kv_len), self.device)

    def _warm_up(self, st: SlotState, s: Sampling, kv_len: int | None = None) -> None:
        """Run the captured step eagerly before a capture: kernels load and the allocator settles.

        The state is put back after each step, so the steps write where the real one will
        (never a position further) and the decoding resumes exactly where it was; so is the
        random generator, so the warm-up draws nothing that the decoding would have drawn.
        """
        saved, rng = st.snapshot(), self._rng_state()
        for _ in range(2):
            self._graph_step(st, s, kv_len)
            st.restore(saved)
        self._set_rng_state(rng)  # a call that captures draws what a call that replays draws

    def _rng_state(self) -> torch.Tensor:
        if self.device.type == "cuda":
            return torch.cuda.get_rng_state(self.device)
        return torch.get_rng_state()

    def _set_rng_state(self, state: torch.Tensor) -> None:
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(state, self.device)
        else:
            torch.set_rng_state(state)

    def _graph_step(self, st: SlotState, s: Sampling, kv_len: int | None = None) -> None:
        """The work a CUDA graph records: one decode step over ``kv_len`` KV positions (default: the whole capacity)."""
        self._step_eager(st, st.capacity if kv_len is None else kv_len, s)

    def _step_eager(self, st: SlotState, kv_len: int, s: Sampling, force: "_Forced | None" = None) -> None:
        """Code predictor for the last first-codebook token, then one talker step, then sampling.

        ``force`` (teacher forcing, never in a captured graph) feeds given codes instead of
        the picks and records what the engine would have picked.
        """
        embed = self.talker.model.codec_embedding
        cp_embed = self.cp.model.codec_embedding
        last = embed(st.tok)  # [S, D]
        noise_first = noise_groups = None
        if self.fused is not None and (s.do_sample or s.sub_do_sample):  # every draw of the step in one pass
            noise_first, noise_groups = step_noise(st.seed, st.step, self.vocab, CODE_GROUPS - 1, self.cp_vocab,
                                                   (s.temperature, s.sub_temperature))
        codes = self._predict_codes(st, last, s, force, noise_groups)
        # Sum as qwen_tts does: stack the 16 code embeddings and reduce once.
        if self.fused is not None:
            x = self.fused.embed_frame(last, codes)
        else:
            x = torch.stack([last] + [cp_embed[g](codes[:, g]) for g in range(CODE_GROUPS - 1)], 1).sum(1)
        text = st.trail[st.rows, torch.minimum(st.step, st.trail_len)]
        x = (x + text)[:, None]
        hidden = self._talker_step(st, x, kv_len)
        logits = self.talker.codec_head(hidden).float()
        st.logits.copy_(logits)
        keys = draw_keys(st.seed, st.step + 1, 0) if s.do_sample and noise_first is None else None
        tok = self._pick_first(logits, st.seen, st.step + 1, st.suppress, s, keys, noise_first)
        if force is not None:
            force.first_picks = tok
            tok = force.next_tok
        st.frame[:, 0] = st.tok
        st.frame[:, 1:] = codes
        # A tensor value: a Python True would be copied from the host, which a capture forbids.
        st.seen.scatter_(1, tok[:, None], st.marks)
        st.tok.copy_(tok)
        st.hidden.copy_(hidden)
        st.pos.add_(st.active)
        st.step.add_(st.active)
        self._mark_status(st, s)

    def _mark_status(self, st: SlotState, s: Sampling) -> None:
        """Each slot's ``status`` after a step (device ops only: the host reads it a step later)."""
        first_was_end = st.frame[:, 0] == s.eos_id
        ended = st.tok == s.eos_id
        limited = st.step >= torch.clamp_max(st.limit, max(s.max_new_tokens - 1, 0))
        status = torch.where(limited, 2, 0)
        status = torch.where(ended, 1, status)
        st.status.copy_(torch.where(first_was_end, 3, status))

    def _pick_first(self, logits, seen, done, suppress, s: Sampling, keys: torch.Tensor | None = None,
                    noise: torch.Tensor | None = None) -> torch.Tensor:
        """First-codebook token: repetition penalty, minimum length, suppressed ids, then choose.

        A sampled pick's noise is ``noise`` (``sampling.step_noise``), else hashed from ``keys``.
        """
        if s.repetition_penalty != 1.0:
            p = s.repetition_penalty
            logits = torch.where(seen, torch.where(logits < 0, logits * p, logits / p), logits)
        if s.min_new_tokens > 0:
            early = (done < s.min_new_tokens)[:, None] & (torch.arange(self.vocab, device=logits.device) == s.eos_id)
            logits = logits.masked_fill(early, float("-inf"))
        if s.suppress:
            logits = logits.masked_fill(suppress, float("-inf"))
        return _choose(logits, s.do_sample, s.temperature, s.top_k, s.top_p, keys, noise)

    def _predict_codes(self, st: SlotState, last: torch.Tensor, s: Sampling, force: "_Forced | None" = None,
                       noise: torch.Tensor | None = None):
        """The code predictor's 15 steps for every slot, with a 16-position scratch cache.

        ``noise [S, 15, V]`` (``sampling.step_noise``) holds the sampled picks' draws; without it
        each group's draws are hashed on their own.
        """
        cp = self.cp
        x = torch.stack([st.hidden, last], 1)  # [S, 2, D]: qwen_tts's prefill of two positions
        codes, picks = [], []
        for g in range(CODE_GROUPS - 1):
            if g > 0:
                x = cp.model.codec_embedding[g - 1](codes[-1])[:, None]
            start = 0 if g == 0 else g + 1
            logits = self._cp_logits(st, x, start, g)
            if noise is not None:
                pick = _choose(logits, s.sub_do_sample, s.sub_temperature, s.sub_top_k, s.sub_top_p, noise=noise[:, g])
            else:
                pick = _choose(logits, s.sub_do_sample, s.sub_temperature, s.sub_top_k, s.sub_top_p,
                               draw_keys(st.seed, st.step, g + 1) if s.sub_do_sample else None)
            if force is not None:
                picks.append(pick)
                pick = force.codes[:, g]
            codes.append(pick)
        if force is not None:
            force.group_picks = torch.stack(picks, 1)
        return torch.stack(codes, 1)

    def _cp_logits(self, st: SlotState, x: torch.Tensor, start: int, g: int) -> torch.Tensor:
        """Logits ``[S, V]`` of code group ``g + 1`` from the code predictor's input ``x [S, T, D]`` at ``start``.

        Float from the modules' path; in the model's dtype from the fused one (an argmax picks the
        same code, and a sampled pick adds its float noise).
        """
        if self.fused is not None:
            h = self.fused.code_predictor(self.fused.project(x), st.cp_kv_joint, start)
            return self.fused.lm_heads[g](h)
        h = self._cp_layers(st, self.cp.small_to_mtp_projection(x), start)
        return self.cp.lm_head[g](h[:, -1]).float()

    def _cp_layers(self, st: SlotState, x: torch.Tensor, start: int) -> torch.Tensor:
        from qwen_tts.core.models.modeling_qwen3_tts import apply_rotary_pos_emb

        n = x.shape[1]
        end = start + n
        cos, sin = self._cp_cos[:, start:end], self._cp_sin[:, start:end]
        causal = n > 1
        for layer, (kc, vc) in zip(self.cp.model.layers, st.cp_kv):
            a = layer.self_attn
            h = layer.input_layernorm(x)
            q, k, v = _qkv(a, h)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            kc[:, :, start:end] = k
            vc[:, :, start:end] = v
            o = attend(q, kc[:, :, :end], vc[:, :, :end], None, a.scaling, causal).view(*x.shape[:2], -1)
            x = x + a.o_proj(o)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.cp.model.norm(x)

    def _talker_step(self, st: SlotState, x: torch.Tensor, kv_len: int) -> torch.Tensor:
        """One talker position per slot at ``st.pos``; returns the normed last hidden ``[S, D]``."""
        if self.fused is not None:
            return self.fused.talker(x[:, 0], st.kv_joint, st.rows, st.write_index(), st.pos, kv_len)
        from qwen_tts.core.models.modeling_qwen3_tts import apply_multimodal_rotary_pos_emb

        slots = x.shape[0]
        position_ids = st.pos.view(1, slots, 1).expand(3, slots, 1)
        cos, sin = self.talker.model.rotary_emb(x, position_ids)
        mask = (torch.arange(kv_len, device=x.device)[None] <= st.pos[:, None])[:, None, None]  # [S,1,1,K]
        at = st.write_index()
        for layer, (kc, vc) in zip(self.talker.model.layers, st.kv):
            a = layer.self_attn
            h = layer.input_layernorm(x)
            q, k, v = _qkv(a, h)
            q, k = apply_multimodal_rotary_pos_emb(q, k, cos, sin, self.mrope_section, self.mrope_interleaved)
            kc[st.rows, :, at] = k[:, :, 0]
            vc[st.rows, :, at] = v[:, :, 0]
            o = attend(q, kc[:, :, :kv_len], vc[:, :, :kv_len], mask, a.scaling, False).view(*x.shape[:2], -1)
            x = x + a.o_proj(o)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.talker.model.norm(x)[:, 0]


def slot_bucket(live: int, slots: int) -> int:
    """How many slots a step computes: the smallest ``SLOT_BUCKETS`` count holding ``live``, at most ``slots``."""
    return min(slots, next((b for b in SLOT_BUCKETS if b >= live), slots))


def _qkv(attn, h: torch.Tensor):
    """Projections with qwen_tts's per-head q/k norms; returns ``[B, heads, T, head_dim]`` each."""
    shape = (*h.shape[:-1], -1, attn.head_dim)
    q = attn.q_norm(attn.q_proj(h).view(shape)).transpose(1, 2)
    k = attn.k_norm(attn.k_proj(h).view(shape)).transpose(1, 2)
    v = attn.v_proj(h).view(shape).transpose(1, 2)
    return q, k, v


def _layer_kv(cache, layer: int):
    """Keys and values of one layer of a transformers cache (4.5x layout, with a fallback)."""
    if hasattr(cache, "layers"):
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache.key_cache[layer], cache.value_cache[layer]  # pragma: no cover - older transformers

