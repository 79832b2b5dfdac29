"""torch_models.py - the PyTorch twins of distillq's residual model files
(issue 9), and safetensors reading/writing without the `safetensors` module
(the header JSON + raw little-endian bytes, as the format defines it).

  resnet18_fmnist()  = models/resnet18-fmnist.model
  TinyMobileNet()    = models/mobilenet-tiny-fmnist.model

Used by tests/resnet_torch.py (driven by tests/test_resnet_torch.sh).
"""
import json
import struct

import torch
from torch import nn


def resnet18_fmnist(num_classes=10):
    """torchvision's ResNet-18 with a 1-channel 7x7 stride-2 conv1."""
    import torchvision

    m = torchvision.models.resnet18(num_classes=num_classes)
    m.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return m


class DSConv(nn.Module):
    """Depthwise 3x3 + BN + ReLU6, then pointwise 1x1 + BN (+ ReLU6)."""

    def __init__(self, cin, cout, stride, act_out=True):
        super().__init__()
        self.dw = nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU6(),
        )
        pw = [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        if act_out:
            pw.append(nn.ReLU6())
        self.pw = nn.Sequential(*pw)

    def forward(self, x):
        return self.pw(self.dw(x))


class TinyMobileNet(nn.Module):
    """A small MobileNet-style student for 1x28x28 with one residual block."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU6())
        self.block1 = DSConv(16, 32, 1)
        self.block2 = DSConv(32, 64, 2)
        self.block3 = DSConv(64, 64, 1, act_out=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        x = x + self.block3(x)
        return self.fc(torch.flatten(self.pool(x), 1))


_DTYPES = {torch.float32: ("F32", "<f4"), torch.int64: ("I64", "<i8")}
_NUMPY = {"F32": ("<f4", torch.float32), "I64": ("<i8", torch.int64)}


def save_safetensors(path, tensors):
    """tensors: name -> tensor (F32 or I64), written in the given order."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        dt, _ = _DTYPES[t.dtype]
        raw = t.detach().contiguous().cpu().numpy().astype(_DTYPES[t.dtype][1]).tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    """name -> tensor for F32 and I64 entries (others are an error)."""
    import numpy as np

    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        npdt, tdt = _NUMPY[e["dtype"]]
        a, b = e["data_offsets"]
        arr = np.frombuffer(body[a:b], dtype=npdt).reshape(e["shape"])
        out[name] = torch.from_numpy(arr.copy()).to(tdt)
    return out
