#!/usr/bin/env python3
"""Checks that an HF directory written by evotune (`write_hf_dir`) loads in `transformers` and is
the same model as the GGUF it came from, as transformers itself reads that GGUF.

Usage: python3 scripts/check_hf_export.py SOURCE.gguf EXPORTED_HF_DIR

- weights: every tensor of the exported directory equals transformers' own dequantization of the
  GGUF (max |diff| printed per tensor kind; both come from the same dequantized values, so 0);
- tokenizer: ids of a few texts and the rendered chat prompt agree;
- forward: logits of one prompt agree (max |diff| printed).

Produce the directory with:  EVOTUNE_EXPORT_DIR=/tmp/evx cargo test --release -p evotune --test export_gguf
"""
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

TEXTS = ["Hello world! 123", "def f(x):\n    return x ** 2\n", "Café 😀 <|im_start|>user\nhi<|im_end|>"]


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    gguf = Path(sys.argv[1]).resolve()
    hf_dir = sys.argv[2]
    failures = []

    ref = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, torch_dtype=torch.float32).eval()
    ours = AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32).eval()
    sr, so = ref.state_dict(), ours.state_dict()
    if set(sr) != set(so):
        failures.append(f"state dict keys differ: {sorted(set(sr) ^ set(so))[:6]}")
    worst = {}
    for k in sorted(set(sr) & set(so)):
        d = (sr[k] - so[k]).abs().max().item() if sr[k].shape == so[k].shape else float("inf")
        kind = k.split(".")[-2] if k.count(".") > 1 else k
        worst[kind] = max(worst.get(kind, 0.0), d)
    for kind, d in sorted(worst.items()):
        print(f"{'OK    ' if d == 0 else 'NOT OK'} weights {kind:26s} max diff {d:.3e}")
        if d != 0:
            failures.append(f"weights {kind}: max diff {d:.3e}")

    tr = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    to = AutoTokenizer.from_pretrained(hf_dir)
    for t in TEXTS:
        a, b = tr.encode(t, add_special_tokens=True), to.encode(t, add_special_tokens=True)
        print(f"{'OK    ' if a == b else 'NOT OK'} tokens {t!r}: {len(a)} ids")
        if a != b:
            failures.append(f"tokens of {t!r}: {a} vs {b}")
    msgs = [{"role": "user", "content": "What is 2 + 3?"}]
    ca = tr.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    cb = to.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    print(f"{'OK    ' if ca == cb else 'NOT OK'} chat template rendering")
    if ca != cb:
        failures.append(f"chat rendering: {ca!r} vs {cb!r}")

    ids = torch.tensor([tr.encode(ca, add_special_tokens=False)])
    with torch.no_grad():
        la, lb = ref(ids).logits, ours(ids).logits
    d = (la - lb).abs().max().item()
    print(f"{'OK    ' if d < 1e-4 else 'NOT OK'} logits of the chat prompt ({ids.shape[1]} tokens): max diff {d:.3e}; "
          f"argmax next token {la[0, -1].argmax().item()} vs {lb[0, -1].argmax().item()}")
    if d >= 1e-4:
        failures.append(f"logits max diff {d:.3e}")

    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
