#!/usr/bin/env python3
"""The PyTorch + transformers ES loop that `evotune bench es-iteration --vs-torch` compares against.

The papers' loop on CPU, f32: for each member, add σ·ε in place (torch.randn per tensor from the
member's seed), `model.generate` the prompt batch greedily with a KV cache (left padding, up to 16
new tokens, stop at <|im_end|>), subtract σ·ε; then the update θ += α/N·Σ zₙ·εₙ (regenerating each
εₙ from its seed). The model is the same GGUF file, dequantized to f32 by transformers.

    python3 scripts/torch_es_iteration.py --model M.gguf --prompts prompts.json \
        [--population 8] [--iterations 2] [--threads 2] [--sigma 1e-3] [--alpha 5e-4]

prompts.json is a JSON list of user messages. Runs one untimed warm-up iteration, then prints
progress to stderr and, as its last stdout line, JSON with `seconds_per_iteration` and `cpu_capability`
(ATen's SIMD level; `evotune bench es-iteration --vs-torch` caps it, oneDNN's and MKL's at AVX2 through
ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA and MKL_ENABLE_INSTRUCTIONS when EVOTUNE_SIMD=avx2 caps ours).
"""
import argparse
import json
import os
import re
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def reward(text, a, b):
    nums = re.findall(r"-?\d+(?:\.\d+)?", text)
    right = bool(nums) and float(nums[-1]) == a + b
    bare = re.fullmatch(r"\s*-?\d+(?:\.\d+)?\.?\s*", text) is not None
    return (1.0 if right else 0.0) + (0.1 if bare else 0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--sigma", type=float, default=1e-3)
    ap.add_argument("--alpha", type=float, default=5e-4)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    d, f = os.path.split(os.path.abspath(args.model))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    model.eval()
    questions = json.load(open(args.prompts))
    texts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
             for q in questions]
    batch = tok(texts, return_tensors="pt", padding=True)
    operands = [tuple(int(x) for x in re.findall(r"\d+", q)[:2]) for q in questions]
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    params = [p for p in model.parameters()]

    def add_noise(seed, scale):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in params:
                p.add_(torch.randn(p.shape, generator=g), alpha=scale)

    def iteration(it):
        seeds = [1000 * it + n for n in range(args.population)]
        rewards = []
        for s in seeds:
            add_noise(s, args.sigma)
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=args.max_new_tokens, do_sample=False,
                                     eos_token_id=stop, pad_token_id=tok.pad_token_id)
            add_noise(s, -args.sigma)
            new = out[:, batch["input_ids"].shape[1]:]
            texts = tok.batch_decode(new, skip_special_tokens=True)
            rewards.append(sum(reward(t, a, b) for t, (a, b) in zip(texts, operands)) / len(texts))
        r = torch.tensor(rewards)
        z = (r - r.mean()) / (r.std() + 1e-8)
        for s, zn in zip(seeds, z.tolist()):
            add_noise(s, args.alpha / args.population * zn)
        return sum(rewards) / len(rewards)

    iteration(0)  # warm-up
    times = []
    for it in range(1, args.iterations + 1):
        t = time.time()
        mean = iteration(it)
        times.append(time.time() - t)
        print(f"torch iteration {it}: {times[-1]:.2f} s, mean reward {mean:.3f}", file=sys.stderr)
    # The SIMD level of ATen's CPU kernels (ATEN_CPU_CAPABILITY caps it), e.g. AVX512 or AVX2.
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()
    print(json.dumps({"seconds_per_iteration": sum(times) / len(times), "threads": args.threads,
                      "torch": torch.__version__, "cpu_capability": capability}))


if __name__ == "__main__":
    main()
