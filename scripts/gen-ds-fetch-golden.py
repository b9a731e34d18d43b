#!/usr/bin/env python3
"""Expected outputs for ds-fetch's --split-ratios and --sample CLI tests, computed
independently of the C code from the documented definitions (docs/ds-fetch.md):

  --split-ratios: h = XXH3-64(canonical JSON, seed), canonical JSON =
      json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False);
      u = (h >> 11) / 2**53; part = first i with u < cumulative fraction i.
  --sample N: key(i) = splitmix64(splitmix64(seed) ^ i) for the i-th record (0-based);
      keep the N records with the smallest keys, in input order.

Needs the `xxhash` package from PyPI (pip install xxhash); CI only compares against the
committed outputs. Run from the repository root.
"""
import json
import os

import xxhash

FIX = "tests/fixtures/datasets"
CASES = "tests/cli/ds-fetch"
M64 = (1 << 64) - 1


def load(paths):
    recs = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            recs += [json.loads(line) for line in f if line.strip()]
    return recs


def dump(rec):
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":"))


def part_of(rec, parts, seed):
    canon = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    h = xxhash.xxh3_64_intdigest(canon, seed=seed)
    u = (h >> 11) / float(1 << 53)
    upper = 0.0
    for i, (_, frac) in enumerate(parts):
        upper += frac
        if i == len(parts) - 1:
            upper = 1.0
        if u < upper:
            return i
    return len(parts) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def sample(recs, n, seed):
    s = splitmix64(seed)
    keyed = sorted(range(len(recs)), key=lambda i: splitmix64(s ^ i))[:n]
    return [recs[i] for i in sorted(keyed)]


def write(case, name, recs):
    os.makedirs(f"{CASES}/{case}", exist_ok=True)
    with open(f"{CASES}/{case}/{name}", "w", encoding="utf-8") as f:
        for r in recs:
            f.write(dump(r) + "\n")


def main():
    inputs = [f"{FIX}/sql/train.jsonl", f"{FIX}/medqa/train.jsonl", f"{FIX}/court/fr_de/train.jsonl"]
    recs = load(inputs)
    parts = [("train", 0.8), ("validation", 0.1), ("test", 0.1)]
    for seed in (0, 42):
        for i, (name, _) in enumerate(parts):
            write("split-ratios-golden", f"{name}.seed{seed}.jsonl",
                  [r for r in recs if part_of(r, parts, seed) == i])
    sql = load([f"{FIX}/sql/train.jsonl"])
    write("sample-golden", "seed7.n5.jsonl", sample(sql, 5, 7))
    write("sample-golden", "seed8.n5.jsonl", sample(sql, 5, 8))


if __name__ == "__main__":
    main()
