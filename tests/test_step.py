"""The decode step on fused weights (audiobook/step.py): same codes as the modules' own math, fewer operators."""

from dataclasses import replace

import pytest
import torch

from audiobook import sampling, step as step_mod
from audiobook.engine import FastEngine
from model_helpers import ENGINE_TEXTS, job_prompts, tiny_tts

TEXTS = ENGINE_TEXTS[:3]


@pytest.fixture(scope="module")
def tts(tiny_models_dir):
    return tiny_tts(tiny_models_dir)


def _job(tts, ref_wav, job):
    """(loaded qwen_tts model, prompts, greedy sampling rules) for one prompt kind."""
    return job_prompts(tts, ref_wav, job, TEXTS, 40)


@pytest.mark.parametrize("job", ["design", "clone", "preset"])
def test_fused_and_unfused_steps_give_the_same_codes(tts, ref_wav, job):
    model, prompts, s = _job(tts, ref_wav, job)
    unfused = FastEngine(model.model, slots=2, cuda_graphs=False, fused=False).generate_codes(prompts, s)
    fused = FastEngine(model.model, slots=2, cuda_graphs=False).generate_codes(prompts, s)
    assert sum(c.shape[0] for c in unfused) > 10
    for want, got in zip(unfused, fused):
        assert torch.equal(want, got)


def test_sampled_fused_and_unfused_steps_give_the_same_codes(tts, ref_wav):
    """One pass of noise per step draws what each pick's own hashed stream draws: same seeds, same codes."""
    model, prompts, s = _job(tts, ref_wav, "preset")
    s = replace(s, do_sample=True, top_k=40, top_p=0.9, temperature=0.8,
                sub_do_sample=True, sub_top_k=20, sub_top_p=0.85, sub_temperature=0.9)
    torch.manual_seed(3)
    unfused = FastEngine(model.model, slots=2, cuda_graphs=False, fused=False).generate_codes(prompts, s)
    torch.manual_seed(3)
    fused = FastEngine(model.model, slots=2, cuda_graphs=False).generate_codes(prompts, s)
    assert sum(c.shape[0] for c in unfused) > 10
    for want, got in zip(unfused, fused):
        assert torch.equal(want, got)


def test_a_step_s_noise_is_each_pick_s_own_stream():
    seed, step = torch.tensor([5, 1 << 31, 77]), torch.tensor([0, 9, 300])
    first, groups = sampling.step_noise(seed, step, 12, 15, 8, (0.5, 2.0))
    assert first.shape == (3, 12) and groups.shape == (3, 15, 8)
    torch.testing.assert_close(first, sampling.gumbel(sampling.draw_keys(seed, step + 1, 0), 12) * 0.5, rtol=0, atol=0)
    for g in (0, 7, 14):
        want = sampling.gumbel(sampling.draw_keys(seed, step, g + 1), 8) * 2.0
        torch.testing.assert_close(groups[:, g], want, rtol=0, atol=0)


def test_fused_weights_are_views_the_modules_still_compute_with(tts):
    """No second copy of q/k/v or gate/up: the modules' weights live inside the fused matrices."""
    qmodel = tts.model("preset").model
    FastEngine(qmodel, slots=1, cuda_graphs=False)
    attn = qmodel.talker.model.layers[0].self_attn
    fused = attn.q_proj._fused_qkv
    assert attn.q_proj.weight.data_ptr() == fused.data_ptr()
    assert attn.v_proj.weight.data_ptr() == fused[-attn.v_proj.weight.shape[0]:].data_ptr()
    again = FastEngine(qmodel, slots=1, cuda_graphs=False).fused.talker_layers[0].qkv.wt
    assert again.data_ptr() == fused.data_ptr()  # a second engine reuses the concatenation


def test_attention_over_a_length_bucket_equals_the_whole_masked_cache(tts, ref_wav, monkeypatch):
    """Reading each slot's cache up to a bucket past its length gives what reading the whole capacity gives."""
    monkeypatch.setattr(step_mod, "KV_BUCKET", 16)  # the tiny prompts are short
    model, prompts, s = _job(tts, ref_wav, "preset")
    engine = FastEngine(model.model, slots=3, cuda_graphs=False)
    st = engine._prepare(prompts, s)
    for slot in range(3):
        engine._prefill(st, slot, prompts[slot], s)
    assert st.capacity >= 2 * step_mod.KV_BUCKET
    need = int(st.pos.max()) + 1
    bucket = step_mod.kv_bucket(need, st.capacity)
    assert need <= bucket < st.capacity
    x = torch.randn(3, engine.hidden)
    saved = st.snapshot()
    whole = engine.fused.talker(x, st.kv_joint, st.rows, st.write_index(), st.pos, st.capacity)
    st.restore(saved)
    short = engine.fused.talker(x, st.kv_joint, st.rows, st.write_index(), st.pos, bucket)
    torch.testing.assert_close(short, whole, rtol=1e-6, atol=1e-6)
    # and the unfused, boolean-masked path over the whole capacity agrees too
    st.restore(saved)
    engine.fused, fused = None, engine.fused
    masked = engine._talker_step(st, x[:, None], st.capacity)
    engine.fused = fused
    torch.testing.assert_close(short, masked, rtol=1e-5, atol=1e-5)


def test_kv_buckets_round_up_and_stop_at_capacity():
    assert step_mod.kv_bucket(1, 4096) == step_mod.KV_BUCKET
    assert step_mod.kv_bucket(step_mod.KV_BUCKET + 1, 4096) == 2 * step_mod.KV_BUCKET
    assert step_mod.kv_bucket(4000, 1000) == 1000


def test_rms_norm_is_qwen_tts_s_in_float32():
    x, w = torch.randn(5, 3, 64), torch.randn(64)
    want = w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
    assert torch.equal(step_mod.rms_norm(x, w, 1e-6), want)


@pytest.mark.parametrize("picks", ["greedy", "sampled"])
def test_the_step_dispatches_no_more_operators_than_recorded(picks):
    """The reduced-size operator count (bench/ops.py) may fall, never rise."""
    from bench import ops

    model = ops.build_model(ops.tiny_config(), torch.float32)
    sampled = picks == "sampled"
    fused = ops.count_step(model, "tiny", 2, fused=True, sampled=sampled)
    unfused = ops.count_step(model, "tiny", 2, fused=False, sampled=sampled)
    recorded = ops.RECORDED_TINY[picks]
    assert fused.kernels <= recorded["kernels"], fused.top
    assert fused.all <= recorded["all"], fused.top
    assert fused.kernels < unfused.kernels
