"""Golden gradients for evotune's backward pass (crates/evotune/src/model/backprop).

For the tiny Llama 3 (rope scaling, untied head) and Qwen3 (per-head q/k norms, tied) models of
tests/data/tiny, computes in float64 with PyTorch/transformers

    loss = Σ_p log softmax(logits[p - 1] / τ)[tokens[p]]   over the scored positions p,

and writes every parameter's ∂loss/∂θ (as float32, HF names) next to the loss, the tokens and τ.
`tests/backprop_golden.rs` compares evotune's gradient with these.

Usage: python3 scripts/grad_golden.py   (needs torch and transformers; not needed by the tests)
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), "..", "crates", "evotune", "tests", "data")
CASES = [
    # (family, tokens, first scored position, temperature)
    ("llama3", [5, 17, 3, 88, 42, 1, 9, 260, 11, 271], 4, 0.7),
    ("qwen3", [260, 11, 271, 64, 199, 32, 280, 77, 150], 2, 1.0),
]


def main():
    out_dir = os.path.join(ROOT, "grad")
    os.makedirs(out_dir, exist_ok=True)
    meta = {"torch": torch.__version__, "cases": []}
    for family, tokens, scored_from, tau in CASES:
        hf = os.path.join(ROOT, "tiny", family, "hf")
        model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32, attn_implementation="eager")
        model = model.double().eval()
        ids = torch.tensor([tokens])
        logits = model(ids).logits[0]  # (T, V)
        logp = torch.log_softmax(logits / tau, dim=-1)
        target = torch.tensor(tokens[scored_from:])
        loss = logp[scored_from - 1 : len(tokens) - 1].gather(1, target[:, None]).sum()
        loss.backward()
        grads = {}
        for name, p in model.named_parameters():
            grads[name] = p.grad.detach().float().contiguous()
        if model.config.tie_word_embeddings:
            grads.pop("lm_head.weight", None)
        save_file(grads, os.path.join(out_dir, f"{family}.safetensors"))
        meta["cases"].append(
            {"family": family, "tokens": tokens, "scored_from": scored_from, "temperature": tau, "loss": loss.item()}
        )
        print(family, "loss", loss.item(), "tensors", len(grads))
    with open(os.path.join(out_dir, "golden.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
