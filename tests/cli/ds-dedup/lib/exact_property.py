#!/usr/bin/env python3
"""Property test for --exact: random records with planted duplicates that differ only by
case, whitespace runs and NFC/NFD form, shuffled. Usage: exact_property.py gen SEED > in.jsonl,
then exact_property.py check in.jsonl out.jsonl removed.jsonl (exit 1 on any mismatch)."""
import json
import random
import sys
import unicodedata


def key(t):
    return " ".join(unicodedata.normalize("NFC", unicodedata.normalize("NFC", t).casefold()).split())


if sys.argv[1] == "gen":
    rng = random.Random(int(sys.argv[2]))
    words = ["alpha", "Beta", "caf\u00e9", "na\u00efve", "\u00c9cole", "stra\u00dfe", "delta", "x1", "q", "ZETA"]
    base = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 8))) for _ in range(300)]
    recs = []
    for b in base:
        for _ in range(rng.choice([1, 1, 2, 3])):
            v = b
            if rng.random() < 0.5:
                v = "".join(c.upper() if rng.random() < 0.5 else c for c in v)
            if rng.random() < 0.5:
                v = v.replace(" ", rng.choice(["  ", "\t", " \n ", "\u00a0"]))
            if rng.random() < 0.5:
                v = unicodedata.normalize("NFD", v)
            if rng.random() < 0.3:
                v = "  " + v + " "
            recs.append(v)
    rng.shuffle(recs)
    for i, t in enumerate(recs):
        print(json.dumps({"text": t}, ensure_ascii=rng.random() < 0.5))
    sys.exit(0)

inp = [json.loads(l) for l in open(sys.argv[2])]
out = [json.loads(l) for l in open(sys.argv[3])]
rm = [json.loads(l) for l in open(sys.argv[4])]
seen, want, want_rm = {}, [], {}
for i, r in enumerate(inp, 1):
    k = key(r["text"])
    if k in seen:
        want_rm[i] = seen[k]
    else:
        seen[k] = i
        want.append(r)
got_rm = {r["line"]: r["duplicate_of"] for r in rm}
ok = out == want and got_rm == want_rm and all(r["reason"] == "exact" for r in rm)
print("records %d, unique %d, removed %d: %s" % (len(inp), len(want), len(want_rm), "ok" if ok else "MISMATCH"))
sys.exit(0 if ok else 1)
