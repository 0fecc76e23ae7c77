"""The fast engine: greedy codes identical to qwen_tts's own generate, for every job and batch size."""

import contextlib

import numpy as np
import pytest
import torch

from audiobook.agreement import compare_with_qwen_tts
from audiobook.engine import FastEngine, Sampling, _choose, capture_prompts
from audiobook.tts import GenerationOptions
from model_helpers import tiny_tts, varied_lengths

MAX_NEW = 40
TEXTS = [
    "Hello.",
    "The lighthouse stood at the edge of the world.",
    "Every night its keeper climbed the stairs, one hundred and twelve of them.",
    "Then he lit the lamp.",
    "The storm came in from the west and the light did not go out.",
]
# A strong repetition penalty, so that getting it wrong changes the codes.
GREEDY = GenerationOptions(max_new_tokens=MAX_NEW, do_sample=False, repetition_penalty=1.5, seed=7)
# An EOS row this small makes greedy items stop at different lengths (some at the cap).
EOS_SCALE = 0.3


@pytest.fixture(scope="module")
def tts(tiny_models_dir):
    return tiny_tts(tiny_models_dir)


def _job_call(tts, job, ref_wav):
    """(checkpoint job, function speaking a list of texts) for each prompt kind."""
    if job == "design":
        return "design", lambda texts: tts.design(texts, "A calm, low voice.", "en", GREEDY)
    if job == "preset":
        return "preset", lambda texts: tts.preset(texts, "ryan", "Slowly.", "en", GREEDY)
    x_vector = job == "clone_xvector"
    prompt = tts.clone_prompt(ref_wav, "" if x_vector else "A short reference line.", x_vector)
    return "clone", lambda texts: tts.clone(texts, prompt, "en", GREEDY)


@contextlib.contextmanager
def _recording(model):
    """Collect, in item order, the codes each loop returns for a qwen_tts wrapper call on ``model``:
    ``seen["qwen_tts"]`` from qwen_tts's own loop, ``seen["fast"]`` from the engine, each apart."""
    seen = {"qwen_tts": [], "fast": []}
    real = model.model.generate
    fast = FastEngine.generate_codes

    def qwen_generate(**kw):
        codes, hidden = real(**kw)
        seen["qwen_tts"].extend(c.clone() for c in codes)
        return codes, hidden

    def fast_generate(self, prompts, sampling):
        codes = fast(self, prompts, sampling)
        seen["fast"].extend(c.clone() for c in codes)
        return codes

    model.model.generate = qwen_generate
    FastEngine.generate_codes = fast_generate
    try:
        yield seen
    finally:
        del model.model.generate
        FastEngine.generate_codes = fast


def _codes(tts, job, speak, texts, engine, batch_size):
    """Codes of every text: qwen_tts in static batches of ``batch_size`` (one call each), the
    fast engine in one call with ``batch_size`` slots (continuous batching)."""
    tts.settings = tts.settings.updated(engine=engine, batch_size=batch_size)
    groups = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)] if engine == "qwen_tts" else [texts]
    with _recording(tts.model(job)) as seen:
        for group in groups:
            speak(group)
    other = "qwen_tts" if engine == "fast" else "fast"
    assert seen[engine] and not seen[other], f"asked {engine}, but {other} made {len(seen[other])} takes"
    return seen[engine]


@pytest.fixture(scope="module")
def varied_eos(tts):
    """Shrink the loaded talker's EOS row so greedy lengths vary; restored on teardown."""
    with contextlib.ExitStack() as stack:
        shrunk = set()

        def apply(job):
            model = tts.model(job)
            if id(model) not in shrunk:
                shrunk.add(id(model))
                stack.enter_context(varied_lengths(model, EOS_SCALE))

        yield apply


@pytest.mark.parametrize("job", ["design", "clone_icl", "clone_xvector", "preset"])
def test_greedy_codes_identical_to_qwen_tts(tts, ref_wav, varied_eos, job):
    checkpoint, speak = _job_call(tts, job, ref_wav)
    varied_eos(checkpoint)
    expected = _codes(tts, checkpoint, speak, TEXTS, "qwen_tts", len(TEXTS))
    assert len(expected) == len(TEXTS)
    lengths = sorted(c.shape[0] for c in expected)
    assert lengths[0] < lengths[-1], "the workload must stop at different lengths to test slot refill"
    for batch_size in (1, 3, 5):
        got = _codes(tts, checkpoint, speak, TEXTS, "fast", batch_size)
        assert len(got) == len(TEXTS)
        for i, (want, have) in enumerate(zip(expected, got)):
            assert want.shape == have.shape, f"{job} batch {batch_size} item {i}: {tuple(want.shape)} != {tuple(have.shape)}"
            assert torch.equal(want, have), f"{job} batch {batch_size} item {i}: codes differ"


def test_qwen_tts_static_batches_match_too(tts, ref_wav, varied_eos):
    """The reference itself does not depend on how qwen_tts is batched (so one reference serves all)."""
    checkpoint, speak = _job_call(tts, "preset", ref_wav)
    varied_eos(checkpoint)
    whole = _codes(tts, checkpoint, speak, TEXTS, "qwen_tts", 5)
    for batch_size in (1, 3):
        parts = _codes(tts, checkpoint, speak, TEXTS, "qwen_tts", batch_size)
        assert len(whole) == len(parts) == len(TEXTS), (len(whole), len(parts))
        assert all(torch.equal(a, b) for a, b in zip(whole, parts))


def test_runaway_items_stop_at_the_cap_like_qwen_tts(tts, ref_wav):
    """With EOS impossible, every item runs to max_new_tokens - 1 frames in both loops."""
    model = tts.model("preset")
    head = model.model.talker.codec_head.weight
    eos = model.model.config.talker_config.codec_eos_token_id
    row = head[eos].clone()
    head.data[eos] = 0
    try:
        tts.settings = tts.settings.updated(engine="fast", batch_size=2)
        wavs = tts.preset(TEXTS[:3], "ryan", "", "en", GenerationOptions(max_new_tokens=12, do_sample=False))
    finally:
        head.data[eos] = row
    assert [len(w) // 1920 for w in wavs] == [11, 11, 11]


def test_sampling_is_seeded_and_reproducible(tts):
    """Sampling runs through the engine with torch's generator: same seed, same audio."""
    opts = GenerationOptions(max_new_tokens=16, do_sample=True, seed=3)
    tts.settings = tts.settings.updated(engine="fast", batch_size=2)
    a = tts.preset(TEXTS[:3], "ryan", "", "en", opts)
    b = tts.preset(TEXTS[:3], "ryan", "", "en", opts)
    assert len(a) == len(b) == 3
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    # Another seed draws other codes (a silent fall-back to greedy would repeat the same audio).
    c = tts.preset(TEXTS[:3], "ryan", "", "en", GenerationOptions(max_new_tokens=16, do_sample=True, seed=4))
    assert not all(len(x) == len(z) and np.array_equal(x, z) for x, z in zip(a, c))


def test_engine_setting_picks_the_loop(tts):
    tts.settings = tts.settings.updated(engine="auto")
    assert tts.uses_fast_engine(GREEDY)
    assert tts.uses_fast_engine(GenerationOptions(do_sample=True))
    tts.settings = tts.settings.updated(engine="qwen_tts")
    assert not tts.uses_fast_engine(GREEDY)
    tts.settings = tts.settings.updated(engine="fast")
    assert tts.uses_fast_engine(GenerationOptions(do_sample=True))


def test_sampler_matches_multinomial_distribution():
    """The exponential race draws each code with its softmax probability (top-k and top-p applied)."""
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]]).repeat(40000, 1)
    picks = _choose(logits, True, 0.9, 4, 0.95)
    freq = torch.bincount(picks, minlength=6).float() / picks.numel()
    probs = (logits[0] / 0.9).softmax(-1)
    probs[4:] = 0  # top-k 4
    probs /= probs.sum()
    order = probs.argsort()  # top-p 0.95 drops the smallest tail whose mass stays within 5%
    tail = probs[order].cumsum(0) <= 0.05
    probs[order[tail]] = 0
    probs /= probs.sum()
    assert torch.allclose(freq, probs, atol=0.01)


def test_capture_stops_before_decoding(tts):
    """Capturing prompts runs qwen_tts's prompt building only, one unpadded prompt per text."""
    model = tts.model("preset")
    m = model
    inputs = dict(
        input_ids=m._tokenize_texts([m._build_assistant_text(t) for t in TEXTS[:2]]),
        instruct_ids=[None, None], languages=["english"] * 2, speakers=["ryan"] * 2,
        non_streaming_mode=True, max_new_tokens=5, do_sample=False,
    )
    prompts, sampling = capture_prompts(m.model, inputs)
    assert isinstance(sampling, Sampling) and sampling.max_new_tokens == 5 and not sampling.do_sample
    assert len(prompts) == 2 and prompts[0].embeds.shape[0] < prompts[1].embeds.shape[0]
    assert "generate" not in vars(m.model.talker)  # the interception is undone
    engine = FastEngine(m.model, slots=2)
    codes = engine.generate_codes(prompts, sampling)
    assert [c.shape[1] for c in codes] == [16, 16] and all(1 <= c.shape[0] <= 4 for c in codes)


def test_streaming_text_prompts_match_too(tts, ref_wav, varied_eos):
    """With non_streaming_mode=False the text is fed frame by frame (trailing text): same codes."""
    model = tts.model("clone")
    varied_eos("clone")
    prompt = tts.clone_prompt(ref_wav, "A short reference line.")
    got = {}
    for name in ("qwen_tts", "fast"):
        call = lambda: model.generate_voice_clone(  # noqa: E731
            text=TEXTS[1:], language=["english"] * 4, voice_clone_prompt=[prompt] * 4, non_streaming_mode=False,
            do_sample=False, subtalker_dosample=False, max_new_tokens=MAX_NEW, repetition_penalty=1.5)
        with _recording(model) as seen:
            FastEngine(model.model, slots=2).generate_wavs(call) if name == "fast" else call()
        other = "qwen_tts" if name == "fast" else "fast"
        assert not seen[other], f"{other} ran where {name} was asked for"
        got[name] = seen[name]
    assert len(got["fast"]) == len(got["qwen_tts"]) == 4 and len({c.shape[0] for c in got["qwen_tts"]}) > 1
    assert all(torch.equal(a, b) for a, b in zip(got["qwen_tts"], got["fast"]))


def test_fast_wavs_come_back_in_input_order(tts, ref_wav, varied_eos):
    """Audio is decoded in length-sorted groups of ``slots``; each wav still matches its own codes."""
    checkpoint, speak = _job_call(tts, "preset", ref_wav)
    varied_eos(checkpoint)
    tts.settings = tts.settings.updated(engine="fast", batch_size=2)
    with _recording(tts.model(checkpoint)) as seen:
        wavs = speak(TEXTS)
    assert not seen["qwen_tts"]  # the engine made every take
    assert [len(w) // 1920 for w in wavs] == [c.shape[0] for c in seen["fast"]]
    assert len({len(w) for w in wavs}) > 2


def _greedy_preset_call(model, texts, max_new=MAX_NEW):
    return lambda: model.generate_custom_voice(  # noqa: E731
        text=texts, speaker="ryan", language=["english"] * len(texts), do_sample=False, subtalker_dosample=False,
        max_new_tokens=max_new, repetition_penalty=1.5)


def test_teacher_forced_comparison_agrees_in_float32(tts, varied_eos):
    """Fed qwen_tts's own codes, the engine picks the same code at every frame and group, with its logits."""
    model = tts.model("preset")
    varied_eos("preset")
    result = compare_with_qwen_tts(model.model, _greedy_preset_call(model, TEXTS[:3]))
    assert result.items == 3 and result.frames >= sum(result.reference_frames) > 3
    assert result.top1_agreement == 1.0 and result.first_code_agreement == 1.0
    assert result.max_logit_diff < 1e-3
    assert result.codes_equal and result.equal_frames == result.reference_frames


def test_teacher_forced_comparison_sees_a_wrong_engine(tts, varied_eos, monkeypatch):
    """An engine whose talker step is off shows it: large logit differences, picks that disagree."""
    model = tts.model("preset")
    varied_eos("preset")
    step = FastEngine._talker_step
    monkeypatch.setattr(FastEngine, "_talker_step", lambda self, st, x, kv_len: -step(self, st, x, kv_len))
    result = compare_with_qwen_tts(model.model, _greedy_preset_call(model, TEXTS[:2]))
    assert result.max_logit_diff > 0.1
    assert result.first_code_agreement < 0.5 and not result.codes_equal


def test_teacher_forced_comparison_needs_greedy(tts):
    model = tts.model("preset")
    call = lambda: model.generate_custom_voice(  # noqa: E731
        text=TEXTS[:1], speaker="ryan", language=["english"], do_sample=True, max_new_tokens=8)
    with pytest.raises(ValueError, match="greedy"):
        compare_with_qwen_tts(model.model, call)
