#!/usr/bin/env python3
"""A random Llama checkpoint (HF layout, fp32) for bench/run_gen.sh: the same
files are loaded by lomo and by transformers, so both generate from the very
same weights (and their greedy ids can be compared).

    python bench/gen_model.py OUT_DIR [--dim 512 --layers 8 --heads 8 --kv-heads 4 --hidden 1376 --vocab 32000]
"""
import argparse
import os

import torch
from transformers import LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--dim", type=int, default=512)
ap.add_argument("--layers", type=int, default=8)
ap.add_argument("--heads", type=int, default=8)
ap.add_argument("--kv-heads", type=int, default=4)
ap.add_argument("--hidden", type=int, default=1376)
ap.add_argument("--vocab", type=int, default=32000)
a = ap.parse_args()
if os.path.exists(os.path.join(a.out, "model.safetensors")):
    print(f"{a.out}: exists")
    raise SystemExit(0)
torch.manual_seed(0)
cfg = LlamaConfig(hidden_size=a.dim, intermediate_size=a.hidden, num_hidden_layers=a.layers,
                  num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, vocab_size=a.vocab,
                  max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                  tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
m = LlamaForCausalLM(cfg)
with torch.no_grad():   # O(1) activations so greedy decoding does not collapse at once
    for n, p in m.named_parameters():
        if n.endswith("norm.weight"):
            p.fill_(1.0)
        else:
            p.normal_(0.0, 0.6 / p.shape[-1] ** 0.5 if p.dim() == 2 else 0.02)
m.save_pretrained(a.out, safe_serialization=True)
gc = os.path.join(a.out, "generation_config.json")
if os.path.exists(gc):
    os.remove(gc)
print(f"{a.out}: {sum(p.numel() for p in m.parameters()) / 1e6:.1f}M parameters")
