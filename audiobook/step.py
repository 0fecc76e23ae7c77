"""The decode step's layer math with fused weights: fewer, bigger operators per step.

The fast engine (``audiobook/engine.py``) runs qwen_tts's talker and code predictor one
position at a time. Through the model's own modules one talker layer dispatches about 67
operators; this module computes the same layer with about a third of them:

- q, k and v, and gate and up, are one matrix product each: their weights are
  concatenated once, in memory, and the modules' own weights become views of the
  concatenation (no second copy; nothing on disk changes, and the modules compute as before);
- RMSNorm is one operator where torch has one (``aten._fused_rms_norm``), the q and k
  head norms are one norm over both, and the rotary position tables are computed once
  per step for all layers (the talker's interleaved multimodal rope reduces to plain rope
  for text positions, where its three position rows are equal);
- the rotation (``q * cos + rotate_half(q) * sin``) is one broadcast product with a table of
  its four half-by-half terms and one sum, written over the raw q and k, so that k and v lie
  side by side and one write stores both in the joined KV cache;
- attention groups the query heads that share a KV head (no copy of K or V);
- matrix products read pre-transposed views, so no transpose is dispatched per call.

In float32 every product and norm is bitwise the one qwen_tts computes (checked by the
tests: greedy codes equal qwen_tts's); in half precision every rounding is qwen_tts's
but the norms' weight product (see ``rms_norm``). ``int8`` keeps weight-only int8 copies of the
decode step's matrices (per-output-row scales) for ``aten._weight_int8pack_mm``, the CPU
user's fastest path; prefill still runs through the model's float modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

_FUSED_RMS = hasattr(torch.ops.aten, "_fused_rms_norm")
KV_BUCKET = 256  # attention reads the KV cache in whole multiples of this many positions


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """qwen_tts's RMSNorm (``weight * x / rms(x)``, in float32 inside) as one operator where torch has one.

    In float32 it is bitwise qwen_tts's. In half precision qwen_tts rounds the normed value
    before the weight multiplies it, where this rounds once; on the tiny models the bf16
    teacher-forced agreement with qwen_tts is the same either way (bench/README.md).
    """
    if _FUSED_RMS:
        return torch.ops.aten._fused_rms_norm(x, [x.shape[-1]], weight, eps)[0]
    xf = x.float()
    y = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
    return y if weight is None else weight * y


class Matrix:
    """One weight ``[out, in]`` ready for ``x @ W.T``: a transposed view, or int8 rows with scales."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, int8: bool = False):
        self.bias = bias
        self.wt = None if int8 else weight.t()
        if int8:
            w = weight.detach().float()
            scales = (w.abs().amax(1) / 127).clamp_min(1e-12)
            self.q = (w / scales[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
            self.scales = scales.to(weight.dtype)

    def __call__(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``x @ W.T (+ bias)``, plus ``residual`` when given, added after the product as the model's
        modules do (an ``addmm`` accumulates in another order, and rounds once where they round twice).
        """
        if self.wt is not None:
            y = torch.mm(x, self.wt) if self.bias is None else torch.addmm(self.bias, x, self.wt)
        else:
            y = torch.ops.aten._weight_int8pack_mm(x, self.q, self.scales)
            if self.bias is not None:
                y = y + self.bias
        return y if residual is None else residual + y


def _fused_weight(modules: list, name: str) -> torch.Tensor:
    """One concatenated weight for ``modules`` (Linear layers); their weights become views of it.

    Built once per model: a later engine on the same model finds the concatenation still
    backing the modules and reuses it.
    """
    cached = getattr(modules[0], name, None)
    if cached is not None:
        offset = 0
        for m in modules:
            rows = m.weight.shape[0]
            if m.weight.data_ptr() != cached[offset:].data_ptr() or m.weight.shape[1] != cached.shape[1]:
                cached = None
                break
            offset += rows
        if cached is not None and offset == cached.shape[0]:
            return cached
    with torch.no_grad():
        fused = torch.cat([m.weight.detach() for m in modules])
        offset = 0
        for m in modules:
            rows = m.weight.shape[0]
            m.weight.data = fused[offset : offset + rows]
            offset += rows
    setattr(modules[0], name, fused)
    return fused


def _bias(modules: list) -> torch.Tensor | None:
    if all(m.bias is None for m in modules):
        return None
    return torch.cat([m.bias if m.bias is not None else m.weight.new_zeros(m.weight.shape[0]) for m in modules]).detach()


@dataclass
class _Layer:
    """One decoder layer's weights as the fused step reads them."""

    ln1: torch.Tensor
    ln2: torch.Tensor
    eps: float
    qkv: Matrix
    o: Matrix
    gate_up: Matrix
    down: Matrix
    qk_norm: torch.Tensor  # [heads + kv_heads, head_dim]: the q norm's weight per q head, then the k norm's
    qk_eps: float
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    scaling: float

    @classmethod
    def of(cls, layer, int8: bool) -> "_Layer":
        a, mlp = layer.self_attn, layer.mlp
        projections = [a.q_proj, a.k_proj, a.v_proj]
        heads = a.q_proj.weight.shape[0] // a.head_dim
        kv_heads = a.k_proj.weight.shape[0] // a.head_dim
        qkv = _fused_weight(projections, "_fused_qkv")
        gate_up = _fused_weight([mlp.gate_proj, mlp.up_proj], "_fused_gate_up")
        qk_norm = torch.cat([a.q_norm.weight.detach()[None].expand(heads, -1),
                             a.k_norm.weight.detach()[None].expand(kv_heads, -1)])
        return cls(
            ln1=layer.input_layernorm.weight.detach(), ln2=layer.post_attention_layernorm.weight.detach(),
            eps=layer.input_layernorm.variance_epsilon,
            qkv=Matrix(qkv, _bias(projections), int8), o=Matrix(a.o_proj.weight.detach(), _detach(a.o_proj.bias), int8),
            gate_up=Matrix(gate_up, None, int8), down=Matrix(mlp.down_proj.weight.detach(), None, int8),
            qk_norm=qk_norm, qk_eps=a.q_norm.variance_epsilon, heads=heads, kv_heads=kv_heads,
            head_dim=a.head_dim, intermediate=mlp.gate_proj.weight.shape[0], scaling=a.scaling,
        )


def _detach(t):
    return None if t is None else t.detach()


def rotation(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The rotary tables ``cos, sin [..., D]`` as ``[..., 2, 2, D/2]``: what each half of x adds to each half of the result.

    ``x * cos + rotate_half(x) * sin`` with ``rotate_half(x) = cat(-x2, x1)`` is, per half,
    ``out1 = x1 * cos1 - x2 * sin1`` and ``out2 = x2 * cos2 + x1 * sin2``: one broadcast product
    of ``x [..., 2, 1, D/2]`` with this table makes all four terms, and a sum over the first of
    the two axes adds them, each product and the sum rounded once, as qwen_tts rounds them.
    """
    half = cos.shape[-1] // 2
    c1, c2, s1, s2 = cos[..., :half], cos[..., half:], sin[..., :half], sin[..., half:]
    return torch.stack([torch.stack([c1, s2], -2), torch.stack([-s1, c2], -2)], -3)


def attend(q, k, v, mask, scale: float, causal: bool) -> torch.Tensor:
    """Grouped-query attention without copying K/V; ``q [S, heads, T, D]``, ``k, v [S, kv_heads, K, D]`` -> ``[S*T, heads*D]``."""
    b, heads, t, d = q.shape
    kv_heads = k.shape[1]
    group = heads // kv_heads
    if t == 1:
        qg = q.reshape(b, kv_heads, group, d)  # heads are kv-head-major, as repeat_kv orders them
        o = F.scaled_dot_product_attention(qg, k, v, attn_mask=mask, scale=scale)
        return o.reshape(b, heads * d)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None, scale=scale,
                                       enable_gqa=group > 1)
    return o.transpose(1, 2).reshape(b * t, heads * d)


def kv_bucket(need: int, capacity: int, block: int | None = None) -> int:
    """The KV length a step attends over: ``need`` rounded up to whole blocks (default ``KV_BUCKET``), at most ``capacity``.

    A captured step reads only this much of every slot's cache (each slot's own positions
    past its length are masked), so KV read per step follows the real lengths, and one
    graph per bucket serves every step whose longest slot falls in it.
    """
    block = block or KV_BUCKET
    return min(capacity, -(-need // block) * block)


def length_mask(pos: torch.Tensor, kv_len: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive attention mask ``[S, 1, 1, kv_len]``: 0 where a slot's position is filled (up to ``pos``), -inf past it."""
    keep = torch.arange(kv_len, device=pos.device)[None] <= pos[:, None]
    return torch.zeros(keep.shape, dtype=dtype, device=pos.device).masked_fill_(~keep, float("-inf"))[:, None, None]


class FusedStep:
    """The talker's and code predictor's layers for one decode step, on fused weights."""

    def __init__(self, talker, cp_cos: torch.Tensor, cp_sin: torch.Tensor, int8: bool = False):
        cp = talker.code_predictor
        self.int8 = int8
        self.talker_layers = [_Layer.of(layer, int8) for layer in talker.model.layers]
        self.cp_layers = [_Layer.of(layer, int8) for layer in cp.model.layers]
        self.norm, self.norm_eps = talker.model.norm.weight.detach(), talker.model.norm.variance_epsilon
        self.cp_norm, self.cp_norm_eps = cp.model.norm.weight.detach(), cp.model.norm.variance_epsilon
        self.codec_head = Matrix(talker.codec_head.weight.detach(), _detach(talker.codec_head.bias), int8)
        self.lm_heads = [Matrix(h.weight.detach(), _detach(h.bias), int8) for h in cp.lm_head]
        proj = cp.small_to_mtp_projection
        self.projection = Matrix(proj.weight.detach(), _detach(proj.bias), int8) if hasattr(proj, "weight") else None
        rope = talker.model.rotary_emb
        self.inv_freq, self.rope_scaling = rope.inv_freq.detach().float(), rope.attention_scaling
        self.dtype = talker.codec_head.weight.dtype
        device = talker.codec_head.weight.device
        self.inv_freq = self.inv_freq.to(device)
        tables = list(cp.model.codec_embedding)
        self.code_table = _fused_weight(tables, "_fused_codes")  # [15 * codebook, D]: every group's codes, one table
        sizes = torch.tensor([0] + [t.weight.shape[0] for t in tables[:-1]])
        self.code_offsets = sizes.cumsum(0).to(self.code_table.device)  # row where each group's codes start
        # The code predictor's rope tables at the positions its 15 steps use: 0-1, then 2, 3, ... 15.
        self._cp_tables = {(a, b): rotation(cp_cos[:, a:b, None], cp_sin[:, a:b, None])
                           for a, b in [(0, 2)] + [(g, g + 1) for g in range(2, cp_cos.shape[1])]}

    # ---- rotary tables --------------------------------------------------------------------

    def talker_rope(self, pos: torch.Tensor) -> torch.Tensor:
        """The rotation table (``rotation``) ``[S, 1, 1, 2, 2, D/2]`` at each slot's position, for every layer of the step.

        qwen_tts's interleaved multimodal rope takes each frequency from one of three position
        rows; for text and codec positions the three rows are equal, so it is plain rope.
        """
        freqs = pos[:, None].float() * self.inv_freq[None]
        emb = torch.cat((freqs, freqs), -1)
        cos = (emb.cos() * self.rope_scaling).to(self.dtype)
        sin = (emb.sin() * self.rope_scaling).to(self.dtype)
        return rotation(cos, sin)[:, None, None]


    # ---- layers ---------------------------------------------------------------------------

    def _qkv(self, L: _Layer, x: torch.Tensor, s: int, t: int, rope: torch.Tensor):
        """Normed, rotated q ``[S, heads, T, D]`` and k then v ``[S, T, 2 * kv_heads, D]`` from the residual stream ``[S*T, hidden]``.

        The head norm's weight product, then the rotation (``rotation``: one product, one sum),
        each rounded as qwen_tts rounds it. The sum is written over the raw q and k, so k and v
        end up side by side, as the joined KV cache holds them.
        """
        h = rms_norm(x, L.ln1, L.eps)
        qkv = L.qkv(h).view(s, t, L.heads + 2 * L.kv_heads, L.head_dim)
        qk = qkv[:, :, : L.heads + L.kv_heads]
        half = L.head_dim // 2
        normed = rms_norm(qk, None, L.qk_eps) * L.qk_norm
        terms = normed.view(s, t, -1, 2, 1, half) * rope  # [S, T, heads, 2 (from half), 2 (to half), D/2]
        torch.sum(terms, -3, out=qk.view(s, t, -1, 2, half))
        return qkv[:, :, : L.heads].transpose(1, 2), qkv[:, :, L.heads :]

    def _finish(self, L: _Layer, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """Output projection, residual, MLP, residual."""
        x = L.o(o, residual=x)
        gu = L.gate_up(rms_norm(x, L.ln2, L.eps))
        return L.down(F.silu(gu[:, : L.intermediate]) * gu[:, L.intermediate :], residual=x)

    def talker(self, x: torch.Tensor, kv: list, rows: torch.Tensor, at: torch.Tensor, pos: torch.Tensor,
               kv_len: int) -> torch.Tensor:
        """One talker position per slot: ``x [S, hidden]`` written at ``at``; returns the normed hidden ``[S, hidden]``.

        ``kv`` holds one joined cache per layer, ``[S, 2 * kv_heads, capacity, D]`` (keys, then values).
        Attention reads the first ``kv_len`` positions of every cache, each slot masked past its own ``pos``.
        """
        s = x.shape[0]
        rope = self.talker_rope(pos)
        mask = length_mask(pos, kv_len, x.dtype)
        for L, cache in zip(self.talker_layers, kv):
            q, kv_new = self._qkv(L, x, s, 1, rope)
            cache[rows, :, at] = kv_new[:, 0]
            o = attend(q, cache[:, : L.kv_heads, :kv_len], cache[:, L.kv_heads :, :kv_len], mask, L.scaling, False)
            x = self._finish(L, x, o)
        return rms_norm(x, self.norm, self.norm_eps)

    def code_predictor(self, x: torch.Tensor, kv: list, start: int) -> torch.Tensor:
        """The code predictor's layers over ``x [S, T, hidden]`` at positions ``start..``; returns the normed last position ``[S, hidden]``.

        ``kv`` holds one joined 16-position cache per layer, ``[S, 2 * kv_heads, 16, D]``.
        """
        s, t = x.shape[0], x.shape[1]
        end = start + t
        rope = self._cp_tables[(start, end)]  # [1, T, 1, 2, 2, D/2], built at load
        x = x.reshape(s * t, -1)
        for L, cache in zip(self.cp_layers, kv):
            q, kv_new = self._qkv(L, x, s, t, rope)
            cache[:, :, start:end] = kv_new.transpose(1, 2)
            o = attend(q, cache[:, : L.kv_heads, :end], cache[:, L.kv_heads :, :end], None, L.scaling, t > 1)
            x = self._finish(L, x, o)
        return rms_norm(x.view(s, t, -1)[:, -1], self.cp_norm, self.cp_norm_eps)

    def embed_frame(self, first: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The talker's next input: the first code's embedding ``first [S, D]`` plus the 15 groups' ``codes [S, 15]``.

        One lookup in the joined table, then qwen_tts's stack-and-sum over the 16 embeddings.
        """
        rest = F.embedding(codes + self.code_offsets, self.code_table)  # [S, 15, D]
        return torch.cat([first[:, None], rest], 1).sum(1)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The code predictor's input projection (talker width to its own) of ``x [S, T, D]``."""
        if self.projection is None:
            return x
        s, t = x.shape[0], x.shape[1]
        return self.projection(x.reshape(s * t, -1)).view(s, t, -1)
