#!/usr/bin/env python3
"""Per-device memory of sharded LOMO training, from the formula in lomo.h
(MEMORY and SHARDING in the doc block): bf16 weights, activation
checkpointing, LOMO (no optimizer state), N ranks.

  per device = 2 P / N                      parameter shard
             + 2 max(one layer, V C)        one gathered stage (communication buffer)
             + 4 t [(L+1) C + 3C + 2q + 2k + 3H + C + V]   activations, t tokens per rank
             + 4 t (2C + 2q + 2k + 2H)      backward workspace
             + 2 t max(C, H, q, V) x 2      16-bit casts of GEMM operands (CUDA)
             + 4 max tensor + 4 max tensor / N   gradient buffer + this rank's summed part

Prints the smallest N that fits 90% of a 24 GB and an 80 GB device (the rest
for the CUDA context, cuBLAS workspace and fragmentation)."""
GB = 1e9
MODELS = {  # name: (C, H, L, heads, kv heads, vocab)
    "LLaMA-7B": (4096, 11008, 32, 32, 32, 32000),
    "LLaMA-13B": (5120, 13824, 40, 40, 40, 32000),
    "LLaMA-30B": (6656, 17920, 60, 52, 52, 32000),
    "LLaMA-65B": (8192, 22016, 80, 64, 64, 32000),
}

def per_device(m, n, tokens):
    C, H, L, nh, nkv, V = m
    hd = C // nh
    q, k = nh * hd, nkv * hd
    layer = 2 * C + C * (2 * q + 2 * k) + 3 * C * H
    P = 2 * V * C + C + L * layer
    biggest = max(V * C, H * C, q * C)
    parts = {
        "params": 2 * P / n,
        "gathered": 2 * max(layer, V * C),
        "activations": 4 * tokens * ((L + 1) * C + 3 * C + 2 * q + 2 * k + 3 * H + C + V),
        "workspace": 4 * tokens * (2 * C + 2 * q + 2 * k + 2 * H) + 2 * 2 * tokens * max(C, H, q, V),
        "gradients": 4 * biggest + 4 * biggest / n,
    }
    return P, parts

print("| model | params | tokens/rank | N | params/N | gathered | activations | workspace | gradients | per device |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, m in MODELS.items():
    for tokens in (512, 4096):
        for dev in (24, 80):
            for n in range(1, 65):
                P, parts = per_device(m, n, tokens)
                total = sum(parts.values())
                if total <= 0.9 * dev * GB:
                    break
            else:
                continue
            print(f"| {name} | {P / 1e9:.1f}B | {tokens} | {n} on {dev} GB | " +
                  " | ".join(f"{parts[k] / GB:.2f}" for k in ("params", "gathered", "activations", "workspace", "gradients")) +
                  f" | {total / GB:.2f} GB |")
