"""Fixtures for tests/test_chat.c: chat templates rendered by transformers.

    /root/lomo-venv/bin/python tests/ref/make_chat_fixtures.py   (from the repository root)

Writes tests/ref/chat/:
  conversations.jsonl      one {"messages": [...]} per line (the hard cases below)
  render_NAME.jsonl        per conversation: {"text": apply_chat_template(tokenize=False),
                           "spans": [[start, end], ...]} (byte offsets of each {% generation %}
                           block: assistant content + end-of-turn token) or {"error": "..."}
                           when the official template raises
  tok_NAME.json            a small byte-level BPE tokenizer.json trained here on the texts, with
                           the family's special tokens (so CI needs no download)
  encode_NAME.jsonl        per conversation: {"input_ids": [...], "labels": [...]} from
                           apply_chat_template(tokenize=True, return_dict=True,
                           return_assistant_tokens_mask=True) with that tokenizer; labels = id where
                           the mask is 1, else -100
  encode_*_tok*.jsonl      the same with the tokenizers of tests/ref/tok/ (Qwen2's and Mistral v1's real
                           vocabularies, reduced; and Mistral v1's full one when tests/ref/tok/full/ has it)
  tokenizer_config_*.json  the official templates, for lomo_chat_template_detect
  data_FORMAT.jsonl        {"text"}, {"prompt", "completion"} and alpaca lines, and
  expect_FORMAT.jsonl      their {"input_ids", "labels"} with tok_llama3.json (which has Llama 3's
                           BOS post-processor): text = encode(text, add_special_tokens=True), every
                           token counts; prompt + completion (alpaca: the Stanford prompt) = encode of
                           the concatenation, a token counts when one of its characters is in the
                           completion (a trailing special token of the post-processor too)

The official Jinja strings (Llama-3-Instruct, Qwen2.5-Instruct, Qwen2-Instruct,
Mistral-7B-Instruct v0.2) are below, each also with {% generation %} tags around
assistant content + end-of-turn token; the script checks that the tags change
neither the text nor the ids.
"""
import json, os, sys
from transformers import PreTrainedTokenizerFast
from transformers.utils.chat_template_utils import render_jinja_template
from tokenizers import Tokenizer, models, trainers, pre_tokenizers, decoders, normalizers, Regex

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chat")

LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
          "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
          "{{ content }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
LLAMA3_GEN = ("{% for message in messages %}{% if loop.index0 == 0 %}{{ bos_token }}{% endif %}"
              "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
              "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}"
              "{% endgeneration %}{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}{% endfor %}")


def qwen25(default, gen):
    return (
        "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
        "        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- '" + default + "' }}\n    {%- endif %}\n"
        "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are "
        "provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
        "    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n"
        "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
        "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
        "<args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n"
        "    {%- if messages[0]['role'] == 'system' %}\n"
        "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
        "        {{- '<|im_start|>system\\n" + default + "<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n"
        "{%- for message in messages %}\n"
        "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first)" +
        ("" if gen else " or (message.role == \"assistant\" and not message.tool_calls)") + " %}\n"
        "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n" +
        ("    {%- elif message.role == \"assistant\" and not message.tool_calls %}\n"
         "        {{- '<|im_start|>' + message.role + '\\n' }}{% generation %}{{- message.content + '<|im_end|>' }}"
         "{% endgeneration %}{{- '\\n' }}\n" if gen else "") +
        "    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n"
        "        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n"
        "        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n"
        "                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n"
        "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n"
        "            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n"
        "            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n"
        "    {%- elif message.role == \"tool\" %}\n"
        "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
        "            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n"
        "        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n"
        "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
        "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
        "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n")


QWEN25 = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
QWEN2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
         "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
         "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
QWEN2_GEN = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
             "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
             "{{'<|im_start|>' + message['role'] + '\n'}}{% if message['role'] == 'assistant' %}{% generation %}"
             "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{% else %}"
             "{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}{% endfor %}")


def mistral(gen):
    a = "{% generation %}" if gen else ""
    b = "{% endgeneration %}" if gen else ""
    return (
        "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n"
        "    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n"
        "{%- endif %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n"
        "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
        "        {{- raise_exception('After the optional system message, conversation roles must alternate "
        "user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if message['role'] == 'user' %}\n"
        "        {%- if loop.first and system_message is defined %}\n"
        "            {{- '[INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
        "        {%- else %}\n            {{- '[INST] ' + message['content'] + ' [/INST]' }}\n        {%- endif %}\n"
        "    {%- elif message['role'] == 'assistant' %}\n        " + a + "{{- message['content'] + eos_token}}" + b +
        "\n    {%- else %}\n        {{- raise_exception('Only user and assistant roles are supported, with the "
        "exception of an initial optional system message!') }}\n    {%- endif %}\n{%- endfor %}\n")


TEMPLATES = {  # name: (official, with generation tags, bos, eos, special tokens)
    "llama3": (LLAMA3, LLAMA3_GEN, "<|begin_of_text|>", "<|eot_id|>",
               ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]),
    "chatml": (qwen25(QWEN25, False), qwen25(QWEN25, True), None, "<|im_end|>",
               ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
    "qwen2": (QWEN2, QWEN2_GEN, None, "<|im_end|>", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
    "mistral": (mistral(False), mistral(True), "<s>", "</s>", ["<unk>", "<s>", "</s>"]),
}


CROSS = [("chatml", "qwen2.json", "encode_chatml_tokqwen2.jsonl"),
         ("mistral", "spm_legacy.json", "encode_mistral_tokspm.jsonl"),
         ("mistral", "full/spm_legacy.json", "encode_mistral_tokspm_full.jsonl")]


def m(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


CONVS = [
    m(("user", "Hello!"), ("assistant", "Hi there. How can I help?")),
    m(("system", "You are terse."), ("user", "2+2?"), ("assistant", "4")),
    m(("user", "  padded question \n"), ("assistant", "\t\n  padded answer  \r\n"), ("user", "again"),
      ("assistant", " second answer ")),
    m(("user", "\u3000ideographic space\u00a0"), ("assistant", "\u2003em space\u0085 and NEL\u2028")),
    m(("user", "zero width \u200b stays"), ("assistant", "\u200bzwsp is not white space\u200b")),
    m(("user", "empty reply next"), ("assistant", "")),
    m(("user", "only white space reply"), ("assistant", " \t\n ")),
    m(("system", "Système: réponds en français."), ("user", "Ça va ? 你好，世界。"),
      ("assistant", "Très bien ! 🙂👩‍👩‍👧 مرحبا नमस्ते")),
    m(("user", "code:\n\tdef f(x):\n\t    return x  # 12345678901234"),
      ("assistant", "```python\ndef f(x):\n    return x * 2\n```\n")),
    m(("user", "special strings <|eot_id|> <|im_end|> </s> [INST] inside"),
      ("assistant", "They are <s> just text </s> here <|im_start|>")),
    m(("user", "ends with a user turn"), ("assistant", "ok"), ("user", "and now?")),
    m(("system", "sys only")),
    m(("user", "u1"), ("assistant", "a1"), ("user", "u2"), ("assistant", "a2"), ("user", "u3"), ("assistant", "a3")),
    m(("user", "line\r\nbreaks\r\n"), ("assistant", "CRLF\r\nreply\r\n")),
    m(("system", "first"), ("user", "q"), ("system", "second system"), ("assistant", "a")),  # mistral refuses
    m(("assistant", "starts with the assistant"), ("user", "then user")),                  # mistral refuses
    m(("user", "two users"), ("user", "in a row"), ("assistant", "fine?")),                  # mistral refuses
    m(("user", "décomposé: e\u0301 a\u0300"), ("assistant", "ÅNGSTRÖM e\u0301")),
]


def train_tokenizer(specials, pattern, texts, nfc):
    tk = Tokenizer(models.BPE())
    if nfc:
        tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    if "<|begin_of_text|>" in specials:  # Llama 3's post-processor: BOS first
        from tokenizers import processors
        bos = specials.index("<|begin_of_text|>")
        tk.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                          special_tokens=[("<|begin_of_text|>", bos)])
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(texts, trainer)
    return tk


LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
              r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")


ALPACA = ("Below is an instruction that describes a task, paired with an input that provides further context. "
          "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n"
          "### Input:\n{input}\n\n### Response:\n")
ALPACA_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                   "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
TEXTS = ["Hello world!", "", "  leading and trailing  ", "CJK 你好世界, emoji 👩‍👩‍👧, Arabic مرحبا, Devanagari नमस्ते",
         "code:\n\tif (x) {\r\n\t\treturn 1234567;\r\n\t}", "special <|eot_id|> inside <|begin_of_text|> text",
         "e\u0301 decomposed, ÅNGSTRÖM DON'T WE'LL"]
PCS = [("Q: 2+2?\nA:", " 4"), ("Translate: chat ->", " cat<|eot_id|>"), ("", "all completion"),
       ("prompt only", ""), ("split insi", "de a word"), ("数字", "１２３ 123456")]
ALPACAS = [{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
           {"instruction": "Say hi.", "input": "", "output": "Hi!"},
           {"instruction": "No input key.", "output": "Fine."}]


def span_labels(enc, a, b):
    """the id where the token has a character in [a, b); an empty-range token counts strictly inside
    [a, b), or after the last token with text when that one counts (the post-processor's EOS)"""
    last = max([i for i, (s, e) in enumerate(enc.offsets) if e > s], default=-1)
    out = []
    for i, (t, (s, e)) in enumerate(zip(enc.ids, enc.offsets)):
        c = (s < b and e > a) if e > s else (a < s < b)
        if not c and e == s and last >= 0 and i > last:
            c = out[last] != -100
        out.append(t if c else -100)
    return out


def write_data(tk):
    def dump(name, lines, expect):
        with open(os.path.join(OUT, "data_%s.jsonl" % name), "w") as f:
            for x in lines:
                f.write(json.dumps(x, ensure_ascii=False) + "\n")
        with open(os.path.join(OUT, "expect_%s.jsonl" % name), "w") as f:
            for x in expect:
                f.write(json.dumps(x) + "\n")
    ex = []
    for t in TEXTS:
        e = tk.encode(t, add_special_tokens=True)
        ex.append({"input_ids": e.ids, "labels": e.ids})
    dump("text", [{"text": t} for t in TEXTS], ex)
    ex = []
    for p, c in PCS:
        e = tk.encode(p + c, add_special_tokens=True)
        ex.append({"input_ids": e.ids, "labels": span_labels(e, len(p), len(p + c))})
    dump("pc", [{"prompt": p, "completion": c} for p, c in PCS], ex)
    ex = []
    for a in ALPACAS:
        p = (ALPACA if a.get("input") else ALPACA_NO_INPUT).format(**{"input": "", **a})
        e = tk.encode(p + a["output"], add_special_tokens=True)
        ex.append({"input_ids": e.ids, "labels": span_labels(e, len(p), len(p + a["output"]))})
    dump("alpaca", ALPACAS, ex)


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "conversations.jsonl"), "w") as f:
        for c in CONVS:
            f.write(json.dumps({"messages": c}, ensure_ascii=False) + "\n")
    texts = ([x["content"] for c in CONVS for x in c] + TEXTS + [p + c for p, c in PCS] +
             [ALPACA + a["instruction"] + a["output"] for a in ALPACAS]) * 3
    for name, (tpl, gen, bos, eos, specials) in TEMPLATES.items():
        tk = train_tokenizer(specials, QWEN2_PAT if name in ("chatml", "qwen2") else LLAMA3_PAT, texts,
                             name in ("chatml", "qwen2"))
        path = os.path.join(OUT, "tok_%s.json" % name)
        tk.save(path)
        hf = PreTrainedTokenizerFast(tokenizer_file=path, bos_token=bos, eos_token=eos)
        with open(os.path.join(OUT, "tokenizer_config_%s.json" % name), "w") as f:
            json.dump({"bos_token": bos, "eos_token": eos, "chat_template": tpl}, f, indent=2)
        rend = open(os.path.join(OUT, "render_%s.jsonl" % name), "w")
        enc = open(os.path.join(OUT, "encode_%s.jsonl" % name), "w")
        for c in CONVS:
            try:
                text = hf.apply_chat_template(c, chat_template=tpl, tokenize=False)
            except Exception as e:  # jinja2 TemplateError from raise_exception
                for other in (gen,):
                    try:
                        hf.apply_chat_template(c, chat_template=other, tokenize=False)
                        sys.exit("%s: the tagged template renders what the official one refuses" % name)
                    except Exception:
                        pass
                rend.write(json.dumps({"error": str(e)}) + "\n")
                enc.write(json.dumps({"error": str(e)}) + "\n")
                continue
            rendered, gens = render_jinja_template([c], chat_template=gen, return_assistant_tokens_mask=True,
                                                   bos_token=bos or "", eos_token=eos or "")
            assert rendered[0] == text, (name, c, rendered[0], text)
            b = lambda i: len(text[:i].encode("utf-8"))
            spans = [[b(s), b(e)] for s, e in gens[0]]
            rend.write(json.dumps({"text": text, "spans": spans}, ensure_ascii=False) + "\n")
            ids = hf.apply_chat_template(c, chat_template=tpl, tokenize=True, return_dict=True)["input_ids"]
            out = hf.apply_chat_template(c, chat_template=gen, tokenize=True, return_dict=True,
                                         return_assistant_tokens_mask=True)
            assert list(out["input_ids"]) == list(ids), (name, c)
            assert list(ids) == tk.encode(text, add_special_tokens=False).ids
            labels = [t if mk else -100 for t, mk in zip(ids, out["assistant_masks"])]
            enc.write(json.dumps({"input_ids": list(ids), "labels": labels}) + "\n")
        rend.close(); enc.close()
        if name == "llama3":
            write_data(tk)
        print(name, "ok")
    # the same conversations through the tok helper's tokenizers (real vocabularies: Qwen2 reduced,
    # Mistral v1's SentencePiece reduced and full); the full one's fixture is optional in the test
    for name, tokfile, out in CROSS:
        tpl, gen, bos, eos, _ = TEMPLATES[name]
        path = os.path.join(OUT, "..", "tok", tokfile)
        if not os.path.exists(path):
            print("skip", path)
            continue
        hf = PreTrainedTokenizerFast(tokenizer_file=path, bos_token=bos, eos_token=eos)
        with open(os.path.join(OUT, out), "w") as enc:
            for c in CONVS:
                try:
                    ids = hf.apply_chat_template(c, chat_template=tpl, tokenize=True, return_dict=True)["input_ids"]
                except Exception as e:
                    enc.write(json.dumps({"error": str(e)}) + "\n")
                    continue
                o = hf.apply_chat_template(c, chat_template=gen, tokenize=True, return_dict=True,
                                           return_assistant_tokens_mask=True)
                assert list(o["input_ids"]) == list(ids), (name, tokfile, c)
                labels = [t if mk else -100 for t, mk in zip(ids, o["assistant_masks"])]
                enc.write(json.dumps({"input_ids": list(ids), "labels": labels}) + "\n")
        print(name, tokfile, "ok")


if __name__ == "__main__":
    main()
