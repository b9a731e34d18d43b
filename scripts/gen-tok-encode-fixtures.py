#!/usr/bin/env python3
"""Golden fixtures for tok-encode, from the reference stack (transformers + tokenizers +
jinja2 from PyPI). CI only compares against the committed output; it never runs this.

    python3 scripts/gen-tok-encode-fixtures.py        # rewrites tests/fixtures/tok-encode/<model>/

Inputs (committed, hand-written in the seed formats): tests/fixtures/tok-encode/*.jsonl and
the templates *.jinja there. Tokenizers: the fixtures of the tokenizer engineer in
tests/fixtures/tokenizers/<model>/ (tokenizer.json + tokenizer_config.json).

Outputs per model (the oracle is named on each):
  gen.jsonl          apply_chat_template(tokenize=True, return_dict=True,
                     return_assistant_tokens_mask=True) with the {% generation %} template:
                     {"input_ids": ..., "mask": assistant_masks}
  gen_show.txt       what `tok-encode --show` must print for gen.jsonl (decoded runs via
                     tokenizer.decode of growing prefixes, trained runs in [[ ]])
  full.jsonl         apply_chat_template(tokenize=True) with the model's own template, all
                     tokens trained (no double BOS: transformers tokenizes the rendered text
                     with add_special_tokens=False)
  prefix.jsonl       the same ids, plus "trained": the strings the trained runs must decode
                     to under --assistant-only without generation tags: each assistant
                     content followed by the end-of-turn token
  text.jsonl         TRL's language-modeling rule: tokenizer(text + eos_token), all trained
  pc.jsonl           TRL's prompt-completion rule (--completion-only): prompt ids masked,
                     completion (+ EOS for strings) trained
  trunc_end.jsonl    gen.jsonl cut to the last TRUNC tokens (--truncation keep-end)
  fingerprint.txt    hex of xxh3-128(fingerprint || chat-template bytes) is not computable
                     here (the fingerprint is sftkit's), so it is not written
"""
import json
import os
import sys

from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "tok-encode")
TOKFIX = os.path.join(ROOT, "tests", "fixtures", "tokenizers")

# model name -> (tokenizer fixture dir, generation-tag template, end-of-turn token)
MODELS = {
    "smollm2": ("smollm2", "chatml_gen.jinja", "<|im_end|>"),
    "gemma3": ("gemma3", "gemma3_gen.jinja", "<end_of_turn>"),
}
TRUNC = 24


def read_jsonl(name):
    with open(os.path.join(FIX, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def dump(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def write_lines(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(dump(r) + "\n")


def ids_of(x):
    return list(x["input_ids"]) if hasattr(x, "keys") else list(x)


def show_record(tok, name, lineno, ids, mask):
    """tok-encode --show for one record: decode ids[:k] at every run boundary and print
    the differences, trained runs between [[ and ]]."""
    n = len(ids)
    out = ["### %s:%d: %d tokens, %d trained\n" % (name, lineno, n, sum(mask))]
    prev = ""
    k = 0
    while k < n:
        e = k
        while e < n and mask[e] == mask[k]:
            e += 1
        cur = tok.decode(ids[:e], skip_special_tokens=False)
        assert cur.startswith(prev), "decoded prefix is not a prefix"
        piece = cur[len(prev):]
        out.append("[[" + piece + "]]" if mask[k] else piece)
        prev = cur
        k = e
    s = "".join(out)
    if not s.endswith("\n"):
        s += "\n"
    return s


def last_text_token_special(tok, text, ids):
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert list(enc["input_ids"]) == ids
    special = set(tok.all_special_ids)
    for tid, (s, e) in reversed(list(zip(enc["input_ids"], enc["offset_mapping"]))):
        if text[s:e].strip() == "" and e > s:
            continue
        return tid in special
    return False


def gen_model(model, tokdir, gen_template_name, eot):
    tok = AutoTokenizer.from_pretrained(tokdir)
    with open(os.path.join(FIX, gen_template_name), encoding="utf-8") as f:
        gen_tmpl = f.read()
    out_dir = os.path.join(FIX, model)
    os.makedirs(out_dir, exist_ok=True)
    chats = read_jsonl("chat.jsonl")

    gen_rows, show, full_rows, prefix_rows, trunc_rows = [], [], [], [], []
    for lineno, rec in enumerate(chats, 1):
        msgs, tools = rec["messages"], rec.get("tools")
        g = tok.apply_chat_template(msgs, tools=tools, chat_template=gen_tmpl, tokenize=True,
                                    return_dict=True, return_assistant_tokens_mask=True)
        ids, mask = list(g["input_ids"]), list(g["assistant_masks"])
        text = tok.apply_chat_template(msgs, tools=tools, chat_template=gen_tmpl, tokenize=False)
        # tok-encode appends EOS only where the template leaves the last turn open
        assert last_text_token_special(tok, text, ids), (model, lineno)
        assert sum(mask) > 0
        gen_rows.append({"input_ids": ids, "mask": mask})
        show.append(show_record(tok, "<stdin>", lineno, ids, mask))
        trunc_rows.append({"input_ids": ids[-TRUNC:], "mask": mask[-TRUNC:]})

        f = ids_of(tok.apply_chat_template(msgs, tools=tools, tokenize=True))
        ftext = tok.apply_chat_template(msgs, tools=tools, tokenize=False)
        assert last_text_token_special(tok, ftext, f), (model, lineno)
        full_rows.append({"input_ids": f, "mask": [1] * len(f)})
        trained = [m["content"] + eot for m in msgs if m["role"] == "assistant"]
        for t in trained:
            assert t in ftext
        prefix_rows.append({"input_ids": f, "trained": trained})

    write_lines(os.path.join(out_dir, "gen.jsonl"), gen_rows)
    with open(os.path.join(out_dir, "gen_show.txt"), "w", encoding="utf-8") as fp:
        fp.write("".join(show))
    write_lines(os.path.join(out_dir, "full.jsonl"), full_rows)
    write_lines(os.path.join(out_dir, "prefix.jsonl"), prefix_rows)
    write_lines(os.path.join(out_dir, "trunc_end.jsonl"), trunc_rows)

    eos = tok.eos_token
    text_rows = []
    for rec in read_jsonl("text.jsonl"):
        ids = list(tok(rec["text"] + eos)["input_ids"])
        text_rows.append({"input_ids": ids, "mask": [1] * len(ids)})
    write_lines(os.path.join(out_dir, "text.jsonl"), text_rows)

    pc_rows = []
    for rec in read_jsonl("pc.jsonl"):
        p, c = rec["prompt"], rec["completion"]
        if isinstance(p, str):
            pids = list(tok(p)["input_ids"])
            ids = list(tok(p + c + eos)["input_ids"])
        else:
            pids = ids_of(tok.apply_chat_template(p, add_generation_prompt=True, tokenize=True))
            ids = ids_of(tok.apply_chat_template(p + c, tokenize=True))
        assert ids[: len(pids)] == pids, "prompt ids are not a prefix"
        pc_rows.append({"input_ids": ids, "mask": [0] * len(pids) + [1] * (len(ids) - len(pids))})
    write_lines(os.path.join(out_dir, "pc.jsonl"), pc_rows)
    print("%s: %d chats, %d texts, %d prompt/completion" % (model, len(chats), len(text_rows), len(pc_rows)))


def main():
    only = sys.argv[1:]
    for model, (tokname, gen_t, eot) in MODELS.items():
        if only and model not in only:
            continue
        tokdir = os.path.join(TOKFIX, tokname)
        if not os.path.exists(os.path.join(tokdir, "tokenizer.json")):
            print("%s: no tokenizer fixture at %s, skipped" % (model, tokdir), file=sys.stderr)
            continue
        gen_model(model, tokdir, gen_t, eot)


if __name__ == "__main__":
    main()
