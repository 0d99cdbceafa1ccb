#!/usr/bin/env python3
"""CPU benchmark: PyTorch transformers LlamaForCausalLM + lomo_optim.Lomo.

The baseline lomo is compared against: the LOMO authors' own optimizer
package (lomo-optim) driving a randomly initialised fp32 Llama on random
tokens (labels = input_ids).

    /root/lomo-venv/bin/python bench/bench_torch.py --dim 64 --layers 2 \
        --heads 4 --kv-heads 4 --hidden 128 --vocab 256 --batch 2 --seq 32 \
        --steps 3 [--checkpointing] [--clip-norm 1.0] [--out result.json]

One step is: forward -> loss -> Lomo.fused_backward (parameters are updated
inside backward, one at a time).  With --clip-norm > 0 a step is the
two-pass form that lomo-optim documents: Lomo.grad_norm(loss) (backward
with retain_graph to gather the global norm) then fused_backward(loss, lr).

Reported: tokens/s = batch*seq*steps / wall time of the timed steps, peak RSS
of the process (ru_maxrss; baseline_rss_mib is the part already used after
importing torch/transformers/lomo_optim), parameter count, first and last timed loss.
"""

import argparse
import json
import os
import resource
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=288)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=None,
                    help="default: same as --heads")
    ap.add_argument("--hidden", type=int, default=768, help="MLP intermediate size")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--clip-norm", type=float, default=0.0,
                    help="global grad-norm clip (0 = off; >0 uses two backward passes)")
    ap.add_argument("--checkpointing", action="store_true",
                    help="model.gradient_checkpointing_enable()")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write a JSON result here")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"],
                    help="parameter/activation dtype (bf16: the usual GPU setting)")
    a = ap.parse_args()
    if a.kv_heads is None:
        a.kv_heads = a.heads
    return a


def main():
    a = parse_args()
    # lomo_optim imports transformers internals; import after argparse so
    # --help stays fast.
    from lomo_optim import Lomo

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    # RSS of the interpreter with torch/transformers loaded, before the model:
    # this much of peak_rss_mib is library overhead, not training state.
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    config = LlamaConfig(
        hidden_size=a.dim,
        intermediate_size=a.hidden,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads,
        vocab_size=a.vocab,
        max_position_embeddings=max(a.seq, 64),
        tie_word_embeddings=False,
        attention_dropout=0.0,
        use_cache=False,
    )
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    # built on the device itself (a 7B model initialised on the CPU and then
    # moved takes minutes and the host's memory)
    with torch.device(a.device):
        model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa",
                                              dtype=dtype)
    if a.checkpointing:
        # transformers >= 5 renamed gradient_checkpointing_enable (deprecated).
        getattr(model, "activation_checkpointing_enable",
                model.gradient_checkpointing_enable)()
    model.train()
    n_params = sum(p.numel() for p in model.parameters())

    clip = a.clip_norm if a.clip_norm > 0 else None
    opt = Lomo(model, lr=a.lr, clip_grad_norm=clip)

    gen = torch.Generator().manual_seed(a.seed + 1)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq), generator=gen).to(a.device)
    cuda = a.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        if clip is not None:
            opt.grad_norm(loss)  # first backward: gathers the global norm
        opt.fused_backward(loss, a.lr)  # backward with in-place updates
        return loss.item()

    for _ in range(a.warmup):
        step()
    losses = []
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        losses.append(step())   # .item() synchronises each step
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0

    tokens = a.batch * a.seq * a.steps
    res = {
        "impl": "pytorch+lomo-optim",
        "tokens_per_s": tokens / dt,
        "seconds": dt,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "baseline_rss_mib": base_rss,
        "peak_device_mib": torch.cuda.max_memory_allocated() / 1048576.0 if cuda else None,
        "peak_reserved_mib": torch.cuda.max_memory_reserved() / 1048576.0 if cuda else None,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "params": n_params,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "config": {
            "dim": a.dim, "layers": a.layers, "heads": a.heads,
            "kv_heads": a.kv_heads, "hidden": a.hidden, "vocab": a.vocab,
            "batch": a.batch, "seq": a.seq, "steps": a.steps,
            "warmup": a.warmup, "lr": a.lr, "clip_norm": a.clip_norm,
            "checkpointing": a.checkpointing, "threads": a.threads,
            "device": a.device, "dtype": a.dtype,
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
        },
    }
    print(f"pytorch+lomo-optim: {res['tokens_per_s']:.1f} tok/s "
          f"({a.steps} steps in {dt:.2f} s), peak RSS {res['peak_rss_mib']:.0f} MiB, "
          f"{n_params / 1e6:.2f}M params, loss {res['loss_first']:.4f} -> "
          f"{res['loss_last']:.4f}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
