#!/usr/bin/env python3
"""Golden greedy completions of the default model from an independent implementation.

Loads SmolLM2-135M-Instruct from the same GGUF that evotune uses, through HF transformers
(`AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`, which dequantizes to float32), renders
chat prompts with the model's own template, decodes greedily (f32, CPU) and writes
`crates/evotune/tests/data/golden_completions.json`:

    {"model": ..., "prompts": [{"text", "input_ids", "output_ids", "margins", "stopped"}]}

`output_ids` are the new tokens without the stop token; `stopped` says whether <|im_end|> (id 2)
ended the sequence; `margins[i]` is top1 - top2 logit at step i (how close greedy was to a tie), so a
mismatch in the Rust test can be judged. Usage:

    python3 scripts/golden_completions.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

MAX_NEW = 32
STOP = 2  # <|im_end|>
PROMPTS = [
    "What is 23 + 45? Answer with only the number.",
    "What is 7+5? Answer with a number.",
    "Name the capital of France.",
    "Write a haiku about the sea.",
    "List three primary colors.",
    "Is 17 a prime number? Answer yes or no.",
]


def main():
    default = os.environ.get("EVOTUNE_MODEL", os.path.expanduser("~/.cache/evotune/SmolLM2-135M-Instruct.Q4_1.gguf"))
    path = sys.argv[1] if len(sys.argv) > 1 else default
    d, f = os.path.split(os.path.abspath(path))
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.eval()
    out = {"model": f, "max_new_tokens": MAX_NEW, "stop_token": STOP, "generator": "transformers " +
           __import__("transformers").__version__ + ", torch " + torch.__version__ + ", float32 greedy", "prompts": []}
    for text in PROMPTS:
        ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        ids = list(map(int, ids))
        new, margins, stopped = [], [], False
        with torch.no_grad():
            past = None
            inp = torch.tensor([ids])
            for _ in range(MAX_NEW):
                r = model(input_ids=inp, past_key_values=past, use_cache=True)
                past = r.past_key_values
                logits = r.logits[0, -1].float()
                top2 = torch.topk(logits, 2)
                nxt = int(torch.argmax(logits))  # first maximal index = lowest id on ties
                margins.append(float(top2.values[0] - top2.values[1]))
                if nxt == STOP:
                    stopped = True
                    break
                new.append(nxt)
                inp = torch.tensor([[nxt]])
        out["prompts"].append({"text": text, "input_ids": ids, "output_ids": new, "margins": margins,
                               "stopped": stopped, "completion": tok.decode(new)})
        print(repr(text), "->", repr(tok.decode(new)), "min margin %.3f" % min(margins), flush=True)
    here = os.path.dirname(os.path.abspath(__file__))
    dst = os.path.join(here, "..", "crates", "evotune", "tests", "data", "golden_completions.json")
    with open(dst, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    print("wrote", os.path.normpath(dst))


if __name__ == "__main__":
    main()
