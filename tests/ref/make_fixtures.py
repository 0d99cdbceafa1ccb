#!/usr/bin/env python3
"""Generate PyTorch/transformers reference fixtures for the lomo C tests.

Run from the repository root:

    /root/lomo-venv/bin/python tests/ref/make_fixtures.py

(/root/lomo-venv is a virtualenv with torch, transformers, safetensors and
numpy installed from PyPI.)  Everything is seeded, so running it again with
the same torch/transformers versions reproduces the same files.

For each tiny synthetic case it writes tests/ref/<case>/ with

    config.json, model.safetensors   from model.save_pretrained() (float32,
                                     one unsharded file)
    ref.safetensors                  input_ids, labels, loss, logits and
                                     grad.<param name> for every parameter

and for the real stories260K model (read from ../shared/models/stories260K,
never copied into the repository) it writes tests/ref/stories260K_ref.safetensors
with input_ids, labels, loss and logits.  See tests/ref/README.md.
"""

import json
import os
import sys

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
STORIES_DIR = os.path.join(REPO, "..", "shared", "models", "stories260K")

B, T = 2, 9

# Shared by all synthetic Llama cases ("like (a)").
LLAMA_BASE = dict(
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=61,
    tie_word_embeddings=False,
    attention_bias=False,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    max_position_embeddings=64,
    attention_dropout=0.0,
)

CASES = [
    # name, model class, config class, config kwargs, seed
    ("llama_gqa", LlamaForCausalLM, LlamaConfig, dict(LLAMA_BASE), 1001),
    (
        "llama_tied",
        LlamaForCausalLM,
        LlamaConfig,
        dict(LLAMA_BASE, tie_word_embeddings=True, num_key_value_heads=1,
             head_dim=12, vocab_size=53, rope_theta=1000.0),
        1002,
    ),
    (
        "llama_bias",
        LlamaForCausalLM,
        LlamaConfig,
        dict(LLAMA_BASE, attention_bias=True, num_key_value_heads=4,
             rope_theta=500000.0, vocab_size=47),
        1003,
    ),
    (
        "qwen2_bias",
        Qwen2ForCausalLM,
        Qwen2Config,
        dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, vocab_size=59,
             tie_word_embeddings=False, use_sliding_window=False,
             rope_theta=1000000.0, max_position_embeddings=64,
             attention_dropout=0.0),
        1004,
    ),
]

# transformers >= 5 writes rope_theta inside "rope_parameters"; most
# checkpoints in the wild (Llama 2/3, Qwen2, stories260K) have it at top level
# with "torch_dtype".  These cases get their config.json rewritten to that
# older layout, so the C loader is tested on both (with a non-default theta).
LEGACY_CONFIG_CASES = {"llama_bias"}


def reinit_(model, gen):
    """Replace the tiny default init by O(1)-activation weights."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):  # RMSNorm gains
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 2:  # embeddings, projections, lm_head
                p.copy_(0.15 * torch.randn(p.shape, generator=gen))
            else:
                raise RuntimeError(f"unexpected parameter {name}")


def make_batch(vocab, gen):
    ids = torch.randint(0, vocab, (B, T), generator=gen)
    labels = ids.clone()
    for b in range(B):
        # 3 masked positions per row, never position 0 (whose label is
        # dropped by the shift anyway), so each row keeps T-4 >= 1 targets.
        pos = 1 + torch.randperm(T - 1, generator=gen)[:3]
        labels[b, pos] = -100
    return ids, labels


def manual_loss(logits, labels):
    """Independent check of transformers' shifted mean cross-entropy."""
    lg = logits[:, :-1].reshape(-1, logits.shape[-1]).double()
    tg = labels[:, 1:].reshape(-1)
    keep = tg != -100
    lp = torch.log_softmax(lg[keep], dim=-1)
    return -lp.gather(1, tg[keep].unsqueeze(1)).mean()


def rewrite_config_legacy(path):
    with open(path) as f:
        cfg = json.load(f)
    rp = cfg.pop("rope_parameters")
    assert rp.get("rope_type", "default") == "default", rp
    cfg["rope_theta"] = rp["rope_theta"]
    cfg["torch_dtype"] = cfg.pop("dtype")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def provenance(case):
    # A single key: safetensors writes metadata in hash order, so several
    # keys would make the bytes differ from run to run.
    return {"generator": f"tests/ref/make_fixtures.py case={case} "
                         f"torch={torch.__version__} "
                         f"transformers={transformers.__version__}"}


def file_sizes(paths):
    return ", ".join(f"{os.path.basename(p)} {os.path.getsize(p)} B" for p in paths)


def make_case(name, model_cls, config_cls, kwargs, seed):
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    config = config_cls(**kwargs)
    model = model_cls._from_config(config, attn_implementation="eager",
                                   dtype=torch.float32)
    reinit_(model, gen)
    if config.tie_word_embeddings:
        assert model.lm_head.weight is model.model.embed_tokens.weight
    if name == "llama_tied":  # explicit head_dim must be honoured
        assert tuple(model.model.layers[0].self_attn.q_proj.weight.shape) == (48, 32)

    ids, labels = make_batch(config.vocab_size, gen)
    out_ = model(input_ids=ids, labels=labels)
    loss, logits = out_.loss, out_.logits
    ref_loss = manual_loss(logits.detach(), labels)
    assert abs(loss.item() - ref_loss.item()) < 1e-5, (loss.item(), ref_loss.item())
    loss.backward()

    tensors = {
        "input_ids": ids.to(torch.int32).contiguous(),
        "labels": labels.to(torch.int32).contiguous(),
        "loss": loss.detach().reshape(1).float().contiguous(),
        "logits": logits.detach().float().contiguous(),
    }
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, pname
        tensors["grad." + pname] = p.grad.detach().float().contiguous()

    model.save_pretrained(out, safe_serialization=True)
    for extra in ("generation_config.json",):
        p = os.path.join(out, extra)
        if os.path.exists(p):
            os.remove(p)
    files = sorted(os.listdir(out))
    assert "model.safetensors.index.json" not in files, files
    if name in LEGACY_CONFIG_CASES:
        rewrite_config_legacy(os.path.join(out, "config.json"))

    ref_path = os.path.join(out, "ref.safetensors")
    save_file(tensors, ref_path, metadata=provenance(name))

    # Round trip: the saved directory must reproduce the logits exactly.
    re = model_cls.from_pretrained(out, attn_implementation="eager",
                                   dtype=torch.float32)
    with torch.no_grad():
        lg2 = re(input_ids=ids).logits
    assert torch.equal(lg2, logits.detach()), (lg2 - logits).abs().max()
    with safe_open(os.path.join(out, "model.safetensors"), "pt") as f:
        saved_keys = set(f.keys())
    assert "lm_head.weight" not in saved_keys or not config.tie_word_embeddings

    paths = [os.path.join(out, f) for f in sorted(os.listdir(out))]
    print(f"{name:12s} loss {loss.item():.6f}  params "
          f"{sum(p.numel() for p in model.parameters())}  [{file_sizes(paths)}]")
    return paths


def make_stories():
    if not os.path.isdir(STORIES_DIR):
        print(f"stories260K: {STORIES_DIR} not found, skipped", file=sys.stderr)
        return []
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(STORIES_DIR, attn_implementation="eager",
                                             dtype=torch.float32)
    n = 32
    ids = torch.tensor([[1]], dtype=torch.long)
    with torch.no_grad():
        while ids.shape[1] < n:  # greedy continuation, full recompute (tiny model)
            nxt = model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
        out_ = model(input_ids=ids, labels=ids)
    ref_loss = manual_loss(out_.logits, ids)
    assert abs(out_.loss.item() - ref_loss.item()) < 1e-5
    path = os.path.join(HERE, "stories260K_ref.safetensors")
    save_file({
        "input_ids": ids.to(torch.int32).contiguous(),
        "labels": ids.to(torch.int32).contiguous(),
        "loss": out_.loss.reshape(1).float().contiguous(),
        "logits": out_.logits.float().contiguous(),
    }, path, metadata=provenance("stories260K"))
    print(f"stories260K  loss {out_.loss.item():.6f}  tokens {ids[0].tolist()}  "
          f"[{file_sizes([path])}]")
    return [path]


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # identical reductions run to run
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    paths = []
    for case in CASES:
        paths += make_case(*case)
    paths += make_stories()
    total = sum(os.path.getsize(p) for p in paths)
    print(f"total fixture size: {total} B ({total / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
