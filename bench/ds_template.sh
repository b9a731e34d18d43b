#!/usr/bin/env bash
# ds-template against its Python peers, one run each, outputs compared byte for byte.
#
#  1. prompt templates: the court-decision templates (prompts/rcds/...) over N records
#     (the fixture records repeated and perturbed) - ds-template vs a Python script doing
#     json.loads -> render system/user/assistant.jinja with jinja2 -> json.dumps per record.
#  2. chat template: Qwen3's chat template over N conversations - ds-template
#     --chat-template vs transformers' render_jinja_template (what
#     apply_chat_template(tokenize=False) runs), and vs bare jinja2 Template.render.
#
# Usage: bench/ds_template.sh [N]      (default 100000; needs python3 with jinja2, transformers)
# Env: BINDIR (default bin), THREADS (default: nproc) for the multi-threaded run.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
BIN=${BINDIR:-bin}/ds-template
THREADS=${THREADS:-$(nproc)}
[ -x "$BIN" ] || { echo "build first: make (or set BINDIR)" >&2; exit 1; }
W=$(mktemp -d /tmp/ds_template_bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
PROMPTS=prompts/rcds/swiss_leading_decision_summarization
CHAT=tests/fixtures/ds-template/tok/qwen3.jinja

python3 - "$N" "$W" <<'EOF'
import glob, json, random, sys
n, w = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(42)
court = [json.loads(l) for f in sorted(glob.glob("tests/fixtures/datasets/court/*/*.jsonl")) for l in open(f) if l.strip()]
with open(f"{w}/court.jsonl", "w") as f:
    for i in range(n):
        r = dict(court[i % len(court)])
        # perturb: a distinct id and year, a sentence or two more of text
        r["sample_id"] = 100000 + i
        r["year"] = 1990 + rnd.randrange(35)
        r["decision"] = r["decision"] + (" Erwägung %d." % i) * rnd.randrange(1, 4)
        f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
convs = [json.loads(l) for l in open("tests/fixtures/ds-template/chat.jsonl")]
with open(f"{w}/chat.jsonl", "w") as f:
    for i in range(n):
        c = convs[i % len(convs)]
        msgs = [dict(m) for m in c["messages"]]
        for m in msgs:
            if m["role"] == "user":
                m["content"] = m["content"] + " (#%d)" % i
        f.write(json.dumps({"messages": msgs, "id": i}, ensure_ascii=False, separators=(",", ":")) + "\n")
EOF
echo "records: $N ($(du -h "$W/court.jsonl" | cut -f1) court, $(du -h "$W/chat.jsonl" | cut -f1) chat); $(nproc) CPUs"

cat >"$W/py_prompts.py" <<'EOF'
# the Python way: json.loads -> render 3 templates (same environment) -> json.dumps
import json, sys
import jinja2, jinja2.ext
prompts, src, dst = sys.argv[1:4]
env = jinja2.Environment(loader=jinja2.FileSystemLoader(prompts), trim_blocks=True, lstrip_blocks=True,
                         extensions=[jinja2.ext.loopcontrols])
tpls = [(r, env.get_template(r + ".jinja")) for r in ("system", "user", "assistant")]
with open(src, encoding="utf-8") as fin, open(dst, "w", encoding="utf-8") as fout:
    for line in fin:
        rec = json.loads(line)
        msgs = []
        for role, t in tpls:
            s = t.render(**rec)
            if role != "system" or s.strip():
                msgs.append({"role": role, "content": s})
        out = {"messages": msgs}
        out.update((k, v) for k, v in rec.items() if k != "messages")
        fout.write(json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n")
EOF

cat >"$W/py_chat.py" <<'EOF'
# transformers' apply_chat_template(tokenize=False) path, no tokenizer needed
import json, sys
mode, tpl_path, src, dst = sys.argv[1:5]
tpl = open(tpl_path).read()
if mode == "transformers":
    from transformers.utils.chat_template_utils import render_jinja_template
    def render(msgs):
        return render_jinja_template(conversations=[msgs], chat_template=tpl)[0][0]
else:  # bare jinja2 with transformers' environment settings, compiled once
    import jinja2, jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, **k: json.dumps(x, ensure_ascii=False)
    t = env.from_string(tpl)
    def render(msgs):
        return t.render(messages=msgs, tools=None, documents=None, add_generation_prompt=False)
with open(src, encoding="utf-8") as fin, open(dst, "w", encoding="utf-8") as fout:
    for line in fin:
        rec = json.loads(line)
        out = {"text": render(rec["messages"])}
        out.update((k, v) for k, v in rec.items() if k != "messages")
        fout.write(json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n")
EOF

# measure CMD... -> "WALL CPU" seconds (CPU = user + sys of the command and its children;
# on a shared machine wall time depends on the load, CPU time much less)
measure() {
	python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
rc = subprocess.run(sys.argv[1:], stderr=subprocess.DEVNULL).returncode
w = time.monotonic() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
if rc:
    sys.exit(f"failed ({rc}): {' '.join(sys.argv[1:])}")
print(f"{w:.3f} {r.ru_utime + r.ru_stime:.3f}")
PY
}
rate() { awk -v n="$N" -v t="$1" 'BEGIN { printf "%.0f", n / t }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
row() { # label "WALL CPU"
	set -- "$1" $2
	printf '%-24s wall %7.2fs %9s rec/s   cpu %7.2fs %9s rec/s\n' "$1" "$2" "$(rate "$2")" "$3" "$(rate "$3")"
}
wall() { echo "${1% *}"; }
cpu() { echo "${1#* }"; }

echo "== 1. prompt templates ($PROMPTS)"
c1=$(measure "$BIN" -q -j 1 --prompts $PROMPTS "$W/court.jsonl" -o "$W/c1.jsonl")
cn=$(measure "$BIN" -q -j "$THREADS" --prompts $PROMPTS "$W/court.jsonl" -o "$W/cn.jsonl")
py=$(measure python3 "$W/py_prompts.py" $PROMPTS "$W/court.jsonl" "$W/py.jsonl")
cmp "$W/c1.jsonl" "$W/py.jsonl" && cmp "$W/cn.jsonl" "$W/py.jsonl" && echo "outputs identical"
row "ds-template -j1" "$c1"
row "ds-template -j$THREADS" "$cn"
row "python jinja2" "$py"
echo "ratio -j1: wall $(ratio "$(wall "$py")" "$(wall "$c1")")x, cpu $(ratio "$(cpu "$py")" "$(cpu "$c1")")x;" \
	"-j$THREADS: wall $(ratio "$(wall "$py")" "$(wall "$cn")")x"

echo "== 2. chat template ($CHAT)"
c1=$(measure "$BIN" -q -j 1 --chat-template $CHAT "$W/chat.jsonl" -o "$W/t1.jsonl")
cn=$(measure "$BIN" -q -j "$THREADS" --chat-template $CHAT "$W/chat.jsonl" -o "$W/tn.jsonl")
tf=$(measure python3 "$W/py_chat.py" transformers $CHAT "$W/chat.jsonl" "$W/tf.jsonl")
j2=$(measure python3 "$W/py_chat.py" jinja2 $CHAT "$W/chat.jsonl" "$W/j2.jsonl")
cmp "$W/t1.jsonl" "$W/tf.jsonl" && cmp "$W/tn.jsonl" "$W/tf.jsonl" && cmp "$W/j2.jsonl" "$W/tf.jsonl" && echo "outputs identical"
row "ds-template -j1" "$c1"
row "ds-template -j$THREADS" "$cn"
row "transformers render" "$tf"
row "bare jinja2 render" "$j2"
echo "ratio vs transformers -j1: wall $(ratio "$(wall "$tf")" "$(wall "$c1")")x, cpu $(ratio "$(cpu "$tf")" "$(cpu "$c1")")x;" \
	"-j$THREADS: wall $(ratio "$(wall "$tf")" "$(wall "$cn")")x"
echo "ratio vs bare jinja2  -j1: wall $(ratio "$(wall "$j2")" "$(wall "$c1")")x, cpu $(ratio "$(cpu "$j2")" "$(cpu "$c1")")x;" \
	"-j$THREADS: wall $(ratio "$(wall "$j2")" "$(wall "$cn")")x"
