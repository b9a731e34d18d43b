#!/usr/bin/env python3
"""Golden fixtures for libcommon/generate (tests/unit/test_generate.c): transformers' real
logits processors and warpers on fixed logits rows.

Writes tests/fixtures/generate/processors.json:
  {"cases": [{"name", "logits": [V fp32 values], "seq": [ids so far],
              "cfg": {"do_sample", "temperature", "top_k", "top_p", "min_p",
                      "repetition_penalty"},
              "logprobs": [V values, null = removed (-inf)],
              "argmax": id}]}
logprobs = log_softmax of the scores after transformers' LogitsProcessorList built in
generate()'s order (RepetitionPenalty, then with do_sample: Temperature, TopK, TopP, MinP;
each only when not neutral, min_tokens_to_keep 1), run in float64 on the fp32 logits (the
C side also filters in double, so both agree to rounding). argmax = torch.argmax of the
processed scores (greedy). Cases are drawn so that no kept/removed decision lies within
1e-9 of its threshold (asserted), so the masks cannot flip on rounding.

Usage: python3 scripts/gen-generate-fixtures.py   (transformers 4.57.1, torch)
"""
import json
import math
import os

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList, MinPLogitsWarper, RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "generate")
V = 64


def chain(cfg):
    procs = LogitsProcessorList()
    if cfg["repetition_penalty"] != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(penalty=cfg["repetition_penalty"]))
    if cfg["do_sample"]:
        if cfg["temperature"] != 1.0:
            procs.append(TemperatureLogitsWarper(cfg["temperature"]))
        if cfg["top_k"] not in (None, 0):
            procs.append(TopKLogitsWarper(top_k=cfg["top_k"], min_tokens_to_keep=1))
        if cfg["top_p"] < 1.0:
            procs.append(TopPLogitsWarper(top_p=cfg["top_p"], min_tokens_to_keep=1))
        if cfg["min_p"] not in (None, 0.0):
            procs.append(MinPLogitsWarper(min_p=cfg["min_p"], min_tokens_to_keep=1))
    return procs


def check_margins(scores, cfg):
    """Re-runs the chain step by step and asserts no decision is within 1e-9 of its cut."""
    s = scores.clone()
    ids = None
    for p in chain(cfg):
        if isinstance(p, RepetitionPenaltyLogitsProcessor):
            s = p(ids_t, s)
            continue
        if isinstance(p, TopPLogitsWarper):
            sl, _ = torch.sort(s, descending=False)
            cum = sl.softmax(-1).cumsum(-1)
            assert (cum - (1 - p.top_p)).abs().min().item() > 1e-9, "top_p margin"
        if isinstance(p, MinPLogitsWarper):
            pr = s.softmax(-1)
            cut = p.min_p * pr.max()
            assert ((pr - cut).abs() / cut).min().item() > 1e-9, "min_p margin"
        s = p(ids, s)
    return s


def cfg_of(**kw):
    c = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0,
         "repetition_penalty": 1.0}
    c.update(kw)
    return c


CASES = [
    ("plain", cfg_of()),
    ("greedy_rep", cfg_of(do_sample=False, repetition_penalty=1.3)),
    ("rep_penalty", cfg_of(repetition_penalty=1.3)),
    ("rep_penalty_below1", cfg_of(repetition_penalty=0.7)),
    ("temperature", cfg_of(temperature=0.7)),
    ("top_k", cfg_of(top_k=10)),
    ("top_p", cfg_of(top_p=0.85)),
    ("min_p", cfg_of(min_p=0.05)),
    ("top_p_tiny", cfg_of(top_p=0.01)),
    ("all", cfg_of(repetition_penalty=1.2, temperature=0.8, top_k=20, top_p=0.9, min_p=0.02)),
    ("all_hot", cfg_of(repetition_penalty=1.1, temperature=1.7, top_k=40, top_p=0.95, min_p=0.1)),
]


def main():
    global ids_t
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    cases = []
    for k, (name, cfg) in enumerate(CASES):
        logits = (torch.randn(V, generator=g) * 3.0).float()
        seq = torch.randint(0, V, (12,), generator=g).tolist()
        ids_t = torch.tensor([seq])
        scores = logits.double()[None].clone()
        check_margins(scores, cfg)
        out = chain(cfg)(ids_t, scores.clone())
        lp = torch.log_softmax(out, -1)[0]
        cases.append({
            "name": name,
            "logits": [float(x) for x in logits.tolist()],
            "seq": seq,
            "cfg": cfg,
            "logprobs": [None if math.isinf(x) else float(x) for x in lp.tolist()],
            "argmax": int(torch.argmax(out[0]).item()),
        })
    with open(os.path.join(OUT, "processors.json"), "w") as f:
        json.dump({"cases": cases}, f)
        f.write("\n")


if __name__ == "__main__":
    main()
