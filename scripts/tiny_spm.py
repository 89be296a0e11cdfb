#!/usr/bin/env python3
"""Builds the SentencePiece tokenizer fixture of crates/evotune/tests/tokenizer_spm.rs.

Usage: python3 scripts/tiny_spm.py          (needs: sentencepiece, gguf, numpy)

Gemma, Mistral v0.1–0.3 and Llama 2 GGUFs carry a SentencePiece BPE tokenizer
(`tokenizer.ggml.model = "llama"`): pieces, their scores and types, no merge list. This script
trains a small one the way those models were trained (BPE, byte fallback, digits split, identity
normalisation, a dummy prefix, whitespace kept as it is), writes its pieces into a GGUF as
llama.cpp's converter does (tokens, scores, token types 1 normal / 2 unknown / 3 control /
6 byte, BOS/EOS/UNK ids, add_bos_token, add_space_prefix), and records what the sentencepiece
library itself encodes for a set of texts, the ground truth llama.cpp's tokenizer follows.

Output, under crates/evotune/tests/data/tiny/spm/:
  tokenizer.gguf    metadata only (no tensors)
  encodings.json    [{"text", "ids"}]: sentencepiece's ids (no BOS) for each text
"""

import io
import json
import os
from pathlib import Path

import gguf
import sentencepiece as spm

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/evotune/tests/data/tiny/spm"

CORPUS = """\
The quick brown fox jumps over the lazy dog. A small model learns the shape of its words.
Evolution strategies perturb the weights and keep what the reward prefers.
What is 23 + 45? Answer with only the number. The answer is 68.
Paris is the capital of France; Berlin is the capital of Germany.
She sells sea shells by the sea shore, and the shells she sells are sea shells.
Numbers like 1024, 2048 and 4096 appear in tables; so do 3.14 and 2.718.
Anchored weight decay pulls the parameters back toward the starting model.
The drift of a random walk grows with the square root of the number of steps.
"""

TEXTS = [
    "Hello world",
    "The quick brown fox",
    " leading space",
    "two  spaces and   three",
    "trailing space ",
    "a line\nand another\n\nafter a blank",
    "tab\tseparated",
    "digits 12345 and 3.14",
    "What is 23 + 45? Answer with only the number.",
    "café naïve façade",
    "emoji 🙂 here",
    "漢字とかな",
    "Zebra xylophone quizzical",
    "",
    " ",
    "shells",
]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS.splitlines()),
        model_writer=model,
        model_type="bpe",
        vocab_size=560,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    n = sp.get_piece_size()

    def token_type(i):
        if sp.is_unknown(i):
            return 2
        if sp.is_control(i):
            return 3
        if sp.is_unused(i):
            return 5
        if sp.is_byte(i):
            return 6
        return 1

    path = OUT / "tokenizer.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list([sp.id_to_piece(i) for i in range(n)])
    w.add_token_scores([sp.get_score(i) for i in range(n)])
    w.add_token_types([token_type(i) for i in range(n)])
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    cases = []
    for text in TEXTS:
        ids = sp.encode(text)
        assert sp.decode(ids) == text or text.strip() != text, (text, sp.decode(ids))
        cases.append({"text": text, "ids": ids})
    byte_pieces = sum(token_type(i) == 6 for i in range(n))
    used_bytes = sorted({i for c in cases for i in c["ids"] if token_type(i) == 6})
    assert used_bytes, "no text falls back to bytes"
    lines = ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases)
    (OUT / "encodings.json").write_text("[\n" + lines + "\n]\n")
    print(f"{n} pieces ({byte_pieces} byte pieces), {len(cases)} texts, byte fallback used by ids {used_bytes[:6]}…")
    print(f"wrote {path.relative_to(ROOT)} ({os.path.getsize(path)} bytes) and encodings.json")


if __name__ == "__main__":
    main()
