#!/usr/bin/env python3
"""Generation fixtures for tests/test_gen.c: what transformers' generate()
produces greedily, token ids and the raw logits of every step.

Run from the repository root:

    /root/lomo-venv/bin/python tests/ref/make_gen_fixtures.py

Writes tests/ref/gen/<case>.safetensors with
    prompt  int32 [P]       the prompt ids (random, seeded; stories260K: BOS + 3 ids)
    gen     int32 [N]       generate(do_sample=False, max_new_tokens=N) without the prompt,
                            EOS stopping switched off (eos_token_id=None), use_cache=True
    logits  float32 [N,V]   output_logits: the raw logits each new token was chosen from
    margin  float32 [1]     the smallest top-1 minus top-2 logit gap over the N steps
                            (how far greedy is from a tie)

and one new model directory, tests/ref/mistral_swa/ (Mistral with
sliding_window 6, shorter than prompt + generated tokens, so keys older than
the window are masked during generation).

The script checks itself: every step's generate() logits equal one full
forward over prompt + generated ids (no cache) at that position, so the
reference does not depend on transformers' cache implementation.
"""

import json
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, MistralConfig, MistralForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
STORIES_DIR = os.path.join(REPO, "..", "shared", "models", "stories260K")
OUT = os.path.join(HERE, "gen")

N_NEW = 72

CASES = [  # (name, model dir, prompt length, seed)
    ("llama_gqa", os.path.join(HERE, "llama_gqa"), 5, 2001),
    ("llama_tied", os.path.join(HERE, "llama_tied"), 4, 2002),
    ("llama_bias", os.path.join(HERE, "llama_bias"), 6, 2003),
    ("qwen2_bias", os.path.join(HERE, "qwen2_bias"), 3, 2004),
    ("llama3_scaled", os.path.join(HERE, "llama3_scaled"), 7, 2005),
    ("mistral", os.path.join(HERE, "mistral"), 5, 2006),
    ("mistral_swa", os.path.join(HERE, "mistral_swa"), 9, 2007),
    ("stories260K", STORIES_DIR, 4, 2008),
    # the other families lomo trains: qk-norm, Gemma's scaled / soft-capped / local attention
    # (windows 4 and 3), Phi-3's window of 5 on every layer, partial rotary, longrope
    # (original_max_position_embeddings 8: generate switches to the long factors mid-way)
    ("qwen3_tied", os.path.join(HERE, "qwen3_tied"), 5, 2009),
    ("qwen3_bias", os.path.join(HERE, "qwen3_bias"), 4, 2010),
    ("gemma2", os.path.join(HERE, "gemma2"), 6, 2011),
    ("gemma3", os.path.join(HERE, "gemma3"), 5, 2012),
    ("phi3", os.path.join(HERE, "phi3"), 7, 2013),
    ("phi3_partial", os.path.join(HERE, "phi3_partial"), 4, 2014),
    ("phi3_longrope", os.path.join(HERE, "phi3_longrope"), 5, 2015),
]


def make_mistral_swa():
    out = os.path.join(HERE, "mistral_swa")
    torch.manual_seed(1010)
    gen = torch.Generator().manual_seed(1010)
    cfg = MistralConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                        vocab_size=53, sliding_window=6, tie_word_embeddings=False,
                        rope_theta=10000.0, rms_norm_eps=1e-5,
                        max_position_embeddings=128, attention_dropout=0.0)
    model = MistralForCausalLM._from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(out, safe_serialization=True)
    p = os.path.join(out, "generation_config.json")
    if os.path.exists(p):
        os.remove(p)


def make_case(name, model_dir, plen, seed):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    V = model.config.vocab_size
    g = torch.Generator().manual_seed(seed)
    if name == "stories260K":
        prompt = torch.cat([torch.tensor([1]), torch.randint(3, V, (plen - 1,), generator=g)])
    else:
        prompt = torch.randint(0, V, (plen,), generator=g)
    prompt = prompt.unsqueeze(0)
    gc = transformers.GenerationConfig(max_new_tokens=N_NEW, do_sample=False, eos_token_id=None,
                                       pad_token_id=0, use_cache=True)
    with torch.no_grad():
        out = model.generate(prompt, generation_config=gc, return_dict_in_generate=True,
                             output_logits=True, attention_mask=torch.ones_like(prompt))
    seq = out.sequences[0]
    gen_ids = seq[plen:]
    assert gen_ids.numel() == N_NEW, gen_ids.numel()
    logits = torch.stack([l[0] for l in out.logits]).float()
    # self-check: one full forward without a cache gives the same logits. Longrope past
    # its original length: generate's steps within it use the short factors (checked
    # against a forward of that length), the later ones the long factors on every
    # position (Phi3ForCausalLM drops the cache when the sequence first passes it), so
    # they equal the full forward
    rp = getattr(model.config, "rope_parameters", None) or getattr(model.config, "rope_scaling", None) or {}
    omax = rp.get("original_max_position_embeddings") if isinstance(rp, dict) else None
    mixed = isinstance(rp, dict) and rp.get("rope_type", rp.get("type")) == "longrope" and omax and seq.numel() - 1 > omax
    with torch.no_grad():
        full = model(seq.unsqueeze(0), use_cache=False).logits[0, plen - 1:-1]
        if mixed:
            k = omax - plen + 1
            late = (full[k:] - logits[k:]).abs().max().item()
            assert late < 1e-4, (name, "past the original length", late)
            full = model(seq[:omax].unsqueeze(0), use_cache=False).logits[0, plen - 1:]
            assert full.shape[0] == k
    err = (full - logits[:full.shape[0]]).abs().max().item()
    assert err < 1e-4, (name, err)
    assert torch.equal(logits.argmax(-1), gen_ids), name
    win = getattr(model.config, "sliding_window", None)
    if win and win < seq.numel() and model.config.model_type == "mistral":
        # the window must matter: without it the logits differ clearly
        model.config.sliding_window = None
        with torch.no_grad():
            nowin = model(seq.unsqueeze(0), use_cache=False).logits[0, plen - 1:-1]
        d = (nowin - logits).abs().max().item()
        assert d > 1e-2, (name, d)
        print(f"{name}: without the sliding window the logits move by {d:.2f}")
    top2 = logits.topk(2, dim=-1).values
    margin = (top2[:, 0] - top2[:, 1]).min().item()
    os.makedirs(OUT, exist_ok=True)
    save_file({"prompt": prompt[0].to(torch.int32).contiguous(),
               "gen": gen_ids.to(torch.int32).contiguous(),
               "logits": logits.contiguous(),
               "margin": torch.tensor([margin], dtype=torch.float32)},
              os.path.join(OUT, name + ".safetensors"),
              metadata={"generator": f"tests/ref/make_gen_fixtures.py case={name} "
                                     f"torch={torch.__version__} transformers={transformers.__version__}"})
    print(f"{name:14s} prompt {plen} new {N_NEW} vocab {V} window "
          f"{win} min top-2 margin {margin:.2e} "
          f"cache-vs-full {err:.1e} first ids {gen_ids[:10].tolist()}")


CLI_CASES = [("llama_gqa", 3001), ("mistral_swa", 3002), ("llama_tied", 3003), ("llama_tied_eos", 3004)]


def make_tied_eos():
    """llama_tied with a generation_config.json whose eos_token_id is a list
    (it overrides config.json's 2), ids the model emits often."""
    import shutil
    d = os.path.join(HERE, "llama_tied_eos")
    os.makedirs(d, exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(HERE, "llama_tied", f), os.path.join(d, f))
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": [49, 39], "pad_token_id": 0}, f, indent=2)
        f.write("\n")
CLI_NEW = 40


def make_cli(name, seed):
    """The llama_ft --prompt-ids contract: prompts (one JSON array per line)
    and what generate() returns with the model's own generation config (EOS
    from config.json), greedy, max_new_tokens=CLI_NEW, without the prompt."""
    d = os.path.join(HERE, name)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    V = model.config.vocab_size
    eos = model.generation_config.eos_token_id   # generation_config.json's, else config.json's
    eos_set = set(eos) if isinstance(eos, list) else {eos}
    g = torch.Generator().manual_seed(seed)
    prompts, outs, early = [], [], 0
    for i in range(8):
        plen = int(torch.randint(1, 12, (1,), generator=g))
        prompt = torch.randint(0, V, (1, plen), generator=g)
        with torch.no_grad():
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=CLI_NEW,
                                 do_sample=False, eos_token_id=eos, pad_token_id=0)
        new = out[0, plen:].tolist()
        if len(new) < CLI_NEW:
            early += 1
            assert new[-1] in eos_set
        prompts.append(prompt[0].tolist())
        outs.append(new)
    with open(os.path.join(OUT, f"cli_{name}.prompts.jsonl"), "w") as f:
        for p in prompts:
            f.write(json.dumps(p) + "\n")
    with open(os.path.join(OUT, f"cli_{name}.expected.jsonl"), "w") as f:
        for o in outs:
            f.write(json.dumps(o) + "\n")
    print(f"cli {name}: eos {eos}, {len(prompts)} prompts, {early} stopped at EOS before {CLI_NEW} tokens")


TEXT_PROMPTS = ["Hello world", "Once upon a time, in a café near the sea,", "def f(x):\n\treturn x", "数字 1234 and ünïcödé"]


def make_text_case():
    """llama_ft --generate TEXT: a tiny random Llama over the llama3 test
    tokenizer (tests/ref/tok/llama3.json, 2358 ids, byte-level BPE), so the
    streamed text passes partial UTF-8 tokens. The expected output is
    tokenizers' decode(generated ids, skip_special_tokens=True) + newline,
    prompt ids = encode(text) with the post-processor's <|begin_of_text|>."""
    import shutil
    from tokenizers import Tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM
    d = os.path.join(HERE, "gen_text")
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(HERE, "tok", "llama3.json"), os.path.join(d, "tokenizer.json"))
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    V = tok.get_vocab_size(with_added_tokens=True)
    torch.manual_seed(1011)
    gen = torch.Generator().manual_seed(1011)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=V, tie_word_embeddings=True, rope_theta=10000.0,
                      rms_norm_eps=1e-5, max_position_embeddings=128, bos_token_id=2354, eos_token_id=2357)
    model = LlamaForCausalLM._from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen) if name.endswith("norm.weight")
                    else 0.3 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(d, safe_serialization=True)
    gcp = os.path.join(d, "generation_config.json")
    if os.path.exists(gcp):
        os.remove(gcp)
    rows = []
    for text in TEXT_PROMPTS:
        ids = tok.encode(text).ids
        prompt = torch.tensor([ids])
        with torch.no_grad():
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=CLI_NEW,
                                 do_sample=False, eos_token_id=2357, pad_token_id=0)
        new = out[0, len(ids):].tolist()
        rows.append({"text": text, "prompt_ids": ids, "gen_ids": new,
                     "output": tok.decode(new, skip_special_tokens=True) + "\n"})
    # --chat-template llama3: the official template (from make_chat_fixtures.py), add_generation_prompt=True
    import sys
    sys.path.insert(0, HERE)
    from make_chat_fixtures import LLAMA3
    from transformers.utils.chat_template_utils import render_jinja_template
    for text in TEXT_PROMPTS[:2]:
        rendered, _ = render_jinja_template([[{"role": "user", "content": text}]], chat_template=LLAMA3,
                                            add_generation_prompt=True, bos_token="<|begin_of_text|>", eos_token="")
        ids = tok.encode(rendered[0], add_special_tokens=False).ids
        prompt = torch.tensor([ids])
        with torch.no_grad():
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=CLI_NEW,
                                 do_sample=False, eos_token_id=2357, pad_token_id=0)
        new = out[0, len(ids):].tolist()
        rows.append({"text": text, "chat_template": "llama3", "prompt_ids": ids, "gen_ids": new,
                     "output": tok.decode(new, skip_special_tokens=True) + "\n"})
    with open(os.path.join(OUT, "cli_gen_text.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    bad = sum("\ufffd" in r["output"] for r in rows)
    print(f"gen_text: vocab {V}, {len(rows)} prompts, {bad} outputs hold U+FFFD (partial byte tokens)")


def main():
    import sys
    torch.set_num_threads(1)
    only = sys.argv[1:]   # case names: only those (the model directories are not remade then)
    if only:
        for c in CASES:
            if c[0] in only:
                make_case(*c)
        return
    make_mistral_swa()
    for c in CASES:
        if c[0] == "stories260K" and not os.path.isdir(c[1]):
            print("stories260K not found: skipped")
            continue
        make_case(*c)
    make_tied_eos()
    for c in CLI_CASES:
        make_cli(*c)
    make_text_case()


if __name__ == "__main__":
    main()
