"""resnet_torch.py - distillq's residual networks against PyTorch (issue 9),
driven by tests/test_resnet_torch.sh; prints TAP lines.

For torchvision's ResNet-18 (models/resnet18-fmnist.model) and TinyMobileNet
(models/mobilenet-tiny-fmnist.model, tests/torch_models.py), with random
weights AND random batch-norm statistics written by PyTorch as safetensors:
  1. eval logits of distillq-predict on Fashion-MNIST test images equal
     PyTorch's eval forward (max abs error <= 1e-4 of the logits' scale);
  2. tests/net_step on the same images: eval with folded and unfolded batch
     norm, one training-mode forward (logits), the gradients of
     sum(logits * dy) and the running statistics after it (momentum 0.1,
     unbiased variance, num_batches_tracked + 1) equal PyTorch's;
  3. a checkpoint written by distillq-train (a few Adam steps on 256
     images) loads into the PyTorch model with load_state_dict(strict=True)
     and gives the logits and predictions distillq-predict gives.

usage: resnet_torch.py BUILD_DIR SRC_DIR TMP_DIR
"""
import gzip
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402

BUILD, SRC, TMP = sys.argv[1:4]
DATA = os.environ.get("DQ_FMNIST", "/usr/share/datasets/fashion-mnist")
N = 16
n_test = 0
failed = 0
torch.manual_seed(0)
torch.set_num_threads(1)


def check(ok, desc):
    global n_test, failed
    n_test += 1
    if not ok:
        failed += 1
    print(("ok" if ok else "not ok") + " %d - %s" % (n_test, desc), flush=True)


def rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(np.abs(want).max(), 1e-12)
    return float(np.abs(got - want).max() / scale)


def images(n):
    with gzip.open(os.path.join(DATA, "t10k-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    u8 = np.frombuffer(raw[16:16 + n * 784], np.uint8).reshape(n, 1, 28, 28)
    x = torch.from_numpy(u8.copy()).float().div(255).sub(0.5).div(0.5)  # ToTensor + Normalize
    return x


def randomize(m):
    """Random weights and batch-norm statistics, so nothing is the identity."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.copy_(0.5 + torch.rand(c, generator=g))
                mod.bias.copy_(0.2 * torch.randn(c, generator=g))
                mod.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(c, generator=g))
                mod.num_batches_tracked.fill_(7)


def run(*args):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.stdout.write("# %s failed (%d): %s\n" % (args[0], r.returncode, r.stderr.strip()))
    return r.returncode == 0


def predict(model, weights, n, out):
    ok = run(os.path.join(BUILD, "distillq-predict"), "--model", model, "--weights", weights,
             "--data", DATA, "--limit", str(n), "--batch", "7", "--output", out)
    return np.load(out) if ok else None


def compare_model(key, build):
    model_file = os.path.join(SRC, "models", key + ".model")
    m = build()
    randomize(m)
    sd = m.state_dict()
    wpath = os.path.join(TMP, key + ".torch.safetensors")
    tm.save_safetensors(wpath, sd)

    # 1. distillq-predict on real images vs PyTorch eval.
    x = images(64)
    m.eval()
    with torch.no_grad():
        ref = m(x).numpy()
    got = predict(model_file, wpath, 64, os.path.join(TMP, key + ".pred.npy"))
    e = rel_err(got, ref) if got is not None else float("inf")
    check(e <= 1e-4, "%s: distillq-predict logits equal PyTorch eval (max err %.2e of scale)"
          % (key, e))

    # 2. net_step: eval folded/unfolded, a training forward, gradients, running stats.
    xs = x[:N].contiguous()
    dy = torch.randn(N, 10, generator=torch.Generator().manual_seed(2))
    xp, dp = os.path.join(TMP, key + ".x.f32"), os.path.join(TMP, key + ".dy.f32")
    xs.numpy().astype("<f4").tofile(xp)
    dy.numpy().astype("<f4").tofile(dp)
    out = os.path.join(TMP, key + ".step.safetensors")
    ok = run(os.path.join(BUILD, "tests", "net_step"), model_file, wpath, xp, dp, str(N), out)
    check(ok, "%s: net_step runs" % key)
    if not ok:
        return
    r = tm.load_safetensors(out)
    with torch.no_grad():
        ev = m(xs).numpy()
    e1, e2 = rel_err(r["eval"], ev), rel_err(r["eval_unfolded"], ev)
    e3 = rel_err(r["eval"], r["eval_unfolded"])
    check(e1 <= 1e-4 and e2 <= 1e-4,
          "%s: eval logits, folded (%.2e) and unfolded (%.2e), equal PyTorch" % (key, e1, e2))
    check(e3 <= 1e-5, "%s: folded batch norm within 1e-5 of unfolded (%.2e)" % (key, e3))
    m.train()
    for p in m.parameters():
        p.grad = None
    tr = m(xs)
    (tr * dy).sum().backward()
    e = rel_err(r["train"], tr.detach().numpy())
    check(e <= 1e-4, "%s: training-mode logits equal PyTorch (%.2e)" % (key, e))
    worst, wname = 0.0, ""
    for name, p in m.named_parameters():
        e = rel_err(r["grad." + name], p.grad.numpy())
        if e > worst:
            worst, wname = e, name
    check(worst <= 1e-4, "%s: every parameter gradient equals PyTorch (worst %.2e, %s)"
          % (key, worst, wname))
    worst, wname, nbt_ok = 0.0, "", True
    for name, b in m.named_buffers():
        if name.endswith("num_batches_tracked"):
            nbt_ok = nbt_ok and int(r[name]) == int(b) == 8
            continue
        e = rel_err(r[name], b.numpy())
        if e > worst:
            worst, wname = e, name
    check(worst <= 1e-5 and nbt_ok, "%s: running statistics after one training step equal "
          "PyTorch (worst %.2e, %s; num_batches_tracked 8: %s)" % (key, worst, wname, nbt_ok))


def reverse(key, build):
    """A distillq-trained checkpoint in PyTorch (strict) gives distillq's predictions."""
    model_file = os.path.join(SRC, "models", key + ".model")
    ck = os.path.join(TMP, key + ".trained.safetensors")
    ok = run(os.path.join(BUILD, "distillq-train"), "--model", model_file, "--data", DATA,
             "--limit-train", "256", "--limit-test", "64", "--epochs", "1", "--batch", "64",
             "--seed", "3", "--quiet", "--out", ck)
    check(ok, "%s: distillq-train runs 4 steps" % key)
    if not ok:
        return
    m = build()
    sd = tm.load_safetensors(ck)
    try:
        res = m.load_state_dict(sd, strict=True)
        loaded = not res.missing_keys and not res.unexpected_keys
    except RuntimeError as exc:
        sys.stdout.write("# %s\n" % str(exc).replace("\n", " "))
        loaded = False
    check(loaded, "%s: the distillq checkpoint loads with load_state_dict(strict=True)" % key)
    if not loaded:
        return
    check(int(sd[[k for k in sd if k.endswith("num_batches_tracked")][0]]) == 4,
          "%s: num_batches_tracked counts the 4 training steps" % key)
    m.eval()
    x = images(64)
    with torch.no_grad():
        ref = m(x).numpy()
    got = predict(model_file, ck, 64, os.path.join(TMP, key + ".trained.npy"))
    e = rel_err(got, ref) if got is not None else float("inf")
    same = got is not None and (got.argmax(1) == ref.argmax(1)).all()
    check(e <= 1e-4 and same, "%s: PyTorch on the distillq checkpoint gives distillq's logits "
          "(%.2e) and predictions (%s)" % (key, e, same))


print("1..22", flush=True)
for key, build in (("resnet18-fmnist", tm.resnet18_fmnist), ("mobilenet-tiny-fmnist",
                                                              tm.TinyMobileNet)):
    compare_model(key, build)
    reverse(key, build)
sys.exit(1 if failed else 0)
