#!/usr/bin/env python3
"""ops_ref.py OUTDIR - PyTorch reference values for tests/test_ops_torch.c.

Writes, for each case, its inputs and PyTorch's outputs and gradients as raw
little-endian float32 files (int32 for maxpool indices) named <case>_<what>.f32
/ .i32 into OUTDIR. The C test reads the inputs, runs our ops and compares.
Shapes are fixed here and in the C test (which checks every file's size).

Exit status 77 (automake's "skip") when torch cannot be imported.
"""
import os
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit(77)


def save(outdir, name, t, dtype=torch.float32):
    ext = "i32" if dtype == torch.int32 else "f32"
    arr = t.detach().to(dtype).contiguous().numpy()
    with open(os.path.join(outdir, name + "." + ext), "wb") as f:
        f.write(arr.astype(arr.dtype.newbyteorder("<")).tobytes())


def batchnorm(outdir, g):
    # nn.BatchNorm2d train step: output, running stats, gradients; then eval
    N, C, H, W = 3, 5, 7, 5
    x = (torch.randn(N, C, H, W, generator=g) * 2 + 0.5).requires_grad_()
    bn = torch.nn.BatchNorm2d(C, eps=1e-5, momentum=0.1)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(C, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(C, generator=g))
        bn.running_mean.copy_(torch.randn(C, generator=g))
        bn.running_var.copy_(torch.rand(C, generator=g) + 0.5)
    for n, t in (("x", x), ("w", bn.weight), ("b", bn.bias), ("rm", bn.running_mean),
                 ("rv", bn.running_var)):
        save(outdir, "bn_" + n, t)
    bn.train()
    y = bn(x)
    dy = torch.randn(N, C, H, W, generator=g)
    y.backward(dy)
    save(outdir, "bn_dy", dy)
    save(outdir, "bn_out", y)
    save(outdir, "bn_rm1", bn.running_mean)
    save(outdir, "bn_rv1", bn.running_var)
    save(outdir, "bn_dx", x.grad)
    save(outdir, "bn_dw", bn.weight.grad)
    save(outdir, "bn_db", bn.bias.grad)
    bn.eval()
    with torch.no_grad():
        save(outdir, "bn_eval", bn(x))


def avgpool(outdir, g):
    x = torch.randn(2, 3, 7, 6, generator=g).requires_grad_()
    save(outdir, "ap_x", x)
    dy = torch.randn(2, 3, 4, 3, generator=g)
    save(outdir, "ap_dy", dy)
    for inc in (0, 1):
        x.grad = None
        y = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=bool(inc))
        y.backward(dy)
        save(outdir, "ap%d_out" % inc, y)
        save(outdir, "ap%d_dx" % inc, x.grad)


def maxpool(outdir, g):
    x = torch.randn(2, 3, 7, 6, generator=g).requires_grad_()
    save(outdir, "mp_x", x)
    y, idx = F.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    dy = torch.randn(y.shape, generator=g)
    y.backward(dy)
    save(outdir, "mp_dy", dy)
    save(outdir, "mp_out", y)
    save(outdir, "mp_idx", idx, torch.int32)
    save(outdir, "mp_dx", x.grad)


# name, N, C, H, W, OC, kernel, stride, padding, groups (as in test_ops_torch.c)
CONVS = [
    ("dw1", 2, 4, 7, 6, 4, 3, 1, 1, 4),   # depthwise 3x3 same
    ("dw2", 2, 4, 7, 6, 8, 3, 2, 1, 4),   # depthwise, multiplier 2, stride 2
    ("dw5", 1, 3, 9, 8, 3, 5, 2, 2, 3),   # depthwise 5x5
    ("gc2", 2, 4, 5, 5, 6, 3, 1, 1, 2),   # grouped
]


def convs(outdir, g):
    for name, N, C, H, W, OC, k, s, p, G in CONVS:
        x = torch.randn(N, C, H, W, generator=g).requires_grad_()
        w = (torch.randn(OC, C // G, k, k, generator=g) * 0.5).requires_grad_()
        b = torch.randn(OC, generator=g).requires_grad_()
        y = F.conv2d(x, w, b, stride=s, padding=p, groups=G)
        dy = torch.randn(y.shape, generator=g)
        y.backward(dy)
        for n, t in (("x", x), ("w", w), ("b", b), ("dy", dy), ("out", y), ("dx", x.grad),
                     ("dw", w.grad), ("db", b.grad)):
            save(outdir, name + "_" + n, t)


def small(outdir, g):
    x = torch.randn(2, 3, 5, 7, generator=g).requires_grad_()
    y = F.adaptive_avg_pool2d(x, 1)
    dy = torch.randn(y.shape, generator=g)
    y.backward(dy)
    for n, t in (("x", x), ("dy", dy), ("out", y), ("dx", x.grad)):
        save(outdir, "gap_" + n, t)
    x = (torch.randn(2, 3, 4, 5, generator=g) * 5 + 2).requires_grad_()
    y = F.relu6(x)
    dy = torch.randn(y.shape, generator=g)
    y.backward(dy)
    for n, t in (("x", x), ("dy", dy), ("out", y), ("dx", x.grad)):
        save(outdir, "r6_" + n, t)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: ops_ref.py OUTDIR")
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(20261129)
    out = sys.argv[1]
    batchnorm(out, g)
    avgpool(out, g)
    maxpool(out, g)
    convs(out, g)
    small(out, g)


if __name__ == "__main__":
    main()
