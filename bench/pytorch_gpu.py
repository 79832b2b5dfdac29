#!/usr/bin/python3
"""pytorch_gpu.py - the PyTorch side of bench/bench_gpu.c on the same card.

Measures the teacher forward of the PyTorch knowledge-distillation tutorial's
DeepNN (CIFAR-10: 3x32x32; Fashion-MNIST: 1x28x28) at batch 128 and 1024,
eval mode under torch.inference_mode(), end to end as bench_gpu.c does: the
batch is copied from pinned host memory to the device, the forward runs, the
logits are copied back and the stream synchronised. Also cuBLAS sgemm 8192
through torch.mm as the peak.

Math: by default FP32 without TF32 (torch.backends.cudnn.allow_tf32 = False,
torch.backends.cuda.matmul.allow_tf32 = False), the same arithmetic as
distillq's backend; --tf32 measures PyTorch's default convolution setting
(cuDNN may use TF32 tensor cores) for reference. cudnn.benchmark is on, so
PyTorch times its algorithms (distillq takes cuDNN's heuristics).

Inputs and weights are random (fixed seed). Timing: median of 5 windows
after a warm-up, as bench_gpu.c. FLOPs as dq_net_flops_per_sample (conv and
linear, multiply-add = 2). Results as tab-separated "RESULT pytorch-gpu
<what> <batch> <metric> <value>" lines, plus lines for people on stderr.
"""
import argparse
import statistics
import sys
import time

import torch
import torch.nn as nn

from tutorial_nets import DeepNN, LightNN  # bench/tutorial_nets.py


def resnet18_fmnist(classes=10):
    """models/resnet18-fmnist.model: torchvision's ResNet-18, 1-channel stem."""
    import torchvision
    m = torchvision.models.resnet18(num_classes=classes)
    m.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return m


def conv_linear_flops(model, in_ch, hw, dev):
    """Conv and linear multiply-adds x 2 of one sample, counted by hooks."""
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            total[0] += 2 * out[0].numel() * k
        else:
            total[0] += 2 * m.in_features * m.out_features
    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.inference_mode():
        model(torch.zeros(1, in_ch, hw, hw, device=dev))
    for h in hs:
        h.remove()
    return total[0]


def measure(step, seconds):
    """Median over 5 windows of iterations per second, after a warm-up."""
    t0 = time.perf_counter()
    i = 0
    while i < 3 or time.perf_counter() - t0 < 0.3:
        step()
        i += 1
    rates = []
    for _ in range(5):
        start = time.perf_counter()
        n = 0
        while True:
            step()
            n += 1
            now = time.perf_counter()
            if now - start >= seconds / 5:
                break
        rates.append(n / (now - start))
    return statistics.median(rates)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in cuDNN convolutions")
    ap.add_argument("--models-dir", default=None, help="unused; accepted for make bench-gpu")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("pytorch_gpu.py: torch.cuda.is_available() is False (no GPU or a CPU-only "
              "PyTorch build)", file=sys.stderr)
        return 1
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = a.tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device(a.device)
    torch.manual_seed(42)
    print(f"INFO\tdevice\t{torch.cuda.get_device_name(dev)}")
    print(f"INFO\ttorch\t{torch.__version__} cudnn {torch.backends.cudnn.version()} "
          f"tf32_conv {a.tf32}")

    n = 8192
    ma = torch.rand(n, n, device=dev)  # random: zeros draw less power, flatter the peak
    mb = torch.rand(n, n, device=dev)

    def gemm():
        torch.mm(ma, mb)
        torch.cuda.synchronize(dev)

    peak = measure(gemm, a.seconds) * 2.0 * n ** 3 / 1e12
    del ma, mb
    print(f"RESULT\tpytorch-gpu\tsgemm\t{n}\ttflops\t{peak:.3f}")
    print(f"torch.mm {n}: {peak:.2f} TFLOP/s", file=sys.stderr)

    for name, in_ch, hw in (("deepnn-cifar10", 3, 32), ("deepnn-fmnist", 1, 28),
                            ("resnet18-fmnist", 1, 28)):
        model = (resnet18_fmnist() if name.startswith("resnet")
                 else DeepNN(in_channels=in_ch, side=hw)).to(dev).eval()
        fps = conv_linear_flops(model, in_ch, hw, dev)
        for batch in (128, 1024):
            host = torch.randn(batch, in_ch, hw, hw).pin_memory()
            out = torch.empty(batch, 10).pin_memory()

            def forward():
                with torch.inference_mode():
                    x = host.to(dev, non_blocking=True)
                    out.copy_(model(x), non_blocking=True)
                torch.cuda.synchronize(dev)

            sps = measure(forward, a.seconds) * batch
            tf = sps * fps / 1e12
            print(f"RESULT\tpytorch-gpu\t{name}\t{batch}\tsamples_per_s\t{sps:.1f}")
            print(f"RESULT\tpytorch-gpu\t{name}\t{batch}\ttflops\t{tf:.3f}")
            print(f"{name:16s} batch {batch:5d}  {sps:10.0f} samples/s  {tf:6.2f} TFLOP/s  "
                  f"{100 * tf / peak:5.1f}% of sgemm", file=sys.stderr)
    # student training steps, as bench_gpu.c: zero_grad, train forward, a fixed
    # d(loss)/d(logits) (copied up from pinned memory, as distillq's is),
    # backward, Adam; the batch comes from pinned host memory
    for name, batch in (("lightnn-fmnist", 64), ("lightnn-fmnist", 256),
                        ("resnet18-fmnist", 128)):
        model = (LightNN() if name.startswith("lightnn") else resnet18_fmnist()).to(dev).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        host = torch.randn(batch, 1, 28, 28).pin_memory()
        ghost = ((torch.arange(batch * 10) % 7 - 3).float() * 1e-3).view(batch, 10).pin_memory()
        out = torch.empty(batch, 10).pin_memory()

        def step():
            opt.zero_grad(set_to_none=False)
            y = model(host.to(dev, non_blocking=True))
            out.copy_(y.detach(), non_blocking=True)
            y.backward(ghost.to(dev, non_blocking=True))
            opt.step()
            torch.cuda.synchronize(dev)

        sps = measure(step, a.seconds) * batch
        print(f"RESULT\tpytorch-gpu\ttrain-{name}\t{batch}\tsamples_per_s\t{sps:.1f}")
        print(f"train {name:16s} batch {batch:5d}  {sps:10.0f} samples/s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
