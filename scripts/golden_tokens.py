#!/usr/bin/env python3
"""Writes crates/evotune/tests/data/golden_tokens.json: token ids and chat renderings of the default
model's tokenizer as HF `transformers` produces them, for the Rust golden test
(crates/evotune/tests/tokenizer_golden.rs), which compares them exactly and needs no Python.

Usage: python3 scripts/golden_tokens.py [MODEL.gguf] [OUT.json]
  MODEL defaults to $EVOTUNE_MODEL or ~/.cache/evotune/SmolLM2-135M-Instruct.Q4_1.gguf.
Needs: transformers, tokenizers, gguf (pip install transformers gguf).

transformers builds its tokenizer from the GGUF metadata itself (AutoTokenizer with gguf_file=),
an implementation independent of evotune's.
"""
import json
import os
import re
import sys
from pathlib import Path

from transformers import AutoTokenizer
import transformers
import tokenizers

TEXTS = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "12345 + 678",
    "What is 17 * 23? Answer: 391",
    "Mixed123numbers456and789letters 3.14159 -42 1,000,000",
    "Tabs\tand\nnewlines\r\n  indented\n\n\nblank lines\t\t",
    "   leading and trailing spaces   ",
    "Café déjà vu — naïve façade, Ünïcödé ÀÉÎÕÜ ß ẞ",
    "日本語のテキストと中文，한국어도 있습니다。",
    "Emoji: 😀👍🏽🚀 and ❤️ 👨‍👩‍👧",
    "def f(x):\n    return x ** 2  # square\n",
    'fn main() { println!("{}", 1 + 2); }',
    "x = [1, 2, 3]; y = {'a': 1.5e-3}",
    "don't won't it's I'm we'll they've she'd DON'T",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>",
    "text<|im_end|>more<|endoftext|>",
    "Countdown: using the numbers [3, 7, 25, 50], create an equation that equals 83.",
    "\u00a0non-breaking\u2003em space\u200bzero-width",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "a",
    "",
]

CHATS = [
    {"messages": [{"role": "user", "content": "What is 2 + 3?"}], "add_generation_prompt": True},
    {
        "messages": [
            {"role": "system", "content": "You are a calculator. Answer with a number."},
            {"role": "user", "content": "What is 2 + 3?"},
        ],
        "add_generation_prompt": True,
    },
    {
        "messages": [
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a joke."},
        ],
        "add_generation_prompt": False,
    },
]


def main():
    repo = Path(__file__).resolve().parent.parent
    default_model = os.environ.get("EVOTUNE_MODEL", str(Path.home() / ".cache/evotune/SmolLM2-135M-Instruct.Q4_1.gguf"))
    model = Path(sys.argv[1] if len(sys.argv) > 1 else default_model).resolve()
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else repo / "crates/evotune/tests/data/golden_tokens.json"

    tok = AutoTokenizer.from_pretrained(str(model.parent), gguf_file=model.name)
    cases = []
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=True)
        cases.append({
            "text": text,
            "ids": ids,
            "decoded": tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False),
        })
    chats = []
    for chat in CHATS:
        rendered = tok.apply_chat_template(chat["messages"], tokenize=False, add_generation_prompt=chat["add_generation_prompt"])
        chats.append({
            **chat,
            "rendered": rendered,
            "ids": tok.encode(rendered, add_special_tokens=False),
        })
    doc = {
        "model": model.name,
        "generator": f"scripts/golden_tokens.py (transformers {transformers.__version__}, tokenizers {tokenizers.__version__})",
        "vocab_size": len(tok),
        "bos_token": tok.bos_token,
        "eos_token": tok.eos_token,
        "cases": cases,
        "chats": chats,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    # One line per id list keeps the file readable and diffs small.
    text = re.sub(r"\[([\d,\s]+)\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    out.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(cases)} texts, {len(chats)} chats")


if __name__ == "__main__":
    main()
