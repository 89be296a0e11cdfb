#!/usr/bin/env bash
# llama.cpp CPU speed on the default model, the reference for evotune's quantized forward:
# prefill and batched decode tokens/s at batch 1 and 16 (llama-batched-bench, 64 prompt + 32 new
# tokens per sequence as `evotune bench generate` uses, prompts not shared, 2 threads), then
# evotune's `bench generate --weights quantized` on the same file and thread count, and the ratios.
#
#   scripts/bench_llamacpp.sh [BUILD_DIR] [MODEL.gguf] [--json]
#
# EVOTUNE=path/to/evotune picks the binary (default target/release/evotune; NO_EVOTUNE=1 skips it);
# EVOTUNE_SIMD=avx2 caps evotune at AVX2, to compare with an AVX2 build of llama.cpp.
# BUILD_DIR defaults to $LLAMACPP_BUILD or /work/llamacpp/build-avx512; MODEL to $EVOTUNE_MODEL or
# ~/.cache/evotune/SmolLM2-135M-Instruct.Q4_1.gguf. THREADS=N overrides 2. --json prints one object per
# batch size: {"engine","simd","batch","prefill_tok_s","decode_tok_s","cpu","threads","pp","tg"}.
# Other load on the machine shows up in the figures.
set -euo pipefail

JSON=0; POS=()
for a in "$@"; do if [ "$a" = --json ]; then JSON=1; else POS+=("$a"); fi; done
BUILD=${POS[0]:-${LLAMACPP_BUILD:-/work/llamacpp/build-avx512}}
MODEL=${POS[1]:-${EVOTUNE_MODEL:-$HOME/.cache/evotune/SmolLM2-135M-Instruct.Q4_1.gguf}}
THREADS=${THREADS:-2}
PP=${PP:-64}; TG=${TG:-32}
BIN=$BUILD/bin/llama-batched-bench

if [ ! -x "$BIN" ]; then
  cat >&2 <<EOF
no $BIN. Build llama.cpp (CPU, explicit instruction sets; GGML_NATIVE=ON dies with an illegal
instruction on the Intel VM):
  mkdir -p /work/llamacpp && cd /work/llamacpp
  pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d .
  tar xzf llama_cpp_python-0.3.36.tar.gz
  cmake -S llama_cpp_python-0.3.36/vendor/llama.cpp -B build-avx512 -DCMAKE_BUILD_TYPE=Release \\
    -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \\
    -DGGML_BMI2=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_BF16=ON \\
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF
  cmake --build build-avx512 -j2 --target llama-batched-bench llama-bench
(build-avx2: the same without the four -DGGML_AVX512* options.)
EOF
  exit 2
fi

SIMD=avx2
grep -q '^GGML_AVX512:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null && SIMD=avx512
CPU=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')

OUT=$("$BIN" -m "$MODEL" -c 2048 -npp $PP -ntg $TG -npl 1,16 -t "$THREADS" --output-format jsonl 2>&1) \
  || { echo "$OUT" >&2; exit 1; }

EVO=""
EVOTUNE=${EVOTUNE:-$(dirname "$0")/../target/release/evotune}
if [ -z "${NO_EVOTUNE:-}" ] && [ -x "$EVOTUNE" ]; then
  EVO=$(RAYON_NUM_THREADS=$THREADS "$EVOTUNE" bench generate --model "$MODEL" --weights quantized --json 2>/dev/null) \
    || { echo "evotune bench generate failed" >&2; EVO=""; }
fi

EVO="$EVO" ROWS=$(echo "$OUT" | grep '^{"n_kv_max"') python3 - "$JSON" "$SIMD" "$CPU" "$THREADS" <<'PY'
import json, os, sys
json_out, simd, cpu, threads = sys.argv[1] == "1", sys.argv[2], sys.argv[3], int(sys.argv[4])
if not json_out:
    print(f"llama.cpp {simd}, {threads} threads, {cpu}")
    print(f"{'batch':>5} {'prefill tok/s':>14} {'decode tok/s':>13}")
for line in os.environ["ROWS"].splitlines():
    r = json.loads(line)
    if json_out:
        print(json.dumps({"engine": "llama.cpp", "simd": simd, "batch": r["pl"], "prefill_tok_s": round(r["speed_pp"], 2),
                          "decode_tok_s": round(r["speed_tg"], 2), "cpu": cpu, "threads": threads, "pp": r["pp"], "tg": r["tg"]}))
    else:
        print(f"{r['pl']:>5} {r['speed_pp']:>14.1f} {r['speed_tg']:>13.1f}")
    ours = [json.loads(l) for l in os.environ.get("EVO", "").splitlines() if l.startswith("{")]
    for o in ours:
        if o["engine"] == "evotune" and o["weights"] == "quantized" and o["batch"] == r["pl"]:
            pf, dc = o["prefill_tok_s"] / r["speed_pp"], o["decode_tok_s"] / r["speed_tg"]
            if json_out:
                print(json.dumps({**o, "vs_llama_cpp_prefill": round(pf, 3), "vs_llama_cpp_decode": round(dc, 3)}))
            else:
                print(f"      evotune quantized ({o['simd']}): prefill {o['prefill_tok_s']:.1f} ({pf:.2f}x), "
                      f"decode {o['decode_tok_s']:.1f} ({dc:.2f}x)")
PY
