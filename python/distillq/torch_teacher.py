"""torch_teacher.py - distillq-torch-teacher: any PyTorch module as a
teacher worker.

    distillq-torch-teacher --model torchvision.models:resnet18 --weights r18.pt \\
        --broker tcp://host:5556 --service imagenet --input 3,224,224 \\
        --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225

--model MODULE:FACTORY is imported and called (FACTORY() -> nn.Module);
--weights is a state_dict saved with torch.save (.pt/.pth) or a
.safetensors file (read here: header JSON + raw little-endian tensors, so
the safetensors package is not needed). The teacher identity is the
SHA-256 of the weights file, as for distillq-teacher; the output shapes come
from one forward of a zero batch. A module returning a tensor serves it as
"logits"; one returning a dict serves each entry.
"""
import argparse
import importlib
import json
import struct
import sys

import numpy as np

from .serve import serve, sha256_file

_ST_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64,
              "I32": np.int32, "U8": np.uint8, "I8": np.int8, "BOOL": np.bool_}


def load_safetensors(path):
    """name -> torch tensor (copies out of the file)."""
    import torch

    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if e["dtype"] not in _ST_DTYPES:
            raise ValueError("%s: tensor %s has dtype %s (not supported here)"
                             % (path, name, e["dtype"]))
        a, b = e["data_offsets"]
        arr = np.frombuffer(body[a:b], dtype=_ST_DTYPES[e["dtype"]]).reshape(e["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def load_module(spec, weights, device="cpu"):
    """MODULE:FACTORY + weights -> an eval-mode nn.Module on device."""
    import torch

    if ":" not in spec:
        raise SystemExit("distillq-torch-teacher: --model must be MODULE:FACTORY, not %r" % spec)
    mod, _, fac = spec.partition(":")
    net = getattr(importlib.import_module(mod), fac)()
    if weights.endswith(".safetensors"):
        sd = load_safetensors(weights)
    else:
        sd = torch.load(weights, map_location="cpu", weights_only=True)
    # tensors a distillq model file does not keep (batch-norm counters) may be absent
    missing, unexpected = net.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit("distillq-torch-teacher: %s does not fit %s: missing %s, unexpected %s"
                         % (weights, spec, missing[:5], unexpected[:5]))
    return net.to(device).eval()


def make_forward(net, device="cpu", delay_ms=0):
    import time

    import torch

    def forward(x):
        if delay_ms > 0:  # test hook, as distillq-teacher --delay-ms
            time.sleep(delay_ms / 1000.0)
        with torch.no_grad():
            y = net(torch.from_numpy(x).to(device))
        if isinstance(y, dict):
            return {k: v.float().cpu().numpy() for k, v in y.items()}
        return {"logits": y.float().cpu().numpy()}

    return forward


def _floats(s):
    return [float(v) for v in s.split(",")] if s else None


def main(argv=None):
    p = argparse.ArgumentParser(prog="distillq-torch-teacher",
                                description="Serve a PyTorch module as a distillq teacher.")
    p.add_argument("--model", required=True, help="MODULE:FACTORY returning an nn.Module")
    p.add_argument("--weights", required=True, help="state_dict .pt/.pth or .safetensors")
    p.add_argument("--broker", required=True, help="broker backend, tcp://HOST:PORT")
    p.add_argument("--service", required=True)
    p.add_argument("--input", required=True, help="C,H,W of one sample, e.g. 1,28,28")
    p.add_argument("--mean", help="per-channel mean for u8 requests (with --std)")
    p.add_argument("--std", help="per-channel std for u8 requests (with --mean)")
    p.add_argument("--name", help="model name in the identity (default: FACTORY)")
    p.add_argument("--capacity", type=int, default=2)
    p.add_argument("--max-batch", type=int, default=0)
    p.add_argument("--heartbeat-ms", type=int, default=1000)
    p.add_argument("--curve-server-cert", help="CURVE: the broker's public certificate")
    p.add_argument("--curve-cert", help="CURVE: this worker's NAME_secret certificate")
    p.add_argument("--device", default="cpu", help="cpu or cuda:N")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--delay-ms", type=int, default=0, help=argparse.SUPPRESS)  # test hook
    a = p.parse_args(argv)
    import torch

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    chw = [int(v) for v in a.input.split(",")]
    if len(chw) != 3:
        p.error("--input must be C,H,W")
    net = load_module(a.model, a.weights, a.device)
    fwd = make_forward(net, a.device, a.delay_ms)
    probe = fwd(np.zeros([1] + chw, dtype=np.float32))
    outputs = {k: list(v.shape[1:]) for k, v in probe.items()}
    sha = sha256_file(a.weights)
    name = a.name or a.model.partition(":")[2]
    if not a.quiet:
        print("distillq-torch-teacher: %s (sha256 %.16s...) on %s, outputs %s"
              % (name, sha, a.device, outputs), file=sys.stderr, flush=True)
    serve(fwd, broker=a.broker, service=a.service, input_shape=chw, outputs=outputs,
          mean=_floats(a.mean), std=_floats(a.std), capacity=a.capacity, max_batch=a.max_batch,
          model=name, sha256=sha, impl="python-torch/%s" % a.device,
          heartbeat_ms=a.heartbeat_ms, quiet=a.quiet,
          curve_server_cert=a.curve_server_cert, curve_cert=a.curve_cert)
    return 0


if __name__ == "__main__":
    sys.exit(main())
