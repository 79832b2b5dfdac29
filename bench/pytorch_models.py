#!/usr/bin/python3
"""pytorch_models.py - the PyTorch side of bench/run_foundation.sh.

Measures what bench/bench_foundation.c measures, on the same architectures
(the PyTorch knowledge-distillation tutorial's DeepNN and LightNN adapted to
1x28x28 Fashion-MNIST inputs), so the two can be printed side by side:

  teacher forward:  DeepNN, batch 128, eval mode, no autograd
  student training: LightNN, batch 128, zero_grad + forward(train) +
                    cross-entropy + backward + Adam step
  epoch (optional): one LightNN cross-entropy epoch over the 60,000
                    Fashion-MNIST training images (batch 128, Adam, shuffled)
                    plus evaluation on the 10,000 test images

Inputs are random (fixed seed): throughput does not depend on the values.
Timing is the median of 5 windows after a warm-up, as in bench_foundation.c.
FLOPs are counted as in dq_net_flops_per_sample (multiply-add = 2, conv and
linear layers only); training counts 3x the forward FLOPs.

Run with Debian's interpreter and python3-torch (/usr/bin/python3). Results
go to stdout as tab-separated lines "RESULT pytorch <threads> <metric>
<value>" and "INFO <key> <value>", which run_foundation.sh collects; the rest
of the output is for people.
"""
import argparse
import gzip
import os
import re
import statistics
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from tutorial_nets import DeepNN, LightNN  # bench/tutorial_nets.py


def flops_per_sample(model):
    """Forward FLOPs of one 1x28x28 sample, counted like dq_net_flops_per_sample."""
    total = [0.0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            total[0] += 2.0 * out[0].numel() * (mod.in_channels // mod.groups) * k
        elif isinstance(mod, nn.Linear):
            total[0] += 2.0 * mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()
        model(torch.zeros(1, 1, 28, 28))
    for h in handles:
        h.remove()
    return total[0]


def blas_libraries():
    """BLAS/LAPACK shared objects this process has mapped, resolved through
    Debian's alternatives symlinks (libblas.so.3 -> .../openblas-pthread/...)."""
    found = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 6:
                    continue
                path = parts[5]
                base = os.path.basename(path).lower()
                if any(s in base for s in ("blas", "mkl", "lapack", "blis")):
                    real = os.path.realpath(path)
                    if real not in found:
                        found.append(real)
    except OSError:
        pass
    return found


def conv_kernel():
    """Name of the ATen kernel a float conv2d forward dispatches to here
    (aten::mkldnn_convolution means oneDNN, _slow_conv2d/thnn means im2col+BLAS)."""
    conv = nn.Conv2d(16, 16, kernel_size=3, padding=1)
    with torch.no_grad(), torch.autograd.profiler.profile() as prof:
        conv(torch.zeros(8, 16, 28, 28))
    names = {e.name for e in prof.function_events}
    for cand in sorted(names):
        if "mkldnn" in cand or "slow_conv" in cand or "thnn" in cand or "nnpack" in cand:
            return cand
    return "unknown"


def median_rate(step, seconds, warmup, windows=5):
    """Iterations per second of step(), as bench_foundation.c times it: warm
    up (>= warmup iterations and >= 0.5 s), then `seconds` split into
    `windows` windows of whole iterations; the median window's rate."""
    t0 = time.perf_counter()
    i = 0
    while i < warmup or time.perf_counter() - t0 < 0.5:
        step()
        i += 1
    rates = []
    for _ in range(windows):
        iters = 0
        t0 = time.perf_counter()
        while True:
            step()
            iters += 1
            el = time.perf_counter() - t0
            if el >= seconds / windows:
                break
        rates.append(iters / el)
    return statistics.median(rates)


def bench_teacher(batch, seconds):
    torch.manual_seed(42)
    model = DeepNN()
    model.eval()
    x = torch.rand(batch, 1, 28, 28) * 2 - 1

    def step():
        with torch.no_grad():
            model(x)

    sps = median_rate(step, seconds, warmup=3) * batch
    return sps, sps * flops_per_sample(model) / 1e9


def bench_student(batch, seconds):
    torch.manual_seed(42)
    model = LightNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, 28, 28) * 2 - 1
    y = torch.randint(0, 10, (batch,))
    model.train()

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    sps = median_rate(step, seconds, warmup=3) * batch
    return sps, sps * 3.0 * flops_per_sample(model) / 1e9


def read_idx(path):
    """An IDX file (.gz) as a uint8 tensor with its declared shape."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    t = torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8)
    return t.reshape(dims)


def bench_epoch(data_dir, batch):
    """One shuffled cross-entropy epoch of LightNN plus test evaluation.
    Timed from reading the gzipped IDX files to the test accuracy, like a
    `distillq-train --epochs 1` run (without process start and torch import).
    Tensors are kept in memory: no DataLoader, which would only add overhead."""
    t0 = time.perf_counter()
    tr_x = read_idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz"))
    tr_y = read_idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz")).long()
    te_x = read_idx(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz"))
    te_y = read_idx(os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz")).long()
    # ToTensor() then Normalize((0.5,), (0.5,))
    tr_x = ((tr_x.float() / 255.0 - 0.5) / 0.5).unsqueeze(1)
    te_x = ((te_x.float() / 255.0 - 0.5) / 0.5).unsqueeze(1)

    torch.manual_seed(42)
    model = LightNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    perm = torch.randperm(tr_x.shape[0])
    for i in range(0, tr_x.shape[0], batch):
        idx = perm[i:i + batch]
        opt.zero_grad()
        loss = F.cross_entropy(model(tr_x[idx]), tr_y[idx])
        loss.backward()
        opt.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, te_x.shape[0], batch):
            correct += (model(te_x[i:i + batch]).argmax(1) == te_y[i:i + batch]).sum().item()
    return time.perf_counter() - t0, correct / te_x.shape[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    ap.add_argument("--epoch-data", metavar="DIR",
                    help="also time one LightNN epoch on the Fashion-MNIST IDX files in DIR (1 thread)")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",") if t]

    torch.set_num_interop_threads(1)
    print(f"INFO\ttorch\t{torch.__version__}")
    # Loading the libraries happens lazily on the first op; run one GEMM so
    # the BLAS shared object is mapped before we look.
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))
    libs = blas_libraries()
    print(f"INFO\tpytorch_blas\t{' '.join(libs) if libs else 'none mapped (built-in kernels)'}")
    cfg = torch.__config__.show()
    for key in ("BLAS_INFO", "USE_MKLDNN"):
        m = re.search(r"\b" + key + r"=([^,\s]+)", cfg)
        if m:
            print(f"INFO\tpytorch_{key.lower()}\t{m.group(1)}")
    # Linear layers go to BLAS; convolutions may go to oneDNN (MKL-DNN)
    # instead, which matters when reading the ratios.
    print(f"INFO\tpytorch_conv_kernel\t{conv_kernel()}")
    sys.stdout.flush()

    for n in threads:
        torch.set_num_threads(n)
        sps, gf = bench_teacher(args.batch, args.seconds)
        print(f"RESULT\tpytorch\t{n}\tteacher_fwd_sps\t{sps:.1f}")
        print(f"RESULT\tpytorch\t{n}\tteacher_fwd_gflops\t{gf:.2f}")
        sys.stdout.flush()
        sps, gf = bench_student(args.batch, args.seconds)
        print(f"RESULT\tpytorch\t{n}\tstudent_train_sps\t{sps:.1f}")
        print(f"RESULT\tpytorch\t{n}\tstudent_train_gflops\t{gf:.2f}")
        sys.stdout.flush()

    if args.epoch_data:
        torch.set_num_threads(1)
        secs, acc = bench_epoch(args.epoch_data, args.batch)
        print(f"RESULT\tpytorch\t1\tepoch_s\t{secs:.2f}")
        print(f"INFO\tpytorch_epoch_test_acc\t{acc:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
