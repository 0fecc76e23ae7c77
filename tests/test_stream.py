"""The engine as a fed session: per-request seeds, frame limits, fixed slots, batched prefill."""

from dataclasses import replace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from audiobook.engine import FastEngine, _choose, draw_keys
from audiobook.settings import Settings
from audiobook.stream import Request, Session
from audiobook.tts import TTS

TEXTS = [
    "Hi.",
    "The lighthouse stood at the edge of the world.",
    "Every night its keeper climbed the stairs, one hundred and twelve of them, and rested at the top.",
    "Then he lit the lamp.",
    "The storm came in from the west.",
    "Nobody in the village slept that night.",
    "In the morning the boats were gone.",
]


@pytest.fixture(scope="module")
def tts(tiny_models_dir):
    return TTS(Settings(models_dir=str(tiny_models_dir), device="cpu", max_new_tokens=48))


@pytest.fixture(scope="module")
def preset(tts):
    """The preset model and the prompts of TEXTS with every sampling rule on (float32)."""
    from tests.test_engine_capture import _prompts

    model = tts.model("preset")
    kw = dict(max_new_tokens=48, do_sample=True, top_k=40, top_p=0.9, temperature=0.9, repetition_penalty=1.05,
              subtalker_dosample=True, subtalker_top_k=30, subtalker_top_p=0.95, subtalker_temperature=0.9)
    prompts, sampling = _prompts(model, lambda: model.generate_custom_voice(
        text=TEXTS, speaker="ryan", language=["english"] * len(TEXTS), **kw))
    return model, prompts, sampling


def _session(model, sampling, slots=3):
    return Session(FastEngine(model.model, slots=slots, cuda_graphs=False), sampling)


def test_a_take_is_the_same_alone_and_inside_a_busy_stream(preset):
    model, prompts, s = preset
    chunk = prompts[2]
    alone = _session(model, s)
    alone.submit(Request(chunk, seed=99, tag="x"))
    (only,) = alone.run()

    busy = _session(model, s)
    for n, p in enumerate(prompts):  # the chunk enters mid-stream, beside others, into a refilled slot
        busy.submit(Request(p, seed=1000 + n, tag=n))
        if n == 4:
            busy.submit(Request(chunk, seed=99, tag="x"))
    takes = {f.tag: f for f in busy.run()}
    assert len(takes) == len(prompts) + 1
    assert takes["x"].codes.shape[0] > 0
    assert torch.equal(takes["x"].codes, only.codes), "a take changed with its neighbours"
    assert busy.steps < sum(t.codes.shape[0] for t in takes.values())  # slots were shared, not run one by one

    other = _session(model, s)
    other.submit(Request(chunk, seed=100, tag="x"))
    (changed,) = other.run()
    assert not (changed.codes.shape == only.codes.shape and torch.equal(changed.codes, only.codes))


def test_a_runaway_ends_its_own_slot_at_its_limit_and_the_others_never_notice(preset):
    model, prompts, s = preset
    solo = {}
    for n in (1, 3, 5):
        one = _session(model, s)
        one.submit(Request(prompts[n], seed=n, tag=n))
        (solo[n],) = one.run()
    stream = _session(model, s)
    stream.submit(Request(prompts[2], seed=7, limit=4, tag="runaway"))
    for n in (1, 3, 5):
        stream.submit(Request(prompts[n], seed=n, tag=n))
    takes = {f.tag: f for f in stream.run()}
    assert takes["runaway"].runaway and takes["runaway"].codes.shape[0] == 4
    for n in (1, 3, 5):
        assert torch.equal(takes[n].codes, solo[n].codes)
        assert not takes[n].runaway or takes[n].codes.shape[0] == s.max_new_tokens - 1


def _steps_of(session, on_take=lambda f: None):
    """Step ``session`` until idle; per tag: the step its take was admitted at, the step it came out at, the take."""
    admitted, out, takes = {}, {}, {}
    while session.busy:
        for f in session.step():
            out[f.tag], takes[f.tag] = session.steps, f
            on_take(f)
        for slot, r in enumerate(session.owner):
            if r is not None:
                admitted.setdefault(r.tag, session._start[slot])
    return admitted, out, takes


def test_a_voice_that_never_ends_runs_away_in_its_own_slots_beside_a_voice_that_does(tts):
    """One stream, two voices of one checkpoint: every take of the voice whose end code never comes ends at its
    own frame limit and is taken again with another seed; the other voice's takes end on their end code, with
    the codes and the step count they have alone, never waiting on a runaway."""
    from tests.model_helpers import speaker_never_ends
    from tests.test_engine_capture import _prompts

    model = tts.model("preset")
    kw = dict(max_new_tokens=48, do_sample=True, top_k=40, temperature=0.9, repetition_penalty=1.05)
    texts = TEXTS[1:5]
    with speaker_never_ends(model, "vivian"):
        prompts, s = _prompts(model, lambda: model.generate_custom_voice(
            text=texts * 2, speaker=["vivian"] * 4 + ["ryan"] * 4, language=["english"] * 8, **kw))
        lost, kept = prompts[:4], prompts[4:]
        seeds = [0, 3, 0, 3]  # takes of 11, 17, 26 and 7 frames on the tiny checkpoint
        solo = {}
        for n, p in enumerate(kept):
            alone = _session(model, s)
            alone.submit(Request(p, seed=seeds[n], tag=("ryan", n)))
            solo[n] = _steps_of(alone)
        stream = _session(model, s)
        for n in range(4):  # the runaways first, so they hold slots while the other voice comes and goes
            stream.submit(Request(lost[n], seed=100 + n, limit=20 + n, tag=("vivian", n, 0)))
            stream.submit(Request(kept[n], seed=seeds[n], tag=("ryan", n)))

        def again(f):  # what the render does with a runaway: the same text again, another seed
            if f.tag[0] == "vivian" and f.tag[2] == 0:
                stream.submit_first(Request(f.request.prompt, seed=200 + f.tag[1], limit=f.request.limit,
                                            tag=("vivian", f.tag[1], 1)))

        admitted, out, takes = _steps_of(stream, again)
    assert len(takes) == 12
    for n in range(4):
        first, again = takes[("vivian", n, 0)], takes[("vivian", n, 1)]
        assert first.runaway and again.runaway
        assert first.codes.shape[0] == again.codes.shape[0] == 20 + n  # its own limit, not the session's cap
        assert not torch.equal(first.codes, again.codes)  # another seed, another take
        ryan = takes[("ryan", n)]
        assert not ryan.runaway and ryan.codes.shape[0] < s.max_new_tokens - 1  # ended on its end code
        s_admitted, s_out, s_takes = solo[n]
        assert torch.equal(ryan.codes, s_takes[("ryan", n)].codes)
        # From its admission to its hand-over it took the steps it takes alone: no wait on anyone.
        assert out[("ryan", n)] - admitted[("ryan", n)] == s_out[("ryan", n)] - s_admitted[("ryan", n)]
    assert model.model.talker.codec_head.weight[s.eos_id, 0] != -100.0  # the weights came back


def test_the_slot_count_never_changes_and_the_state_is_kept(preset):
    """Where graphs are replayed the state (and so its graph) is the session's for good; on a CPU the state
    drops its idle rows at a tail and takes every slot back once requests wait, with the same takes."""
    model, prompts, s = preset
    kept = Session(FastEngine(model.model, slots=3, cuda_graphs=False), s, compact=False)
    state = kept.state
    kept.submit(Request(prompts[0], seed=1))
    kept.run()
    for n, p in enumerate(prompts[:5]):
        kept.submit(Request(p, seed=n, tag=n))
    fixed = {f.tag: f.codes for f in kept.run()}
    assert kept.state is state and state.slots == 3

    session = _session(model, s, slots=3)
    session.submit(Request(prompts[0], seed=1))
    rows = []
    while session.busy:
        session.step()
        rows.append(session.state.slots)
    assert rows[-1] == 1 and session.slots == 3  # alone in the session: one row computes
    for n, p in enumerate(prompts[:5]):
        session.submit(Request(p, seed=n, tag=n))
    takes = {}
    while session.busy:
        takes.update({f.tag: f.codes for f in session.step()})
        rows.append(session.state.slots)
    assert 3 in rows[rows.index(1):] and rows[-1] < 3  # every slot back for the requests, fewer again at the tail
    assert takes.keys() == fixed.keys() and all(torch.equal(takes[n], fixed[n]) for n in fixed)


def test_the_takes_are_the_same_whatever_the_read_lag(preset):
    """A status read two steps late is never overwritten before it is read: every take ends at the same
    frame as when each status is read at once."""
    model, prompts, s = preset
    by_lag = {}
    for lag in (0, 2):
        session = Session(FastEngine(model.model, slots=3, cuda_graphs=False), s, read_lag=lag, compact=False)
        for n, p in enumerate(prompts):
            session.submit(Request(p, seed=n, tag=n))
        by_lag[lag] = {f.tag: f.codes for f in session.run()}
    assert len({tuple(t.shape[0] for t in takes.values()) for takes in by_lag.values()}) == 1
    assert all(torch.equal(by_lag[2][n], by_lag[0][n]) for n in range(len(prompts)))


def test_greedy_session_codes_equal_the_engine_call(tts):
    """With greedy decoding a session gives each prompt the codes the engine's one-call loop gives it."""
    from tests.test_engine_capture import _prompts

    model = tts.model("preset")
    kw = dict(max_new_tokens=40, do_sample=False, subtalker_dosample=False, repetition_penalty=1.5)
    prompts, s = _prompts(model, lambda: model.generate_custom_voice(
        text=TEXTS, speaker="ryan", language=["english"] * len(TEXTS), **kw))
    with torch.inference_mode():
        want = FastEngine(model.model, slots=len(TEXTS), cuda_graphs=False).generate_codes(prompts, s)
    session = _session(model, s, slots=3)
    for n, p in enumerate(prompts):
        session.submit(Request(p, seed=n, tag=n))
    got = {f.tag: f.codes for f in session.run()}
    for n in range(len(prompts)):
        assert torch.equal(got[n], want[n]), n


def test_counter_based_draws_follow_the_softmax():
    """The hashed exponential race draws each code with its probability, like multinomial."""
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]]).repeat(40000, 1)
    keys = draw_keys(torch.arange(40000), torch.full((40000,), 3), 1)
    picks = _choose(logits, True, 0.9, 0, 1.0, keys)
    freq = torch.bincount(picks, minlength=6).float() / picks.numel()
    assert torch.allclose(freq, (logits[0] / 0.9).softmax(-1), atol=0.01)
    again = _choose(logits, True, 0.9, 0, 1.0, keys)
    assert torch.equal(picks, again)  # a pure function of the keys
    shifted = _choose(logits, True, 0.9, 0, 1.0, draw_keys(torch.arange(40000), torch.full((40000,), 4), 1))
    assert not torch.equal(picks, shifted)  # another frame draws afresh


class _Ops(TorchDispatchMode):
    """Every operator dispatched inside the block, with its arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append((func, args, kwargs or {}))
        return func(*args, **(kwargs or {}))


SYNCING = {"_local_scalar_dense", "item", "nonzero", "is_nonzero", "equal", "_to_copy"}


def test_a_steady_state_step_never_waits_for_the_host(preset):
    """Which slots ended is copied without waiting and read a step later: no scalar read, no blocking copy."""
    model, prompts, s = preset
    session = _session(model, replace(s, suppress=s.suppress + (s.eos_id,)))  # every take runs to its limit
    for n, p in enumerate(prompts[:3]):
        session.submit(Request(p, seed=n, limit=40, tag=n))
    for _ in range(3):
        assert not session.step()  # admitted, prefilled, and a couple of frames in
    with _Ops() as ops:
        assert not session.step()
    names = [f.__name__.split(".")[0] for f, _, _ in ops.calls]
    assert not SYNCING & set(names), sorted(SYNCING & set(names))
    host = {t.data_ptr() for t in session._host}
    to_host = [(a, k) for f, a, k in ops.calls if f is torch.ops.aten.copy_.default and a[0].data_ptr() in host]
    assert len(to_host) == 1 and (to_host[0][0][2:] == (True,) or to_host[0][1].get("non_blocking"))
    assert {"linear", "addmm", "mm"} & set(names)  # the step itself ran under the mode
