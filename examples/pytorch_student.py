#!/usr/bin/env python3
"""pytorch_student.py - the PyTorch knowledge-distillation tutorial's LightNN
student, trained in PyTorch with the teacher's logits from a distillq
teacher service (any mix of distillq-teacher and Python workers).

    distillq-broker --frontend tcp://127.0.0.1:5555 --backend tcp://127.0.0.1:5556 &
    distillq-teacher --broker tcp://127.0.0.1:5556 --service fmnist \\
        --model models/deepnn-fmnist.model --weights deepnn.safetensors &
    python3 examples/pytorch_student.py --teacher tcp://127.0.0.1:5555/fmnist

Fashion-MNIST is read from the Debian dataset package's IDX files; the
teacher gets raw uint8 pixels (it normalises them as it announced, see
Teacher.info) while the next --inflight batches are at the teachers.
"""
import argparse
import gzip
import os

import numpy as np
import torch
import torch.nn.functional as F

import distillq
from distillq.models import LightNN


def idx(path, offset, shape):
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset).reshape(shape)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--teacher", required=True, help="tcp://HOST:PORT/SERVICE")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--limit", type=int, default=0, help="first N training images only")
    p.add_argument("--inflight", type=int, default=8)
    p.add_argument("--T", type=float, default=2.0)
    p.add_argument("--soft-weight", type=float, default=0.25)
    p.add_argument("--out", default="lightnn-student.pt")
    a = p.parse_args()
    x = idx(os.path.join(a.data, "train-images-idx3-ubyte.gz"), 16, (-1, 1, 28, 28))
    y = idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz"), 8, (-1,)).astype(np.int64)
    xt = idx(os.path.join(a.data, "t10k-images-idx3-ubyte.gz"), 16, (-1, 1, 28, 28))
    yt = idx(os.path.join(a.data, "t10k-labels-idx1-ubyte.gz"), 8, (-1,)).astype(np.int64)
    if a.limit:
        x, y = x[:a.limit], y[:a.limit]

    teacher = distillq.Teacher(a.teacher, inflight=a.inflight)
    info = teacher.info
    print("teacher: %s (sha256 %.12s) on %d workers, input %s, mean %s std %s"
          % (info["model"], info["sha256"], info["workers"], info["input"], info["mean"],
             info["std"]))
    mean, std = np.float32(info["mean"][0]), np.float32(info["std"][0])

    def norm(u8):  # the student sees what the teacher sees
        return torch.from_numpy((u8.astype(np.float32) / np.float32(255) - mean) / std)

    torch.manual_seed(0)
    student = LightNN()
    opt = torch.optim.Adam(student.parameters(), lr=0.001)
    rng = np.random.default_rng(0)
    for epoch in range(a.epochs):
        order = rng.permutation(len(x))
        batches = ((x[order[i:i + a.batch]], y[order[i:i + a.batch]])
                   for i in range(0, len(x), a.batch))
        student.train()
        total = 0.0
        for (xb, yb), out in teacher.map(batches, outputs=("logits",)):
            t = torch.from_numpy(out["logits"])
            s = student(norm(xb))
            soft_t = F.softmax(t / a.T, dim=-1)
            soft_s = F.log_softmax(s / a.T, dim=-1)
            kd = torch.sum(soft_t * (soft_t.log() - soft_s)) / s.size(0) * a.T ** 2
            loss = a.soft_weight * kd + (1 - a.soft_weight) * F.cross_entropy(s, torch.from_numpy(yb))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        student.eval()
        with torch.no_grad():
            acc = (student(norm(xt)).argmax(1).numpy() == yt).mean()
        print("epoch %d: loss %.4f, test accuracy %.2f%%" % (epoch + 1, total / len(x), 100 * acc))
    torch.save(student.state_dict(), a.out)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
