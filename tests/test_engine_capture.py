"""The engine's CUDA-graph path, proven on the CPU: what a captured step may do, and what it leaves behind.

No GPU runs these tests. What CUDA graph capture forbids is checked on the operators a
decode step dispatches; the warm-up, KV bounds and random-number rules are checked on
the same code that runs around a capture; ``bench/gpu_check.py`` runs the real thing.
"""

from collections import Counter
from dataclasses import replace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import audiobook.engine as engine_mod
import audiobook.graphs as graphs_mod
from audiobook import step as step_mod
from audiobook.engine import FastEngine
from audiobook.graphs import compare_step
from model_helpers import ENGINE_TEXTS, job_prompts, prompts_of, tiny_tts, varied_lengths

aten = torch.ops.aten
TEXTS = ENGINE_TEXTS


@pytest.fixture(scope="module")
def tts(tiny_models_dir):
    return tiny_tts(tiny_models_dir)


_prompts = prompts_of  # tests/test_stream.py builds its prompts with it


def _job(tts, ref_wav, job, texts=TEXTS[:3]):
    """(loaded qwen_tts model, prompts, sampling) for one prompt kind."""
    return job_prompts(tts, ref_wav, job, texts, 32)


def _sampled(s):
    """Every sampling rule on, so that every branch of the step is recorded."""
    return replace(s, do_sample=True, top_k=40, top_p=0.9, temperature=0.8,
                   sub_do_sample=True, sub_top_k=20, sub_top_p=0.85, sub_temperature=0.9)


def _mid_decoding(model, prompts, s, slots):
    """An engine and its state with the first ``slots - 1`` prompts admitted and one slot idle."""
    engine = FastEngine(model.model, slots=slots, cuda_graphs=False)
    st = engine._prepare(prompts[:slots], s)
    for slot in range(slots - 1):
        engine._prefill(st, slot, prompts[slot], s)
    return engine, st


# ---- what a captured step may dispatch ------------------------------------------------------


def _capture_problem(func, args, kwargs) -> str | None:
    """Why ``func`` cannot be recorded in a CUDA graph (or is unsafe there), or None."""
    name = func.name()
    packet = func.overloadpacket
    if packet in (aten.multinomial,):
        return f"{name}: multinomial checks its input on the host"
    if packet in (aten.lift_fresh, aten.lift_fresh_copy):
        return f"{name}: a tensor built from host data (a host-to-device copy on CUDA)"
    if packet in (aten.index_put_, aten.index_put, aten._index_put_impl_):
        indices, value = args[1], args[2]
        if value.dim() == 0:
            return f"{name} with a 0-dim value: on CUDA a Python scalar becomes a host tensor copied to the device"
        if any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in indices):
            return f"{name} with a boolean mask: the indices are found on the host"
        return None
    if packet is aten.index:
        if any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1]):
            return f"{name} with a boolean mask: data-dependent output shape"
        return None  # integer indices: the output shape is the indices' shape
    if torch.Tag.data_dependent_output in func.tags:
        return f"{name}: reads a device value back to the host"
    if torch.Tag.dynamic_output_shape in func.tags:
        return f"{name}: data-dependent output shape"
    return None


class CaptureAudit(TorchDispatchMode):
    """Records every operator dispatched inside the block and what capture would make of it."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []
        self.problems: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops.append(func.name())
        problem = _capture_problem(func, args, kwargs)
        if problem and problem not in self.problems:
            self.problems.append(problem)
        return func(*args, **kwargs)


def test_the_audit_catches_what_capture_forbids():
    """The audit is not blind: each forbidden pattern of the issue is reported."""
    x = torch.zeros(4, 6)
    rows, cols = torch.arange(4), torch.tensor([1, 2, 3, 4])
    cases = {
        "0-dim value": lambda: x.__setitem__((rows, cols), True),
        "reads a device value": lambda: float(x.sum()),
        "boolean mask": lambda: x[x > 0],
        "nonzero": lambda: x.nonzero(),
        "multinomial": lambda: torch.multinomial(torch.ones(2, 3), 1),
    }
    for expected, case in cases.items():
        with CaptureAudit() as audit:
            case()
        assert any(expected in p for p in audit.problems), (expected, audit.problems)
    with CaptureAudit() as audit:  # the engine's way: tensor values, scatter, integer gathers
        x.scatter_(1, cols[:, None] % 6, torch.ones(4, 1))
        x[rows, cols % 6] = torch.ones(4)
        x.exponential_().argmax(-1)
    assert audit.problems == [] and len(audit.ops) >= 4


@pytest.mark.parametrize("job", ["design", "clone", "preset"])
@pytest.mark.parametrize("mode", ["greedy", "sampled"])
def test_the_captured_step_is_capture_safe(tts, ref_wav, job, mode):
    model, prompts, s = _job(tts, ref_wav, job)
    s = _sampled(s) if mode == "sampled" else s
    assert s.suppress and s.min_new_tokens > 0 and s.repetition_penalty != 1.0  # every rule is in the step
    engine, st = _mid_decoding(model, prompts, s, slots=3)
    with torch.inference_mode(), CaptureAudit() as audit:
        engine._graph_step(st, s)
    assert len(audit.ops) > 100, "the audit saw the step"
    assert audit.problems == [], f"{job}/{mode}: {audit.problems}"


# ---- KV bounds --------------------------------------------------------------------------------


def _state_tensors(st):
    """Everything a decode step reads or keeps (outputs of the last step and scratch space excluded)."""
    named = {name: getattr(st, name).clone() for name in ("tok", "hidden", "pos", "step", "active", "seen", "trail", "trail_len")}
    for layer, (k, v) in enumerate(st.kv):
        named[f"k{layer}"], named[f"v{layer}"] = k.clone(), v.clone()
    return named


def _assert_same_state(before, after):
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), f"{name} changed"


def test_an_item_ending_at_the_last_kv_position_keeps_its_slot_in_bounds(tts, ref_wav, monkeypatch):
    """An item whose last frame is written at KV position capacity-1 leaves its slot idle; the
    steps that follow (other slots still speaking) must not write that slot past the cache."""
    model, prompts, s = _job(tts, ref_wav, "preset", TEXTS)
    by_length = sorted(prompts, key=lambda p: p.embeds.shape[0])
    prompts = [by_length[0], by_length[1], by_length[4], by_length[2], by_length[3]]  # slot 2 gets the longest
    longest = by_length[4].embeds.shape[0]
    assert by_length[3].embeds.shape[0] < longest
    monkeypatch.setattr(engine_mod, "_KV_ROUND", 8)
    capacity = -(-(longest + 16) // 8) * 8  # the engine's first capacity for this call
    # EOS never picked: every item runs to max_new_tokens - 1 frames, and slot 2's last write is at capacity-1.
    s = replace(s, suppress=s.suppress + (s.eos_id,), max_new_tokens=capacity - longest + 1)
    with torch.inference_mode():
        codes = FastEngine(model.model, slots=3, cuda_graphs=False).generate_codes(prompts, s)
        monkeypatch.setattr(engine_mod, "_KV_ROUND", 256)
        alone = FastEngine(model.model, slots=5, cuda_graphs=False).generate_codes(prompts, s)
    assert [c.shape[0] for c in codes] == [s.max_new_tokens - 1] * 5
    assert all(torch.equal(a, b) for a, b in zip(codes, alone)), "an idle slot disturbed the others"


def test_warm_up_at_the_last_kv_position_stays_in_bounds_and_leaves_the_state(tts, ref_wav, monkeypatch):
    """A capture's warm-up steps, with the longest active item at position capacity-1, write nothing
    past the cache and leave every state tensor (KV caches included) as they found it."""
    monkeypatch.setattr(engine_mod, "_KV_ROUND", 8)
    model, prompts, s = _job(tts, ref_wav, "preset")
    engine, st = _mid_decoding(model, prompts, s, slots=3)
    st.pos[0] = st.capacity - 1
    before = _state_tensors(st)
    with torch.inference_mode():
        engine._warm_up(st, s)
    _assert_same_state(before, _state_tensors(st))


# ---- random numbers ---------------------------------------------------------------------------


class EagerGraph:
    """A CPU stand-in for a captured CUDA graph: replaying runs the recorded step eagerly."""

    def __init__(self, body):
        self.body = body
        self.replays = 0

    def replay(self):
        self.replays += 1
        self.body()


@pytest.fixture
def graphs_allowed(monkeypatch):
    """CUDA graphs on for the session at the start of the test, whatever an earlier test did."""
    monkeypatch.setattr(graphs_mod, "_graphs_off", None)


def graphs_on_cpu(engine, monkeypatch, recorded=None):
    """Drive ``engine`` through its CUDA-graph path (warm-up, record, replay) with eager stand-ins."""
    def record(self, st, s, kv_len):
        graph = EagerGraph(lambda: self._graph_step(st, s, kv_len))
        graph.bucket = (st.slots, kv_len)
        if recorded is not None:
            recorded.append(graph)
        return graph

    monkeypatch.setattr(FastEngine, "_record", record)
    engine.cuda_graphs = True
    return engine


def test_warm_up_draws_no_random_numbers(tts, ref_wav):
    model, prompts, s = _job(tts, ref_wav, "preset")
    s = _sampled(s)
    engine, st = _mid_decoding(model, prompts, s, slots=3)
    torch.manual_seed(1)
    before, rng = _state_tensors(st), torch.get_rng_state()
    with torch.inference_mode():
        engine._warm_up(st, s)
    assert torch.equal(torch.get_rng_state(), rng), "the warm-up moved the random generator"
    _assert_same_state(before, _state_tensors(st))


def test_a_seeded_call_reproduces_itself_across_state_changes(tts, ref_wav, monkeypatch, graphs_allowed):
    """Same seed, same codes: whether the call captures its graph or replays a cached one, and
    after calls that change the state (another item count, KV growth)."""
    model, prompts, s = _job(tts, ref_wav, "preset", TEXTS)
    s = _sampled(s)
    recorded = []
    engine = graphs_on_cpu(FastEngine(model.model, slots=3, cuda_graphs=False), monkeypatch, recorded)

    def run(seed, items, rules=s):
        torch.manual_seed(seed)
        with torch.inference_mode():
            return engine.generate_codes(items, rules)

    first = run(11, prompts[:3])
    captured = len(recorded)
    assert captured >= 1 and all(g.replays > 0 for g in recorded)
    again = run(11, prompts[:3])  # the same state: the cached graphs replay, nothing is captured
    assert len(recorded) == captured
    run(3, prompts[:2])  # another item count: a new state
    fresh = run(11, prompts[:3])
    monkeypatch.setattr(engine_mod, "_KV_ROUND", 8)
    grown_call = replace(s, suppress=s.suppress + (s.eos_id,), max_new_tokens=60)
    run(4, prompts[:3], grown_call)  # runs past the first capacity: the KV caches grow
    assert engine._state.capacity > max(p.embeds.shape[0] for p in prompts[:3]) + 16 + 8
    monkeypatch.setattr(engine_mod, "_KV_ROUND", 256)
    after_growth = run(11, prompts[:3])
    for name, codes in (("replayed", again), ("new state", fresh), ("after growth", after_growth)):
        assert len(codes) == 3
        assert all(torch.equal(a, b) for a, b in zip(first, codes)), f"{name}: a seeded call changed its codes"
    other_seed = run(12, prompts[:3])  # and sampling does sample: another seed draws other codes
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, other_seed))


# ---- the runtime guard: a graph's first replay against the eager step --------------------------


def test_compare_step_judges_codes_exactly_and_logits_by_dtype():
    frame, tok, logits = torch.arange(32).reshape(2, 16), torch.tensor([5, 7]), torch.linspace(-8, 8, 20).repeat(2, 1)
    rows = torch.tensor([True, True])
    same = compare_step((frame, tok, logits), (frame.clone(), tok.clone(), logits.clone()), rows, torch.float32)
    assert same.ok and same.max_logit_diff == 0.0
    wrong_code = frame.clone()
    wrong_code[1, 9] += 1
    assert not compare_step((frame, tok, logits), (wrong_code, tok, logits), rows, torch.bfloat16).codes_equal
    assert not compare_step((frame, tok, logits), (frame, tok + 1, logits), rows, torch.bfloat16).ok
    nudged = logits * (1 + 4e-3)  # about one bf16 step: within bf16's tolerance, not float32's
    assert compare_step((frame, tok, logits), (frame, tok, nudged), rows, torch.bfloat16).ok
    assert not compare_step((frame, tok, logits), (frame, tok, nudged), rows, torch.float32).logits_close
    off = logits.clone()
    off[0, 3] += 1.0
    check = compare_step((frame, tok, logits), (frame, tok, off), rows, torch.bfloat16)
    assert not check.ok and abs(check.max_logit_diff - 1.0) < 1e-5
    nan = logits.clone()
    nan[1, 0] = float("nan")
    assert not compare_step((frame, tok, logits), (frame, tok, nan), rows, torch.bfloat16).ok
    # a slot that is not speaking does not count
    assert compare_step((frame, tok, logits), (wrong_code, tok, off), torch.tensor([False, False]), torch.float32).ok


def _eager_codes(model, prompts, s):
    with torch.inference_mode():
        return FastEngine(model.model, slots=2, cuda_graphs=False).generate_codes(prompts, s)


def test_a_faithful_graph_passes_the_guard_and_keeps_replaying(tts, ref_wav, monkeypatch, graphs_allowed):
    model, prompts, s = _job(tts, ref_wav, "preset")
    recorded = []
    engine = graphs_on_cpu(FastEngine(model.model, slots=2, cuda_graphs=False), monkeypatch, recorded)
    steps = []
    step = FastEngine._step
    monkeypatch.setattr(FastEngine, "_step", lambda self, *a, **kw: (steps.append(1), step(self, *a, **kw))[1])
    with torch.inference_mode():
        codes = engine.generate_codes(prompts, s)
    assert len(engine.graph_checks) == len(recorded) >= 1
    assert all(c.ok and c.max_logit_diff == 0.0 for c in engine.graph_checks)
    assert graphs_mod.cuda_graphs_off() is None
    assert sum(g.replays for g in recorded) == len(steps) > 5  # every step, the checked ones included
    want = _eager_codes(model, prompts, s)
    assert len(codes) == len(want) and all(torch.equal(a, b) for a, b in zip(want, codes))


class WrongGraph(EagerGraph):
    """A graph that recorded something wrong: each replay runs the step, then spoils one output."""

    def __init__(self, body, st, spoil):
        super().__init__(body)
        self.st, self.spoil = st, spoil

    def replay(self):
        super().replay()
        self.spoil(self.st)


def _spoil_code(st):
    st.frame[:, 5] = (st.frame[:, 5] + 1) % 64


def _spoil_logits(st):
    st.logits[:, 7] += 0.5


@pytest.mark.parametrize("spoil", [_spoil_code, _spoil_logits], ids=["code", "logits"])
def test_a_wrong_graph_turns_graphs_off_and_the_call_goes_on_eagerly(tts, ref_wav, monkeypatch, graphs_allowed,
                                                                      caplog, spoil):
    model, prompts, s = _job(tts, ref_wav, "preset")
    recorded = []

    def record(self, st, s, kv_len):
        graph = WrongGraph(lambda: self._graph_step(st, s, kv_len), st, spoil)
        recorded.append(graph)
        return graph

    monkeypatch.setattr(FastEngine, "_record", record)
    engine = FastEngine(model.model, slots=2, cuda_graphs=False)
    engine.cuda_graphs = True
    with torch.inference_mode(), caplog.at_level("WARNING", logger="audiobook.graphs"):
        codes = engine.generate_codes(prompts, s)
    assert len(engine.graph_checks) == 1 and not engine.graph_checks[0].ok
    assert recorded[0].replays == 1, "the wrong graph was replayed after the guard saw it"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "CUDA graphs are off for this session" in warnings[0]
    assert graphs_mod.cuda_graphs_off() == warnings[0]
    want = _eager_codes(model, prompts, s)
    assert len(codes) == len(want) and all(torch.equal(a, b) for a, b in zip(want, codes)), "the spoiled step leaked"
    # Off for the session: a new engine does not capture, and no second warning comes.
    other = FastEngine(model.model, slots=3, cuda_graphs=False)
    other.cuda_graphs = True
    with torch.inference_mode(), caplog.at_level("WARNING", logger="audiobook.graphs"):
        again = other.generate_codes(prompts, s)
    assert len(recorded) == 1 and other.graph_checks == []
    assert all(torch.equal(a, b) for a, b in zip(want, again))
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1


# ---- graphs per (slot bucket, KV bucket) -------------------------------------------------------


def test_slot_buckets_round_up_and_stop_at_the_slots():
    assert [engine_mod.slot_bucket(n, 64) for n in (1, 2, 3, 5, 9, 17, 33, 64)] == [1, 2, 4, 8, 16, 32, 64, 64]
    assert engine_mod.slot_bucket(17, 20) == 20 and engine_mod.slot_bucket(3, 3) == 3
    assert step_mod.kv_bucket(33, 1000, 32) == 64 and step_mod.kv_bucket(33, 40, 32) == 40


def test_steps_run_in_their_buckets_one_graph_each_and_equal_full_size_steps(tts, ref_wav, monkeypatch, graphs_allowed):
    """Each step runs over the slots up to the highest speaking one and the KV positions up to the
    longest item, both rounded up to a bucket; each bucket is captured once and replayed, also by a
    later call on the same state; the codes equal steps over every slot and the whole capacity."""
    monkeypatch.setattr(step_mod, "KV_BUCKET", 16)  # the tiny prompts are short
    model, prompts, s = _job(tts, ref_wav, "preset", TEXTS)
    s = replace(s, max_new_tokens=40)
    recorded, seen = [], []
    engine = graphs_on_cpu(FastEngine(model.model, slots=4, cuda_graphs=False), monkeypatch, recorded)
    step = FastEngine._step

    def spy(self, st, need, rules, live=None):
        seen.append((need, live, st.capacity))
        return step(self, st, need, rules, live)

    with varied_lengths(model), torch.inference_mode():
        with monkeypatch.context() as full:
            full.setattr(engine_mod, "slot_bucket", lambda live, slots: slots)
            full.setattr(engine_mod, "kv_bucket", lambda need, capacity, block=None: capacity)
            whole = FastEngine(model.model, slots=4, cuda_graphs=False).generate_codes(prompts, s)
        order = sorted(range(5), key=lambda i: -whole[i].shape[0])  # the longest first: the last slots free up first
        prompts, whole = [prompts[i] for i in order], [whole[i] for i in order]
        monkeypatch.setattr(FastEngine, "_step", spy)
        codes = engine.generate_codes(prompts, s)
        captured = len(recorded)
        again = engine.generate_codes(prompts, s)  # the same state: every bucket's graph is there
    want = Counter((next(b for b in (1, 2, 4) if b >= live), min(cap, -(-need // 16) * 16)) for need, live, cap in seen)
    assert engine.buckets == want
    rows, lengths = {r for r, _ in want}, {k for _, k in want}
    assert len(rows) >= 2 and len(lengths) >= 2, want  # the buckets did change during the call
    assert sorted(g.bucket for g in recorded) == sorted(want) and len(recorded) == captured  # once each, reused
    assert all(c.ok for c in engine.graph_checks) and len(engine.graph_checks) == captured
    assert len(codes) == len(whole) == len(again) == 5 and len({c.shape[0] for c in codes}) > 1
    for a, b, c in zip(whole, codes, again):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_a_long_session_captures_each_bucket_once(tts, ref_wav, monkeypatch, graphs_allowed):
    """A render's session: many takes of many lengths through 4 slots; the graphs stay one per bucket."""
    from audiobook.stream import Request, Session

    monkeypatch.setattr(step_mod, "KV_BUCKET", 16)
    model, prompts, s = _job(tts, ref_wav, "preset", TEXTS)
    recorded = []
    engine = graphs_on_cpu(FastEngine(model.model, slots=4, cuda_graphs=False), monkeypatch, recorded)
    session = Session(engine, replace(s, max_new_tokens=40))
    with torch.inference_mode():
        for n in range(24):
            session.submit(Request(prompts[n % 5], seed=n, limit=4 + (n * 7) % 30, tag=n))
        takes = session.run()
    assert len(takes) == 24
    steps = sum(engine.buckets.values())
    assert len(recorded) == len(engine.buckets) <= steps / 4  # each bucket captured once, then replayed
    assert {rows for rows, _ in engine.buckets} <= {1, 2, 4}
    assert len(recorded) <= 3 * (session.state.capacity // 16 + 1)
    assert all(c.ok for c in engine.graph_checks)
