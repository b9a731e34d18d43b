#!/usr/bin/env python3
"""Golden fixtures for libcommon/model (tests/unit/test_model.c): tiny random models of each
supported architecture, built with transformers from real config fields, saved as Hugging
Face directories, with reference logits and greedy generations computed by transformers.

For each architecture <arch> it writes tests/fixtures/models/<arch>/:
  config.json, model.safetensors       the model (save_pretrained)
  cases.json                           input ids and the greedy-generation case:
      {"rows": [[ids...], [ids...]], "docs": [[row, start, len], ...],
       "prompt": [ids...], "greedy": [32 ids...]}
  logits.f32                           for each doc in "docs" order: (len, vocab) fp32,
                                       transformers' logits for that document run ALONE
                                       (positions from 0), little-endian.
The llama fixture also gets model.gguf: the same weights as llama.cpp lays them out.
Row 0 holds one document; row 1 is a packed row of two documents, so the C test checks
that positions restart and attention never crosses documents against separate runs.

Weights are re-drawn with a larger spread than transformers' init (std 0.02 makes every
logit ~0 and greedy argmax a coin toss), and rounded to bf16 values so the same numbers can
be stored as bf16 (the qwen2 fixture is saved in bf16 to exercise that path; its reference
runs in fp32 on the identical values).

With --gguf FILE (the real SmolLM2-135M-Instruct Q4_1 GGUF, from scripts/get-model
smollm2-135m-instruct) it instead writes tests/fixtures/models/smollm2-gguf/: cases.json
({"ids": chat prompt ids, "stride": S}) and logits.f32 = transformers' fp32 logits of that
prompt loaded from the same GGUF (from_pretrained(dir, gguf_file=...), needs `gguf`), every
position at vocab indices 0, S, 2S, ... then the last row at indices 0, L, 2L, ... (L =
"last_stride", 1 below 64k entries); "greedy" holds 16 greedy
tokens from generate(). The GGUF itself is not
committed; test_model.c skips that case when the file is absent.

Usage: python3 scripts/gen-model-fixtures.py [OUTDIR]  (needs torch, transformers)
       python3 scripts/gen-model-fixtures.py --gguf FILE [--name DIRNAME] [OUTDIR]
(--name gemma3-270m-gguf with gemma-3-270m-q4_k_m.gguf from get-model gemma3-270m)
Generated with transformers 4.57.1 and torch from PyPI (Debian's python3-torch 1.13 is too
old for transformers >= 4.50, the first with Gemma 3).
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM

ARGS = sys.argv[1:]
GGUF, GGUF_NAME = None, "smollm2-gguf"
if ARGS[:1] == ["--gguf"]:
    GGUF, ARGS = ARGS[1], ARGS[2:]
    if ARGS[:1] == ["--name"]:
        GGUF_NAME, ARGS = ARGS[1], ARGS[2:]
OUT = ARGS[0] if ARGS else os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models"))

COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, bos_token_id=1,
              eos_token_id=2, pad_token_id=0)

ARCHS = {
    # SmolLM2 style: tied embeddings, plain rope.
    "llama": ("LlamaConfig", dict(COMMON, num_hidden_layers=2, rope_theta=10000.0,
                                  rms_norm_eps=1e-5, tie_word_embeddings=True), torch.float32),
    # Llama 3.x: llama3 rope scaling, untied lm_head. original_max_position_embeddings is
    # small so that the scaling actually changes frequencies at this head_dim.
    "llama3": ("LlamaConfig", dict(COMMON, num_hidden_layers=2, rope_theta=500000.0,
                                   rms_norm_eps=1e-5, tie_word_embeddings=False,
                                   rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                 "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                 "original_max_position_embeddings": 64}),
               torch.float32),
    "qwen2": ("Qwen2Config", dict(COMMON, num_hidden_layers=2, rope_theta=1000000.0,
                                  rms_norm_eps=1e-6, tie_word_embeddings=False,
                                  use_sliding_window=False), torch.bfloat16),
    "qwen3": ("Qwen3Config", dict(COMMON, num_hidden_layers=2, head_dim=32, rope_theta=1000000.0,
                                  rms_norm_eps=1e-6, tie_word_embeddings=True,
                                  use_sliding_window=False), torch.float32),
    # Gemma 3 text: 4 layers, pattern 2 (local, global, local, global), window 5 so sliding
    # layers truncate context in every case; final logit softcapping on.
    "gemma3": ("Gemma3TextConfig", dict(COMMON, num_hidden_layers=4, head_dim=16,
                                        intermediate_size=96, query_pre_attn_scalar=16,
                                        sliding_window=5, sliding_window_pattern=2,
                                        layer_types=["sliding_attention", "full_attention"] * 2,
                                        rope_theta=1000000.0, rope_local_base_freq=10000.0,
                                        rms_norm_eps=1e-6, final_logit_softcapping=30.0,
                                        hidden_activation="gelu_pytorch_tanh",
                                        tie_word_embeddings=True), torch.float32),
}


def redraw(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                # Norm weights around their identity value (Gemma stores w, used as 1 + w).
                base = 0.0 if "gemma" in type(model).__name__.lower() else 1.0
                v = base + 0.2 * torch.randn(p.shape, generator=gen)
            elif name.endswith("bias"):
                v = 0.2 * torch.randn(p.shape, generator=gen)
            elif "embed" in name:
                v = 0.5 * torch.randn(p.shape, generator=gen)
            else:
                v = torch.randn(p.shape, generator=gen) / (p.shape[-1] ** 0.5)
            p.copy_(v.to(torch.bfloat16).to(torch.float32))


def logits_of(model, ids):
    with torch.no_grad():
        x = torch.tensor([ids])
        pos = torch.arange(len(ids)).unsqueeze(0)
        return model(input_ids=x, position_ids=pos).logits[0].float()


def permute(w, n_head, n_head_kv):
    """llama.cpp convert_hf_to_gguf.py's Q/K row permutation (rotate_half -> interleaved)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_llama_gguf(model, cfg, path):
    """The llama fixture as llama.cpp would convert it (F32 tensors, llama.cpp names, Q/K
    rows permuted), so the GGUF loader's un-permutation is checked in CI against the same
    transformers logits as the safetensors copy."""
    import gguf
    import numpy as np
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate",
             "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    for i in range(cfg.num_hidden_layers):
        for hf, gg in names.items():
            t = sd[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                t = permute(t, cfg.num_attention_heads, cfg.num_attention_heads)
            elif gg == "attn_k":
                t = permute(t, cfg.num_attention_heads, cfg.num_key_value_heads)
            w.add_tensor(f"blk.{i}.{gg}.weight", np.ascontiguousarray(t, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    torch.manual_seed(0)
    for arch, (cfg_name, kw, save_dtype) in ARCHS.items():
        gen = torch.Generator().manual_seed(1234 + len(arch))
        cfg = getattr(transformers, cfg_name)(**kw)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
        redraw(model, gen)
        d = os.path.join(OUT, arch)
        os.makedirs(d, exist_ok=True)
        # qwen3 is saved in shards (model.safetensors.index.json) to cover that path.
        shard = {"max_shard_size": "200KB"} if arch == "qwen3" else {}
        model.to(save_dtype).save_pretrained(d, safe_serialization=True, **shard)
        for junk in ("generation_config.json",):
            if os.path.exists(os.path.join(d, junk)):
                os.remove(os.path.join(d, junk))
        # The reference runs in fp32 on exactly the saved values.
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                     attn_implementation="eager").eval()
        V = cfg.vocab_size
        T = 16
        row0 = torch.randint(3, V, (T,), generator=gen).tolist()
        row1 = torch.randint(3, V, (T,), generator=gen).tolist()
        docs = [[0, 0, T], [1, 0, 7], [1, 7, T - 7]]
        rows = [row0, row1]
        chunks = []
        for r, s, n in docs:
            chunks.append(logits_of(model, rows[r][s:s + n]))
        torch.cat(chunks, 0).contiguous().numpy().astype("<f4").tofile(os.path.join(d, "logits.f32"))

        if arch == "llama":
            write_llama_gguf(model, cfg, os.path.join(d, "model.gguf"))
        prompt = torch.randint(3, V, (6,), generator=gen).tolist()
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                 do_sample=False, max_new_tokens=32, min_new_tokens=32,
                                 eos_token_id=None, pad_token_id=0)
        greedy = out[0, len(prompt):].tolist()
        # Margin check: a near tie between the top two logits would make the greedy case
        # fragile under legitimate fp32 reordering; report the smallest margin.
        full = logits_of(model, prompt + greedy)
        margins = []
        for i in range(len(greedy)):
            row = full[len(prompt) - 1 + i]
            top2 = torch.topk(row, 2).values
            margins.append(float(top2[0] - top2[1]))
            assert int(row.argmax()) == greedy[i], f"{arch}: cached generate != full forward at {i}"
        with open(os.path.join(d, "cases.json"), "w") as f:
            json.dump({"rows": rows, "docs": docs, "prompt": prompt, "greedy": greedy}, f)
            f.write("\n")
        print(f"{arch}: min greedy top-2 margin {min(margins):.4g}, "
              f"max |logit| {float(torch.cat(chunks).abs().max()):.3g}", file=sys.stderr)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}", file=sys.stderr)


def main_gguf():
    from transformers import AutoTokenizer
    d, name = os.path.split(os.path.abspath(GGUF))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    msgs = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"}]
    if tok.chat_template:
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True)
        if hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
    else:
        # The Gemma 3 GGUF carries no chat template: Gemma's turn format, written out.
        text = ("<bos><start_of_turn>user\nYou are a helpful assistant.\n\n"
                "What is the capital of France?<end_of_turn>\n<start_of_turn>model\n")
        ids = tok(text, add_special_tokens=False)["input_ids"]
    ids = list(ids)
    print("prompt:", repr(tok.decode(ids)), file=sys.stderr)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    logits = logits_of(model, ids)
    # Keep the fixture well under 1 MB: Gemma's 262k vocabulary gets coarser strides.
    stride, last_stride = (64, 1) if logits.shape[1] <= 65536 else (256, 4)
    out = os.path.join(OUT, GGUF_NAME)
    os.makedirs(out, exist_ok=True)
    sub = logits[:, ::stride].contiguous()
    torch.cat([sub.reshape(-1), logits[-1, ::last_stride]]).numpy().astype("<f4").tofile(os.path.join(out, "logits.f32"))
    with torch.no_grad():
        gen = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=16, min_new_tokens=16,
                             eos_token_id=None, pad_token_id=tok.pad_token_id or 0)
    greedy = gen[0, len(ids):].tolist()
    print("greedy:", repr(tok.decode(greedy)), file=sys.stderr)
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"ids": ids, "stride": stride, "last_stride": last_stride,
                   "vocab": int(logits.shape[1]), "greedy": greedy}, f)
        f.write("\n")
    print(f"{GGUF_NAME}: {len(ids)} tokens, max |logit| {float(logits.abs().max()):.3g}", file=sys.stderr)


if __name__ == "__main__":
    main_gguf() if GGUF else main()
