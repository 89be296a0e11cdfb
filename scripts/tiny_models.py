#!/usr/bin/env python3
"""Builds the tiny random model fixtures of crates/evotune/tests/families.rs.

Usage: python3 scripts/tiny_models.py
Needs: torch, transformers (5.x), tokenizers, gguf, numpy (and `regex`, optional, for one check).
No network access: everything is built from scratch, deterministically (fixed seeds, one torch
thread), so a rerun with the same library versions rewrites identical files.

Output, under crates/evotune/tests/data/tiny/ (the folder is deleted and rebuilt):

  <family>/hf/config.json            as transformers' save_pretrained writes it
  <family>/hf/model.safetensors      the weights, float16
  <family>/hf/tokenizer.json         a byte-level BPE trained here (see below)
  <family>/hf/tokenizer_config.json  bos/eos names, add_bos_token, chat_template
  <family>/model.gguf                the same model in llama.cpp's layout (F16 matrices, F32 vectors)
  <family>/reference.json            token sequences, 16 greedy tokens each, shapes, versions
  <family>/logits.f32                transformers' logits at every position (little-endian f32)
  chat_templates.json                apply_chat_template renderings of each family's template

Families (hidden 64, FFN 96, 2 layers, 4 heads, 2 KV heads, 1024 positions, RMS eps 1e-5 except
gemma3's 1e-6):

  llama3   LlamaForCausalLM, head dim 16, Llama-3 RoPE scaling (factor 8, low 1, high 4,
           original context 32: small enough that the scaling changes 7 of the 8 frequencies),
           untied head; GGUF arch `llama` with Q/K rows permuted and `rope_freqs.weight`.
  mistral  MistralForCausalLM, head dim 16, sliding window 6, untied; GGUF arch `llama` with
           `llama.attention.sliding_window`.
  qwen2    Qwen2ForCausalLM (q/k/v biases), tied embeddings, no BOS; GGUF arch `qwen2`.
  qwen3    Qwen3ForCausalLM (per-head q/k RMS norms), head dim 32 (≠ hidden/heads), tied, no BOS;
           GGUF arch `qwen3`.
  gemma3   Gemma3ForCausalLM (Gemma3TextConfig, model_type `gemma3_text`): head dim 16, embeddings
           scaled by √hidden, RMS norms that multiply by (1 + w), per-head q/k norms, post-attention
           and pre/post-FFN norms, GELU (tanh) gated FFN, query_pre_attn_scalar 24 (≠ head dim, so
           the attention scale is 1/√24), layers [sliding (window 4, RoPE θ 10⁴), full (RoPE θ 10⁶,
           linear scaling factor 2)], tied, BOS. GGUF arch `gemma3` as llama.cpp's converter writes
           it (Q/K not permuted, every `*norm.weight` stored as 1 + w in F32), plus three keys
           llama.cpp hard-codes for Gemma 3 but this model changes:
           `gemma3.attention.sliding_window_pattern` = 2 (layer i global iff (i+1) % 2 == 0),
           `gemma3.rope.freq_base_swa` = 10000, `gemma3.attention.scale` = 1/√24.
           Its embedding is drawn with std 0.05 (not 0.2): scaled by √64 = 8 it would otherwise
           swamp the residual stream, and the tied head would repeat the last token at every
           greedy step; seeds are also tried until each sequence's greedy tokens vary.

Weights: every parameter is overwritten with random values — matrices (embedding too)
N(0, 0.2²), biases N(0, 0.1²), RMS norm weights 1 + N(0, 0.1²) (gemma3: N(0, 0.1²), as its norms
add the 1) — and rounded to float16, so the
float32 model, the float16 safetensors and the F16 GGUF hold the same numbers. Seeds (a family's
base + 0, 1, 2, …) are tried in turn until every greedy step's top-1 − top-2 logit margin is
≥ 1e-2, so an exact comparison of greedy tokens is robust to other summation orders.

Reference logits: `model(input_ids).logits` in float32 with eager attention (checked against
sdpa) for three fixed token sequences of lengths 1, 7 and 12 (longer than the windows). Greedy
tokens: 16 per sequence, re-running the whole sequence at each step (no KV cache).

Tokenizer (each family, same procedure): a byte-level BPE trained with `tokenizers` on the
English text in CORPUS — ByteLevel pre-tokenizer (no prefix space, GPT-2 regex split), ByteLevel
decoder, the 256 byte symbols as initial alphabet — to 300 − (number of special tokens) entries,
then the family's special tokens appended as added special tokens: 300 ids in all.

The script checks what it wrote and fails loudly: the HF directory reloads to the same logits
(eager and sdpa), every GGUF tensor (Q/K un-permuted for `llama`; gemma3's norms: float32 1 + w)
equals the HF one, the GGUF's RoPE factors reproduce transformers' Llama-3 inverse frequencies,
Mistral's and Gemma 3's sliding windows change the logits from the first position the window
excludes a key on, Gemma 3's query_pre_attn_scalar (24 vs 16) and linear RoPE factor (2 vs 1)
change the logits and its GGUF's RoPE keys reproduce transformers' inverse frequencies, and the
tokenizers' pre-tokenizer is the GPT-2 split.
"""
import copy
import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

import gguf
import tokenizers
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers, Regex
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/evotune/tests/data/tiny"
TEMPLATES = Path("scripts/chat_templates")  # relative to ROOT, as chat_templates.json names them

VOCAB = 300
MIN_MARGIN = 1e-2
GREEDY_STEPS = 16
# Fixed token ids (none special: every family's specials sit at ids ≥ 295); lengths 1, 7, 12.
SEQUENCES = [
    [123],
    [5, 17, 3, 88, 42, 1, 9],
    [260, 11, 271, 64, 199, 32, 280, 77, 150, 261, 45, 289],
]

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    rms_norm_eps=1e-5,
)

# GPT-2's split, as `tokenizers`' ByteLevel applies it with use_regex=True.
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

CORPUS = """\
The small boat left the harbour at dawn, when the water was still and grey. Nobody on the shore
watched it go. The fisherman who owned it had sailed these waters for forty years, and he knew
every rock and every current between the island and the open sea. He said that the sea was never
the same twice, and that a man who thought he understood it would not live long enough to learn
otherwise.

In the village, the morning began slowly. The baker opened his shop and the smell of fresh bread
drifted down the narrow street. Children walked to the school on the hill, talking and laughing,
and their teacher waited for them at the door. She was new to the village, and she had brought
with her a box of old books, which she read to the children in the afternoons.

There is a simple rule for counting: one, two, three, four, five, six, seven, eight, nine, ten.
If you add two and three you get five; if you multiply four by six you get twenty-four. The
numbers 12, 345 and 6789 are written with digits, and so is the year 2024. A question is asked
with a question mark? An answer is given with a full stop. Some sentences end with an exclamation!

When the evening came, the boat returned. The fisherman tied it to the post, lifted his baskets
onto the wooden pier, and walked home along the water. He had caught more fish than he could
sell, so he gave the rest to his neighbours. They thanked him, and he told them that the sea had
been kind today, and that tomorrow it might not be. Then he went inside, lit the lamp, and sat
down by the window to watch the stars rise over the dark water.

"What do you think about when you are out there?" the teacher asked him once. "The weather,"
he said, "and the wind, and whether the fish are running. And sometimes about nothing at all."
It's the kind of answer they'd expect from him; we're all a little like that, I'm sure, and
you'll find that most people don't say much about the things they've loved the longest.
"""

FAMILIES = {
    "llama3": dict(
        model_class=LlamaForCausalLM,
        config_class=LlamaConfig,
        config=dict(
            head_dim=16,
            tie_word_embeddings=False,
            attention_bias=False,
            mlp_bias=False,
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=10000.0,
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=32,
            ),
        ),
        specials=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        add_bos=True,
        template="llama3.jinja",
        gguf_arch="llama",
        salt=100,
    ),
    "mistral": dict(
        model_class=MistralForCausalLM,
        config_class=MistralConfig,
        config=dict(
            head_dim=16,
            tie_word_embeddings=False,
            sliding_window=6,
            rope_parameters=dict(rope_type="default", rope_theta=10000.0),
        ),
        specials=["<s>", "</s>", "[INST]", "[/INST]"],
        bos="<s>",
        eos="</s>",
        add_bos=True,
        template="mistral.jinja",
        gguf_arch="llama",
        salt=200,
    ),
    "qwen2": dict(
        model_class=Qwen2ForCausalLM,
        config_class=Qwen2Config,
        config=dict(
            tie_word_embeddings=True,
            use_sliding_window=False,
            rope_parameters=dict(rope_type="default", rope_theta=1000000.0),
        ),
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        bos=None,
        eos="<|im_end|>",
        add_bos=False,
        template="qwen2.5.jinja",
        gguf_arch="qwen2",
        salt=300,
    ),
    "qwen3": dict(
        model_class=Qwen3ForCausalLM,
        config_class=Qwen3Config,
        config=dict(
            head_dim=32,
            attention_bias=False,
            tie_word_embeddings=True,
            use_sliding_window=False,
            rope_parameters=dict(rope_type="default", rope_theta=1000000.0),
        ),
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"],
        bos=None,
        eos="<|im_end|>",
        add_bos=False,
        template="qwen3.jinja",
        gguf_arch="qwen3",
        salt=400,
    ),
    "gemma3": dict(
        model_class=Gemma3ForCausalLM,
        config_class=Gemma3TextConfig,
        config=dict(
            head_dim=16,
            rms_norm_eps=1e-6,
            hidden_activation="gelu_pytorch_tanh",
            tie_word_embeddings=True,
            attention_bias=False,
            final_logit_softcapping=None,
            attn_logit_softcapping=None,
            use_bidirectional_attention=False,
            query_pre_attn_scalar=24,
            sliding_window=4,
            layer_types=["sliding_attention", "full_attention"],
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000000.0},
            },
        ),
        specials=["<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"],
        bos="<bos>",
        eos="<eos>",
        add_bos=True,
        template="gemma3.jinja",
        gguf_arch="gemma3",
        norm_center=0.0,  # Gemma's RMS norm multiplies by (1 + w)
        # The embedding is scaled by √64 = 8: at 0.2 it swamps the residual stream and the tied
        # head repeats the last token; at 0.05 the greedy tokens vary.
        embed_std=0.05,
        varied_greedy=True,
        salt=500,
    ),
}

# llama.cpp's Gemma 3 layout: layer i is global iff (i + 1) % pattern == 0 (llama.cpp assumes 6).
GEMMA3_SWA_PATTERN = 2


def fail(msg):
    print(f"FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def read_template(name, wait_s=300):
    """The template's text; another job may still be writing the folder, so wait a little."""
    import time

    path = ROOT / TEMPLATES / name
    deadline = time.time() + wait_s
    while not path.exists():
        if time.time() > deadline:
            fail(f"{path} is missing")
        print(f"waiting for {path} ...")
        time.sleep(10)
    return path.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Tokenizer


def train_tokenizer(specials):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - len(specials),
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator([line for line in CORPUS.split("\n")], trainer=trainer)
    check(tok.get_vocab_size() == VOCAB - len(specials), f"BPE trained to {tok.get_vocab_size()} entries")
    tok.add_special_tokens([tokenizers.AddedToken(s, special=True, normalized=False) for s in specials])
    check(tok.get_vocab_size() == VOCAB, f"tokenizer has {tok.get_vocab_size()} ids, not {VOCAB}")
    return tok


def set_post_processor(tok, bos):
    if bos is not None:
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A:0 {bos}:1 $B:1", special_tokens=[(bos, bos_id)]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)


def check_pre_tokenizer(tok_json_path):
    """tokenizer.json's pre-tokenizer is ByteLevel with the GPT-2 regex (use_regex), and splits
    text exactly as an explicit GPT-2 regex Split followed by a regex-less ByteLevel does."""
    j = json.loads(Path(tok_json_path).read_text(encoding="utf-8"))
    pre = j["pre_tokenizer"]
    check(
        pre.get("type") == "ByteLevel" and pre.get("use_regex") is True and pre.get("add_prefix_space") is False,
        f"pre_tokenizer is {pre}",
    )
    check(j["decoder"].get("type") == "ByteLevel", f"decoder is {j['decoder']}")
    ours = Tokenizer.from_file(str(tok_json_path)).pre_tokenizer
    explicit = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GPT2_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    texts = [
        "Hello world! It's 2024, we'll see.",
        "  leading spaces\tand\ttabs\n\nnew   lines  ",
        "Café déjà vu — naïve 日本語 😀 x=[1,2,3]; y's",
        "don't WON'T they've I'm 12345 3.14159 -42",
    ]
    try:
        import regex
    except ImportError:
        regex = None
    byte_map = bytes_to_unicode()
    for t in texts:
        a = [p for p, _ in ours.pre_tokenize_str(t)]
        b = [p for p, _ in explicit.pre_tokenize_str(t)]
        check(a == b, f"pre-tokenizer split of {t!r}: {a} vs GPT-2 regex {b}")
        if regex is not None:
            c = ["".join(byte_map[x] for x in m.encode("utf-8")) for m in regex.findall(GPT2_REGEX, t)]
            check(a == c, f"pre-tokenizer split of {t!r}: {a} vs regex module {c}")
    return "ByteLevel(use_regex=true) = GPT-2 regex split" + (" (also checked with the regex module)" if regex else "")


def bytes_to_unicode():
    """GPT-2's byte → printable character map (the ByteLevel alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


# ---------------------------------------------------------------------------------------------
# Model


def head_dim(config):
    """Qwen2Config has no head_dim unless given one (real Qwen2 configs have none): hidden / heads."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def build_config(spec, tok):
    kw = dict(COMMON)
    kw.update(copy.deepcopy(spec["config"]))
    kw["bos_token_id"] = tok.token_to_id(spec["bos"]) if spec["bos"] else None
    kw["eos_token_id"] = tok.token_to_id(spec["eos"])
    kw["pad_token_id"] = None
    return spec["config_class"](**kw)


def randomize(model, seed, norm_center=1.0, embed_std=0.2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                v = norm_center + 0.1 * torch.randn(p.shape, generator=g)
            elif name.endswith(".bias"):
                v = 0.1 * torch.randn(p.shape, generator=g)
            else:
                check(p.dim() == 2, f"unexpected parameter {name} {tuple(p.shape)}")
                std = embed_std if "embed_tokens" in name else 0.2
                v = std * torch.randn(p.shape, generator=g)
            p.copy_(v.to(torch.float16).to(torch.float32))


@torch.no_grad()
def all_logits(model, seqs):
    return torch.cat([model(torch.tensor([s])).logits[0].float() for s in seqs], dim=0)


@torch.no_grad()
def greedy(model, seqs):
    out, margins = [], []
    for s in seqs:
        ids = list(s)
        gen = []
        for _ in range(GREEDY_STEPS):
            last = model(torch.tensor([ids])).logits[0, -1].float()
            top = torch.topk(last, 2)
            margins.append(float(top.values[0] - top.values[1]))
            nxt = int(top.indices[0])
            check(nxt == int(torch.argmax(last)), "topk and argmax disagree")
            gen.append(nxt)
            ids.append(nxt)
        out.append(gen)
    return out, min(margins)


def make_model(spec, config, seed):
    torch.manual_seed(0)  # construction draws its own init; randomize() overwrites all of it
    model = spec["model_class"](config).eval()
    randomize(model, seed, spec.get("norm_center", 1.0), spec.get("embed_std", 0.2))
    return model


# ---------------------------------------------------------------------------------------------
# GGUF


def permute(w, n_head):
    """llama.cpp's LlamaModel.permute: per head, rows (2, Dh/2) → (Dh/2, 2)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(rope, head_dim):
    """As llama.cpp's converter (LlamaModel.generate_extra_tensors) computes them, in float32."""
    base = rope["rope_theta"]
    factor = rope["factor"]
    low_freq_factor = rope["low_freq_factor"]
    high_freq_factor = rope["high_freq_factor"]
    old_context_len = rope["original_max_position_embeddings"]
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            factors.append(1)
        elif wavelen > low_freq_wavelen:
            factors.append(factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array([float(f) for f in factors], dtype=np.float32), freqs.numpy()


HF_TO_GGUF = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
# Gemma 3's four norms per layer (llama.cpp's converter): post_attention_layernorm is the norm
# after attention, pre_feedforward_layernorm the one before the FFN.
HF_TO_GGUF_GEMMA3 = dict(
    HF_TO_GGUF,
    post_attention_layernorm="post_attention_norm",
    pre_feedforward_layernorm="ffn_norm",
    post_feedforward_layernorm="post_ffw_norm",
)
GEMMA3_BLOCK_ORDER = [
    "attn_norm", "attn_q", "attn_k", "attn_v", "attn_q_norm", "attn_k_norm", "attn_output",
    "post_attention_norm", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm",
]


def gguf_name(hf, arch="llama"):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    check(parts[0] == "model" and parts[1] == "layers", f"unmapped tensor {hf}")
    layer, rest, kind = parts[2], ".".join(parts[3:-1]), parts[-1]
    table = HF_TO_GGUF_GEMMA3 if arch == "gemma3" else HF_TO_GGUF
    check(rest in table, f"unmapped tensor {hf}")
    return f"blk.{layer}.{table[rest]}.{kind}"


def gemma3_norm(w):
    """llama.cpp's converter stores every Gemma 3 `*norm.weight` as 1 + w (float32): exactly the
    factor transformers' Gemma3RMSNorm multiplies by, `1.0 + weight.float()`."""
    return (np.float32(1.0) + np.asarray(w, dtype=np.float32)).astype(np.float32)


def gguf_order_key(name):
    """gemma3: token_embd, then each block in GEMMA3_BLOCK_ORDER, then output_norm."""
    if name == "token_embd.weight":
        return (0, 0, 0)
    if name.startswith("blk."):
        _, layer, base, _ = name.split(".")
        return (1, int(layer), GEMMA3_BLOCK_ORDER.index(base))
    return (2, 0, 0)


def hf_state(model):
    """HF name → float32 numpy array, as save_pretrained stores them (tied head dropped)."""
    sd = {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return sd


def gguf_tensors(spec, config, sd):
    """GGUF name → (numpy array in HF (out, in) order, as it goes to the writer)."""
    arch = spec["gguf_arch"]
    llama = arch == "llama"
    out = {}
    for hf, w in sd.items():
        name = gguf_name(hf, arch)
        if llama and name.endswith("attn_q.weight"):
            w = permute(w, config.num_attention_heads)
        elif llama and name.endswith("attn_k.weight"):
            w = permute(w, config.num_key_value_heads)
        if arch == "gemma3" and name.endswith("norm.weight"):
            w = gemma3_norm(w)
        out[name] = w.astype(np.float16) if w.ndim == 2 else w.astype(np.float32)
    if arch == "gemma3":
        out = {k: out[k] for k in sorted(out, key=gguf_order_key)}
    if spec["config"].get("rope_parameters", {}).get("rope_type") == "llama3":
        factors, _ = llama3_rope_factors(config.rope_parameters, head_dim(config))
        out["rope_freqs.weight"] = factors
    return out


def write_gguf(path, family, spec, config, sd, tok, template):
    arch = spec["gguf_arch"]
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"tiny-{family}")
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_block_count(config.num_hidden_layers)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_rope_freq_base(rope_freq_base(config))
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_rope_dimension_count(head_dim(config))
    w.add_key_length(head_dim(config))
    w.add_value_length(head_dim(config))
    if arch == "llama":
        w.add_vocab_size(config.vocab_size)
    if family == "mistral":
        w.add_sliding_window(config.sliding_window)
    if arch == "gemma3":
        full = config.rope_parameters["full_attention"]
        check(full["rope_type"] == "linear", f"gemma3 full-attention RoPE {full}")
        w.add_sliding_window(config.sliding_window)
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(full["factor"]))
        # What llama.cpp hard-codes for gemma3 (pattern 6, SWA base 10000, 1/√head_dim); evotune
        # honours these keys.
        w.add_sliding_window_pattern(GEMMA3_SWA_PATTERN)  # u32
        w.add_rope_freq_base_swa(float(config.rope_parameters["sliding_attention"]["rope_theta"]))
        w.add_attention_scale(float(config.query_pre_attn_scalar) ** -0.5)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    vocab = tok.get_vocab(with_added_tokens=True)
    by_id = {i: t for t, i in vocab.items()}
    check(sorted(by_id) == list(range(VOCAB)), "token ids are not 0..V-1")
    specials = set(spec["specials"])
    tokens = [by_id[i] for i in range(VOCAB)]
    types = [gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in json.loads(tok.to_str())["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    if spec["bos"] is not None:
        w.add_bos_token_id(tok.token_to_id(spec["bos"]))
    w.add_eos_token_id(tok.token_to_id(spec["eos"]))
    w.add_add_bos_token(spec["add_bos"])
    w.add_chat_template(template)

    for name, arr in gguf_tensors(spec, config, sd).items():
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tokens, types, merges


def rope_freq_base(config):
    """The GGUF's `rope.freq_base`: gemma3's is the full-attention (global) layers' θ."""
    rp = config.rope_parameters
    return float(rp["full_attention"]["rope_theta"] if "full_attention" in rp else rp["rope_theta"])


def check_gguf(path, family, spec, config, sd, tokens, types, merges, template):
    r = gguf.GGUFReader(str(path))
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("GGUF.")}
    arch = spec["gguf_arch"]
    want = {
        "general.architecture": arch,
        f"{arch}.context_length": 1024,
        f"{arch}.embedding_length": 64,
        f"{arch}.feed_forward_length": 96,
        f"{arch}.block_count": 2,
        f"{arch}.attention.head_count": 4,
        f"{arch}.attention.head_count_kv": 2,
        f"{arch}.rope.freq_base": rope_freq_base(config),
        f"{arch}.attention.layer_norm_rms_epsilon": float(np.float32(config.rms_norm_eps)),
        f"{arch}.rope.dimension_count": head_dim(config),
        f"{arch}.attention.key_length": head_dim(config),
        f"{arch}.attention.value_length": head_dim(config),
        "general.file_type": 1,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": [int(t) for t in types],
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.eos_token_id": tokens.index(spec["eos"]),
        "tokenizer.ggml.add_bos_token": spec["add_bos"],
        "tokenizer.chat_template": template,
    }
    if spec["bos"] is not None:
        want["tokenizer.ggml.bos_token_id"] = tokens.index(spec["bos"])
    else:
        check("tokenizer.ggml.bos_token_id" not in f, f"{family}: GGUF has a BOS id")
    if family == "mistral":
        want["llama.attention.sliding_window"] = 6
        check(r.fields["llama.attention.sliding_window"].types == [gguf.GGUFValueType.UINT32], "sliding_window type")
    elif arch == "gemma3":
        typed = {
            "gemma3.attention.sliding_window": (4, gguf.GGUFValueType.UINT32),
            "gemma3.attention.sliding_window_pattern": (GEMMA3_SWA_PATTERN, gguf.GGUFValueType.UINT32),
            "gemma3.rope.freq_base_swa": (10000.0, gguf.GGUFValueType.FLOAT32),
            "gemma3.attention.scale": (float(np.float32(24**-0.5)), gguf.GGUFValueType.FLOAT32),
            "gemma3.rope.scaling.type": ("linear", gguf.GGUFValueType.STRING),
            "gemma3.rope.scaling.factor": (2.0, gguf.GGUFValueType.FLOAT32),
            "gemma3.rope.freq_base": (1000000.0, gguf.GGUFValueType.FLOAT32),
            "gemma3.attention.layer_norm_rms_epsilon": (float(np.float32(1e-6)), gguf.GGUFValueType.FLOAT32),
        }
        for k, (v, t) in typed.items():
            check(k in r.fields and r.fields[k].types == [t], f"{family}: GGUF {k} missing or not {t.name}")
            want[k] = v
        check("output.weight" not in {t.name for t in r.tensors}, f"{family}: GGUF has output.weight (tied)")
    else:
        check(not any(k.endswith("sliding_window") for k in f), f"{family}: GGUF has a sliding window")
    for k, v in want.items():
        check(k in f, f"{family}: GGUF lacks {k}")
        check(f[k] == v, f"{family}: GGUF {k} = {str(f[k])[:200]}, expected {str(v)[:200]}")

    expected = {gguf_name(k, arch): v for k, v in sd.items()}
    if arch == "gemma3":
        expected = {k: gemma3_norm(v) if k.endswith("norm.weight") else v for k, v in expected.items()}
    llama = arch == "llama"
    names = set()
    for t in r.tensors:
        names.add(t.name)
        data = np.array(t.data)
        if t.name == "rope_freqs.weight":
            check(t.tensor_type == gguf.GGMLQuantizationType.F32 and data.shape == (head_dim(config) // 2,), "rope_freqs")
            continue
        ref = expected[t.name]
        check(list(t.shape) == list(reversed(ref.shape)), f"{t.name}: ggml shape {list(t.shape)} for HF {ref.shape}")
        want_type = gguf.GGMLQuantizationType.F16 if ref.ndim == 2 else gguf.GGMLQuantizationType.F32
        check(t.tensor_type == want_type, f"{t.name}: type {t.tensor_type.name}")
        data = data.reshape(ref.shape).astype(np.float32)
        if llama and t.name.endswith("attn_q.weight"):
            data = unpermute(data, config.num_attention_heads)
        elif llama and t.name.endswith("attn_k.weight"):
            data = unpermute(data, config.num_key_value_heads)
        check(np.array_equal(data, ref), f"{t.name}: differs from the HF tensor")
    want_names = set(expected) | ({"rope_freqs.weight"} if family == "llama3" else set())
    check(names == want_names, f"{family}: GGUF tensors {sorted(names ^ want_names)} differ")
    return r


# ---------------------------------------------------------------------------------------------
# Per family


def build_family(family, spec):
    print(f"\n=== {family}")
    d = OUT / family
    hf_dir = d / "hf"
    hf_dir.mkdir(parents=True)
    template = read_template(spec["template"])

    tok = train_tokenizer(spec["specials"])
    set_post_processor(tok, spec["bos"])
    special_ids = {tok.token_to_id(s) for s in spec["specials"]}
    check(min(special_ids) == VOCAB - len(spec["specials"]), "special tokens are not the last ids")
    check(all(i < VOCAB and i not in special_ids for s in SEQUENCES for i in s), "a sequence id is special")

    config = build_config(spec, tok)
    config._attn_implementation = "eager"

    # Seeds salt + 0, 1, 2, … until the greedy margins are safe.
    for attempt in range(100):
        seed = spec["salt"] + attempt
        model = make_model(spec, config, seed)
        gen, margin = greedy(model, SEQUENCES)
        print(f"seed {seed}: min greedy margin {margin:.4g}")
        varied = all(len(set(g)) > 1 for g in gen) or not spec.get("varied_greedy", False)
        if margin >= MIN_MARGIN and varied:
            break
    else:
        fail(f"{family}: no seed gives a greedy margin ≥ {MIN_MARGIN}")
    logits = all_logits(model, SEQUENCES)
    check(torch.isfinite(logits).all(), "non-finite logits")
    specials_generated = sorted({t for g in gen for t in g} & special_ids)

    # HF directory: float16 weights, config as save_pretrained writes it.
    half = copy.deepcopy(model).to(torch.float16)
    half.save_pretrained(hf_dir)
    for p in hf_dir.iterdir():
        if p.name not in ("config.json", "model.safetensors"):
            p.unlink()
    tok.save(str(hf_dir / "tokenizer.json"), pretty=False)
    tok_cfg = {
        "add_bos_token": spec["add_bos"],
        "add_eos_token": False,
        "bos_token": spec["bos"],
        "eos_token": spec["eos"],
        "clean_up_tokenization_spaces": False,
        "model_max_length": config.max_position_embeddings,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": template,
    }
    (hf_dir / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print("pre-tokenizer:", check_pre_tokenizer(hf_dir / "tokenizer.json"))

    # GGUF.
    sd = hf_state(model)
    tokens, types, merges = write_gguf(d / "model.gguf", family, spec, config, sd, tok, template)

    # Reference.
    rows = logits.shape[0]
    check(rows == sum(len(s) for s in SEQUENCES) and logits.shape[1] == VOCAB, f"logits shape {tuple(logits.shape)}")
    logits.numpy().astype("<f4").tofile(d / "logits.f32")
    ref = {
        "sequences": SEQUENCES,
        "greedy": gen,
        "logits_rows": rows,
        "vocab": VOCAB,
        "min_greedy_margin": margin,
        "seed": seed,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    (d / "reference.json").write_text(json.dumps(ref) + "\n", encoding="utf-8")

    # ---- checks
    report = {"seed": seed, "margin": margin, "specials_generated": specials_generated}
    saved = json.loads((hf_dir / "config.json").read_text())
    report["config"] = saved
    check("rope_parameters" in saved, f"{family}: config.json has no rope_parameters")

    for impl in ("eager", "sdpa"):
        back = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation=impl).eval()
        check(type(back) is spec["model_class"], f"reloaded as {type(back).__name__}")
        again = all_logits(back, SEQUENCES)
        diff = float((again - logits).abs().max())
        report[f"reload_{impl}"] = diff
        bitwise = torch.equal(again, logits)
        print(f"reload {impl:5}: max |Δlogit| = {diff:.3g}{' (bitwise equal)' if bitwise else ''}")
        check(diff <= (1e-6 if impl == "eager" else 1e-5), f"{family}: reloaded {impl} logits differ by {diff}")
        if impl == "sdpa":
            g2, _ = greedy(back, SEQUENCES)
            check(g2 == gen, f"{family}: sdpa greedy tokens differ")
        else:
            for name, p in back.state_dict().items():
                if name == "lm_head.weight" and config.tie_word_embeddings:
                    continue
                check(np.array_equal(p.numpy(), sd[name]), f"{family}: reloaded {name} differs")

    check_gguf(d / "model.gguf", family, spec, config, sd, tokens, types, merges, template)
    print("gguf: every tensor equals the HF one (Q/K un-permuted)" if spec["gguf_arch"] == "llama" else "gguf: every tensor equals the HF one")

    # An independent reader of llama.cpp's conventions: transformers' own GGUF loader (which
    # un-permutes Q/K for `llama`) must give the same weights. It reads no `attention.key_length`
    # for qwen3 (it assumes head dim 128 and fails), so that family is left out.
    if family != "qwen3":
        g = AutoModelForCausalLM.from_pretrained(d, gguf_file="model.gguf", dtype=torch.float32)
        gs = g.state_dict()
        inexact = 0
        for name, p in model.state_dict().items():
            check(name in gs, f"{family}: transformers' GGUF loader has no {name}")
            if spec["gguf_arch"] == "gemma3" and name.endswith("norm.weight"):
                # It subtracts the 1 again: f32(1 + w) − 1 is exact, but not always w (|w| < 2⁻¹³
                # loses bits), while the factor the norm multiplies by, 1 + that, is bitwise f32(1 + w).
                check(torch.equal(1.0 + gs[name], 1.0 + p), f"{family}: transformers' GGUF loader: 1 + {name} differs")
                inexact += int((gs[name] != p).sum())
                continue
            check(torch.equal(gs[name], p), f"{family}: transformers' GGUF loader reads {name} differently")
        note = f" (norms: the same 1 + w; {inexact} stored w differ after its − 1)" if spec["gguf_arch"] == "gemma3" else ""
        print(f"gguf: transformers' GGUF loader ({type(g).__name__}) reads the same weights{note}")
        report["gguf_loader_inexact_norms"] = inexact

    if family == "gemma3":
        report.update(check_gemma3(model, config, logits, d / "model.gguf"))
    if family == "llama3":
        report["rope"] = check_llama3_rope(model, config)
    if family == "mistral":
        full_cfg = copy.deepcopy(config)
        full_cfg.sliding_window = None
        full = spec["model_class"](full_cfg).eval()
        full.load_state_dict(model.state_dict())
        fl = all_logits(full, SEQUENCES)
        diffs, per_pos = [], []
        start = 0
        for s in SEQUENCES:
            delta = (fl[start : start + len(s)] - logits[start : start + len(s)]).abs().max(dim=1).values
            per_pos.append([float(x) for x in delta])
            diffs.append(float(delta.max()))
            start += len(s)
        print(f"sliding window (6) vs full attention, max |Δlogit| per sequence: {[f'{x:.3g}' for x in diffs]}")
        for s, pp in zip(SEQUENCES, per_pos):
            print(f"  length {len(s):2}, per position: " + ", ".join(f"{x:.2g}" for x in pp))
            # Positions 0..5 see every key either way; from position 6 on the window drops keys.
            check(all(x == 0 for x in pp[:6]) and all(x > 1e-3 for x in pp[6:]), f"{family}: window at length {len(s)}")
        check(diffs[2] > 1e-2, f"{family}: the sliding window barely changes the 12-token sequence")
        report["sliding"] = diffs

    # The tokenizer as transformers loads it.
    htok = AutoTokenizer.from_pretrained(hf_dir)
    check(htok.chat_template == template, f"{family}: chat template not read back")
    check(len(htok) == VOCAB, f"{family}: transformers' tokenizer has {len(htok)} ids")
    enc = htok("Hello world")["input_ids"]
    raw = tok.encode("Hello world", add_special_tokens=False).ids
    want = ([tok.token_to_id(spec["bos"])] if spec["add_bos"] else []) + raw
    check(enc == want, f"{family}: transformers encodes 'Hello world' as {enc}, expected {want}")
    check(htok.eos_token == spec["eos"] and htok.bos_token == spec["bos"], f"{family}: bos/eos {htok.bos_token}/{htok.eos_token}")
    print(f"tokenizer: {type(htok).__name__}, 'Hello world' → {enc}")
    file_pre = json.loads((hf_dir / "tokenizer.json").read_text(encoding="utf-8"))["pre_tokenizer"]
    if json.loads(htok.backend_tokenizer.to_str())["pre_tokenizer"] != file_pre:
        # transformers 5 loads model_type qwen2 with its Qwen2Tokenizer whatever tokenizer_class
        # says, and that class installs Qwen2's own split; evotune reads tokenizer.json as written.
        print(f"  note: transformers' {type(htok).__name__} replaced tokenizer.json's pre-tokenizer with its own")
    return report, htok


def per_sequence_delta(a, b):
    """Per sequence: the per-position max |Δlogit| list."""
    out, start = [], 0
    for s in SEQUENCES:
        delta = (a[start : start + len(s)] - b[start : start + len(s)]).abs().max(dim=1).values
        out.append([float(x) for x in delta])
        start += len(s)
    return out


def variant_logits(model, config, **changes):
    cfg = copy.deepcopy(config)
    for k, v in changes.items():
        setattr(cfg, k, v)
    m = type(model)(cfg).eval()
    m.load_state_dict(model.state_dict())
    return all_logits(m, SEQUENCES), m


def check_gemma3(model, config, logits, gguf_path):
    """What only Gemma 3 has: embedding scale, attention scale, per-layer window and RoPE, the
    GGUF's extra keys and its 1 + w norms."""
    rep = {}
    emb = model.model.embed_tokens
    scale = emb.embed_scale
    half_scale = copy.deepcopy(model).to(torch.float16).model.embed_tokens.embed_scale
    persistent = any(k.endswith("embed_scale") for k in model.state_dict())
    print(
        f"embed_scale: buffer {float(scale)} dtype {scale.dtype} (after .to(float16): {half_scale.dtype}), "
        f"in state_dict: {persistent}; forward multiplies by embed_scale.to(weight.dtype)"
    )
    check(float(scale) == 8.0 and not persistent, "gemma3 embed_scale")
    ids = torch.tensor([SEQUENCES[1]])
    with torch.no_grad():
        check(torch.equal(emb(ids), emb.weight[ids] * 8.0), "gemma3 embedding ≠ weight × √hidden")
    rep["embed_scale"] = {"value": float(scale), "dtype": str(scale.dtype), "half_model_dtype": str(half_scale.dtype)}

    attn = [l.self_attn for l in model.model.layers]
    print(f"attention: scaling {[a.scaling for a in attn]} (24^-0.5 = {24**-0.5}), sliding_window {[a.sliding_window for a in attn]}")
    check(all(a.scaling == 24**-0.5 for a in attn), "gemma3 attention scaling")
    check([a.sliding_window for a in attn] == [4, None], "gemma3 per-layer window")

    # GGUF RoPE keys → inverse frequencies vs transformers' per-layer-type buffers.
    r = gguf.GGUFReader(str(gguf_path))
    f = {k: v.contents() for k, v in r.fields.items()}
    dim = head_dim(config)
    idx = np.arange(0, dim, 2, dtype=np.float64) / dim
    rope = model.model.rotary_emb
    mine = {
        "sliding_attention": 1.0 / f["gemma3.rope.freq_base_swa"] ** idx,
        "full_attention": 1.0 / f["gemma3.rope.freq_base"] ** idx / f["gemma3.rope.scaling.factor"],
    }
    for lt, want in mine.items():
        hf_inv = getattr(rope, f"{lt}_inv_freq").double().numpy()
        rel = float((np.abs(hf_inv - want) / want).max())
        att = getattr(rope, f"{lt}_attention_scaling")
        print(f"RoPE {lt:17}: inv_freq from the GGUF keys vs transformers' max rel. error {rel:.2e}, attention_scaling {att}")
        check(rel <= 1e-6 and att == 1.0, f"gemma3 {lt} RoPE")
    pattern = f["gemma3.attention.sliding_window_pattern"]
    check(
        ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(config.num_hidden_layers)]
        == config.layer_types,
        "gemma3 sliding_window_pattern vs layer_types",
    )
    check(f["gemma3.attention.scale"] == float(np.float32(attn[0].scaling)), "gemma3 attention.scale")

    # The GGUF's norms are exactly the factors Gemma3RMSNorm multiplies by, and its tensor order.
    tensors = {t.name: np.array(t.data) for t in r.tensors}
    n_norms = 0
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            g = tensors[gguf_name(name, "gemma3")].reshape(p.shape)
            check(np.array_equal(g, (1.0 + p.detach().float()).numpy()), f"gemma3 GGUF {name} ≠ 1 + w")
            n_norms += 1
    order = [t.name for t in r.tensors]
    want_order = ["token_embd.weight"] + [
        f"blk.{i}.{b}.weight" for i in range(config.num_hidden_layers) for b in GEMMA3_BLOCK_ORDER
    ] + ["output_norm.weight"]
    check(order == want_order, f"gemma3 GGUF tensor order {order}")
    print(f"gguf: the {n_norms} norm tensors equal transformers' float32 1.0 + weight; tensor order as llama.cpp lists them")

    def compare(label, other, first_changed):
        pp = per_sequence_delta(other, logits)
        diffs = [max(x) for x in pp]
        print(f"{label}, max |Δlogit| per sequence: {[f'{x:.3g}' for x in diffs]}")
        for s, x in zip(SEQUENCES, pp):
            print(f"  length {len(s):2}, per position: " + ", ".join(f"{v:.2g}" for v in x))
            check(all(v == 0 for v in x[:first_changed]) and all(v > 1e-3 for v in x[first_changed:]), f"gemma3 {label}: length {len(s)}")
        check(diffs[2] > 1e-2, f"gemma3 {label}: barely changes the 12-token sequence")
        return diffs

    # Window 4: positions 0..3 see every key either way; from position 4 on it drops keys.
    wide, _ = variant_logits(model, config, sliding_window=1024)
    rep["sliding"] = compare("sliding window 4 vs 1024", wide, 4)
    # A single key gets weight 1 whatever the scale, so position 0 cannot change.
    s16, m16 = variant_logits(model, config, query_pre_attn_scalar=16)
    check(m16.model.layers[0].self_attn.scaling == 0.25, "variant scaling")
    rep["scalar"] = compare("query_pre_attn_scalar 24 vs 16", s16, 1)
    # RoPE at position 0 is the identity, so position 0 cannot change.
    rp1 = copy.deepcopy(config.rope_parameters)
    rp1["full_attention"]["factor"] = 1.0
    f1, mf1 = variant_logits(model, config, rope_parameters=rp1)
    check(
        torch.equal(mf1.model.rotary_emb.full_attention_inv_freq, model.model.rotary_emb.full_attention_inv_freq * 2),
        "variant RoPE factor",
    )
    rep["linear"] = compare("linear RoPE factor 2 vs 1", f1, 1)
    return rep


def check_llama3_rope(model, config):
    """GGUF factors vs transformers' inverse frequencies, and an independent re-implementation
    of transformers' llama3 rule."""
    rp = config.rope_parameters
    dim, base = head_dim(config), rp["rope_theta"]
    factors, base_inv = llama3_rope_factors(rp, dim)
    hf_inv = model.model.rotary_emb.inv_freq.detach().double().numpy()

    # transformers' rule (_compute_llama3_parameters), re-written in float64.
    inv = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    factor, lo, hi, old = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"], rp["original_max_position_embeddings"]
    low_wl, high_wl = old / lo, old / hi
    wl = 2 * math.pi / inv
    scaled = np.where(wl > low_wl, inv / factor, inv)
    smooth = (old / wl - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wl < high_wl) & ~(wl > low_wl)
    mine = np.where(medium, smoothed, scaled)

    rel1 = np.abs(mine - hf_inv) / hf_inv
    rel2 = np.abs(base_inv.astype(np.float64) / factors - hf_inv) / hf_inv
    print("llama3 RoPE: base inv_freq  ", np.array2string(inv, precision=6))
    print("             transformers'  ", np.array2string(hf_inv, precision=6))
    print("             GGUF factors   ", np.array2string(factors, precision=6))
    changed = [i for i in range(dim // 2) if abs(hf_inv[i] - inv[i]) > 1e-9 * inv[i]]
    kinds = ["unchanged" if f == 1 else ("÷factor" if f == factor else f"smoothed (÷{f:.6g})") for f in factors]
    print(f"             changed frequencies: {changed} of {dim // 2}; per index: {kinds}")
    print(f"             max rel. error: re-implementation {rel1.max():.2e}, base/factors {rel2.max():.2e}")
    check(rel1.max() <= 1e-6, "llama3 inv_freq re-implementation differs from transformers'")
    check(rel2.max() <= 1e-6, "GGUF rope_freqs do not reproduce transformers' inv_freq")
    check(len(changed) >= 2 and len(changed) < dim // 2, f"the scaling changes {changed}")
    check(getattr(model.model.rotary_emb, "attention_scaling", 1.0) == 1.0, "llama3 attention scaling ≠ 1")
    return {"changed": changed, "kinds": kinds, "factors": factors.tolist(), "hf_inv": hf_inv.tolist()}


# ---------------------------------------------------------------------------------------------
# Chat templates

SYSTEM = "You are a terse assistant.\nAnswer in one line — s'il vous plaît."
USER1 = "Héllo! What is 2 + 3?\nThink step by step: 日本語 ✓"
ASSISTANT1 = "  2 + 3 = 5 — voilà.  "
USER2 = "And 5 × 7?\n"
THINKING = "<think>\nreasoning\n</think>\n\nanswer: 5 — voilà."


def msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


def chat_cases(tokenizers_by_family):
    gemma_src = read_template("gemma3.jinja")
    gtok = Tokenizer(models.BPE())
    gtok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    gtok.add_special_tokens([tokenizers.AddedToken(s, special=True) for s in ["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"]])
    gemma = PreTrainedTokenizerFast(tokenizer_object=gtok, bos_token="<bos>", eos_token="<eos>")
    gemma.chat_template = gemma_src
    toks = dict(tokenizers_by_family)
    toks["gemma3"] = gemma
    files = {"llama3": "llama3.jinja", "mistral": "mistral.jinja", "qwen2": "qwen2.5.jinja", "qwen3": "qwen3.jinja", "gemma3": "gemma3.jinja"}
    names = {"qwen2": "qwen2.5"}

    multi = msgs(("system", SYSTEM), ("user", USER1), ("assistant", ASSISTANT1), ("user", USER2))
    single = msgs(("user", USER1))
    pair = msgs(("user", USER1), ("assistant", ASSISTANT1))
    cases = []
    for fam in ["llama3", "mistral", "qwen2", "qwen3", "gemma3"]:
        base_kwargs = {"date_string": "26 Jul 2024"} if fam == "llama3" else {}
        plan = [(multi, True, {}), (single, True, {}), (pair, False, {})]
        if fam == "qwen3":
            think_multi = msgs(("system", SYSTEM), ("user", USER1), ("assistant", THINKING), ("user", USER2))
            think_pair = msgs(("user", USER1), ("assistant", THINKING))
            # Every Qwen3 case names enable_thinking: evotune's renderer starts with it off while
            # transformers leaves it undefined (= on), so an implicit case would test a default.
            on, off = {"enable_thinking": True}, {"enable_thinking": False}
            plan = [
                (think_multi, True, on),
                (think_multi, True, off),
                (single, True, off),
                (single, True, on),
                (pair, False, on),
                (think_pair, False, off),
                (msgs(("user", USER1), ("assistant", THINKING), ("user", USER2), ("assistant", ASSISTANT1)), False, on),
            ]
        tok = toks[fam]
        for messages, agp, kw in plan:
            kwargs = dict(base_kwargs, **kw)
            try:
                rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=agp, **kwargs)
            except Exception as e:  # a template that rejects the conversation: no case
                print(f"chat {fam}: skipped ({type(e).__name__}: {e})")
                continue
            check(isinstance(rendered, str), f"{fam}: apply_chat_template returned {type(rendered)}")
            cases.append(
                {
                    "family": names.get(fam, fam),
                    "template_file": str(TEMPLATES / files[fam]),
                    "bos_token": tok.bos_token,
                    "eos_token": tok.eos_token,
                    "messages": messages,
                    "add_generation_prompt": agp,
                    "kwargs": kwargs,
                    "rendered": rendered,
                }
            )
    # Sanity: a few things the renderings must show.
    by = lambda f: [c for c in cases if c["family"] == f]  # noqa: E731
    check(all("Today Date: 26 Jul 2024" in c["rendered"] for c in by("llama3")), "llama3 date")
    check(all(c["rendered"].startswith("<|begin_of_text|>") for c in by("llama3")), "llama3 bos")
    check(all(c["rendered"].startswith("<s>") for c in by("mistral")), "mistral bos")
    check(all(c["rendered"].startswith("<bos>") for c in by("gemma3")), "gemma3 bos")
    q3 = by("qwen3")
    check(any(c["rendered"].endswith("<think>\n\n</think>\n\n") for c in q3), "qwen3 enable_thinking=false")
    check(any("<think>\nreasoning\n</think>" in c["rendered"] for c in q3), "qwen3 keeps the last turn's reasoning")
    check(any("<think>" not in c["rendered"] and "answer: 5" in c["rendered"] for c in q3), "qwen3 drops old reasoning")
    return cases


# ---------------------------------------------------------------------------------------------


def main():
    torch.set_num_threads(1)
    os.chdir(ROOT)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, tokenizers {tokenizers.__version__}, gguf {getattr(gguf, '__version__', '?')}")
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)

    reports, toks = {}, {}
    for family, spec in FAMILIES.items():
        reports[family], toks[family] = build_family(family, spec)

    cases = chat_cases(toks)
    (OUT / "chat_templates.json").write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nchat_templates.json: {len(cases)} cases")

    print("\n=== summary")
    for family, r in reports.items():
        extra = ""
        if "sliding" in r:
            extra += f", window vs full max |Δ| {r['sliding'][2]:.3g}"
        if "scalar" in r:
            extra += f", scalar 24 vs 16 max |Δ| {r['scalar'][2]:.3g}, RoPE factor 2 vs 1 max |Δ| {r['linear'][2]:.3g}"
        if "rope" in r:
            extra += f", RoPE changed {r['rope']['changed']}"
        print(
            f"{family:8} seed {r['seed']}, min greedy margin {r['margin']:.4f}, reload eager |Δ| {r['reload_eager']:.2g}, "
            f"sdpa |Δ| {r['reload_sdpa']:.2g}, greedy specials {r['specials_generated']}{extra}"
        )
    total = 0
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            total += p.stat().st_size
            print(f"{p.stat().st_size:>9}  {p.relative_to(ROOT)}")
    print(f"{total:>9}  total")


if __name__ == "__main__":
    main()
