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

The forward-only cases in FWD_CASES (Llama-3 rope scaling, Mistral, a
sharded bfloat16 checkpoint, a float16 checkpoint) get the same files but no
gradients in ref.safetensors; for the half-precision ones the reference is
computed in float32 from the saved (widened) weights.

And for the real stories260K model (read from ../shared/models/stories260K,
never copied into the repository) it writes tests/ref/stories260K_ref.safetensors
with input_ids, labels, loss and logits.  See tests/ref/README.md.
"""

import json
import math
import os
import shutil
import sys

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
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

PHI3_LONGROPE = dict(
    hidden_size=32, intermediate_size=40, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, vocab_size=59,
    tie_word_embeddings=False, rms_norm_eps=1e-5, sliding_window=None,
    rope_parameters=dict(rope_type="longrope", rope_theta=10000.0,
                         partial_rotary_factor=0.75,
                         long_factor=[1.0, 2.5, 7.0], short_factor=[1.1, 1.3, 1.7],
                         original_max_position_embeddings=8),
    max_position_embeddings=64, original_max_position_embeddings=8,
    pad_token_id=None, bos_token_id=None, eos_token_id=None,
    attention_dropout=0.0, resid_pdrop=0.0, embd_pdrop=0.0)

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
    # Qwen3: per-head q_norm / k_norm, head_dim 12 != 32/4, tied.
    (
        "qwen3_tied",
        Qwen3ForCausalLM,
        Qwen3Config,
        dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, head_dim=12,
             vocab_size=61, tie_word_embeddings=True, rms_norm_eps=1e-6,
             rope_parameters=dict(rope_type="default", rope_theta=1000000.0),
             max_position_embeddings=64, attention_dropout=0.0),
        1011,
    ),
    # Qwen3 untied, attention_bias (q/k/v/o biases), MQA, head_dim 16.
    (
        "qwen3_bias",
        Qwen3ForCausalLM,
        Qwen3Config,
        dict(hidden_size=32, intermediate_size=40, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=1, head_dim=16,
             vocab_size=57, tie_word_embeddings=False, attention_bias=True,
             rms_norm_eps=1e-6,
             rope_parameters=dict(rope_type="default", rope_theta=10000.0),
             max_position_embeddings=64, attention_dropout=0.0),
        1012,
    ),
    # Gemma 2: (1 + w) norms, sqrt(hidden) embedding scale, GeGLU, four norms
    # per layer, query_pre_attn_scalar 24 != head_dim 16, attention and final
    # soft-capping small enough to bite (scores ~1, logits ~2), local layers
    # 0 and 2 with a window of 4 < T = 9, tied.
    (
        "gemma2",
        Gemma2ForCausalLM,
        Gemma2Config,
        dict(hidden_size=32, intermediate_size=48, num_hidden_layers=3,
             num_attention_heads=4, num_key_value_heads=2, head_dim=16,
             vocab_size=61, tie_word_embeddings=True, rms_norm_eps=1e-6,
             query_pre_attn_scalar=24, attn_logit_softcapping=1.0,
             final_logit_softcapping=2.0, sliding_window=4,
             layer_types=["sliding_attention", "full_attention",
                          "sliding_attention"],
             rope_parameters=dict(rope_type="default", rope_theta=10000.0),
             max_position_embeddings=64, attention_dropout=0.0),
        1013,
    ),
    # Gemma 3 text: as Gemma 2 plus q_norm / k_norm ((1 + w), per head),
    # per-layer rope bases (local 100, global 10000 with linear scaling x2),
    # pattern 3 (local, local, global), window 3, no final soft-capping,
    # untied.  attn_logit_softcapping is set but transformers' Gemma 3
    # attention never applies it: lomo must ignore it the same way.
    (
        "gemma3",
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        dict(hidden_size=32, intermediate_size=48, num_hidden_layers=3,
             num_attention_heads=4, num_key_value_heads=2, head_dim=8,
             vocab_size=59, tie_word_embeddings=False, rms_norm_eps=1e-6,
             query_pre_attn_scalar=20, attn_logit_softcapping=1.5,
             final_logit_softcapping=None, sliding_window=3,
             layer_types=["sliding_attention", "sliding_attention",
                          "full_attention"],
             rope_parameters={
                 "full_attention": dict(rope_type="linear", factor=2.0,
                                        rope_theta=10000.0),
                 "sliding_attention": dict(rope_type="default",
                                           rope_theta=100.0)},
             max_position_embeddings=64, attention_dropout=0.0),
        1014,
    ),
    # Phi-3: fused qkv_proj and gate_up_proj, a sliding window of 5 < T on
    # every layer, MHA, untied (as Phi-3 / Phi-3.5-mini).
    (
        "phi3",
        Phi3ForCausalLM,
        Phi3Config,
        dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=4, vocab_size=61,
             tie_word_embeddings=False, rms_norm_eps=1e-5, sliding_window=5,
             rope_parameters=dict(rope_type="default", rope_theta=10000.0),
             max_position_embeddings=64, original_max_position_embeddings=64,
             pad_token_id=None, bos_token_id=None, eos_token_id=None,
             attention_dropout=0.0, resid_pdrop=0.0, embd_pdrop=0.0),
        1015,
    ),
    # Phi-3 family with partial rotary (0.75 of head_dim 8 = 6 dims, as
    # Phi-4-mini has), GQA, tied, no window.
    (
        "phi3_partial",
        Phi3ForCausalLM,
        Phi3Config,
        dict(hidden_size=32, intermediate_size=40, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, vocab_size=53,
             tie_word_embeddings=True, rms_norm_eps=1e-5, sliding_window=None,
             rope_parameters=dict(rope_type="default", rope_theta=500.0,
                                  partial_rotary_factor=0.75),
             max_position_embeddings=64, original_max_position_embeddings=64,
             pad_token_id=None, bos_token_id=None, eos_token_id=None,
             attention_dropout=0.0, resid_pdrop=0.0, embd_pdrop=0.0),
        1016,
    ),
    # Phi-3 longrope (Phi-3.5-mini / Phi-4-mini): short and long factors,
    # original_max_position_embeddings 8 < T = 9, so the long factors and the
    # attention factor sqrt(1 + ln 8 / ln 8) apply; with partial rotary 0.75.
    # The forward-only phi3_longrope_short runs T = 6 <= 8: short factors.
    (
        "phi3_longrope",
        Phi3ForCausalLM,
        Phi3Config,
        dict(PHI3_LONGROPE),
        1017,
    ),
]

# Llama-3 ("llama3") rope scaling.  With head_dim 16 and theta 5e5 the 8
# wavelengths 2*pi/inv_freq are ~6.3, 32.4, 167, 862, ... ; with
# original_max_position_embeddings 64 the band limits are 64/4 = 16 and
# 64/1 = 64, so frequency 0 is high (unchanged), 1 is in the smooth band and
# 2..7 are low (divided by factor).  (32, as first planned, has no smooth
# frequency: 32.4 > 32.)  make_fwd_case prints and asserts this.
LLAMA3_ROPE = dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                   low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=64)

# Forward-only cases: ref.safetensors has input_ids, labels, loss, logits
# (no gradients).
#   name, model class, config class, config kwargs, seed, options
# options: t (sequence length), dtype (storage dtype of the checkpoint; the
# reference is computed in float32 from the saved weights), max_shard_size,
# legacy_copy (also write <name>_oldcfg with the same tensors and config.json
# in the older top-level rope_theta / rope_scaling layout).
FWD_CASES = [
    (
        "phi3_longrope_short",
        Phi3ForCausalLM,
        Phi3Config,
        dict(PHI3_LONGROPE),
        1018,
        dict(t=6),
    ),
    (
        "llama3_scaled",
        LlamaForCausalLM,
        LlamaConfig,
        dict({k: v for k, v in LLAMA_BASE.items() if k != "rope_theta"},
             head_dim=16, vocab_size=63, max_position_embeddings=512,
             rope_parameters=dict(LLAMA3_ROPE)),
        1005,
        dict(t=12, legacy_copy=True),
    ),
    (
        "mistral",
        MistralForCausalLM,
        MistralConfig,
        dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, head_dim=8,
             vocab_size=57, sliding_window=4096, tie_word_embeddings=False,
             rope_theta=10000.0, rms_norm_eps=1e-5,
             max_position_embeddings=64, attention_dropout=0.0),
        1006,
        dict(),
    ),
    (
        "sharded_bf16",
        LlamaForCausalLM,
        LlamaConfig,
        dict(LLAMA_BASE, vocab_size=67),
        1007,
        # ~40 KB of bf16 weights -> 4 shards of <= 12 KB
        dict(dtype=torch.bfloat16, max_shard_size=12000),
    ),
    (
        "f16",
        LlamaForCausalLM,
        LlamaConfig,
        dict(LLAMA_BASE, vocab_size=71),
        1008,
        dict(dtype=torch.float16),
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


def make_batch(vocab, gen, t=T):
    ids = torch.randint(0, vocab, (B, t), generator=gen)
    labels = ids.clone()
    for b in range(B):
        # 3 masked positions per row, never position 0 (whose label is
        # dropped by the shift anyway), so each row keeps t-4 >= 1 targets.
        pos = 1 + torch.randperm(t - 1, generator=gen)[:3]
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
    rp = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rp.pop("rope_theta")
    if rp.get("rope_type", "default") != "default":
        # As in Llama 3.1 hub checkpoints: "rope_scaling": {"rope_type":
        # "llama3", "factor": ..., "low_freq_factor": ..., ...}
        cfg["rope_scaling"] = rp
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


def new_model(model_cls, config_cls, kwargs, seed):
    """A float32 eager-attention model with the fixtures' re-initialisation."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    config = config_cls(**kwargs)
    model = model_cls._from_config(config, attn_implementation="eager",
                                   dtype=torch.float32)
    reinit_(model, gen)
    return config, model, gen


def make_case(name, model_cls, config_cls, kwargs, seed):
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    config, model, gen = new_model(model_cls, config_cls, kwargs, seed)
    if config.tie_word_embeddings:
        assert model.lm_head.weight is model.model.embed_tokens.weight
    if name == "llama_tied":  # explicit head_dim must be honoured
        assert tuple(model.model.layers[0].self_attn.q_proj.weight.shape) == (48, 32)

    ids, labels = make_batch(config.vocab_size, gen)
    out_ = model(input_ids=ids, labels=labels)
    loss, logits = out_.loss, out_.logits
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:  # the final soft-capping must bite: |logits| well into tanh's bend
        assert logits.abs().max().item() > 0.6 * cap, logits.abs().max()
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


def llama3_bands(rp, head_dim):
    """Band of each rope frequency under "llama3" scaling, and the scaled
    inverse frequencies, recomputed here independently of transformers
    (float64, same band tests as Meta's apply_scaling)."""
    base, factor = rp["rope_theta"], rp["factor"]
    lo, hi = rp["low_freq_factor"], rp["high_freq_factor"]
    old = rp["original_max_position_embeddings"]
    bands, inv = [], []
    for i in range(0, head_dim, 2):
        f = 1.0 / base ** (i / head_dim)
        wl = 2 * math.pi / f
        if wl < old / hi:
            bands.append(("high", wl))
            inv.append(f)
        elif wl > old / lo:
            bands.append(("low", wl))
            inv.append(f / factor)
        else:
            s = (old / wl - lo) / (hi - lo)
            bands.append(("smooth", wl))
            inv.append((1 - s) * f / factor + s * f)
    return bands, inv


def clean_generation_config(out):
    p = os.path.join(out, "generation_config.json")
    if os.path.exists(p):
        os.remove(p)


def make_fwd_case(name, model_cls, config_cls, kwargs, seed, opts):
    t = opts.get("t", T)
    dtype = opts.get("dtype", torch.float32)
    shard = opts.get("max_shard_size")
    out = os.path.join(HERE, name)
    if os.path.isdir(out):  # shard count/names may change between versions
        shutil.rmtree(out)
    os.makedirs(out)
    config, model, gen = new_model(model_cls, config_cls, kwargs, seed)
    ids, labels = make_batch(config.vocab_size, gen, t)

    rp = config.rope_parameters
    if rp.get("rope_type") == "llama3":
        bands, inv = llama3_bands(rp, config.head_dim)
        print(f"{name}: llama3 bands (orig_max_pos "
              f"{rp['original_max_position_embeddings']}, limits "
              f"{rp['original_max_position_embeddings'] / rp['high_freq_factor']:g}"
              f"/{rp['original_max_position_embeddings'] / rp['low_freq_factor']:g}): "
              + ", ".join(f"{i}:{b}({wl:.1f})" for i, (b, wl) in enumerate(bands)))
        assert {b for b, _ in bands} == {"high", "low", "smooth"}, bands
        got = model.model.rotary_emb.inv_freq.double()
        assert torch.allclose(got, torch.tensor(inv, dtype=torch.float64),
                              rtol=1e-6, atol=0), (got, inv)
        assert model.model.rotary_emb.attention_scaling == 1.0

    with torch.no_grad():
        logits32 = model(input_ids=ids).logits
    if dtype != torch.float32:
        model = model.to(dtype)
    model.save_pretrained(out, safe_serialization=True, **(
        {"max_shard_size": shard} if shard is not None else {}))
    clean_generation_config(out)
    files = sorted(os.listdir(out))
    if shard is not None:
        shards = [f for f in files if f.startswith("model-")]
        assert "model.safetensors.index.json" in files and len(shards) >= 3, files
        assert "model.safetensors" not in files, files
    else:
        assert "model.safetensors" in files, files
        assert "model.safetensors.index.json" not in files, files

    # Reference: transformers in float32 on the saved weights (widened
    # exactly from bf16/f16).
    re = model_cls.from_pretrained(out, attn_implementation="eager",
                                   dtype=torch.float32)
    assert next(re.parameters()).dtype == torch.float32
    saved = dict(model.named_parameters())
    for pname, p in re.named_parameters():
        assert torch.equal(p, saved[pname].float()), pname
    with torch.no_grad():
        out_ = re(input_ids=ids, labels=labels)
    loss, logits = out_.loss, out_.logits
    ref_loss = manual_loss(logits, labels)
    assert abs(loss.item() - ref_loss.item()) < 1e-5, (loss.item(), ref_loss.item())
    if dtype == torch.float32:
        assert torch.equal(logits, logits32), (logits - logits32).abs().max()
    else:
        print(f"{name}: max |logits(f32 weights) - logits({str(dtype)[6:]} "
              f"weights)| = {(logits - logits32).abs().max().item():.3g}")

    tensors = {
        "input_ids": ids.to(torch.int32).contiguous(),
        "labels": labels.to(torch.int32).contiguous(),
        "loss": loss.reshape(1).float().contiguous(),
        "logits": logits.float().contiguous(),
    }
    save_file(tensors, os.path.join(out, "ref.safetensors"),
              metadata=provenance(name))
    paths = [os.path.join(out, f) for f in sorted(os.listdir(out))]
    print(f"{name:12s} loss {loss.item():.6f}  params "
          f"{sum(p.numel() for p in re.parameters())}  [{file_sizes(paths)}]")

    if opts.get("legacy_copy"):
        old = out + "_oldcfg"
        if os.path.isdir(old):
            shutil.rmtree(old)
        os.makedirs(old)
        for f in files + ["ref.safetensors"]:
            shutil.copyfile(os.path.join(out, f), os.path.join(old, f))
        rewrite_config_legacy(os.path.join(old, "config.json"))
        with open(os.path.join(old, "config.json")) as f:
            assert "rope_parameters" not in json.load(f)
        re2 = model_cls.from_pretrained(old, attn_implementation="eager",
                                        dtype=torch.float32)
        assert re2.config.rope_parameters == config.rope_parameters, (
            re2.config.rope_parameters, config.rope_parameters)
        with torch.no_grad():
            lg2 = re2(input_ids=ids).logits
        assert torch.equal(lg2, logits), (lg2 - logits).abs().max()
        opaths = [os.path.join(old, f) for f in sorted(os.listdir(old))]
        print(f"{os.path.basename(old)}: older config layout, identical logits "
              f"[{file_sizes(opaths)}]")
        paths += opaths
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
    only = set(sys.argv[1:])  # case names: regenerate just those
    for case in CASES:
        if not only or case[0] in only:
            paths += make_case(*case)
    for case in FWD_CASES:
        if not only or case[0] in only:
            paths += make_fwd_case(*case)
    if not only or "stories260K" in only:
        paths += make_stories()
    total = sum(os.path.getsize(p) for p in paths)
    print(f"total fixture size: {total} B ({total / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
