#!/usr/bin/env python3
"""weights_diff.py A.safetensors B.safetensors - the largest relative weight
difference between two checkpoints: max over tensors of
max|a - b| / max(max|a|, 1e-12) (per tensor, so small tensors count), printed
as one number; exit 2 when the tensor names or shapes differ. numpy only."""
import json
import struct
import sys

import numpy as np


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    head = json.loads(raw[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, info in head.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        dt = {"F32": np.float32, "F16": np.float16, "I64": np.int64}[info["dtype"]]
        out[name] = np.frombuffer(raw[base + lo:base + hi], dtype=dt).reshape(info["shape"])
    return out


a, b = load(sys.argv[1]), load(sys.argv[2])
if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
    print("tensor names or shapes differ", file=sys.stderr)
    sys.exit(2)
worst, where = 0.0, ""
for k in sorted(a):
    x, y = a[k].astype(np.float64), b[k].astype(np.float64)
    if x.size == 0 or not np.issubdtype(a[k].dtype, np.floating):
        continue
    r = float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(x))), 1e-12))
    if r > worst:
        worst, where = r, k
print(f"{worst:.3e} {where}")
