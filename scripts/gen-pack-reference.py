#!/usr/bin/env python3
"""Reference numbers for pack's best-fit-decreasing packing, from TRL itself.

Writes (committed, read by tests/unit/test_pack.c and docs/pack.md):
  tests/fixtures/pack/lengths.txt         20000 document lengths, one per line
  tests/fixtures/pack/trl_reference.json  rows / padding of TRL's _pack_bfd on them

The lengths follow a realistic SFT length distribution (log-normal, median ~350
tokens, long tail clipped at 8192), generated with a fixed seed.

TRL's module imports datasets + transformers at the top, which we do not want to pull
in (they drag torch). So this script installs trl with `pip install --no-deps trl`,
reads trl/data_utils.py from the installed package, and executes ONLY the source of
`_check_if_columns_can_be_packed`, `_SegmentTree` and `_pack_bfd` (extracted verbatim
with `ast`) against pyarrow and numpy. The packing code run is TRL's own, unmodified.

It also writes small shard fixtures with an INDEPENDENT Python writer of the format
in docs/FORMAT.md (only xxhash needed), so the C reader is checked against the spec
rather than against itself:
  tests/fixtures/pack/docs.jsonl     12 documents (JSONL twin), one empty
  tests/fixtures/pack/docs.tok       the same, stream form, fingerprint 00 01 .. 0f
  tests/fixtures/pack/docs-b.tok     the same, another fingerprint (mixing must fail)
  tests/fixtures/pack/rows.shard     file form, 3 packed + padded rows

Usage: pip install --no-deps trl && pip install pyarrow numpy xxhash
       python3 scripts/gen-pack-reference.py [--time | --time-only | --fixtures-only]
--time also measures TRL's _pack_bfd throughput (tokens/s) for bench/pack.sh.
"""
import ast
import importlib.metadata
import importlib.util
import json
import math
import os
import random
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "pack")
N_DOCS = 20000
SEQ_LENS = [512, 2048, 4096]


def load_trl_pack():
    spec = importlib.util.find_spec("trl")
    if spec is None:
        sys.exit("trl is not installed: pip install --no-deps trl")
    path = os.path.join(spec.submodule_search_locations[0], "data_utils.py")
    src = open(path, encoding="utf-8").read()
    tree = ast.parse(src)
    wanted = {"_check_if_columns_can_be_packed", "_SegmentTree", "_pack_bfd"}
    nodes = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in wanted]
    if {n.name for n in nodes} != wanted:
        sys.exit(f"{path}: could not find {wanted}")
    ns = {"np": np, "pa": pa, "pc": pc, "pyarrow": pyarrow}
    from collections import defaultdict, deque
    from typing import Literal
    ns.update(defaultdict=defaultdict, deque=deque, Literal=Literal)
    code = ast.Module(body=nodes, type_ignores=[])
    exec(compile(code, path, "exec"), ns)
    return ns["_pack_bfd"], path


def make_lengths():
    rng = random.Random(20261122)
    out = []
    for _ in range(N_DOCS):
        # log-normal: median e^5.85 ~ 350 tokens, sigma 0.9; a few very long documents
        n = int(math.exp(rng.gauss(5.85, 0.9)))
        out.append(max(8, min(8192, n)))
    return out


def table_for(lengths):
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = pa.array(np.arange(offsets[-1], dtype=np.int64) % 50000, type=pa.int32())
    col = pa.LargeListArray.from_arrays(pa.array(offsets), values)
    return pa.table({"input_ids": col})


# ---- an independent writer of docs/FORMAT.md ----

def _hdr(vocab, fp, form, flags=0, seq_len=0, pad_id=0, width=2):
    import struct
    import xxhash
    b = bytearray(64)
    b[0:8] = b"SFTKSHRD"
    struct.pack_into("<HBBIIII", b, 8, 1, width, form, flags, vocab, seq_len, pad_id)
    b[32:48] = fp
    struct.pack_into("<Q", b, 56, xxhash.xxh3_64_intdigest(bytes(b[:56])))
    return bytes(b)


def _rec(tokens, mask, segs=(), n_pad=0, width=2):
    import struct
    n = len(tokens)
    b = bytearray(struct.pack("<4sIII", b"REC1", n, len(segs), n_pad))
    for doc_id, off, ln in segs:
        b += struct.pack("<QII", doc_id, off, ln)
    b += struct.pack("<%d%s" % (n, "H" if width == 2 else "I"), *tokens)
    bits = bytearray((n + 7) // 8)
    for i, m in enumerate(mask):
        bits[i >> 3] |= m << (i & 7)
    b += bits
    b += bytes(-len(b) % 8)
    return bytes(b)


def write_shard(path, vocab, fp, records, form, flags=0, seq_len=0, pad_id=0):
    import struct
    import xxhash
    out = bytearray(_hdr(vocab, fp, form, flags, seq_len, pad_id))
    offsets = []
    ntok = nseg = ntrained = npad = 0
    for r in records:
        offsets.append(len(out))
        out += _rec(*r)
        ntok += len(r[0])
        ntrained += sum(r[1])
        nseg += len(r[2]) if len(r) > 2 else 0
        npad += r[3] if len(r) > 3 else 0
    h64 = xxhash.xxh3_64_intdigest(bytes(out)) if form == 0 else 0
    out += struct.pack("<4sIQQQ", b"END1", 0, len(records), ntok, h64)
    if form == 1:
        index_off = len(out)
        for o in offsets:
            out += struct.pack("<Q", o)
        digest = xxhash.xxh3_128_digest(bytes(out))  # canonical (big-endian) bytes
        out += struct.pack("<8sQQQQQQQ", b"SFTKFOOT", len(records), ntok, nseg, ntrained, npad, index_off, 0)
        out += digest
    with open(path, "wb") as f:
        f.write(out)


def make_fixtures():
    import json as _json
    rng = random.Random(42)
    docs = []
    for i in range(12):
        n_prompt = 0 if i == 5 else rng.randint(3, 30)
        n_answer = 0 if i == 5 else rng.randint(2, 30)
        toks = [1] + [rng.randrange(2, 49152) for _ in range(n_prompt + n_answer)] + [2] if i != 5 else []
        mask = ([0] * (1 + n_prompt) + [1] * (n_answer + 1)) if i != 5 else []
        docs.append((toks, mask))
    with open(os.path.join(FIX, "docs.jsonl"), "w") as f:
        for t, m in docs:
            f.write(_json.dumps({"input_ids": t, "mask": m}, separators=(",", ":")) + "\n")
    fp_a = bytes(range(16))
    fp_b = bytes(range(16, 32))
    write_shard(os.path.join(FIX, "docs.tok"), 49152, fp_a, docs, 0)
    write_shard(os.path.join(FIX, "docs-b.tok"), 49152, fp_b, docs, 0)
    rows = []
    for k in range(3):
        t = [rng.randrange(49152) for _ in range(20)]
        m = [1 if 5 <= j < 14 else 0 for j in range(20)]
        segs = [(2 * k, 0, 8), (2 * k + 1, 0, 6)]
        t = t[:14] + [0] * 6
        m = m[:14] + [0] * 6
        rows.append((t, m, segs, 6))
    write_shard(os.path.join(FIX, "rows.shard"), 49152, fp_a, rows, 1, flags=3, seq_len=20, pad_id=0)


def time_trl(pack_bfd):
    # Throughput on a larger set: 200k documents (~100 M tokens), seq_len 2048
    rng = random.Random(7)
    big = [max(8, min(8192, int(math.exp(rng.gauss(5.85, 0.9))))) for _ in range(200000)]
    tab = table_for(big)
    t0 = time.perf_counter()
    pack_bfd(tab, 2048, on_seq_length_overflow="truncate")
    dt = time.perf_counter() - t0
    print(f"TRL _pack_bfd: {sum(big)} tokens in {dt:.2f} s = {sum(big) / dt / 1e6:.1f} M tokens/s")


def main():
    if "--time-only" in sys.argv:
        time_trl(load_trl_pack()[0])
        return
    os.makedirs(FIX, exist_ok=True)
    make_fixtures()
    if "--fixtures-only" in sys.argv:
        return
    pack_bfd, trl_path = load_trl_pack()
    lengths = make_lengths()
    os.makedirs(FIX, exist_ok=True)
    with open(os.path.join(FIX, "lengths.txt"), "w") as f:
        f.write("".join(f"{n}\n" for n in lengths))
    ref = {
        "generator": "scripts/gen-pack-reference.py",
        "trl_version": importlib.metadata.version("trl"),
        "trl_source": "trl/data_utils.py: _pack_bfd (whole input in one call, i.e. one window)",
        "documents": len(lengths),
        "tokens": sum(lengths),
        "results": [],
    }
    tab = table_for(lengths)
    for seq_len in SEQ_LENS:
        for mode in ("truncate", "split"):
            t0 = time.perf_counter()
            out = pack_bfd(tab, seq_len, on_seq_length_overflow=mode)
            dt = time.perf_counter() - t0
            row_lens = pc.list_value_length(out.column("input_ids")).to_numpy()
            rows = len(row_lens)
            toks = int(row_lens.sum())
            ref["results"].append({
                "seq_len": seq_len,
                "strategy": "bfd" if mode == "truncate" else "bfd-split",
                "rows": rows,
                "tokens": toks,
                "padding_fraction": round(1 - toks / (rows * seq_len), 6),
                "seconds": round(dt, 3),
            })
            print(f"seq_len {seq_len} {mode}: {rows} rows, {toks} tokens, "
                  f"padding {100 * (1 - toks / (rows * seq_len)):.3f}%, {toks / dt / 1e6:.2f} M tokens/s",
                  file=sys.stderr)
    with open(os.path.join(FIX, "trl_reference.json"), "w") as f:
        json.dump(ref, f, indent=2)
        f.write("\n")
    if "--time" in sys.argv:
        time_trl(pack_bfd)

if __name__ == "__main__":
    main()
