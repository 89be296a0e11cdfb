#!/usr/bin/env bash
# llama.cpp CPU speed on the default model, the reference for evotune's quantized forward:
# prefill and batched decode tokens/s at batch 1 and 16 (llama-batched-bench, 48 prompt + 16 new
# tokens per sequence, prompts not shared, 2 threads).
#
#   scripts/bench_llamacpp.sh [BUILD_DIR] [MODEL.gguf] [--json]
#
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

OUT=$("$BIN" -m "$MODEL" -c 2048 -npp 48 -ntg 16 -npl 1,16 -t "$THREADS" --output-format jsonl 2>&1) \
  || { echo "$OUT" >&2; exit 1; }

ROWS=$(echo "$OUT" | grep '^{"n_kv_max"') python3 - "$JSON" "$SIMD" "$CPU" "$THREADS" <<'PY'
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
PY
