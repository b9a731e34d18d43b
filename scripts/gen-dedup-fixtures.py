#!/usr/bin/env python3
"""Builds the ds-dedup parity fixtures with datasketch (the oracle) into tests/fixtures/dedup/.

    pip install datasketch numpy scipy && python3 scripts/gen-dedup-fixtures.py

Outputs (all committed; CI never runs this script):
  corpus.jsonl          ~2000 {"id","text"} records, shuffled: base documents, planted near
                        duplicates at target Jaccard 0.5..0.95 (word 5-gram shingles), and
                        exact duplicates that differ only in case/whitespace
  truth.tsv             planted pairs: line_a line_b true_jaccard (5-gram word shingles)
  expected_removed.tsv  datasketch MinHash(128, seed=1, scheme="legacy") + MinHashLSH(0.8):
                        connected components of the candidate pairs, the first line kept;
                        "line<TAB>duplicate_of" for every other member
  expected_pairs.tsv    all LSH candidate pairs (line_a < line_b)
  signatures.tsv        line then 128 hash values, for the first 25 records (word 5-grams)
  signatures_char.tsv   line then 64 hash values (char 5-grams, num_perm 64, seed 7)
  optimal_params.tsv    threshold num_perm bands rows, from datasketch's _optimal_param
  contam_test.jsonl     30 evaluation records
  contam_train.jsonl    train records: unrelated ones plus edited copies of 20 test items
  contam_expected.tsv   train lines datasketch finds in an LSH bucket with a test record at
                        threshold 0.5: "line<TAB>test_line"
"""
import json
import os
import random
import unicodedata

import numpy as np
from datasketch import MinHash, MinHashLSH
from datasketch.lsh import _optimal_param

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "dedup")
rng = random.Random(20261122)

SYL = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qui", "dor", "lan", "mer", "tos",
       "bel", "cra", "fin", "gol", "hur", "jas", "kel", "mon", "nor", "pri", "sul", "tra", "vin"]
VOCAB = sorted({"".join(rng.choice(SYL) for _ in range(rng.randint(1, 3))) for _ in range(6000)})


def norm(t):
    t = unicodedata.normalize("NFC", unicodedata.normalize("NFC", t).casefold())
    return " ".join(t.split())


def shingles(t, n=5, unit="word"):
    t = norm(t)
    if unit == "word":
        toks = t.split()
        if not toks:
            return []
        return [" ".join(toks[i:i + n]) for i in range(max(1, len(toks) - n + 1))]
    if not t:
        return []
    return [t[i:i + n] for i in range(max(1, len(t) - n + 1))]


def jaccard(a, b):
    sa, sb = set(shingles(a)), set(shingles(b))
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def doc(nw):
    return " ".join(rng.choice(VOCAB) for _ in range(nw))


def mutate_to(text, target):
    """Replace random words until the 5-gram Jaccard drops to about target."""
    words = text.split()
    cur = text
    while True:
        i = rng.randrange(len(words))
        words[i] = rng.choice(VOCAB)
        nxt = " ".join(words)
        if jaccard(text, nxt) < target - 0.02:
            return cur
        cur = nxt
        if jaccard(text, cur) <= target:
            return cur


def minhash(t, num_perm=128, seed=1, n=5, unit="word"):
    m = MinHash(num_perm=num_perm, seed=seed, scheme="legacy")
    m.update_batch([s.encode("utf-8") for s in shingles(t, n, unit)])
    return m


def main():
    os.makedirs(OUT, exist_ok=True)
    targets = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95]
    items = []  # (text, group, kind)
    bases = [doc(rng.randint(60, 140)) for _ in range(1400)]
    for gi, b in enumerate(bases):
        items.append((b, gi, "base"))
    planted = []
    for k in range(420):
        gi = k
        t = targets[k % len(targets)]
        v = mutate_to(bases[gi], t)
        items.append((v, gi, "near"))
        planted.append(len(items) - 1)
    for k in range(420, 560):
        b = bases[k]
        words = b.split()
        v = "  ".join(w.upper() if rng.random() < 0.3 else w for w in words) + " \t"
        items.append((v, k, "exact"))
    order = list(range(len(items)))
    rng.shuffle(order)
    line_of = {}
    with open(os.path.join(OUT, "corpus.jsonl"), "w") as f:
        for ln, idx in enumerate(order, 1):
            line_of[idx] = ln
            f.write(json.dumps({"id": ln, "text": items[idx][0]}) + "\n")
    texts = {line_of[i]: items[i][0] for i in range(len(items))}
    # truth: every pair within a planted group
    groups = {}
    for i, (_, g, _) in enumerate(items):
        groups.setdefault(g, []).append(line_of[i])
    with open(os.path.join(OUT, "truth.tsv"), "w") as f:
        for g, lines in sorted(groups.items()):
            lines.sort()
            for a in range(len(lines)):
                for b in range(a + 1, len(lines)):
                    la, lb = lines[a], lines[b]
                    f.write("%d\t%d\t%.4f\n" % (la, lb, jaccard(texts[la], texts[lb])))
    # datasketch LSH
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    mh = {}
    for ln in sorted(texts):
        mh[ln] = minhash(texts[ln])
        lsh.insert(ln, mh[ln])
    pairs = set()
    for ln in sorted(texts):
        for o in lsh.query(mh[ln]):
            if o != ln:
                pairs.add((min(ln, o), max(ln, o)))
    parent = {ln: ln for ln in texts}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in sorted(pairs):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    with open(os.path.join(OUT, "expected_pairs.tsv"), "w") as f:
        for a, b in sorted(pairs):
            f.write("%d\t%d\n" % (a, b))
    with open(os.path.join(OUT, "expected_removed.tsv"), "w") as f:
        for ln in sorted(texts):
            r = find(ln)
            if r != ln:
                f.write("%d\t%d\n" % (ln, r))
    print("bands x rows at 0.8/128:", lsh.b, lsh.r, "pairs:", len(pairs))
    with open(os.path.join(OUT, "signatures.tsv"), "w") as f:
        for ln in range(1, 26):
            f.write("\t".join([str(ln)] + [str(int(v)) for v in mh[ln].hashvalues]) + "\n")
    with open(os.path.join(OUT, "signatures_char.tsv"), "w") as f:
        for ln in range(1, 11):
            m = minhash(texts[ln], num_perm=64, seed=7, n=5, unit="char")
            f.write("\t".join([str(ln)] + [str(int(v)) for v in m.hashvalues]) + "\n")
    with open(os.path.join(OUT, "optimal_params.tsv"), "w") as f:
        for th, npm in [(0.5, 128), (0.7, 128), (0.8, 128), (0.9, 128), (0.8, 256), (0.85, 112), (0.6, 64)]:
            b, r = _optimal_param(th, npm, 0.5, 0.5)
            f.write("%g\t%d\t%d\t%d\n" % (th, npm, b, r))
    # contamination
    tests = [doc(rng.randint(50, 90)) for _ in range(30)]
    train = [doc(rng.randint(50, 120)) for _ in range(300)]
    for k in range(20):
        t = [0.6, 0.7, 0.8, 0.9][k % 4]
        train.append(mutate_to(tests[k], t) if k % 5 else tests[k].upper())
    rng.shuffle(train)
    with open(os.path.join(OUT, "contam_test.jsonl"), "w") as f:
        for i, t in enumerate(tests):
            f.write(json.dumps({"question": t, "answer": "A"}) + "\n")
    with open(os.path.join(OUT, "contam_train.jsonl"), "w") as f:
        for i, t in enumerate(train):
            f.write(json.dumps({"question": t, "answer": "A"}) + "\n")
    lsh2 = MinHashLSH(threshold=0.5, num_perm=128)
    for i, t in enumerate(tests, 1):
        lsh2.insert(i, minhash(t + "\nA"))
    with open(os.path.join(OUT, "contam_expected.tsv"), "w") as f:
        for ln, t in enumerate(train, 1):
            hits = sorted(lsh2.query(minhash(t + "\nA")))
            if hits:
                f.write("%d\t%d\n" % (ln, hits[0]))
    print("contamination bands x rows:", lsh2.b, lsh2.r)


if __name__ == "__main__":
    main()
