#!/usr/bin/env python3
"""Writes the Parquet reader's golden fixtures with pyarrow (the oracle).

For every tests/fixtures/parquet/NAME.parquet this writes NAME.jsonl: pyarrow's own
reading of the file (pq.read_table(...).to_pylist()), one compact JSON record per line
(json.dumps(ensure_ascii=False, separators=(',', ':'))), after the conversions that
docs/parquet.md documents for values JSON cannot hold:
  date -> "YYYY-MM-DD"; timestamp -> "YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]"
  (fraction digits by unit, omitted when zero) + "Z" when UTC-adjusted; time ->
  "HH:MM:SS[.frac]"; INT96 -> timestamp in ns, naive; decimal -> exact plain string;
  binary -> base64; NaN/Inf -> null; uint64 above 2^63-1 -> decimal string;
  map -> object (keys: strings as is, others as their JSON text).
Usage: scripts/gen-parquet-fixtures.py [OUTDIR]   (default tests/fixtures/parquet)
"""
import base64
import datetime
import decimal
import json
import math
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/parquet"

EPOCH = datetime.date(1970, 1, 1)


def fmt_clock(sod, frac, digits):
    s = "%02d:%02d:%02d" % (sod // 3600, sod // 60 % 60, sod % 60)
    if frac:
        s += ".%0*d" % (digits, frac)
    return s


def fmt_ts(v, unit, utc):
    per = {"ms": 1000, "us": 10**6, "ns": 10**9}[unit]
    digits = {"ms": 3, "us": 6, "ns": 9}[unit]
    secs, frac = divmod(v, per)
    days, sod = divmod(secs, 86400)
    d = EPOCH + datetime.timedelta(days=days)
    return d.isoformat() + "T" + fmt_clock(sod, frac, digits) + ("Z" if utc else "")


def fmt_time(v, unit):
    per = {"ms": 1000, "us": 10**6, "ns": 10**9}[unit]
    digits = {"ms": 3, "us": 6, "ns": 9}[unit]
    secs, frac = divmod(v, per)
    return fmt_clock(secs % 86400, frac, digits)


def conv(v, t):
    """pyarrow python value -> JSON value, following docs/parquet.md."""
    if v is None:
        return None
    if pa.types.is_date32(t):
        return v.isoformat()
    if pa.types.is_decimal(t):
        return format(v, "f")
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return base64.b64encode(v).decode()
    if pa.types.is_floating(t):
        return None if (math.isnan(v) or math.isinf(v)) else float(v)
    if pa.types.is_uint64(t) and v > 2**63 - 1:
        return str(v)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return [conv(x, t.value_type) for x in v]
    if pa.types.is_struct(t):
        return {t.field(i).name: conv(v[t.field(i).name], t.field(i).type) for i in range(t.num_fields)}
    if pa.types.is_map(t):
        out = {}
        for k, x in v:
            ks = k if isinstance(k, str) else json.dumps(conv(k, t.key_type))
            out[ks] = conv(x, t.item_type)
        return out
    if pa.types.is_dictionary(t):
        return conv(v, t.value_type)
    return v


def column_values(col):
    """Converted values of one top-level column (temporal types via their integers)."""
    t = col.type
    if pa.types.is_timestamp(t):
        ints = col.cast(pa.int64()).to_pylist()
        return [None if x is None else fmt_ts(x, t.unit, t.tz is not None) for x in ints]
    if pa.types.is_time(t):
        ints = col.cast(pa.int64() if pa.types.is_time64(t) else pa.int32()).to_pylist()
        return [None if x is None else fmt_time(x, t.unit) for x in ints]
    return [conv(x, t) for x in col.to_pylist()]


def write(name, table, **kw):
    path = os.path.join(OUT, name + ".parquet")
    pq.write_table(table, path, **kw)
    back = pq.read_table(path)  # the oracle: pyarrow's reading of the file
    cols = [column_values(back.column(i)) for i in range(back.num_columns)]
    with open(os.path.join(OUT, name + ".jsonl"), "w", encoding="utf-8") as f:
        for r in range(back.num_rows):
            rec = {back.column_names[i]: cols[i][r] for i in range(back.num_columns)}
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n")


# ---------------------------------------------------------------- all types
D = decimal.Decimal
types_table = pa.table({
    "b": pa.array([True, False, None, True, False, True], pa.bool_()),
    "i8": pa.array([-128, 127, None, 0, -1, 5], pa.int8()),
    "i16": pa.array([-32768, 32767, 1, None, -2, 6], pa.int16()),
    "i32": pa.array([-2**31, 2**31 - 1, 3, 0, None, 7], pa.int32()),
    "i64": pa.array([-2**63, 2**63 - 1, 4, 0, -5, None], pa.int64()),
    "u8": pa.array([0, 255, None, 1, 2, 3], pa.uint8()),
    "u16": pa.array([0, 65535, 1, None, 2, 3], pa.uint16()),
    "u32": pa.array([0, 2**32 - 1, 1, 2, None, 3], pa.uint32()),
    "u64": pa.array([0, 2**64 - 1, 2**63, 2**63 - 1, None, 3], pa.uint64()),
    "f32": pa.array([0.1, -1.5, None, float("nan"), 3.4e38, 1e-7], pa.float32()),
    "f64": pa.array([0.1, -2.5, 1e16, None, float("inf"), 5e-324], pa.float64()),
    "s": pa.array(["héllo", "", None, "日本語テキスト", "emoji 🎉 \"q\" \\ \n\t", "Grüße"], pa.string()),
    "bin": pa.array([b"\x00\x01\xff", b"", None, b"abc", b"\x80\x81", b"xyzw"], pa.binary()),
    "fsb": pa.array([b"abcd", b"\x00\x00\x00\x00", None, b"\xff\xfe\xfd\xfc", b"1234", b"wxyz"], pa.binary(4)),
    "date": pa.array([0, -1, 19000, None, 2932896, -719162], pa.date32()),
    "ts_ms": pa.array([0, 1700000000123, -1, None, 1700000000000, 86399999], pa.timestamp("ms")),
    "ts_us_utc": pa.array([0, 1700000000123456, None, -1000001, 1, 253402300799999999], pa.timestamp("us", tz="UTC")),
    "ts_ns": pa.array([0, 1700000000123456789, 1, None, -1, 1000000000], pa.timestamp("ns")),
    "t_ms": pa.array([0, 86399999, 3600000, None, 1, 45296789], pa.time32("ms")),
    "t_us": pa.array([0, 86399999999, None, 45296000000, 1, 123], pa.time64("us")),
    "dec": pa.array([D("123.45"), D("-0.01"), None, D("0.00"), D("99999999.99"), D("-12345678.90")], pa.decimal128(10, 2)),
    "dec38": pa.array([D("12345678901234567890.1234567890"), D("-1.0000000001"), D("0E-10"), None,
                       D("9999999999999999999999999999.9999999999"), D("-9999999999999999999999999999.9999999999")],
                      pa.decimal128(38, 10)),
    "f16": pa.array([1.5, -2.0, None, 65504.0, 0.0009765625, 0.0], pa.float16()),
})

os.makedirs(OUT, exist_ok=True)
write("types_plain_none_v1", types_table, use_dictionary=False, compression="none", data_page_version="1.0")
write("types_dict_snappy_v2", types_table, use_dictionary=True, compression="snappy", data_page_version="2.0")
write("types_dict_zstd_v1", types_table, use_dictionary=True, compression="zstd", data_page_version="1.0",
      row_group_size=4)
write("types_plain_gzip_v2", types_table, use_dictionary=False, compression="gzip", data_page_version="2.0",
      row_group_size=2)
write("decimal_as_int", pa.table({
    "d9": pa.array([D("1.23"), D("-4.56"), None, D("0.00")], pa.decimal128(9, 2)),
    "d18": pa.array([D("123456789012.345678"), D("-0.000001"), D("0"), None], pa.decimal128(18, 6)),
}), store_decimal_as_integer=True, compression="none")
write("int96", pa.table({
    "ts": pa.array([0, 1700000000123456789, None, -86400000000001], pa.timestamp("ns")),
}), use_deprecated_int96_timestamps=True, compression="snappy")

# ---------------------------------------------------------------- encodings
enc_table = pa.table({
    "i32": pa.array([i * 7 - 300 if i % 5 else None for i in range(300)], pa.int32()),
    "i64": pa.array([(i * i * 1000003) - 2**40 for i in range(300)], pa.int64()),
    "s_dlba": pa.array(["val-%d-%s" % (i, "é" * (i % 4)) if i % 7 else None for i in range(300)], pa.string()),
    "s_dba": pa.array(["prefix/shared/path/%05d" % (i // 3) for i in range(300)], pa.string()),
    "f": pa.array([i / 3.0 for i in range(300)], pa.float32()),
    "d": pa.array([(i - 150) * 1.25e-3 if i % 11 else None for i in range(300)], pa.float64()),
    "b": pa.array([i % 3 == 0 for i in range(300)], pa.bool_()),
    # ASCII incl. control characters at every offset (exercises the JSON escaper; 0x7f is
    # left out: Python's json.dumps does not escape DEL, sftkit's writer does)
    "esc": pa.array(["".join(chr((i * 7 + k * 13) % 127) for k in range(i % 37)) for i in range(300)], pa.string()),
})
enc = {"i32": "DELTA_BINARY_PACKED", "i64": "DELTA_BINARY_PACKED", "s_dlba": "DELTA_LENGTH_BYTE_ARRAY",
       "s_dba": "DELTA_BYTE_ARRAY", "f": "BYTE_STREAM_SPLIT", "d": "BYTE_STREAM_SPLIT", "b": "RLE"}
write("encodings_v1", enc_table, use_dictionary=False, column_encoding=enc, compression="none",
      data_page_version="1.0", data_page_size=512)
write("encodings_v2_zstd", enc_table, use_dictionary=False, column_encoding=enc, compression="zstd",
      data_page_version="2.0", row_group_size=128)
write("many_pages_dict", enc_table, use_dictionary=True, compression="snappy", data_page_size=256,
      row_group_size=100)

# ---------------------------------------------------------------- nested
msg_t = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
nested_table = pa.table({
    "id": pa.array([1, 2, 3, 4, 5, 6, 7], pa.int64()),
    "messages": pa.array([
        [{"role": "user", "content": "Bonjour, ça va ?"}, {"role": "assistant", "content": "Très bien, merci !"}],
        [],
        None,
        [{"role": "system", "content": None}, None, {"role": "user", "content": "日本語"}],
        [{"role": "user", "content": "🎉"}],
        [None],
        [{"role": None, "content": ""}],
    ], msg_t),
    "tags": pa.array([["a", "b"], [], None, [None, "x"], ["ü"], [""], None], pa.list_(pa.string())),
    "matrix": pa.array([[[1, 2], [3]], [[]], None, [None, [4, None]], [], [[5]], [[6, 7, 8]]],
                       pa.list_(pa.list_(pa.int32()))),
    "meta": pa.array([
        {"source": "web", "score": 0.5, "loc": {"lat": 1.0, "lon": 2.0}},
        None,
        {"source": None, "score": None, "loc": None},
        {"source": "book", "score": 1.0, "loc": {"lat": None, "lon": -3.5}},
        {"source": "", "score": 2.25, "loc": {"lat": 0.0, "lon": 0.0}},
        None,
        {"source": "x", "score": -1.0, "loc": None},
    ], pa.struct([("source", pa.string()), ("score", pa.float64()),
                  ("loc", pa.struct([("lat", pa.float64()), ("lon", pa.float64())]))])),
    "attrs": pa.array([[("k1", 1), ("k2", 2)], [], None, [("ß", None)], [("z", 26)], [("a", 1), ("b", 2), ("c", 3)], None],
                      pa.map_(pa.string(), pa.int64())),
    "imap": pa.array([[(1, "one")], None, [], [(2, "two"), (3, None)], [(-1, "neg")], [], [(0, "")]],
                     pa.map_(pa.int32(), pa.string())),
    "doc": pa.array([
        {"title": "t1", "sections": ["s1", "s2"]},
        {"title": None, "sections": []},
        {"title": "t3", "sections": None},
        None,
        {"title": "t5", "sections": [None]},
        {"title": "t6", "sections": ["x"]},
        {"title": "", "sections": ["", ""]},
    ], pa.struct([("title", pa.string()), ("sections", pa.list_(pa.string()))])),
})
write("nested_v1", nested_table, compression="snappy", data_page_version="1.0", row_group_size=3)
write("nested_v2_plain", nested_table, use_dictionary=False, compression="zstd", data_page_version="2.0",
      row_group_size=4)
write("nested_legacy_lists", nested_table.select(["id", "messages", "tags", "matrix"]),
      use_compliant_nested_type=False, compression="none")

# ---------------------------------------------------------------- seed dataset formats
sql = [
    (5097, "forestry", "Forest Management", "basic SQL", "SELECT statements",
     "What is the total volume of timber sold by each salesperson, sorted by salesperson?",
     "CREATE TABLE salesperson (salesperson_id INT, name TEXT, region TEXT); CREATE TABLE timber_sales (sales_id INT, salesperson_id INT, volume REAL, sale_date DATE);",
     "SELECT salesperson_id, name, SUM(volume) as total_volume FROM timber_sales JOIN salesperson ON timber_sales.salesperson_id = salesperson.salesperson_id GROUP BY salesperson_id, name ORDER BY total_volume DESC;"),
    (5098, "defense industry", "Defense contract", "aggregation", "analytics and reporting",
     "List all the unique equipment types and their corresponding total maintenance frequency.",
     "CREATE TABLE equipment_maintenance (equipment_type VARCHAR(255), maintenance_frequency INT);",
     "SELECT equipment_type, SUM(maintenance_frequency) AS total_maintenance_frequency FROM equipment_maintenance GROUP BY equipment_type;"),
    (5099, "marine biology", "Species", "basic SQL", "SELECT statements",
     "Quelles espèces marines vivent à plus de 200 m de profondeur ?",
     "CREATE TABLE especes (nom TEXT, profondeur_max INT);",
     "SELECT nom FROM especes WHERE profondeur_max > 200;"),
    (5100, "finance", "Kunden", "window functions", "analytics and reporting",
     "Zeige für jeden Kunden den laufenden Saldo (Größe: Euro).",
     "CREATE TABLE buchungen (kunde TEXT, datum DATE, betrag NUMERIC(10,2));",
     "SELECT kunde, datum, SUM(betrag) OVER (PARTITION BY kunde ORDER BY datum) AS saldo FROM buchungen;"),
    (5101, "retail", "商品", "basic SQL", "SELECT statements",
     "列出价格超过100元的商品名称。",
     "CREATE TABLE 商品 (名称 TEXT, 价格 REAL);",
     "SELECT 名称 FROM 商品 WHERE 价格 > 100;"),
    (5102, "social media", "posts", "single join", "analytics and reporting",
     "How many posts with the 🎉 emoji were made by users from 'Canada'?",
     "CREATE TABLE posts (id INT, user_id INT, body TEXT); CREATE TABLE users (id INT, country TEXT);",
     "SELECT COUNT(*) FROM posts p JOIN users u ON p.user_id = u.id WHERE u.country = 'Canada' AND p.body LIKE '%🎉%';"),
]
write("seed_text_to_sql", pa.table({
    "id": pa.array([r[0] for r in sql], pa.int64()),
    "domain": [r[1] for r in sql], "domain_description": [r[2] for r in sql],
    "sql_complexity": [r[3] for r in sql], "sql_task_type": [r[4] for r in sql],
    "sql_prompt": [r[5] for r in sql], "sql_context": [r[6] for r in sql], "sql": [r[7] for r in sql],
    "sql_explanation": ["Joins and aggregates.", None, "Filtre simple.", "Fensterfunktion über Buchungen.",
                        "简单过滤。", "Counts matching posts."],
}), compression="snappy", row_group_size=4)

court = [
    ("Das Bundesgericht zieht in Erwägung: 1. Die Beschwerdeführerin rügt eine Verletzung von Art. 29 Abs. 2 BV. "
     "2. Die Rüge ist unbegründet, da die Vorinstanz sich mit allen wesentlichen Vorbringen auseinandergesetzt hat.",
     "de", "Art. 29 Abs. 2 BV; Anspruch auf rechtliches Gehör. Die Begründungspflicht verlangt nicht, dass sich "
     "die Behörde mit jeder tatbeständlichen Behauptung auseinandersetzt.", "de"),
    ("Considérant en droit : 1. Le recours en matière civile est recevable. 2. Le recourant se plaint d'arbitraire "
     "dans l'établissement des faits ; ce grief doit être écarté.", "fr",
     "Art. 9 Cst. ; arbitraire dans l'appréciation des preuves. Le Tribunal fédéral n'intervient que si "
     "l'appréciation est manifestement insoutenable.", "fr"),
    ("Considerando in diritto: 1. Il ricorso è tempestivo. 2. La censura di violazione del diritto di essere "
     "sentito è infondata.", "it", None, None),
    ("Sachverhalt: A. X. erhob am 3. März 2020 Klage. B. Das Obergericht wies die Klage ab.", "de",
     "Art. 8 ZGB; Beweislast. Wer aus einer Tatsache Rechte ableitet, hat sie zu beweisen.", "fr"),
    ("Le Tribunal fédéral considère : le délai de recours de 30 jours (art. 100 al. 1 LTF) n'a pas été respecté.",
     "fr", "Art. 100 Abs. 1 BGG; Fristwahrung.", "de"),
]
write("seed_court_decisions", pa.table({
    "decision_id": pa.array(["%08d" % (4021 + i) for i in range(len(court))], pa.string()),
    "decision": [c[0] for c in court], "decision_language": [c[1] for c in court],
    "headnote": [c[2] for c in court], "headnote_language": [c[3] for c in court],
    "year": pa.array([2021, 2019, 2022, 2020, 2023], pa.int16()),
}), compression="zstd", use_dictionary=["decision_language", "headnote_language"], data_page_version="2.0")

medqa = [
    ("A 23-year-old woman presents with fever, dysuria and flank pain. Which of the following is the most likely diagnosis?",
     {"A": "Cystitis", "B": "Pyelonephritis", "C": "Urethritis", "D": "Vaginitis", "E": "Nephrolithiasis"}, "B",
     "Pyelonephritis"),
    ("Un homme de 65 ans présente une douleur thoracique constrictive irradiant vers le bras gauche. Quel examen faire en premier ?",
     {"A": "ECG", "B": "Radiographie", "C": "IRM", "D": "Échographie abdominale", "E": "Aucun"}, "A", "ECG"),
    ("Welches Medikament ist bei Anaphylaxie Mittel der ersten Wahl?",
     {"A": "Prednisolon", "B": "Clemastin", "C": "Adrenalin", "D": "Salbutamol", "E": None}, "C", "Adrenalin"),
    ("患者出现多饮、多尿和体重减轻。最可能的诊断是什么？",
     {"A": "尿崩症", "B": "1型糖尿病", "C": "甲状腺功能亢进", "D": "慢性肾病", "E": "库欣综合征"}, "B", "1型糖尿病"),
]
opt_t = pa.struct([(k, pa.string()) for k in "ABCDE"])
write("seed_medqa_struct", pa.table({
    "question": [m[0] for m in medqa],
    "options": pa.array([m[1] for m in medqa], opt_t),
    "answer_idx": [m[2] for m in medqa], "answer": [m[3] for m in medqa],
    "meta_info": ["step1", "step2&3", "step1", None],
}), compression="snappy")
write("seed_medqa_list", pa.table({
    "question": [m[0] for m in medqa],
    "options": pa.array([[{"key": k, "value": v} for k, v in m[1].items()] for m in medqa],
                        pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))),
    "answer_idx": [m[2] for m in medqa], "answer": [m[3] for m in medqa],
}), compression="gzip", data_page_version="2.0")

conv_rows = [
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "The capital of France is Paris."}],
    [{"role": "user", "content": "Traduis « bonjour » en allemand."},
     {"role": "assistant", "content": "« Bonjour » se dit « Guten Tag » en allemand."}],
    [{"role": "user", "content": "用一句话解释量子计算。"},
     {"role": "assistant", "content": "量子计算利用量子比特的叠加与纠缠来并行处理信息。"}],
    [{"role": "user", "content": "Write a haiku about autumn 🍂"},
     {"role": "assistant", "content": "Crisp leaves drift and fall\nwhispering to the cold ground\nsummer's last goodbye"}],
    [{"role": "user", "content": "Ist 17 eine Primzahl?"},
     {"role": "assistant", "content": "Ja, 17 ist eine Primzahl – sie ist nur durch 1 und sich selbst teilbar."},
     {"role": "user", "content": "Und 21?"},
     {"role": "assistant", "content": "Nein, 21 = 3 × 7."}],
    [{"role": "user", "content": "Say \"hi\" with a backslash \\ and a tab\t."},
     {"role": "assistant", "content": "hi \\ \t"}],
]
write("seed_conversations", pa.table({
    "messages": pa.array(conv_rows, msg_t),
    "source": ["synthetic"] * len(conv_rows),
}), compression="snappy", row_group_size=2)

# ---------------------------------------------------------------- corrupt file (error-path test)
# seed_conversations with 16 bytes inside the snappy body of one column chunk's dictionary
# page (page 0; its header is ~20 bytes, its body a few hundred) overwritten with 0xff: a
# valid footer pointing at a page that cannot be decompressed.
src = os.path.join(OUT, "seed_conversations.parquet")
meta = pq.ParquetFile(src).metadata
col = meta.row_group(1).column(1)
assert col.path_in_schema == "messages.list.element.content", col.path_in_schema
assert col.dictionary_page_offset and col.total_compressed_size > 200
data = bytearray(open(src, "rb").read())
for i in range(col.dictionary_page_offset + 48, col.dictionary_page_offset + 64):
    data[i] = 0xFF
bad = os.path.join(OUT, "corrupt_page.parquet")
open(bad, "wb").write(bytes(data))
try:
    pq.read_table(bad)
    raise SystemExit("pyarrow read the corrupt fixture without error")
except OSError as e:  # the oracle agrees that the file is corrupt
    print("corrupt_page.parquet: pyarrow says:", e)

# ---------------------------------------------------------------- unsupported codecs (clear error)
for codec in ("brotli", "lz4"):
    pq.write_table(pa.table({"x": pa.array(["a", "b", "c"])}), os.path.join(OUT, "codec_%s.parquet" % codec),
                   compression=codec)


# ---------------------------------------------------------------- legacy layouts (hand-written file)
# pyarrow cannot write these older layouts but reads them; the file is assembled here with
# a minimal Thrift compact encoder, and pyarrow's reading is the expected output:
#   ids:   a bare `repeated int32` (2-level list, no LIST annotation)
#   names: LIST whose repeated child is a primitive named "array" (element = the primitive)
#   pairs: LIST whose repeated child is a group named "array" (element = the group, a struct)
#   ts:    INT64 with only ConvertedType TIMESTAMP_MILLIS (no LogicalType: UTC-adjusted)
#   s:     BYTE_ARRAY with only ConvertedType UTF8;   flag: required BOOLEAN
class TC:
    def __init__(self):
        self.b = bytearray()
        self.last = [0]

    def varint(self, v):
        while True:
            if v < 0x80:
                self.b.append(v)
                return
            self.b.append((v & 0x7F) | 0x80)
            v >>= 7

    def zz(self, v):
        self.varint((v << 1) ^ (v >> 63))

    def fh(self, fid, t):
        d = fid - self.last[-1]
        if 0 < d <= 15:
            self.b.append(d << 4 | t)
        else:
            self.b.append(t)
            self.zz(fid)
        self.last[-1] = fid

    def i32(self, fid, v):
        self.fh(fid, 5)
        self.zz(v)

    def i64(self, fid, v):
        self.fh(fid, 6)
        self.zz(v)

    def bin(self, fid, s):
        self.fh(fid, 8)
        s = s.encode() if isinstance(s, str) else s
        self.varint(len(s))
        self.b += s

    def begin(self, fid):
        self.fh(fid, 12)
        self.last.append(0)

    def end(self):
        self.b.append(0)
        self.last.pop()

    def lst(self, fid, etype, n):
        self.fh(fid, 9)
        if n < 15:
            self.b.append(n << 4 | etype)
        else:
            self.b.append(0xF0 | etype)
            self.varint(n)

    def elem_begin(self):  # a struct element inside a list
        self.last.append(0)


def rle_levels(levels, maxl):
    """levels as RLE runs of length 1 with a 4-byte length prefix (data page v1)."""
    out = bytearray()
    nb = (maxl.bit_length() + 7) // 8
    for l in levels:
        out.append(2)  # run header: length 1, RLE
        out += l.to_bytes(nb, "little")
    return len(out).to_bytes(4, "little") + bytes(out)


def plain(ptype, vals):
    out = bytearray()
    if ptype == 0:  # BOOLEAN bit-packed
        for i in range(0, len(vals), 8):
            byte = 0
            for k, v in enumerate(vals[i:i + 8]):
                byte |= int(v) << k
            out.append(byte)
    for v in vals:
        if ptype == 1:
            out += v.to_bytes(4, "little", signed=True)
        elif ptype == 2:
            out += v.to_bytes(8, "little", signed=True)
        elif ptype == 6:
            v = v.encode()
            out += len(v).to_bytes(4, "little") + v
    return bytes(out)


def write_legacy(path):
    # (path, ptype, max_rep, max_def, [(rep, def, value-or-None)...])
    cols = [
        (["ids"], 1, 1, 1, [(0, 1, 1), (1, 1, 2), (1, 1, 3), (0, 0, None), (0, 1, 7)]),
        (["names", "array"], 6, 1, 2, [(0, 2, "a"), (1, 2, "β"), (0, 0, None), (0, 1, None)]),
        (["pairs", "array", "x"], 1, 1, 3, [(0, 3, 1), (1, 2, None), (0, 1, None), (0, 0, None)]),
        (["ts"], 2, 0, 1, [(0, 1, 0), (0, 0, None), (0, 1, 1700000000123)]),
        (["s"], 6, 0, 0, [(0, 0, "x"), (0, 0, ""), (0, 0, "ü")]),
        (["flag"], 0, 0, 0, [(0, 0, True), (0, 0, False), (0, 0, True)]),
    ]
    body = bytearray(b"PAR1")
    chunks = []
    for cpath, ptype, maxr, maxd, ent in cols:
        data = b""
        if maxr:
            data += rle_levels([e[0] for e in ent], maxr)
        if maxd:
            data += rle_levels([e[1] for e in ent], maxd)
        data += plain(ptype, [e[2] for e in ent if e[1] == maxd])
        h = TC()
        h.i32(1, 0)
        h.i32(2, len(data))
        h.i32(3, len(data))
        h.begin(5)
        h.i32(1, len(ent))
        h.i32(2, 0)
        h.i32(3, 3)
        h.i32(4, 3)
        h.end()
        h.b.append(0)
        off = len(body)
        body += h.b + data
        chunks.append((cpath, ptype, len(ent), off, len(h.b) + len(data)))
    m = TC()
    m.i32(1, 1)
    schema = [  # (type, repetition, name, num_children, converted)
        (None, None, "schema", 6, None),
        (1, 2, "ids", None, None),
        (None, 1, "names", 1, 3), (6, 2, "array", None, 0),
        (None, 1, "pairs", 1, 3), (None, 2, "array", 1, None), (1, 1, "x", None, None),
        (2, 1, "ts", None, 9),
        (6, 0, "s", None, 0),
        (0, 0, "flag", None, None),
    ]
    m.lst(2, 12, len(schema))
    for t, rep, name, nch, conv in schema:
        m.elem_begin()
        if t is not None:
            m.i32(1, t)
        if rep is not None:
            m.i32(3, rep)
        m.bin(4, name)
        if nch is not None:
            m.i32(5, nch)
        if conv is not None:
            m.i32(6, conv)
        m.end()
    m.i64(3, 3)
    m.lst(4, 12, 1)
    m.elem_begin()
    m.lst(1, 12, len(chunks))
    for cpath, ptype, n, off, size in chunks:
        m.elem_begin()
        m.i64(2, off)
        m.begin(3)
        m.i32(1, ptype)
        m.lst(2, 5, 2)
        m.zz(0)
        m.zz(3)
        m.lst(3, 8, len(cpath))
        for p in cpath:
            m.varint(len(p))
            m.b += p.encode()
        m.i32(4, 0)
        m.i64(5, n)
        m.i64(6, size)
        m.i64(7, size)
        m.i64(9, off)
        m.end()
        m.end()
    m.i64(2, sum(c[4] for c in chunks))
    m.i64(3, 3)
    m.end()
    m.b.append(0)
    body += m.b + len(m.b).to_bytes(4, "little") + b"PAR1"
    open(path, "wb").write(bytes(body))


def expect(name):
    path = os.path.join(OUT, name + ".parquet")
    back = pq.read_table(path)
    cols = [column_values(back.column(i)) for i in range(back.num_columns)]
    with open(os.path.join(OUT, name + ".jsonl"), "w", encoding="utf-8") as f:
        for r in range(back.num_rows):
            rec = {back.column_names[i]: cols[i][r] for i in range(back.num_columns)}
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n")


write_legacy(os.path.join(OUT, "legacy_layouts.parquet"))
expect("legacy_layouts")
