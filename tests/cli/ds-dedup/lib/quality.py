#!/usr/bin/env python3
"""Compares a ds-dedup --removed file with the datasketch oracle and the planted truth.

usage: quality.py FIXDIR REMOVED.jsonl [--parity]
Prints: same-cluster pair agreement with datasketch (--parity), and recall/precision
against the planted pairs (true Jaccard of 5-gram word shingles)."""
import json
import sys
from collections import defaultdict

fix, removed = sys.argv[1], sys.argv[2]


def clusters(pairs_removed):
    """line -> kept line; returns the set of unordered same-cluster pairs"""
    members = defaultdict(set)
    for line, keep in pairs_removed:
        members[keep].add(line)
    out = set()
    for keep, ms in members.items():
        allm = sorted(ms | {keep})
        for i in range(len(allm)):
            for j in range(i + 1, len(allm)):
                out.add((allm[i], allm[j]))
    return out


got = [(r["line"], r["duplicate_of"]) for r in map(json.loads, open(removed)) if r["reason"] == "minhash"]
ours = clusters(got)
if "--parity" in sys.argv:
    exp = [tuple(map(int, l.split())) for l in open(fix + "/expected_removed.tsv")]
    theirs = clusters(exp)
    union = ours | theirs
    agree = len(ours & theirs) / len(union) if union else 1.0
    print("removed %d, datasketch removed %d" % (len(got), len(exp)))
    print("same-cluster pairs %d, datasketch %d, agreement %.2f%%" % (len(ours), len(theirs), 100 * agree))
    if agree < 0.99:
        sys.exit(1)
truth = {}
for l in open(fix + "/truth.tsv"):
    a, b, j = l.split()
    truth[(int(a), int(b))] = float(j)
buckets = [(0.0, 0.55), (0.55, 0.65), (0.65, 0.75), (0.75, 0.825), (0.825, 0.875), (0.875, 0.925), (0.925, 1.01)]
for lo, hi in buckets:
    ps = [p for p, j in truth.items() if lo <= j < hi]
    if ps:
        print("planted J in [%.2f,%.2f): %3d pairs, found %3d" % (lo, min(hi, 1.0), len(ps), sum(p in ours for p in ps)))
pos = {p for p, j in truth.items() if j >= 0.8}
tp = len(ours & pos)
print("recall at J>=0.8: %.4f (%d/%d)" % (tp / len(pos), tp, len(pos)))
print("precision (pairs with true J>=0.8): %.4f (%d/%d)" % (tp / len(ours) if ours else 1.0, tp, len(ours)))
near = {p for p, j in truth.items() if j >= 0.7}
print("precision (pairs with true J>=0.7): %.4f" % (len(ours & near) / len(ours) if ours else 1.0))
