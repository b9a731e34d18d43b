#!/usr/bin/env python3
"""Golden fixtures for libcommon/safetensors.* and libcommon/dequant.* (tests/fixtures/weights/).

Oracles: the `gguf` PyPI package (gguf-py: quants.quantize / quants.dequantize numpy
reference, GGUFWriter), `safetensors` (numpy API and the raw Rust serializer),
`huggingface_hub` (split_state_dict_into_shards_factory: the save_pretrained shard plan).

    python3 scripts/gen-weights-fixtures.py            # regenerate tests/fixtures/weights
    python3 scripts/gen-weights-fixtures.py --real-gguf M.gguf --out REF.safetensors [--n 6]
        # writes gguf-py dequantizations of a few tensors of a real GGUF (one or more per
        # type) for the not-in-CI check:
        # SFT_REAL_GGUF=M.gguf SFT_REAL_GGUF_REF=REF.safetensors build/tests/test_dequant

Deterministic: fixed numpy seed; same inputs give the same bytes.
"""
import argparse
import ctypes
import json
import os
import shutil
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "weights")


def need(mod):
    try:
        return __import__(mod)
    except ImportError:
        sys.exit(f"gen-weights-fixtures: missing python package '{mod}' (pip install {mod})")


gguf = need("gguf")
from gguf import GGMLQuantizationType as Q  # noqa: E402
from gguf import quants  # noqa: E402

need("safetensors")
from safetensors.numpy import save_file, load_file  # noqa: E402
from safetensors import _safetensors_rust as st_rust  # noqa: E402

rng = np.random.default_rng(20261122)

# fp16 fields of each K-quant block (byte offsets) that random bytes must not turn into
# inf/nan, so that the comparison is about the decoding, not NaN payload propagation.
K_F16_FIELDS = {Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208]}


def f16_bytes(vals):
    return np.asarray(vals, dtype=np.float16).view(np.uint8)


def random_kquant(qt, n_blocks):
    """Random block bytes with realistic finite fp16 scales (one block gets subnormal scales)."""
    bs, ts = gguf.GGML_QUANT_SIZES[qt]
    raw = rng.integers(0, 256, size=(n_blocks, ts), dtype=np.uint8)
    for off in K_F16_FIELDS[qt]:
        d = (rng.standard_normal(n_blocks) * 0.02).astype(np.float16)
        d[-1] = np.float16(3e-6)  # fp16 subnormal
        raw[:, off:off + 2] = d.view(np.uint8).reshape(n_blocks, 2)
    return raw


def gen_dequant():
    """dequant/<TYPE>.q (quantized bytes) + dequant/<TYPE>.f32 (gguf-py's fp32 result)."""
    d = os.path.join(OUT, "dequant")
    os.makedirs(d, exist_ok=True)
    cases = {}
    # types gguf-py can quantize: realistic weights, a zero block, a constant block,
    # a block with a single outlier
    for qt in (Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.BF16):
        x = (rng.standard_normal((8, 32)) * 0.05).astype(np.float32)
        x[1] = 0
        x[2] = 0.125
        x[3, 7] = 3.0
        x = x.reshape(1, -1)
        q = quants.quantize(x, qt)
        cases[qt.name] = (q.tobytes(), quants.dequantize(q, qt).astype(np.float32).ravel())
    # BF16 special bit patterns (nan payloads, inf, subnormals) straight from bits
    bits = np.array([0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0x7f81, 0xffff, 0x0001, 0x807f, 0x3f80],
                    dtype=np.uint16)
    bits = np.concatenate([bits, rng.integers(0, 65536, 246, dtype=np.uint16).astype(np.uint16)])
    cases["BF16_bits"] = (bits.tobytes(), quants.dequantize(bits.view(np.uint8).reshape(1, -1), Q.BF16).ravel())
    # K-quants: gguf-py only dequantizes them: random blocks
    for qt in (Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K):
        raw = random_kquant(qt, 4)
        cases[qt.name] = (raw.tobytes(), quants.dequantize(raw.reshape(1, -1), qt).astype(np.float32).ravel())
    # F16: every subnormal, specials, and random patterns; numpy's exact conversion
    h = np.concatenate([np.arange(0, 1024), np.arange(0x8000, 0x8400),
                        [0x7c00, 0xfc00, 0x7c01, 0x7e00, 0xfe00, 0x7fff, 0x3c00, 0x7bff, 0x0400],
                        rng.integers(0, 65536, 2048 - 9)]).astype(np.uint16)
    cases["F16"] = (h.tobytes(), h.view(np.float16).astype(np.float32))
    # F32 passes through
    f = rng.standard_normal(64).astype(np.float32)
    cases["F32"] = (f.tobytes(), f)
    # Q8_K: no gguf-py implementation; ggml's formula y = d(f32) * q(int8), computed in fp32
    nb = 2
    qs = rng.integers(-128, 128, size=(nb, 256), dtype=np.int8)
    dk = (rng.random(nb) * 0.01).astype(np.float32)
    bsums = qs.reshape(nb, 16, 16).astype(np.int16).sum(axis=2).astype(np.int16)
    blob = b"".join(dk[i:i + 1].tobytes() + qs[i].tobytes() + bsums[i].tobytes() for i in range(nb))
    cases["Q8_K"] = (blob, (dk[:, None] * qs.astype(np.float32)).astype(np.float32).ravel())
    for name, (qb, ref) in sorted(cases.items()):
        with open(os.path.join(d, name + ".q"), "wb") as fh:
            fh.write(qb)
        with open(os.path.join(d, name + ".f32"), "wb") as fh:
            fh.write(np.asarray(ref, dtype="<f4").tobytes())


def gen_tiny_gguf():
    """tiny.gguf (GGUFWriter, quantized tensors) + tiny-expected.safetensors (gguf-py fp32)."""
    path = os.path.join(OUT, "tiny.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    expected = {}

    def add(name, qt, shape):
        if qt in K_F16_FIELDS:
            bs, ts = gguf.GGML_QUANT_SIZES[qt]
            n = int(np.prod(shape))
            raw = random_kquant(qt, n // bs).reshape(*shape[:-1], shape[-1] // bs * ts)
        else:
            x = (rng.standard_normal(shape) * 0.05).astype(np.float32)
            raw = quants.quantize(x, qt) if qt != Q.F32 else x
        w.add_tensor(name, raw, raw_dtype=qt if qt != Q.F32 else None)
        expected[name] = quants.dequantize(raw, qt).astype(np.float32).reshape(shape)

    add("token_embd.weight", Q.Q8_0, (4, 64))
    add("blk.0.attn_q.weight", Q.Q4_0, (2, 64))
    add("blk.0.attn_k.weight", Q.Q4_1, (2, 64))
    add("blk.0.attn_v.weight", Q.Q5_0, (2, 32))
    add("blk.0.attn_output.weight", Q.Q5_1, (2, 32))
    add("blk.0.ffn_gate.weight", Q.Q4_K, (2, 256))
    add("blk.0.ffn_up.weight", Q.Q5_K, (1, 256))
    add("blk.0.ffn_down.weight", Q.Q6_K, (1, 256))
    add("blk.0.q2.weight", Q.Q2_K, (1, 256))
    add("blk.0.q3.weight", Q.Q3_K, (1, 256))
    add("blk.0.f16.weight", Q.F16, (3, 8))
    add("blk.0.bf16.weight", Q.BF16, (3, 8))
    add("blk.0.attn_norm.weight", Q.F32, (16,))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file(expected, os.path.join(OUT, "tiny-expected.safetensors"))


def raw_serialize(specs, metadata=None):
    """The Rust serializer with raw bytes (for dtypes numpy lacks, e.g. bf16)."""
    keep, d = [], {}
    for name, (dt, shape, data) in specs.items():
        b = ctypes.create_string_buffer(data, len(data))
        keep.append(b)
        d[name] = st_rust.TensorSpec(dtype=dt, shape=list(shape), data_ptr=ctypes.addressof(b), data_len=len(data))
    return st_rust.serialize(d, metadata)


def st_header(hdr: dict, pad=True):
    js = json.dumps(hdr, separators=(",", ":")).encode()
    if pad:
        js += b" " * ((8 - len(js) % 8) % 8)
    return struct.pack("<Q", len(js)) + js


def gen_safetensors():
    d = os.path.join(OUT, "st")
    os.makedirs(d, exist_ok=True)
    f16 = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, 6e-8, -6e-8, 1e-5, np.inf, -np.inf, np.nan, 0.333],
                   dtype=np.float16)
    basic = {
        "model.embed_tokens.weight": (rng.standard_normal((4, 3))).astype(np.float32),
        "model.norm.weight": f16,
        "lm_head.bias": np.array([1.5, -2.25], dtype=np.float64),
        "position_ids": np.arange(5, dtype=np.int64) - 2,
        "counts": np.array([0, 7, 255], dtype=np.uint8),
        "mask": np.array([True, False, True]),
        "small": np.array([-3, 4], dtype=np.int16),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "i32": np.array([-7, 1 << 20], dtype=np.int32),
        "i8": np.array([-128, 127], dtype=np.int8),
        'weird "name"\u00e9\n\t\x01': np.array([1.0], dtype=np.float32),
    }
    save_file(basic, os.path.join(d, "basic.safetensors"), metadata={"format": "pt"})
    # no metadata at all, and the bytes Python writes (golden for the writer)
    save_file({k: basic[k] for k in ("model.embed_tokens.weight", "scalar")}, os.path.join(d, "nometa.safetensors"))
    # bf16 (numpy has no bfloat16): raw bytes through the same Rust serializer
    bf_vals = np.array([1.0, -2.0, 0.15625, 3.0e38, 1e-40, np.inf, np.nan, -0.0], dtype=np.float32)
    bf_bits = (bf_vals.view(np.uint32) >> 16).astype(np.uint16)
    with open(os.path.join(d, "bf16.safetensors"), "wb") as fh:
        fh.write(raw_serialize({"w.bf16": ("bfloat16", (2, 4), bf_bits.tobytes()),
                                "w.f32": ("float32", (2,), np.array([1, 2], np.float32).tobytes())},
                               {"format": "pt"}))
    # expected fp32 for every convertible tensor (numpy's conversions)
    exp = {k: np.asarray(v).astype(np.float32) for k, v in basic.items()}
    exp["w.bf16"] = (bf_bits.astype(np.uint32) << 16).view(np.float32).reshape(2, 4)
    save_file(exp, os.path.join(d, "expected-f32.safetensors"))
    # verify Python reads back what it wrote (sanity for the fixture itself)
    back = load_file(os.path.join(d, "basic.safetensors"))
    assert all(np.array_equal(back[k], v, equal_nan=v.dtype.kind == "f") for k, v in basic.items())

    # sharded model as save_pretrained lays it out (huggingface_hub's shard plan)
    from huggingface_hub.serialization._base import split_state_dict_into_shards_factory
    sd = {}
    for i in range(3):
        sd[f"model.layers.{i}.mlp.up_proj.weight"] = rng.standard_normal((8, 4)).astype(np.float32)  # 128 B
        sd[f"model.layers.{i}.input_layernorm.weight"] = rng.standard_normal(4).astype(np.float16)  # 8 B
    sd["model.embed_tokens.weight"] = rng.standard_normal((16, 8)).astype(np.float32)  # 512 B > max
    sd["lm_head.weight"] = rng.standard_normal((2, 8)).astype(np.float32)
    max_shard = 300
    split = split_state_dict_into_shards_factory(sd, get_storage_size=lambda t: t.nbytes,
                                                 filename_pattern="model{suffix}.safetensors",
                                                 max_shard_size=max_shard)
    sdir = os.path.join(d, "sharded")
    shutil.rmtree(sdir, ignore_errors=True)
    os.makedirs(sdir)
    for fname, names in split.filename_to_tensors.items():
        save_file({n: sd[n] for n in names}, os.path.join(sdir, fname), metadata={"format": "pt"})
    index = {"metadata": {"total_size": split.metadata["total_size"]}, "weight_map": split.tensor_to_filename}
    with open(os.path.join(sdir, "model.safetensors.index.json"), "w") as fh:
        fh.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    # insertion order + max shard size, for the C writer to redo the same plan
    with open(os.path.join(d, "sharded-order.txt"), "w") as fh:
        fh.write(f"{max_shard}\n" + "".join(n + "\n" for n in sd))

    # index naming a tensor its shard lacks
    mdir = os.path.join(d, "sharded-missing")
    shutil.rmtree(mdir, ignore_errors=True)
    os.makedirs(mdir)
    save_file({"model.norm.weight": f16}, os.path.join(mdir, "model-00001-of-00001.safetensors"))
    with open(os.path.join(mdir, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {"total_size": 24}, "weight_map": {
            "model.norm.weight": "model-00001-of-00001.safetensors",
            "model.layers.0.mlp.up_proj.weight": "model-00001-of-00001.safetensors"}}, fh, indent=2)

    # corrupt variants
    c = os.path.join(d, "corrupt")
    shutil.rmtree(c, ignore_errors=True)
    os.makedirs(c)
    good = open(os.path.join(d, "nometa.safetensors"), "rb").read()
    one = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}

    def put(name, data):
        with open(os.path.join(c, name), "wb") as fh:
            fh.write(data)

    put("truncated.safetensors", good[:-5])
    put("short.safetensors", b"\x10\x00\x00")
    put("hdrlen-beyond.safetensors", struct.pack("<Q", 1 << 40) + b"{}")
    bad = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},,}'
    put("badjson.safetensors", struct.pack("<Q", len(bad)) + bad + bytes(8))
    put("unknown-dtype.safetensors",
        st_header({"a": {"dtype": "F17", "shape": [2], "data_offsets": [0, 8]}}) + bytes(8))
    put("size-mismatch.safetensors",
        st_header({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}) + bytes(8))
    put("overlap.safetensors", st_header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                          "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}) + bytes(12))
    put("gap.safetensors", st_header({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                      "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}) + bytes(12))
    put("trailing.safetensors", st_header(one) + bytes(12))
    put("past-end.safetensors", st_header(one) + bytes(4))
    put("meta-not-string.safetensors", st_header({"__metadata__": {"n": 1}, **one}) + bytes(8))
    put("not-object.safetensors", st_header([1, 2]) + bytes(0))
    put("negative-shape.safetensors",
        st_header({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}) + bytes(8))
    put("duplicate.safetensors", (lambda j: struct.pack("<Q", len(j)) + j)(
        b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}')
        + bytes(1))


def real_gguf(path, out, n_per_type):
    """gguf-py dequantization of the first n tensors of each type of a real GGUF."""
    r = gguf.GGUFReader(path)
    seen, ref = {}, {}
    for t in r.tensors:
        k = t.tensor_type.name
        if seen.get(k, 0) >= n_per_type:
            continue
        seen[k] = seen.get(k, 0) + 1
        ref[t.name] = quants.dequantize(t.data, t.tensor_type).astype(np.float32).ravel()
    save_file(ref, out)
    print(f"{out}: {len(ref)} tensors: " + ", ".join(f"{k} x{v}" for k, v in sorted(seen.items())))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real-gguf")
    ap.add_argument("--out")
    ap.add_argument("--n", type=int, default=2)
    a = ap.parse_args()
    if a.real_gguf:
        if not a.out:
            ap.error("--real-gguf needs --out")
        real_gguf(a.real_gguf, a.out, a.n)
        return
    os.makedirs(OUT, exist_ok=True)
    gen_dequant()
    gen_tiny_gguf()
    gen_safetensors()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"{OUT}: {total} bytes")


if __name__ == "__main__":
    main()
