#!/usr/bin/python3
"""pytorch_resnet.py - the PyTorch side of bench/run_resnet.sh.

torchvision's ResNet-18 with conv1 = Conv2d(1, 64, 7, 2, 3, bias=False) and a
10-class fc (models/resnet18-fmnist.model is the same network), on the first
--images Fashion-MNIST test images normalised as (x/255 - 0.5)/0.5, batch
--batch, cycled:
  forward:  eval mode, torch.no_grad()
  training: zero_grad + forward(train) + cross-entropy + backward + Adam
Each number is the median of 5 windows after a warm-up, like bench_net.c.
Prints "RESULT pytorch <threads> resnet18_fwd_sps|resnet18_train_sps <value>".
Run with Debian's /usr/bin/python3 (python3-torch, python3-torchvision).
"""
import argparse
import gzip
import os
import statistics
import struct
import time

import torch
import torch.nn as nn
import torchvision


def resnet18_fmnist(classes=10):
    m = torchvision.models.resnet18(num_classes=classes)
    m.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return m


def read_idx_images(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        magic, n, h, w = struct.unpack(">IIII", f.read(16))
        assert magic == 0x803, path
        return torch.frombuffer(bytearray(f.read(n * h * w)), dtype=torch.uint8).view(n, 1, h, w)


def read_idx_labels(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        magic, n = struct.unpack(">II", f.read(8))
        assert magic == 0x801, path
        return torch.frombuffer(bytearray(f.read(n)), dtype=torch.uint8).long()


def find(data, stem):
    for suffix in ("", ".gz"):
        p = os.path.join(data, stem + suffix)
        if os.path.exists(p):
            return p
    raise SystemExit(f"pytorch_resnet.py: no {stem}[.gz] in {data}")


def median_rate(step, seconds):
    t0 = time.perf_counter()
    i = 0
    while i < 2 or time.perf_counter() - t0 < 0.5:
        step()
        i += 1
    rates = []
    for _ in range(5):
        it, t0 = 0, time.perf_counter()
        while True:
            step()
            it += 1
            el = time.perf_counter() - t0
            if el >= seconds / 5:
                break
        rates.append(it / el)
    return statistics.median(rates)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--only", choices=("fwd", "train"))
    a = ap.parse_args()
    x = read_idx_images(find(a.data, "t10k-images-idx3-ubyte"))[: a.images]
    y = read_idx_labels(find(a.data, "t10k-labels-idx1-ubyte"))[: a.images]
    x = (x.float() / 255.0 - 0.5) / 0.5
    torch.manual_seed(42)
    model = resnet18_fmnist()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    pos = [0]

    def batch():
        if pos[0] + a.batch > x.shape[0]:
            pos[0] = 0
        s = slice(pos[0], pos[0] + a.batch)
        pos[0] += a.batch
        return x[s], y[s]

    def fwd():
        xb, _ = batch()
        with torch.no_grad():
            model(xb)

    def train():
        xb, yb = batch()
        opt.zero_grad()
        loss_fn(model(xb), yb).backward()
        opt.step()

    print(f"INFO\tpytorch\t{torch.__version__}", flush=True)
    for t in [int(v) for v in a.threads.split(",")]:
        torch.set_num_threads(t)
        if a.only in (None, "fwd"):
            model.eval()
            r = median_rate(fwd, a.seconds)
            print(f"RESULT\tpytorch\t{t}\tresnet18_fwd_sps\t{r * a.batch:.1f}", flush=True)
        if a.only in (None, "train"):
            model.train()
            r = median_rate(train, a.seconds)
            print(f"RESULT\tpytorch\t{t}\tresnet18_train_sps\t{r * a.batch:.1f}", flush=True)


if __name__ == "__main__":
    main()
