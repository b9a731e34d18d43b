#!/usr/bin/env python3
"""Generates the CLI golden tests of ds-template (tests/cli/ds-template/<case>/) from an
independent Python model of the tool: prompt templates rendered by jinja2, chat templates
by transformers (render_jinja_template, the code behind apply_chat_template), the
built-in mappings re-implemented here from their documented rules (docs/ds-template.md).

Each case gets `cmd`, `stdout` (when the case has a defined output), `exit` and `stderr`
(an extended regex). CI compares the C tool against these committed files and needs
neither jinja2 nor transformers.

    pip install jinja2 transformers   # no torch needed
    python3 scripts/gen-ds-template-fixtures.py
"""
import json
import os
import re
import shutil
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(ROOT, "tests", "cli", "ds-template")


# ---------------------------------------------------------------- output encoding

def dumps(obj):
    # what libcommon/jsonl.c writes: compact, UTF-8 kept, "/" not escaped
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------- prompt templates

def hf_tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def prompt_env(path, strict, jinja2_defaults):
    """The environment ds-template renders prompt templates with: the one transformers
    uses for chat templates (trim_blocks, lstrip_blocks, loop controls, tojson without
    HTML escaping, raise_exception); --jinja2-defaults turns trim/lstrip off."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(path),
        trim_blocks=not jinja2_defaults,
        lstrip_blocks=not jinja2_defaults,
        keep_trailing_newline=False,
        extensions=[jinja2.ext.loopcontrols],
        undefined=jinja2.StrictUndefined if strict else jinja2.Undefined,
    )
    env.filters["tojson"] = hf_tojson
    env.globals["raise_exception"] = raise_exception
    return env


class RecordError(Exception):
    def __init__(self, reason, msg=""):
        super().__init__(msg)
        self.reason = reason


# ---------------------------------------------------------------- built-in mappings

CONSUMED = {
    "alpaca": ["instruction", "input", "output", "system"],
    "sharegpt": ["conversations", "system"],
    "openai": ["messages"],
    "prompt-completion": ["prompt", "completion"],
    "instruction-text": ["text"],
    "csv-prompt-completion": ["prompt", "expected completion"],
}

HEADER = re.compile(r"^### +(instruction|input|output|response)(?::|(?=[\n \r])|\Z)[ \t]*\r?\n?",
                    re.I | re.M)
SECTION = {"instruction": "instruction", "input": "input", "output": "output",
           "response": "output"}
WS = " \t\n\r"


def detect(rec):
    if isinstance(rec.get("messages"), list):
        return "openai"
    if isinstance(rec.get("conversations"), list):
        return "sharegpt"
    if "prompt" in rec and "expected completion" in rec:
        return "csv-prompt-completion"
    if "prompt" in rec and "completion" in rec:
        return "prompt-completion"
    t = rec.get("text")
    if isinstance(t, str) and any(m.group(1).lower() == "instruction" for m in HEADER.finditer(t)):
        return "instruction-text"
    if "instruction" in rec:
        return "alpaca"
    return None


def msg(role, content):
    return {"role": role, "content": content}


def user_of(instruction, inp):
    return instruction + "\n\n" + inp if inp else instruction


def need_str(rec, key):
    if not isinstance(rec.get(key), str):
        raise RecordError("bad record", key)
    return rec[key]


def map_record(fmt, rec):
    if fmt == "alpaca":
        ins, out = need_str(rec, "instruction"), need_str(rec, "output")
        inp, system = rec.get("input"), rec.get("system")
        msgs = [msg("system", system)] if system else []
        return msgs + [msg("user", user_of(ins, inp)), msg("assistant", out)]
    if fmt == "sharegpt":
        roles = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                 "chatgpt": "assistant", "system": "system", "tool": "tool",
                 "function_response": "tool", "observation": "tool"}
        conv = rec["conversations"]
        msgs = []
        if rec.get("system") and conv[0].get("from") != "system":
            msgs.append(msg("system", rec["system"]))
        for t in conv:
            frm, val = (t["from"], t["value"]) if "from" in t or "value" in t else (t["role"], t["content"])
            msgs.append(msg(roles[frm], val))
        return msgs
    if fmt == "openai":
        return rec["messages"]
    if fmt == "prompt-completion":
        p, c = rec["prompt"], rec["completion"]
        if isinstance(p, str):
            return [msg("user", p), msg("assistant", c)]
        return p + c
    if fmt == "csv-prompt-completion":
        return [msg("user", rec["prompt"]), msg("assistant", rec["expected completion"])]
    if fmt == "instruction-text":
        text = rec["text"]
        heads = list(HEADER.finditer(text))
        sec, pre = {}, text[: heads[0].start()] if heads else text
        for i, m in enumerate(heads):
            name = SECTION[m.group(1).lower()]
            if name in sec:
                raise RecordError("bad record", "duplicate")
            end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
            sec[name] = text[m.end():end].strip(WS)
        if "instruction" not in sec or "output" not in sec:
            raise RecordError("bad record", "missing section")
        msgs = [msg("system", pre.strip(WS))] if pre.strip(WS) else []
        return msgs + [msg("user", user_of(sec["instruction"], sec.get("input"))),
                       msg("assistant", sec["output"])]
    raise AssertionError(fmt)


# ---------------------------------------------------------------- chat templates

def load_chat_template(path, name=None):
    """(templates by name, special tokens) the way ds-template loads them."""
    cfg, tpl = {}, None
    if os.path.isdir(path):
        cfgp = os.path.join(path, "tokenizer_config.json")
        if os.path.exists(cfgp):
            cfg = json.load(open(cfgp))
        if os.path.exists(os.path.join(path, "chat_template.jinja")):
            tpl = open(os.path.join(path, "chat_template.jinja")).read()
        elif "chat_template" in cfg:
            tpl = cfg["chat_template"]
        else:
            tpl = json.load(open(os.path.join(path, "chat_template.json")))["chat_template"]
    elif path.endswith(".json"):
        cfg = json.load(open(path))
        tpl = cfg["chat_template"]
    else:
        tpl = open(path).read()
    tokens = {}
    for k, v in cfg.items():
        if k.endswith("_token") and len(k) > 6:
            if isinstance(v, str):
                tokens[k] = v
            elif isinstance(v, dict) and isinstance(v.get("content"), str):
                tokens[k] = v["content"]
        elif k == "additional_special_tokens" and isinstance(v, list):
            tokens[k] = [x if isinstance(x, str) else x["content"] for x in v
                         if isinstance(x, str) or isinstance(x.get("content"), str)]
    templates = {t["name"]: t["template"] for t in tpl} if isinstance(tpl, list) else {"default": tpl}
    return templates, tokens


def chat_render(chat, msgs, tools, documents, gen):
    from transformers.utils.chat_template_utils import render_jinja_template
    templates, tokens, name, kwargs = chat
    if name:
        tpl = templates[name]
    elif tools is not None and "tool_use" in templates:
        tpl = templates["tool_use"]
    else:
        tpl = templates["default"]
    rendered, _ = render_jinja_template(conversations=[msgs], tools=tools, documents=documents,
                                        chat_template=tpl, add_generation_prompt=gen,
                                        **{**tokens, **kwargs})
    return rendered[0]


# ---------------------------------------------------------------- the model of the tool

def blank(s):
    return s.strip(WS) == ""


def model(inputs, prompts=None, from_=None, fmt=None, chat=None, chat_name=None, kwargs=None,
          add_gen=False, system=None, strict=False, keep=None, drop=None, skip=False,
          jinja2_defaults=False, stdin=None):
    """Returns (stdout, stats); stops at the first bad record unless skip."""
    out, stats = [], {"read": 0, "written": 0, "skipped": {}, "undef": 0, "empty_user": 0,
                      "empty_asst": 0, "formats": {}, "failed": None}
    fmt = fmt or ("text" if chat else "messages")
    envs = None
    if prompts:
        envs = [prompt_env(os.path.join(ROOT, prompts), True, jinja2_defaults),
                prompt_env(os.path.join(ROOT, prompts), False, jinja2_defaults)]
        names = [n for n in ("system", "user", "assistant")
                 if os.path.exists(os.path.join(ROOT, prompts, n + ".jinja"))]
    chat_state = None
    if chat:
        templates, tokens = load_chat_template(os.path.join(ROOT, chat), chat_name)
        chat_state = (templates, tokens, chat_name, kwargs or {})
    drop_all = drop == ["*"]
    out_keys = {"messages": ["messages"], "prompt-completion": ["prompt", "completion"],
                "text": ["text"]}[fmt]

    def one(rec):
        src = None
        if envs:
            msgs = []
            undef = False
            for n in names:
                try:
                    s = envs[0].get_template(n + ".jinja").render(**rec)
                except Exception:
                    if strict:
                        raise RecordError("template error")
                    try:
                        s = envs[1].get_template(n + ".jinja").render(**rec)
                    except Exception:
                        raise RecordError("template error")
                    undef = True
                if n != "system" or not blank(s):
                    msgs.append(msg(n, s))
            if undef:
                stats["undef"] += 1
        else:
            src = from_ or detect(rec)
            if src is None:
                raise RecordError("bad record")
            try:
                msgs = map_record(src, rec)
            except (KeyError, TypeError, IndexError):
                raise RecordError("bad record")
        if system is not None:
            if msgs and msgs[0].get("role") == "system":
                msgs = [dict(msgs[0], content=system)] + msgs[1:]
            else:
                msgs = [msg("system", system)] + msgs
        eu = any(m.get("role") == "user" and isinstance(m.get("content"), str) and blank(m["content"])
                 for m in msgs)
        ea = any(m.get("role") == "assistant" and isinstance(m.get("content"), str)
                 and blank(m["content"]) for m in msgs)
        res = {}
        tools, documents = rec.get("tools"), rec.get("documents")
        if fmt == "prompt-completion":
            if msgs[-1].get("role") != "assistant":
                raise RecordError("bad record")
            prompt, completion = msgs[:-1], msgs[-1:]
            if chat_state:
                p = chat_render(chat_state, prompt, tools, documents, True)
                full = chat_render(chat_state, msgs, tools, documents, False)
                if not full.startswith(p):
                    raise RecordError("chat template error")
                prompt, completion = p, full[len(p):]
            res["prompt"], res["completion"] = prompt, completion
        elif fmt == "text":
            res["text"] = chat_render(chat_state, msgs, tools, documents, add_gen)
        else:
            res["messages"] = msgs
        for k, v in rec.items():
            if k in out_keys:
                continue
            if keep is not None:
                if k not in keep:
                    continue
            elif drop_all or (drop and k in drop) or (src and k in CONSUMED[src]):
                continue
            res[k] = v
        stats["empty_user"] += eu
        stats["empty_asst"] += ea
        if src:
            stats["formats"][src] = stats["formats"].get(src, 0) + 1
        return res

    lines = []
    for path in ([stdin] if stdin else inputs):
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            lines += f.read().split("\n")
    for line in lines:
        if line.strip(" \t\r") == "":
            continue
        stats["read"] += 1
        try:
            try:
                rec = json.loads(line)
            except ValueError:
                raise RecordError("invalid JSON")
            if not isinstance(rec, dict):
                raise RecordError("invalid JSON")
            res = one(rec)
        except RecordError as e:
            if not skip:
                stats["failed"] = e.reason
                break
            stats["skipped"][e.reason] = stats["skipped"].get(e.reason, 0) + 1
            continue
        out.append(dumps(res) + "\n")
        stats["written"] += 1
    return "".join(out), stats


def summary_regex(st):
    skipped = sum(st["skipped"].values())
    s = f"{st['read']} record{'' if st['read'] == 1 else 's'} read, {st['written']} written, {skipped} skipped"
    if skipped:
        order = ["invalid JSON", "bad record", "template error", "chat template error"]
        s += r" \(" + ", ".join(f"{st['skipped'][r]} {r}" for r in order if r in st["skipped"]) + r"\)"
    if st["formats"]:
        order = ["alpaca", "sharegpt", "openai", "prompt-completion", "instruction-text",
                 "csv-prompt-completion"]
        s += "; from " + ", ".join(f"{f} {st['formats'][f]}" for f in order if f in st["formats"])
    return s


# ---------------------------------------------------------------- the cases

CASES = []


def case(name, cmd, exit=0, stderr=None, stdout=True, **kw):
    CASES.append((name, cmd, exit, stderr, stdout, kw))


D = "tests/fixtures/ds-template"
DS = "tests/fixtures/datasets"
COURT = "prompts/rcds/swiss_leading_decision_summarization"
SQL = "prompts/gretelai/synthetic_text_to_sql"
MEDQA = "prompts/medqa/med_qa_cot"

# built-in mappings, one per format, and auto detection
for f, fname in [("alpaca", "alpaca"), ("sharegpt", "sharegpt"), ("openai", "openai"),
                 ("prompt-completion", "prompt_completion"),
                 ("instruction-text", "instruction_text"),
                 ("csv-prompt-completion", "csv_prompt_completion")]:
    case(f"from-{f}", f"ds-template --from {f} $FIX/ds-template/{fname}.jsonl",
         inputs=[f"{D}/{fname}.jsonl"], from_=f)
case("auto-mixed", "ds-template < $FIX/ds-template/mixed.jsonl", stdin=f"{D}/mixed.jsonl")
case("auto-two-files", "ds-template $FIX/ds-template/alpaca.jsonl $FIX/ds-template/sharegpt.jsonl",
     inputs=[f"{D}/alpaca.jsonl", f"{D}/sharegpt.jsonl"])
case("format-prompt-completion", "ds-template --from sharegpt -f prompt-completion $FIX/ds-template/sharegpt.jsonl",
     inputs=[f"{D}/sharegpt.jsonl"], from_="sharegpt", fmt="prompt-completion")
case("system-override", "ds-template --system 'Answer in German.' $FIX/ds-template/alpaca.jsonl",
     inputs=[f"{D}/alpaca.jsonl"], system="Answer in German.")
case("keep", "ds-template --keep id,source $FIX/ds-template/alpaca.jsonl",
     inputs=[f"{D}/alpaca.jsonl"], keep=["id", "source"])
case("keep-consumed", "ds-template --keep instruction $FIX/ds-template/alpaca.jsonl",
     inputs=[f"{D}/alpaca.jsonl"], keep=["instruction"])
case("drop", "ds-template --drop score,source $FIX/ds-template/alpaca.jsonl",
     inputs=[f"{D}/alpaca.jsonl"], drop=["score", "source"])
case("drop-all", "ds-template --drop '*' --prompts $ROOT/" + SQL + " $FIX/datasets/sql/test.jsonl",
     inputs=[f"{DS}/sql/test.jsonl"], prompts=SQL, drop=["*"])
case("threads-same-output", "ds-template -j 3 --prompts $ROOT/" + SQL + " $FIX/datasets/sql/train.jsonl",
     inputs=[f"{DS}/sql/train.jsonl"], prompts=SQL)
case("output-file",
     "ds-template -o out.jsonl --from openai $FIX/ds-template/openai.jsonl && cmp out.jsonl $CASE/expected.jsonl && ls",
     stdout="out.jsonl\n", file_expect=("expected.jsonl", dict(inputs=[f"{D}/openai.jsonl"], from_="openai")))

# the seed use cases' prompts
case("prompts-sql", "ds-template --prompts $ROOT/" + SQL + " $FIX/datasets/sql/train.jsonl",
     inputs=[f"{DS}/sql/train.jsonl"], prompts=SQL)
for pair in ["de_fr", "fr_de", "it_de"]:
    case(f"prompts-court-{pair}", f"ds-template --prompts $ROOT/{COURT} $FIX/datasets/court/{pair}/train.jsonl",
         inputs=[f"{DS}/court/{pair}/train.jsonl"], prompts=COURT)
case("prompts-medqa", "ds-template --strict --prompts $ROOT/" + MEDQA + " $FIX/datasets/medqa/train.jsonl",
     inputs=[f"{DS}/medqa/train.jsonl"], prompts=MEDQA, strict=True)
case("prompts-medqa-pc", "ds-template -f prompt-completion --drop '*' --prompts $ROOT/" + MEDQA + " $FIX/datasets/medqa/test.jsonl",
     inputs=[f"{DS}/medqa/test.jsonl"], prompts=MEDQA, fmt="prompt-completion", drop=["*"])
case("prompts-court-oneline", "ds-template --prompts $FIX/ds-template/prompts/court_oneline $FIX/datasets/court/de_fr/validation.jsonl $FIX/datasets/court/it_de/validation.jsonl",
     inputs=[f"{DS}/court/de_fr/validation.jsonl", f"{DS}/court/it_de/validation.jsonl"],
     prompts=f"{D}/prompts/court_oneline")
case("prompts-court-jinja2-defaults", "ds-template --jinja2-defaults --prompts $FIX/ds-template/prompts/court_oneline $FIX/datasets/court/fr_de/validation.jsonl",
     inputs=[f"{DS}/court/fr_de/validation.jsonl"], prompts=f"{D}/prompts/court_oneline",
     jinja2_defaults=True)
case("prompts-system-override", "ds-template --system 'Kurz antworten.' --prompts $ROOT/" + COURT + " $FIX/datasets/court/it_de/validation.jsonl",
     inputs=[f"{DS}/court/it_de/validation.jsonl"], prompts=COURT, system="Kurz antworten.")

# a prompt template using much of Jinja (filters, tests, loops, namespace, slicing,
# string methods, raw, whitespace control) and a conditional system prompt
case("prompts-features", "ds-template --prompts $FIX/ds-template/prompts/features $FIX/ds-template/features.jsonl",
     inputs=[f"{D}/features.jsonl"], prompts=f"{D}/prompts/features")

# chat templates
case("chat-smollm2", "ds-template --chat-template $FIX/ds-template/tok/smollm2 $FIX/ds-template/chat.jsonl",
     inputs=[f"{D}/chat.jsonl"], chat=f"{D}/tok/smollm2")
case("chat-smollm2-gen", "ds-template --chat-template $FIX/ds-template/tok/smollm2/tokenizer_config.json --add-generation-prompt $FIX/ds-template/alpaca.jsonl",
     inputs=[f"{D}/alpaca.jsonl"], chat=f"{D}/tok/smollm2/tokenizer_config.json", add_gen=True)
case("chat-llama31-dir", "ds-template --chat-template $FIX/ds-template/tok/llama31 $FIX/ds-template/chat.jsonl",
     inputs=[f"{D}/chat.jsonl"], chat=f"{D}/tok/llama31")
case("chat-qwen25-tools", "ds-template --chat-template $FIX/ds-template/tok/qwen25 $FIX/ds-template/tools.jsonl",
     inputs=[f"{D}/tools.jsonl"], chat=f"{D}/tok/qwen25")
case("chat-named-list", "ds-template --chat-template $FIX/ds-template/tok/named $FIX/ds-template/tools.jsonl",
     inputs=[f"{D}/tools.jsonl"], chat=f"{D}/tok/named")
case("chat-qwen3-raw-kwargs", "ds-template --chat-template $FIX/ds-template/tok/qwen3.jinja --chat-template-kwargs '{\"enable_thinking\":false}' --add-generation-prompt $FIX/ds-template/chat.jsonl",
     inputs=[f"{D}/chat.jsonl"], chat=f"{D}/tok/qwen3.jinja", kwargs={"enable_thinking": False},
     add_gen=True)
case("chat-qwen3-reasoning", "ds-template --chat-template $FIX/ds-template/tok/qwen3.jinja $FIX/ds-template/reasoning.jsonl",
     inputs=[f"{D}/reasoning.jsonl"], chat=f"{D}/tok/qwen3.jinja")
case("chat-prompts-court", "ds-template --prompts $ROOT/" + COURT + " --chat-template $FIX/ds-template/tok/smollm2 --drop '*' $FIX/datasets/court/de_fr/validation.jsonl",
     inputs=[f"{DS}/court/de_fr/validation.jsonl"], prompts=COURT, chat=f"{D}/tok/smollm2",
     drop=["*"])
case("chat-prompt-completion", "ds-template -f prompt-completion --chat-template $FIX/ds-template/tok/qwen25 $FIX/ds-template/sharegpt.jsonl",
     inputs=[f"{D}/sharegpt.jsonl"], chat=f"{D}/tok/qwen25", fmt="prompt-completion")

# undefined variables, empty messages, bad records
case("undefined-counted", "ds-template --prompts $FIX/ds-template/prompts/undefined $FIX/ds-template/court_missing.jsonl",
     inputs=[f"{D}/court_missing.jsonl"], prompts=f"{D}/prompts/undefined",
     stderr=[r"warning: .*court_missing.jsonl:2: .*prompts/undefined/user.jinja:2:[0-9]+: .*decision.* \(rendered as empty\)",
             r"warning: 1 record used undefined variables"])
case("undefined-strict", "ds-template --strict --prompts $FIX/ds-template/prompts/undefined < $FIX/ds-template/court_missing.jsonl",
     stdin=f"{D}/court_missing.jsonl", prompts=f"{D}/prompts/undefined", strict=True, exit=3,
     stderr=r"^ds-template: error: <stdin>:2: .*prompts/undefined/user.jinja:2:[0-9]+: .*'decision' is undefined")
case("undefined-strict-skip", "ds-template --strict --on-error skip --prompts $FIX/ds-template/prompts/undefined < $FIX/ds-template/court_missing.jsonl",
     stdin=f"{D}/court_missing.jsonl", prompts=f"{D}/prompts/undefined", strict=True, skip=True)
case("empty-assistant", "ds-template --prompts $FIX/ds-template/prompts/empty_assistant $FIX/ds-template/medqa_empty.jsonl",
     inputs=[f"{D}/medqa_empty.jsonl"], prompts=f"{D}/prompts/empty_assistant",
     stderr=[r"medqa_empty.jsonl:2: empty assistant message", r"warning: 2 records with an empty assistant message"])
case("invalid-json", "ds-template < $FIX/ds-template/bad_json.jsonl", stdin=f"{D}/bad_json.jsonl", exit=3,
     stderr=r"^ds-template: error: <stdin>:2:[0-9]+: invalid JSON")
case("invalid-json-skip", "ds-template --on-error skip < $FIX/ds-template/bad_json.jsonl",
     stdin=f"{D}/bad_json.jsonl", skip=True,
     stderr=r"warning: <stdin>:2:[0-9]+: invalid JSON.*\(skipped\)")
case("bad-record", "ds-template $FIX/ds-template/bad_records.jsonl", inputs=[f"{D}/bad_records.jsonl"],
     exit=3, stderr=r"^ds-template: error: .*bad_records.jsonl:2: .*'output'")
case("bad-record-skip", "ds-template --on-error=skip $FIX/ds-template/bad_records.jsonl",
     inputs=[f"{D}/bad_records.jsonl"], skip=True,
     stderr=r"bad_records.jsonl:4: cannot tell the record's format from its fields \(question\)")
case("pc-last-not-assistant", "ds-template -f prompt-completion --on-error skip $FIX/ds-template/openai_no_answer.jsonl",
     inputs=[f"{D}/openai_no_answer.jsonl"], fmt="prompt-completion", skip=True)

# JSON edge cases: escapes, numbers, duplicate keys, spacing pass through as Python's json
# reads and writes them; and 15 kinds of lines jansson (so ds-template) rejects
case("json-edge-valid", "ds-template $FIX/ds-template/json_edge_valid.jsonl",
     inputs=[f"{D}/json_edge_valid.jsonl"])
case("json-edge-invalid", "ds-template --on-error skip $FIX/ds-template/json_edge_invalid.jsonl",
     stdout=dumps({"messages": [msg("user", "Valid"), msg("assistant", "yes")]}) + "\n",
     stderr=r"16 records read, 1 written, 15 skipped \(15 invalid JSON\); from alpaca 1")

case("config-yaml",
     "printf 'prompts: %s\\nstrict: true\\ndrop: \"*\"\\nformat: prompt-completion\\n' \"$ROOT/" + MEDQA + "\" > cfg.yaml && ds-template --config cfg.yaml $FIX/datasets/medqa/test.jsonl",
     inputs=[f"{DS}/medqa/test.jsonl"], prompts=MEDQA, strict=True, drop=["*"], fmt="prompt-completion")
# several batches through the thread pipeline: same bytes for any -j, and a bad record deep
# in the input stops the run after exactly the records before it
case("threads-many-batches",
     "for i in $(seq 40); do cat $FIX/datasets/sql/train.jsonl; done > big.jsonl && "
     "ds-template -q -j 3 --prompts $ROOT/" + SQL + " big.jsonl > a && "
     "ds-template -q -j 1 --prompts $ROOT/" + SQL + " big.jsonl > b && cmp a b && wc -l < a",
     stdout="960\n")
case("threads-error-deep",
     "for i in $(seq 30); do cat $FIX/datasets/sql/train.jsonl; done > big.jsonl && echo '{oops' >> big.jsonl && "
     "cat $FIX/datasets/sql/train.jsonl >> big.jsonl && "
     "{ ds-template -j 3 --prompts $ROOT/" + SQL + " big.jsonl; echo \"exit $?\" >&2; } | wc -l",
     stdout="720\n", stderr=[r"^ds-template: error: big.jsonl:721:[0-9]+: invalid JSON", r"^exit 3$"])

# errors without a model of the output
case("template-syntax-error", "ds-template --prompts $FIX/ds-template/prompts/syntax_error $FIX/datasets/medqa/test.jsonl",
     stdout="", exit=3, stderr=r"^ds-template: error: .*prompts/syntax_error/user.jinja:3:[0-9]+: unexpected 'end of print statement'")
case("usage-text-needs-chat", "ds-template -f text $FIX/ds-template/chat.jsonl", stdout="", exit=2,
     stderr=r"--format text needs --chat-template")
case("usage-bad-from", "ds-template --from csv $FIX/ds-template/chat.jsonl", stdout="", exit=2,
     stderr=r"invalid value 'csv' for --from")
case("usage-from-and-prompts", "ds-template --from alpaca --prompts $ROOT/" + SQL, stdout="", exit=2,
     stderr=r"--from and --prompts cannot be used together")
case("usage-no-templates", "ds-template --prompts $FIX/ds-template", stdout="", exit=2,
     stderr=r"no system.jinja, user.jinja or assistant.jinja")
case("usage-missing-chat-template", "ds-template --chat-template $FIX/ds-template/nope $FIX/ds-template/chat.jsonl",
     stdout="", exit=2, stderr=r"nope: no such file or directory")
case("chat-bad-name", "ds-template --chat-template $FIX/ds-template/tok/named --chat-template-name rag $FIX/ds-template/chat.jsonl",
     stdout="", exit=2, stderr=r"no chat template named 'rag' \(has: default, tool_use\)")
case("missing-input", "ds-template $FIX/ds-template/nope.jsonl", stdout="", exit=1,
     stderr=r"nope.jsonl: cannot open")
case("output-file-not-left-on-error",
     "ds-template -o out.jsonl < $FIX/ds-template/bad_json.jsonl; echo \"rc=$?\"; ls",
     stdout="rc=3\n", stderr=r"<stdin>:2:[0-9]+: invalid JSON")
case("help", "ds-template --help > help.txt && grep -q -- '--prompts DIR' help.txt && grep -q '^Examples:' help.txt && grep -q -- '--on-error MODE' help.txt",
     stdout="")


def shq(s):
    return "'" + s.replace("'", "'\\''") + "'"


def write_case(name, cmd, exit, stderr, stdout, kw):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    if "file_expect" in kw:
        fname, mkw = kw.pop("file_expect")
        text, _ = model(mkw.pop("inputs"), **mkw)
        with open(os.path.join(d, fname), "w") as f:
            f.write(text)
    patterns = [stderr] if isinstance(stderr, str) else list(stderr or [])
    if kw:
        text, st = model(kw.pop("inputs", []), **kw)
        if stdout is True:
            stdout = text
        if st["failed"] and not exit:
            raise SystemExit(f"{name}: model failed with {st['failed']}")
        if not st["failed"]:
            patterns.append(summary_regex(st))
    if len(patterns) > 1:
        # the harness matches one regex: check the others inside the command
        checks = " && ".join(f"grep -Eq {shq(p)} .err" for p in patterns[1:])
        cmd = f"{{ {cmd}; }} 2>.err; rc=$?; cat .err >&2; {checks} || exit 99; exit $rc"
    with open(os.path.join(d, "cmd"), "w") as f:
        f.write(cmd + "\n")
    if isinstance(stdout, str):
        with open(os.path.join(d, "stdout"), "w") as f:
            f.write(stdout)
    if exit:
        with open(os.path.join(d, "exit"), "w") as f:
            f.write(f"{exit}\n")
    if patterns:
        with open(os.path.join(d, "stderr"), "w") as f:
            f.write(patterns[0] + "\n")


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    for name, cmd, exit, stderr, stdout, kw in CASES:
        write_case(name, cmd, exit, stderr, stdout, dict(kw))
    print(f"wrote {len(CASES)} cases to {os.path.relpath(OUT, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
