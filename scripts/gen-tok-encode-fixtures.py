#!/usr/bin/env python3
"""Golden fixtures for tok-encode, from the reference stack (transformers + tokenizers +
jinja2 from PyPI). CI only compares against the committed output; it never runs this.

    python3 scripts/gen-tok-encode-fixtures.py        # rewrites tests/fixtures/tok-encode/<model>/

Inputs (committed, hand-written in the seed formats): tests/fixtures/tok-encode/*.jsonl and
the templates *.jinja there. Tokenizers: the tokenizer fixtures in tests/fixtures/tokenizers/
(made by scripts/gen-tokenizer-fixtures.py):
  smollm2   smollm2/tokenizer.json.gz + tokenizer_config.json (its own ChatML template);
            tok-encode's tests load smollm2.gguf, the same tokenizer in GGUF form
  gemma3    gemma3.gguf.gz (vocab-only GGUF), converted to tokenizer.json the way
            gen-tokenizer-fixtures.py does it, with Gemma 3's post-processor (<bos> $A, as
            the Hub's tokenizer.json has). The GGUF carries no chat template, so Gemma 3's
            template is committed here as gemma3.jinja and passed with --chat-template.

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
  prefix_qwen3.jsonl (smollm2) the same with Qwen3's template, which rewrites earlier
                     turns: the last turn trains its empty <think></think> block too
  trunc_end.jsonl    gen.jsonl cut to the last TRUNC tokens (--truncation keep-end)
  trunc_start.jsonl  gen.jsonl cut to the first TRUNC_START tokens (keep-start); records left
                     with no trained token are left out (--on-error=skip counts them)
  llama3/gen.jsonl   gen.jsonl for chat.jsonl + tools.jsonl with llama3_gen.jinja (a real
                     template with generation blocks, tools and tool calls) on llama-bpe
  fingerprint.txt    the stream header's fingerprint, hex: xxh3-128 of tokenizer.json bytes
                     + the model's chat template (tokenizer.h), then with --chat-template
                     chatml_gen.jinja: xxh3-128(that || the template file's bytes)
"""
import json
import os
import sys

from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "tok-encode")
TOKFIX = os.path.join(ROOT, "tests", "fixtures", "tokenizers")

# model name -> (own template file or None = the tokenizer's, generation-tag template, end-of-turn token)
MODELS = {
    "smollm2": (None, "chatml_gen.jinja", "<|im_end|>"),
    "gemma3": ("gemma3.jinja", "gemma3_gen.jinja", "<end_of_turn>"),
}
# a real template with {% generation %} blocks (Llama 3 style, with tools and tool calls;
# from the jinja engine's fixtures) on the llama-bpe (Llama 3) tokenizer: gen.jsonl only
GEN_ONLY = {"llama3": ("llama-bpe", "llama3_gen.jinja", ["chat.jsonl", "tools.jsonl"])}


def load_smollm2(work, name="smollm2"):
    import gzip
    import shutil
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    src = os.path.join(TOKFIX, name)
    with gzip.open(os.path.join(src, "tokenizer.json.gz"), "rb") as fi, \
            open(os.path.join(d, "tokenizer.json"), "wb") as fo:
        fo.write(fi.read())
    shutil.copy(os.path.join(src, "tokenizer_config.json"), d)
    return AutoTokenizer.from_pretrained(d), os.path.join(d, "tokenizer.json")


def load_gemma3(work):
    import gzip
    import importlib.util
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast
    gg = os.path.join(work, "gemma3.gguf")
    with gzip.open(os.path.join(TOKFIX, "gemma3.gguf.gz"), "rb") as fi, open(gg, "wb") as fo:
        fo.write(fi.read())
    spec = importlib.util.spec_from_file_location("gtf", os.path.join(ROOT, "scripts", "gen-tokenizer-fixtures.py"))
    gtf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gtf)
    d, cfg = gtf.convert(gg, work)
    bos = cfg["bos_token"]
    bos_id = next(a["id"] for a in d["added_tokens"] if a["content"] == bos)
    d["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(d)),
                                  bos_token=bos, eos_token=cfg["eos_token"], unk_token=cfg["unk_token"],
                                  pad_token=cfg["pad_token"])
    return tok, None


LOADERS = {"smollm2": load_smollm2, "gemma3": load_gemma3}
TRUNC = 24
TRUNC_START = 100


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
    special = {i for i, a in tok.added_tokens_decoder.items() if a.special}
    for tid, (s, e) in reversed(list(zip(enc["input_ids"], enc["offset_mapping"]))):
        if text[s:e].strip() == "" and e > s:
            continue
        return tid in special
    return False


def gen_model(model, work, own_template_name, gen_template_name, eot):
    tok, tokjson = LOADERS[model](work)
    if own_template_name:
        with open(os.path.join(FIX, own_template_name), encoding="utf-8") as f:
            tok.chat_template = f.read()
    with open(os.path.join(FIX, gen_template_name), encoding="utf-8") as f:
        gen_tmpl = f.read()
    out_dir = os.path.join(FIX, model)
    os.makedirs(out_dir, exist_ok=True)
    chats = read_jsonl("chat.jsonl")

    gen_rows, show, full_rows, prefix_rows, trunc_rows, start_rows = [], [], [], [], [], []
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
        if sum(mask[:TRUNC_START]):
            start_rows.append({"input_ids": ids[:TRUNC_START], "mask": mask[:TRUNC_START]})

        f = ids_of(tok.apply_chat_template(msgs, tools=tools, tokenize=True))
        ftext = tok.apply_chat_template(msgs, tools=tools, tokenize=False)
        assert last_text_token_special(tok, ftext, f), (model, lineno)
        full_rows.append({"input_ids": f, "mask": [1] * len(f)})
        trained = [m["content"] + eot for m in msgs if m["role"] == "assistant"]
        for t in trained:
            assert t in ftext
        prefix_rows.append({"input_ids": f, "trained": trained})

    if model == "smollm2":
        with open(os.path.join(FIX, "qwen3.jinja"), encoding="utf-8") as fq:
            qwen3 = fq.read()
        rows = []
        for rec in chats:
            msgs, tools = rec["messages"], rec.get("tools")
            ids = ids_of(tok.apply_chat_template(msgs, tools=tools, chat_template=qwen3, tokenize=True))
            text = tok.apply_chat_template(msgs, tools=tools, chat_template=qwen3, tokenize=False)
            trained = []
            for i, m in enumerate(msgs):
                if m["role"] == "assistant":
                    think = "<think>\n\n</think>\n\n" if i == len(msgs) - 1 else ""
                    trained.append(think + m["content"] + "<|im_end|>")
                    assert trained[-1] in text
            rows.append({"input_ids": ids, "trained": trained})
        write_lines(os.path.join(out_dir, "prefix_qwen3.jsonl"), rows)

    if tokjson:
        import xxhash
        with open(tokjson, "rb") as fj:
            fp0 = xxhash.xxh3_128(fj.read() + (tok.chat_template or "").encode("utf-8")).digest()
        with open(os.path.join(FIX, gen_template_name), "rb") as fg:
            fp1 = xxhash.xxh3_128(fp0 + fg.read()).digest()
        with open(os.path.join(out_dir, "fingerprint.txt"), "w") as ff:
            ff.write("model %s\n" % fp0.hex())
            ff.write("%s %s\n" % (gen_template_name, fp1.hex()))

    write_lines(os.path.join(out_dir, "gen.jsonl"), gen_rows)
    with open(os.path.join(out_dir, "gen_show.txt"), "w", encoding="utf-8") as fp:
        fp.write("".join(show))
    write_lines(os.path.join(out_dir, "full.jsonl"), full_rows)
    write_lines(os.path.join(out_dir, "prefix.jsonl"), prefix_rows)
    write_lines(os.path.join(out_dir, "trunc_end.jsonl"), trunc_rows)
    write_lines(os.path.join(out_dir, "trunc_start.jsonl"), start_rows)

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


def gen_only(model, work, tokname, gen_template_name, inputs):
    """gen.jsonl over several inputs (in order), transformers' assistant masks."""
    tok, _ = load_smollm2(work, tokname)
    with open(os.path.join(FIX, gen_template_name), encoding="utf-8") as f:
        gen_tmpl = f.read()
    rows = []
    for name in inputs:
        for rec in read_jsonl(name):
            msgs, tools = rec["messages"], rec.get("tools")
            g = tok.apply_chat_template(msgs, tools=tools, chat_template=gen_tmpl, tokenize=True,
                                        return_dict=True, return_assistant_tokens_mask=True)
            ids, mask = list(g["input_ids"]), list(g["assistant_masks"])
            text = tok.apply_chat_template(msgs, tools=tools, chat_template=gen_tmpl, tokenize=False)
            assert last_text_token_special(tok, text, ids), (model, name)
            assert sum(mask) > 0
            rows.append({"input_ids": ids, "mask": mask})
    out_dir = os.path.join(FIX, model)
    os.makedirs(out_dir, exist_ok=True)
    write_lines(os.path.join(out_dir, "gen.jsonl"), rows)
    print("%s: %d chats" % (model, len(rows)))


def main():
    import tempfile
    only = sys.argv[1:]
    with tempfile.TemporaryDirectory() as work:
        for model, (tokname, gen_t, inputs) in GEN_ONLY.items():
            if not only or model in only:
                gen_only(model, work, tokname, gen_t, inputs)
        for model, (own_t, gen_t, eot) in MODELS.items():
            if only and model not in only:
                continue
            gen_model(model, work, own_t, gen_t, eot)


if __name__ == "__main__":
    main()
