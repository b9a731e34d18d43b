#!/usr/bin/env python3
"""Reference fixtures for libcommon/ops (tests/unit/test_ops.c), numpy only.

Every reference follows the formulas transformers / torch use (cited per op) and is
computed in float64 from float32 inputs, except where torch itself computes in fp32 and the
fp32 rounding is part of the contract (rope inv_freq, rope angles, AdamW), which are done in
float32 the way torch does them. Outputs: raw little-endian arrays, one file per tensor,
tests/fixtures/ops/<case>.<tensor>.<f32|i32|f64>. Scalars (eps, theta, ...) are repeated in
test_ops.c; change both together.

Usage: python3 scripts/gen-ops-fixtures.py [OUTDIR]   (default tests/fixtures/ops)
"""
import math
import os
import sys

import numpy as np

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "ops"))
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(20261122)
f32 = np.float32


def save(name, a, kind="f32"):
    dt = {"f32": "<f4", "i32": "<i4", "f64": "<f8"}[kind]
    np.ascontiguousarray(a, dtype=dt).tofile(os.path.join(OUT, f"{name}.{kind}"))


def randn(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(f32)


# ---- matmul: nn.Linear, y = x @ W^T + b ----
x, W, b = randn(9, 33), randn(17, 33, scale=0.2), randn(17)
save("matmul.x", x); save("matmul.W", W); save("matmul.b", b)
save("matmul.out", x.astype(np.float64) @ W.astype(np.float64).T + b)

# ---- embedding (Gemma3TextScaledWordEmbedding: embed * sqrt(hidden) in the weight dtype) ----
wte, ids = randn(11, 6), np.array([3, 0, 10, 3, 7], dtype=np.int32)
scale = f32(math.sqrt(6.0))
save("embedding.wte", wte); save("embedding.ids", ids, "i32")
save("embedding.out", wte[ids].astype(np.float64) * np.float64(scale))

# ---- rmsnorm: LlamaRMSNorm (w * x * rsqrt(mean(x^2) + eps)), Gemma3RMSNorm ((1 + w) * ...) ----
x, w, eps = randn(4, 48, scale=3.0), randn(48, scale=0.5), f32(1e-6)
xd = x.astype(np.float64)
rstd = 1.0 / np.sqrt((xd * xd).mean(-1, keepdims=True) + np.float64(eps))
save("rmsnorm.x", x); save("rmsnorm.w", w)
save("rmsnorm.rstd", rstd[:, 0])
save("rmsnorm.out", xd * rstd * w)
save("rmsnorm.out_gemma", xd * rstd * (1.0 + w.astype(np.float64)))


# ---- rope inv_freq: transformers modeling_rope_utils, in fp32 like torch ----
def inv_freq_default(theta, dim):
    # fp32 power taken correctly rounded (float64 pow rounded once); numpy's float32 power
    # and torch's vectorized powf can each be 1 ulp off it
    e = np.arange(0, dim, 2).astype(f32) / f32(dim)
    p = (np.float64(f32(theta)) ** e.astype(np.float64)).astype(f32)
    return (f32(1.0) / p).astype(f32)


def inv_freq_llama3(theta, dim, factor, lo, hi, old):
    inv = inv_freq_default(theta, dim)
    low_wavelen, high_wavelen = old / lo, old / hi
    wavelen = (f32(1.0) / inv) * f32(2 * math.pi)  # torch: scalar / t = reciprocal(t) * scalar
    llama = np.where(wavelen > f32(low_wavelen), inv / f32(factor), inv).astype(f32)
    smooth = ((f32(1.0) / wavelen) * f32(old) - f32(lo)) / f32(hi - lo)
    smoothed = (f32(1.0) - smooth) * llama / f32(factor) + smooth * llama
    medium = ~(wavelen < f32(high_wavelen)) & ~(wavelen > f32(low_wavelen))
    return np.where(medium, smoothed, llama).astype(f32)


save("rope.inv_freq_default", inv_freq_default(10000.0, 16))
save("rope.inv_freq_linear", (inv_freq_default(10000.0, 16) / f32(4.0)).astype(f32))
l3 = inv_freq_llama3(500000.0, 64, 8.0, 1.0, 4.0, 8192.0)
wl = 2 * math.pi / l3.astype(np.float64)
assert (wl < 2048).any() and (wl > 8192 * 8).any() and ((wl > 2048 * 1.5) & (wl < 8192 * 8)).any()
save("rope.inv_freq_llama3", l3)

# rope apply (apply_rotary_pos_emb with rotate_half): angles in fp32 as HF
# (inv_freq @ position_ids in fp32), cos/sin of that fp32 angle
x = randn(5, 2, 64)
pos = np.array([0, 1, 2, 4000, 8191], dtype=np.int32)
ang = (pos.astype(f32)[:, None] * l3[None, :]).astype(f32).astype(np.float64)  # (N, 32)
cos = np.concatenate([np.cos(ang), np.cos(ang)], -1)[:, None, :]
sin = np.concatenate([np.sin(ang), np.sin(ang)], -1)[:, None, :]
xd = x.astype(np.float64)
rot = np.concatenate([-xd[..., 32:], xd[..., :32]], -1)
save("rope.x", x); save("rope.pos", pos, "i32")
save("rope.out", xd * cos + rot * sin)


# ---- attention: eager_attention_forward with a causal & same-document & window mask ----
def attention_ref(q, k, v, seg, scale, window, softcap):
    B, T, Hq, D = q.shape
    Hkv = k.shape[2]
    rep = Hq // Hkv
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    out = np.zeros((B, T, Hq, D)); lse = np.zeros((B, T, Hq))
    for b_ in range(B):
        for h in range(Hq):
            s = q[b_, :, h, :] @ k[b_, :, h // rep, :].T * scale  # (T, T)
            if softcap > 0:
                s = softcap * np.tanh(s / softcap)
            t_i, s_i = np.arange(T)[:, None], np.arange(T)[None, :]
            allowed = s_i <= t_i
            if seg is not None:
                allowed &= seg[b_][:, None] == seg[b_][None, :]
            if window > 0:
                allowed &= (t_i - s_i) < window
            s = np.where(allowed, s, -np.inf)
            mx = s.max(-1, keepdims=True)
            p = np.exp(s - mx)
            l = p.sum(-1, keepdims=True)
            out[b_, :, h, :] = (p / l) @ v[b_, :, h // rep, :]
            lse[b_, :, h] = (mx + np.log(l))[:, 0]
    return out, lse


B, T, Hq, Hkv, D = 2, 13, 4, 2, 8
q, k, v = randn(B, T, Hq, D), randn(B, T, Hkv, D), randn(B, T, Hkv, D)
seg = np.array([[0] * 5 + [1] * 4 + [2] * 4, [7] * 13], dtype=np.int32)
save("attn.q", q); save("attn.k", k); save("attn.v", v); save("attn.seg", seg, "i32")
o, lse = attention_ref(q, k, v, seg, 1 / math.sqrt(D), 0, 0.0)
save("attn.out_seg", o); save("attn.lse_seg", lse)
# Gemma-style: query_pre_attn_scalar 6, sliding window 5, logit softcap 3, no segments
o, lse = attention_ref(q, k, v, None, 6 ** -0.5, 5, 3.0)
save("attn.out_win", o); save("attn.lse_win", lse)

# ---- gated activations: silu(g) * u, gelu(g, approximate="tanh") * u ----
g, u = randn(64, scale=3.0), randn(64)
gd, ud = g.astype(np.float64), u.astype(np.float64)
save("act.gate", g); save("act.up", u)
save("act.swiglu", gd / (1 + np.exp(-gd)) * ud)
save("act.geglu", 0.5 * gd * (1 + np.tanh(math.sqrt(2 / math.pi) * (gd + 0.044715 * gd ** 3))) * ud)

# ---- cross-entropy: F.cross_entropy(x @ W^T, t, ignore_index=-100, reduction="sum") ----
N, C, V = 10, 16, 37
h, W = randn(N, C), randn(V, C, scale=0.5)
t = rng.integers(0, V, N).astype(np.int32)
t[[2, 5, 6]] = -100
logits = h.astype(np.float64) @ W.astype(np.float64).T
tr = t >= 0
t[np.where(tr)[0][0]] = int(np.argmax(logits[np.where(tr)[0][0]]))  # at least one correct
mx = logits.max(-1, keepdims=True)
lse = (mx + np.log(np.exp(logits - mx).sum(-1, keepdims=True)))[:, 0]
loss = float(sum(lse[i] - logits[i, t[i]] for i in range(N) if tr[i]))
ntok, ncorrect = int(tr.sum()), int(sum(np.argmax(logits[i]) == t[i] for i in range(N) if tr[i]))
gscale = 1.0 / ntok
dlog = np.exp(logits - lse[:, None])
for i in range(N):
    if tr[i]:
        dlog[i, t[i]] -= 1
    else:
        dlog[i] = 0
dlog *= gscale
save("ce.h", h); save("ce.W", W); save("ce.t", t, "i32")
save("ce.stats", np.array([loss, ntok, ncorrect]), "f64")
save("ce.dh", dlog @ W.astype(np.float64)); save("ce.dW", dlog.T @ h.astype(np.float64))

# ---- AdamW: torch.optim.AdamW single-tensor step, fp32 like torch; 3 steps ----
n = 20
p, m_, v_ = randn(n), np.zeros(n, f32), np.zeros(n, f32)
lr, wd, b1, b2, aeps, clip = 1e-3, 0.1, 0.9, 0.95, 1e-8, 0.5
save("adamw.p0", p)
for step in range(1, 4):
    gr = randn(n)
    save(f"adamw.g{step}", gr)
    gg = (gr * f32(clip)).astype(f32)
    p = (p * f32(1 - lr * wd)).astype(f32)
    m_ = (m_ + f32(1 - b1) * (gg - m_)).astype(f32)
    v_ = (v_ * f32(b2) + f32(1 - b2) * gg * gg).astype(f32)
    bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
    denom = (np.sqrt(v_) / f32(math.sqrt(bc2)) + f32(aeps)).astype(f32)
    p = (p - f32(lr / bc1) * (m_ / denom)).astype(f32)
save("adamw.p3", p); save("adamw.m3", m_); save("adamw.v3", v_)
print(f"wrote {len(os.listdir(OUT))} files to {OUT}")
