#!/usr/bin/env python3
"""The memory floor of LOMO training on one GPU, from the model's shapes alone.

Computed independently of lomo's allocation plan (lomo_memory_formula describes
that same plan and so cannot judge it): what ANY implementation of full-parameter
LOMO with activation checkpointing must hold at the peak of a step, with 16-bit
weights and activations as PyTorch keeps them:

  parameters        2 P                                   (bf16 weights, no master copy)
  checkpoints       2 N C L                               (each layer's input, bf16)
  one layer         2 N (2C + q + 2k + q + 3H) + 4 N nh   (the recomputed layer's activations:
                                                           two norm outputs, q, k, v, attention
                                                           output, gate/up/SwiGLU; softmax stats)
  logits            4 N V                                 (fp32 logits for the loss, dlogits in place)
  gradient          2 max(tensor)                         (one tensor's gradient, bf16)
  context           measured (cudaMemGetInfo before any model) + 32 MiB cuBLAS workspace

N = batch x seq tokens, C hidden, H intermediate, L layers, V vocab, q = heads x head_dim,
k = kv_heads x head_dim, P parameters (untied embedding and lm_head). An implementation
that keeps fp32 activations (lomo does) sits above this floor by its own choice; the
ratio measured / floor says how far each implementation is from the minimum.

  python3 bench/cuda_floor.py --dim 4096 --layers 32 --heads 32 --kv-heads 32 \
      --hidden 11008 --vocab 32000 --batch 8 --seq 512 [--context-mib 520]
prints the floor in GiB and its parts (--json for a JSON object)."""
import argparse, json

def floor(dim, layers, heads, kv_heads, hidden, vocab, batch, seq, context_mib=0.0, head_dim=None):
    hd = head_dim or dim // heads
    q, k, n = heads * hd, kv_heads * hd, batch * seq
    per_layer = 2 * dim * q + 2 * dim * k + 3 * dim * hidden + 2 * dim   # q,o + k,v + gate,up,down + 2 norms
    P = layers * per_layer + 2 * vocab * dim + dim
    largest = max(vocab * dim, hidden * dim, q * dim)
    parts = {
        "parameters": 2 * P,
        "checkpoints": 2 * n * dim * layers,
        "one_layer": 2 * n * (2 * dim + q + 2 * k + q + 3 * hidden) + 4 * n * heads,
        "logits": 4 * n * vocab,
        "gradient": 2 * largest,
        "context": context_mib * 1048576 + 32 * 1048576,
    }
    parts["total"] = sum(parts.values())
    parts["params"] = P
    return parts

def main():
    ap = argparse.ArgumentParser()
    for f in ["dim", "layers", "heads", "kv-heads", "hidden", "vocab", "batch", "seq"]:
        ap.add_argument("--" + f, type=int, required=True)
    ap.add_argument("--head-dim", type=int, default=None)
    ap.add_argument("--context-mib", type=float, default=0.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    p = floor(a.dim, a.layers, a.heads, a.kv_heads, a.hidden, a.vocab, a.batch, a.seq, a.context_mib, a.head_dim)
    if a.json:
        print(json.dumps(p))
    else:
        for k, v in p.items():
            print(f"{k:12s} {v / 2**30:10.3f} GiB" if k != "params" else f"{k:12s} {v / 1e9:10.3f} B")

if __name__ == "__main__":
    main()
