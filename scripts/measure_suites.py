#!/usr/bin/env python3
"""Base-model scores of evotune's built-in suites with PyTorch + transformers (an independent check of
the Rust scorer, and the figures in data/PROVENANCE.md).

Mirrors crates/evotune/src/tasks exactly:
- multiple choice by log-likelihood: the question is the user turn of the model's chat template
  (no system message: the template's default applies), generation prompt appended; each choice is
  scored as the reply, l_j = sum of log p(choice tokens); correct when argmax_j l_j is the answer
  (ties -> lower index); margin = l_answer - max_{j != answer} l_j.
- arith (generation): greedy, up to 24 new tokens, reward = 0.1*[bare number] + [last number right].

Usage: python3 scripts/measure_suites.py [MODEL.gguf] [--arith N] [--gen N]
"""

import json
import math
import re
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = Path.home() / ".cache/evotune/SmolLM2-135M-Instruct.Q4_1.gguf"


def load(path):
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, torch_dtype=torch.float32)
    model.eval()
    return tok, model


def render(tok, user):
    return tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)


@torch.inference_mode()
def score_pairs(model, pairs, batch=32):
    """Sum of log-probs of each continuation after its prompt (right-padded batches)."""
    out = []
    for s in range(0, len(pairs), batch):
        chunk = pairs[s : s + batch]
        seqs = [p + c for p, c in chunk]
        T = max(len(x) for x in seqs)
        ids = torch.zeros((len(seqs), T), dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for i, x in enumerate(seqs):
            ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.double(), dim=-1)
        for i, (p, c) in enumerate(chunk):
            total = 0.0
            for k, t in enumerate(c):
                total += logp[i, len(p) + k - 1, t].item()
            out.append(total)
    return out


def mc_suite(tok, model, name):
    items = [json.loads(l) for l in (ROOT / "data" / f"{name}.jsonl").read_text().splitlines() if l.strip()]
    pairs, owners = [], []
    for i, it in enumerate(items):
        p = tok(render(tok, it["question"]), add_special_tokens=False).input_ids
        for c in it["choices"]:
            pairs.append((p, tok(c, add_special_tokens=False).input_ids))
            owners.append(i)
    lls = score_pairs(model, pairs)
    per = [[] for _ in items]
    for o, v in zip(owners, lls):
        per[o].append(v)
    correct, margin = 0, 0.0
    margins = []
    for it, ll in zip(items, per):
        a = it["answer"]
        best = max(range(len(ll)), key=lambda j: (ll[j], -j))
        correct += best == a
        m = ll[a] - max(v for j, v in enumerate(ll) if j != a)
        margin += m
        margins.append(m)
    n = len(items)
    small = sum(1 for m in margins if 0 < m < 1.0)
    return {"suite": name, "items": n, "accuracy": correct / n, "chance": sum(1 / len(it["choices"]) for it in items) / n,
            "logprob_margin": margin / n, "right_with_margin_below_1nat": small}


def numbers(text):
    return [float(m.replace(",", "")) for m in re.findall(r"(?<![A-Za-z0-9])-?\d+(?:,\d{3})*(?:\.\d+)?|\d+(?:,\d{3})*(?:\.\d+)?", text)]


@torch.inference_mode()
def greedy(tok, model, prompts, max_new):
    outs = []
    for p in prompts:
        ids = tok(p, add_special_tokens=False, return_tensors="pt").input_ids
        g = model.generate(ids, max_new_tokens=max_new, do_sample=False, eos_token_id=[tok.eos_token_id])
        outs.append(tok.decode(g[0, ids.shape[1] :], skip_special_tokens=True))
    return outs


def arith(tok, model, n):
    import random
    rng = random.Random(1)
    qs = [(rng.randint(10, 99), rng.randint(10, 99)) for _ in range(n)]
    replies = greedy(tok, model, [render(tok, f"What is {a} + {b}? Answer with only the number.") for a, b in qs], 24)
    right = fmt = 0
    for (a, b), r in zip(qs, replies):
        nums = numbers(r)
        right += bool(nums) and nums[-1] == a + b
        t = r.strip().rstrip(".")
        fmt += bool(re.fullmatch(r"-?\d+(?:,\d{3})*(?:\.\d+)?", t))
    return {"task": "arith", "items": n, "accuracy": right / n, "bare_number_rate": fmt / n,
            "mean_reward": (right + 0.1 * fmt) / n, "examples": replies[:5]}


def main():
    args = sys.argv[1:]
    model_path = Path(args[0]) if args and not args[0].startswith("--") else DEFAULT_MODEL
    n_arith = int(args[args.index("--arith") + 1]) if "--arith" in args else 0
    t0 = time.time()
    tok, model = load(model_path)
    print(f"loaded {model_path} in {time.time() - t0:.1f}s", flush=True)
    for name in ["capitals", "opposites", "plurals", "compare", "science"]:
        t0 = time.time()
        r = mc_suite(tok, model, name)
        r["seconds"] = round(time.time() - t0, 1)
        print(json.dumps(r), flush=True)
    if n_arith:
        print(json.dumps(arith(tok, model, n_arith)), flush=True)


if __name__ == "__main__":
    main()
