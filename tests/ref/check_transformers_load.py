#!/usr/bin/env python3
"""Evaluation loss of a checkpoint directory as computed by transformers.

    /root/lomo-venv/bin/python tests/ref/check_transformers_load.py MODEL_DIR DATA.jsonl [--seq-len N]

MODEL_DIR is anything AutoModelForCausalLM.from_pretrained() accepts
(config.json + model.safetensors or a sharded index; any stored dtype, the
model is loaded in float32 with eager attention).  DATA.jsonl has one JSON
object per line, {"input_ids": [...], "labels": [...]}; "labels" is optional
and defaults to input_ids.  Each line is truncated to its first N tokens
(default 64) and run on its own (no padding).

Loss convention (transformers'): position t predicts labels[t+1], targets
equal to -100 are ignored, and the result is the sum of all token losses
over the whole file divided by the number of counted target tokens (a
token-weighted mean, not a mean of per-line means).  The last line printed is

    eval_loss=<loss, 6 decimals> tokens=<counted target tokens>

so a C evaluator (e.g. lomo after fine-tuning and saving a checkpoint) can be
compared with it line for line.  Exit status 1 if no target token was counted.
"""

import argparse
import json
import sys

import torch
import torch.nn.functional as F
import transformers
from transformers import AutoConfig, AutoModelForCausalLM


def read_jsonl(path, seq_len):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            obj = json.loads(line)
            ids = obj.get("input_ids")
            if not isinstance(ids, list) or not ids:
                raise SystemExit(f"{path}:{n}: missing or empty input_ids")
            labels = obj.get("labels")
            if labels is None:
                labels = ids
            if len(labels) != len(ids):
                raise SystemExit(f"{path}:{n}: labels has {len(labels)} entries, "
                                 f"input_ids {len(ids)}")
            rows.append((n, ids[:seq_len], labels[:seq_len]))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("data")
    ap.add_argument("--seq-len", type=int, default=64,
                    help="truncate every line to this many tokens (default 64)")
    args = ap.parse_args()
    if args.seq_len < 1:
        raise SystemExit("--seq-len must be >= 1")

    torch.set_grad_enabled(False)
    cfg = AutoConfig.from_pretrained(args.model_dir)
    stored = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)
    model = AutoModelForCausalLM.from_pretrained(
        args.model_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    nparams = sum(p.numel() for p in model.parameters())
    print(f"model {type(model).__name__} ({cfg.model_type}) loaded as "
          f"{'/'.join(dtypes)}, config dtype {stored}, {nparams} parameters, "
          f"vocab {cfg.vocab_size}, transformers {transformers.__version__}, "
          f"torch {torch.__version__}")

    rows = read_jsonl(args.data, args.seq_len)
    vocab = cfg.vocab_size
    total, count = 0.0, 0
    for n, ids, labels in rows:
        bad = [i for i in ids if not 0 <= i < vocab]
        bad += [l for l in labels if l != -100 and not 0 <= l < vocab]
        if bad:
            raise SystemExit(f"{args.data}:{n}: token id {bad[0]} outside [0, {vocab})")
        x = torch.tensor([ids], dtype=torch.long)
        y = torch.tensor(labels, dtype=torch.long)
        logits = model(input_ids=x).logits[0].float()      # [T, V]
        tgt = y[1:]                                         # position t -> labels[t+1]
        keep = tgt != -100
        k = int(keep.sum())
        if k == 0:
            continue
        tok = F.cross_entropy(logits[:-1][keep], tgt[keep], reduction="none")
        s = tok.double().sum().item()
        # Cross-check against transformers' own loss for this line.
        ref = model(input_ids=x, labels=y.unsqueeze(0)).loss.item()
        assert abs(ref - s / k) <= 1e-5 * max(1.0, abs(ref)), (n, ref, s / k)
        total += s
        count += k

    print(f"{len(rows)} lines, seq_len {args.seq_len}")
    if count == 0:
        print("eval_loss=nan tokens=0")
        sys.exit(1)
    print(f"eval_loss={total / count:.6f} tokens={count}")


if __name__ == "__main__":
    main()
