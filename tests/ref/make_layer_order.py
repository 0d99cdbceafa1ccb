"""Writes tests/ref/layer_order.txt: for each fixture directory, every parameter
in the order transformers' named_parameters() lists it (tied weights once), with
its shape. test_layers checks that lomo_load creates a model's tensors in exactly
this order (the order lomo saves them) with these names and shapes.

    /root/lomo-venv/bin/python tests/ref/make_layer_order.py
"""
import os
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

CASES = ["llama_gqa", "llama_tied", "llama_bias", "qwen2_bias", "qwen3_bias", "qwen3_tied", "mistral",
         "gemma2", "gemma3", "phi3", "phi3_partial"]
HERE = os.path.dirname(os.path.abspath(__file__))

lines = ["# transformers %s, torch %s: case name rows cols (cols 0: a vector)" % (transformers.__version__,
                                                                            torch.__version__)]
for case in CASES:
    cfg = AutoConfig.from_pretrained(os.path.join(HERE, case))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    n = 0
    for name, p in model.named_parameters():
        shape = list(p.shape) + [0]
        lines.append("%s %s %d %d" % (case, name, shape[0], shape[1]))
        n += 1
    print("%-14s %3d parameters" % (case, n))
with open(os.path.join(HERE, "layer_order.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
