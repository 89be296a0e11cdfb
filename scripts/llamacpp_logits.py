#!/usr/bin/env python3
"""Golden logits of the default model from llama.cpp's CPU backend (reference for the quantized forward).

Writes `crates/evotune/tests/data/llamacpp_logits.json`. The prompts are the `input_ids` of the first
3 entries of `golden_completions.json` (they already start with BOS = 1), fed as-is: no tokenization,
no BOS added. Each prompt goes through llama.cpp in ONE `llama_decode` (one ubatch, all positions
output), f32 logits. Only a slice is stored to keep the file small; per prompt:

    {"input_ids": [...], "max_abs_all_positions": [...],
     "positions": [{"pos", "argmax", "max_abs", "ids": [...], "logits": [...]}]}

for the LAST 8 positions; `ids` = that position's top-32 ids ∪ 64 fixed ids (0, 768, ..., 48384),
ascending; `logits` the llama.cpp values at those ids; `max_abs` = max |logit| over the full vocab
(scale for tolerances); `max_abs_all_positions` = the same at every position of the prompt.

How llama.cpp is called: a tiny C++ program (embedded below) is compiled with g++ against a llama.cpp
CMake build tree (shared libs, rpath) and writes the full [n_tokens, n_vocab] f32 logits to a file.
Context settings: flash attention off, K/V cache f32 (so the reference isolates the quantized weight
matmuls, not an f16 KV cache), n_batch = n_ubatch = prompt length, CPU only, `use_extra_bufts` default
(llama.cpp has no Q4_1 repack, so the Q4_1 matrices run through its plain q4_1 x q8_1 dot products).
Threads default to 2; each output row is computed by one thread, so results are deterministic
(the script runs every prompt twice and checks bit equality).

Build llama.cpp (outside the repo; see /work/shared/reference/machines.md), AVX2 build used by default:

    pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d /work/llamacpp
    cd /work/llamacpp && tar xzf llama_cpp_python-0.3.36.tar.gz
    cmake -S llama_cpp_python-0.3.36/vendor/llama.cpp -B build-avx2 -DCMAKE_BUILD_TYPE=Release \\
      -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \\
      -DGGML_BMI2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF
    cmake --build build-avx2 -j2 --target llama

Usage:

    python3 scripts/llamacpp_logits.py [--build DIR] [--model GGUF] [--threads N] [--out JSON]

--build defaults to $LLAMACPP_BUILD or /work/llamacpp/build-avx2; --model to $EVOTUNE_MODEL or
~/.cache/evotune/SmolLM2-135M-Instruct.Q4_1.gguf. Needs g++ and numpy.
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "crates", "evotune", "tests", "data")
N_PROMPTS, LAST, TOPK, N_FIXED = 3, 8, 32, 64

DUMP_CPP = r"""
#include "llama.h"
#include <cstdio>
#include <cstdlib>
#include <vector>
static void quiet(enum ggml_log_level, const char *, void *) {}
// usage: dump MODEL THREADS OUT.bin ID...   (writes n_tokens x n_vocab f32, row-major)
int main(int argc, char ** argv) {
    if (argc < 5) { fprintf(stderr, "usage: dump MODEL THREADS OUT ID...\n"); return 2; }
    llama_log_set(quiet, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "load failed\n"); return 1; }
    const int nt = atoi(argv[2]);
    std::vector<llama_token> ids;
    for (int i = 4; i < argc; i++) ids.push_back(atoi(argv[i]));
    const int n = (int) ids.size();
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n < 256 ? 256 : n;
    cp.n_batch = cp.n_ubatch = n;
    cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = nt;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    cp.no_perf = true;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "context failed\n"); return 1; }
    llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        b.token[i] = ids[i]; b.pos[i] = i; b.n_seq_id[i] = 1; b.seq_id[i][0] = 0; b.logits[i] = 1;
    }
    b.n_tokens = n;
    if (llama_decode(ctx, b) != 0) { fprintf(stderr, "decode failed\n"); return 1; }
    const int nv = llama_vocab_n_tokens(llama_model_get_vocab(model));
    FILE * f = fopen(argv[3], "wb");
    for (int i = 0; i < n; i++) fwrite(llama_get_logits_ith(ctx, i), sizeof(float), nv, f);
    fclose(f);
    printf("%d %d\n%s\n", n, nv, llama_print_system_info());
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
"""


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_info(build):
    """llama.cpp version and the cmake flags of the build tree."""
    cache = open(os.path.join(build, "CMakeCache.txt")).read()
    src = re.search(r"^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$", cache, re.M).group(1)
    flags = sorted(f"{k}={v}" for k, v in re.findall(r"^(GGML_[A-Z0-9_]+|CMAKE_BUILD_TYPE|LLAMA_CURL|BUILD_SHARED_LIBS):[A-Z]+=(.*)$", cache, re.M)
                   if k.startswith(("GGML_AVX", "GGML_FMA", "GGML_F16C", "GGML_BMI", "GGML_NATIVE", "GGML_AMX", "GGML_OPENMP",
                                    "GGML_LLAMAFILE", "CMAKE_BUILD_TYPE", "LLAMA_CURL", "BUILD_SHARED_LIBS")))
    version = {"source": src}
    # The sdist's vendor tree has no .git; llama-cpp-python's CHANGELOG names the vendored commit.
    changelog = os.path.join(src, "..", "..", "CHANGELOG.md")
    if os.path.exists(changelog):
        text = open(changelog).read()
        m = re.search(r"## \[(\d+\.\d+\.\d+)\]\s*\n(?:.*\n)*?.*llama\.cpp@([0-9a-f]+)", text)
        if m:
            version["llama_cpp_python"], version["llama_cpp_commit"] = m.group(1), m.group(2)
    ggml = open(os.path.join(src, "ggml", "CMakeLists.txt")).read()
    version["ggml"] = ".".join(re.search(rf"GGML_VERSION_{p} (\d+)", ggml).group(1) for p in ("MAJOR", "MINOR", "PATCH"))
    return version, flags


def compile_dump(build, tmp):
    src = open(os.path.join(build, "CMakeCache.txt")).read()
    src = re.search(r"^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$", src, re.M).group(1)
    libdirs = sorted({os.path.dirname(os.path.join(d, f)) for d, _, fs in os.walk(build) for f in fs if f.startswith("libllama.so")})
    if not libdirs:
        sys.exit(f"no libllama.so under {build}: cmake --build {build} -j2 --target llama")
    lib = libdirs[0]
    cpp, exe = os.path.join(tmp, "dump.cpp"), os.path.join(tmp, "dump")
    open(cpp, "w").write(DUMP_CPP)
    subprocess.run(["g++", "-O2", "-std=c++17", cpp, "-o", exe, f"-I{src}/include", f"-I{src}/ggml/include",
                    f"-L{lib}", "-lllama", "-lggml", "-lggml-base", f"-Wl,-rpath,{lib}"], check=True)
    return exe


def run(exe, model, threads, ids, tmp):
    out = os.path.join(tmp, "logits.bin")
    r = subprocess.run([exe, model, str(threads), out] + [str(i) for i in ids], check=True, capture_output=True, text=True)
    n, nv = map(int, r.stdout.split("\n")[0].split())
    return np.fromfile(out, dtype=np.float32).reshape(n, nv), r.stdout.split("\n", 1)[1].strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("LLAMACPP_BUILD", "/work/llamacpp/build-avx2"))
    ap.add_argument("--model", default=os.environ.get("EVOTUNE_MODEL", os.path.expanduser("~/.cache/evotune/SmolLM2-135M-Instruct.Q4_1.gguf")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(DATA, "llamacpp_logits.json"))
    a = ap.parse_args()

    golden = json.load(open(os.path.join(DATA, "golden_completions.json")))
    version, flags = build_info(a.build)
    result = {"model": os.path.basename(a.model), "model_sha256": sha256(a.model), "llama_cpp": version,
              "build_flags": flags, "threads": a.threads,
              "settings": "one llama_decode per prompt (n_batch = n_ubatch = n_tokens), all positions output, "
                          "flash_attn off, KV cache f32, CPU backend, f32 logits; ids fed as-is (BOS included)",
              "fixed_ids": list(range(0, 49152, 49152 // N_FIXED)), "prompts": []}
    with tempfile.TemporaryDirectory() as tmp:
        exe = compile_dump(a.build, tmp)
        for p in golden["prompts"][:N_PROMPTS]:
            ids = list(map(int, p["input_ids"]))
            logits, sysinfo = run(exe, a.model, a.threads, ids, tmp)
            again, _ = run(exe, a.model, a.threads, ids, tmp)
            assert np.array_equal(logits, again), "llama.cpp logits differ between two identical runs"
            assert logits.shape[1] == 49152, logits.shape
            result["system_info"] = sysinfo
            fixed = set(result["fixed_ids"])
            positions = []
            for pos in range(len(ids) - LAST, len(ids)):
                row = logits[pos]
                top = np.argsort(-row, kind="stable")[:TOPK]
                sel = sorted(fixed | set(map(int, top)))
                positions.append({"pos": pos, "argmax": int(np.argmax(row)), "max_abs": float(np.abs(row).max()),
                                  "ids": sel, "logits": [float(row[i]) for i in sel]})
            result["prompts"].append({"input_ids": ids, "max_abs_all_positions": [round(float(np.abs(r).max()), 4) for r in logits],
                                      "positions": positions})
            print(f"{len(ids)} tokens: argmax at last pos {positions[-1]['argmax']} (HF golden first output "
                  f"{p['output_ids'][0] if p['output_ids'] else None}), max |logit| {positions[-1]['max_abs']:.3f}")
    with open(a.out, "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes)")


if __name__ == "__main__":
    main()
