#!/usr/bin/env python3
"""The peer for bench/run_gen.sh: transformers generate() on the CPU, greedy,
batch 1, EOS off, a fixed number of new tokens. Prefill time = from the call
to the first logits processor call (after the prompt's forward); decode
tokens/s = (new - 1) / (end - that). Prints one JSON line."""
import argparse
import json
import resource
import time

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--prompt", type=int, default=128)
ap.add_argument("--new", type=int, default=128)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
ap.add_argument("--ids-out")
a = ap.parse_args()

import torch
from transformers import AutoModelForCausalLM, GenerationConfig, LogitsProcessor, LogitsProcessorList

torch.set_num_threads(a.threads)
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
m = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32 if a.dtype == "f32" else torch.bfloat16)
m.eval()
V = m.config.vocab_size
prompt = torch.tensor([[(i * 7919 + 13) % V for i in range(a.prompt)]])


class Stamp(LogitsProcessor):
    def __init__(self):
        self.first = None

    def __call__(self, input_ids, scores):
        if self.first is None:
            self.first = time.perf_counter()
        return scores


def run(new):
    st = Stamp()
    gc = GenerationConfig(max_new_tokens=new, do_sample=False, eos_token_id=None, pad_token_id=0, use_cache=True)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = m.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=gc,
                         logits_processor=LogitsProcessorList([st]))
    t1 = time.perf_counter()
    return out[0, a.prompt:].tolist(), st.first - t0, t1 - st.first


run(8)   # warm-up
ids, pre, dec = run(a.new)
if a.ids_out:
    json.dump(ids, open(a.ids_out, "w"))
print(json.dumps({"impl": "transformers", "torch": torch.__version__, "dtype": a.dtype, "threads": a.threads, "prompt": a.prompt,
                  "new": len(ids), "prefill_s": pre, "prefill_tok_s": a.prompt / pre,
                  "decode_tok_s": (len(ids) - 1) / dec,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "import_rss_mib": base_rss}))
