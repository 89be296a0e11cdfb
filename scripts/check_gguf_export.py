#!/usr/bin/env python3
"""Checks a GGUF written by evotune's exporter against the model it came from, with the `gguf`
package (llama.cpp's own Python reader and dequantizer).

Usage: python3 scripts/check_gguf_export.py SOURCE.gguf EXPORTED.gguf [--exact]

- metadata: every source key is present with the same value, except general.file_type (and
  general.alignment, which the exporter drops in favour of the default 32);
- tensors: same names and shapes; per tensor the max |exported - source| after dequantizing both
  is printed. With --exact (an F32 export of an unchanged model) every difference must be 0; else
  F16 tensors must be within f16 rounding and Q8_0 tensors within half a quantization step.

Produce the files with:  EVOTUNE_EXPORT_DIR=/tmp/evx cargo test --release -p evotune --test export_gguf
"""
import sys

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType
from gguf.quants import dequantize


def fields(reader):
    out = {}
    for name, f in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        out[name] = f.contents()
    return out


def tensors(reader):
    out = {}
    for t in reader.tensors:
        x = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        out[t.name] = (t.tensor_type, [int(d) for d in t.shape], x)
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    exact = "--exact" in sys.argv
    if len(args) != 2:
        print(__doc__)
        return 2
    src, exp = GGUFReader(args[0]), GGUFReader(args[1])
    failures = []

    fs, fe = fields(src), fields(exp)
    for k, v in fs.items():
        if k in ("general.file_type", "general.alignment"):
            continue
        if k not in fe:
            failures.append(f"metadata `{k}` missing")
        elif fe[k] != v:
            failures.append(f"metadata `{k}` differs: {str(v)[:80]} vs {str(fe[k])[:80]}")
    print(f"metadata: {len(fs)} source keys, {len(fe)} exported; file_type {fs.get('general.file_type')} -> {fe.get('general.file_type')}")

    ts, te = tensors(src), tensors(exp)
    if set(ts) != set(te):
        failures.append(f"tensor names differ: only in source {sorted(set(ts) - set(te))[:5]}, only in export {sorted(set(te) - set(ts))[:5]}")
    worst = 0.0
    for name in sorted(set(ts) & set(te)):
        (_, shape_s, xs), (ty, shape_e, xe) = ts[name], te[name]
        if shape_s != shape_e:
            failures.append(f"{name}: shape {shape_s} vs {shape_e}")
            continue
        diff = float(np.max(np.abs(xs - xe))) if xs.size else 0.0
        if exact or ty == GGMLQuantizationType.F32:
            ok = diff == 0.0
        elif ty == GGMLQuantizationType.F16:
            ok = np.array_equal(xs.astype(np.float16).astype(np.float32), xe)
        elif ty == GGMLQuantizationType.Q8_0:
            blocks = xs.reshape(-1, 32)
            # half a step, plus the cost of storing the step d as f16 at the largest code (127)
            step = np.abs(blocks).max(axis=1, keepdims=True) / 127.0
            step16 = step.astype(np.float16).astype(np.float32)
            err = np.abs(blocks - xe.reshape(-1, 32))
            ok = bool(np.all(err <= step / 2 + 127 * np.abs(step - step16) + 1e-6 * step + 1e-9))
        else:
            ok = False
        worst = max(worst, diff)
        print(f"{'OK    ' if ok else 'NOT OK'} {name:32s} {ty.name:5s} {str(shape_e):14s} max diff {diff:.3e}")
        if not ok:
            failures.append(f"{name}: max diff {diff:.3e} for type {ty.name}")
    print(f"{len(te)} tensors, worst max diff {worst:.3e}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
