#!/usr/bin/python3
"""onnx_export.py - small PyTorch models exported to ONNX, with PyTorch's own
outputs as the reference, for tests/test_onnx_torch.sh (and the fuzz seeds).

Usage: onnx_export.py OUTDIR
       onnx_export.py --lightnn WEIGHTS.safetensors OUT.onnx

Writes, for each case NAME: NAME.onnx, NAME.input.npy (a fixed float input
[3, C, H, W]) and NAME.<output>.npy (PyTorch's eval-mode outputs on it), plus
cases that must fail (an unsupported operator, a truncated file), and
OUTDIR/manifest.txt with one line per case:

    NAME ok OUTPUT[,OUTPUT...] [mean=..] [std=..]
    NAME error SUBSTRING-OF-THE-MESSAGE

Together the cases cover every operator the importer maps (Conv with groups,
strides and padding; BatchNormalization; Relu; Clip as relu6, as a general
clamp, from attributes at opset 10 and from inputs at 11+; MaxPool with
padding; AveragePool with and without count_include_pad; GlobalAveragePool;
Add residuals; Gemm; MatMul (+ bias Add); Flatten; Reshape; Identity;
Dropout; Constant; Pad) at opsets 10, 11, 13 and 17. --lightnn exports a
distillq-trained LightNN (tests/test_onnx_teacher.sh). Needs torch, onnx, numpy
(Debian: python3-torch python3-onnx python3-numpy).
"""
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F


class Plain(nn.Module):
    """The tutorial's CNN shape: conv/relu/maxpool twice, flatten, two Gemms."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(8 * 3 * 3, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class Block(nn.Module):
    """torchvision's BasicBlock with a strided 1x1 downsample."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                  nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.down(x))


class Residual(nn.Module):
    """ResNet stem (conv/bn/relu/maxpool with padding), a residual block, a
    batch norm not after a conv, a depthwise-separable block with relu6,
    average pools both ways, global average pool, flatten, Gemm; two outputs."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 5, 2, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.block = Block(8, 16, 2)
        self.bn_free = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 32, 3, 1, 1, groups=16)
        self.pw = nn.Conv2d(32, 16, 1)
        self.ap_in = nn.AvgPool2d(3, 1, 1, count_include_pad=True)
        self.ap_ex = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.block(x)
        x = F.relu(self.bn_free(x) + x)
        f = F.relu6(self.dw(x))
        f = torch.clamp(self.pw(f), -1.5, 2.5)
        f = self.ap_in(f) + self.ap_ex(f)
        feats = self.pool(f)
        return self.fc(torch.flatten(feats, 1)), feats


class MatMulNet(nn.Module):
    """x @ W + b and x @ W (MatMul with a constant weight, bias as Add)."""

    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(64, 20) * 0.1)
        self.b1 = nn.Parameter(torch.randn(20) * 0.1)
        self.w2 = nn.Parameter(torch.randn(20, 5) * 0.1)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return torch.matmul(F.relu(torch.matmul(x, self.w1) + self.b1), self.w2)


class ReshapeNet(nn.Module):
    """Reshape to [-1, F] and, traced with a fixed batch, x.view(x.size(0), -1)."""

    def __init__(self, static_batch):
        super().__init__()
        self.static_batch = static_batch
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, 6)

    def forward(self, x):
        y = F.relu(self.conv(x))
        y = y.view(y.size(0), -1) if self.static_batch else y.reshape(-1, 64)
        return self.fc(y)


class Sigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return torch.sigmoid(self.conv(x)).flatten(1)


def randomize_bn(model, gen):
    """Non-trivial running statistics and affine parameters."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def export(outdir, manifest, name, model, shape, opset, outputs, dynamic=True,
           meta=None, expect=None, fold_bn=False, params=None):
    gen = torch.Generator().manual_seed(1234)
    randomize_bn(model, gen)
    model.eval()
    x = torch.randn(3, *shape, generator=gen)
    path = os.path.join(outdir, name + ".onnx")
    dyn = {"input": {0: "N"}} if dynamic else None
    if dyn:
        for o in outputs:
            dyn[o] = {0: "N"}
    # PRESERVE keeps BatchNormalization nodes; EVAL (the default for a model
    # in eval mode, fold_bn) folds them into the convolutions.
    mode = torch.onnx.TrainingMode.EVAL if fold_bn else torch.onnx.TrainingMode.PRESERVE
    torch.onnx.export(model, x, path, input_names=["input"], output_names=outputs,
                      opset_version=opset, dynamic_axes=dyn, training=mode,
                      do_constant_folding=True)
    m = onnx.load(path)
    extra = ""
    if meta:
        for k, v in meta.items():
            p = m.metadata_props.add()
            p.key, p.value = "distillq." + k, v
            extra += " %s=%s" % (k, v)
        onnx.save(m, path)
    onnx.checker.check_model(m)
    with torch.no_grad():
        ys = model(x)
    if not isinstance(ys, tuple):
        ys = (ys,)
    np.save(os.path.join(outdir, name + ".input.npy"), x.numpy().astype(np.float32))
    for o, y in zip(outputs, ys):
        np.save(os.path.join(outdir, "%s.%s.npy" % (name, o)), y.numpy().astype(np.float32))
    ops = sorted({n.op_type for n in m.graph.node})
    if expect:
        manifest.write("%s error %s\n" % (name, expect))
    else:
        if params:
            extra += " params=" + params
        manifest.write("%s ok %s%s\n" % (name, ",".join(outputs), extra))
    return path, ops


def write_u8_case(outdir, name, model, mean, std):
    """An IDX image set (as distillq-predict reads) of 5 random 8-bit images
    and PyTorch's logits on them normalised as the metadata says:
    NAME-images-idx3-ubyte, NAME-labels-idx1-ubyte, NAME.u8.logits.npy."""
    gen = torch.Generator().manual_seed(99)
    pix = torch.randint(0, 256, (5, 12, 12), generator=gen, dtype=torch.uint8)
    with open(os.path.join(outdir, name + "-images-idx3-ubyte"), "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (5, 12, 12)))
        f.write(pix.numpy().tobytes())
    with open(os.path.join(outdir, name + "-labels-idx1-ubyte"), "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + bytes([0, 1, 2, 3, 4]))
    x = ((pix.float() / 255 - mean) / std).unsqueeze(1)
    with torch.no_grad():
        y = model(x)
    np.save(os.path.join(outdir, name + ".u8.logits.npy"), y.numpy().astype(np.float32))


class LightNN(nn.Module):
    """The PyTorch KD tutorial's LightNN for Fashion-MNIST
    (models/lightnn-fmnist.model)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.1), nn.Linear(256, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def read_safetensors(path):
    """{name: float32 tensor} from a safetensors file (F32 only)."""
    import json
    import struct
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", name
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + b:8 + n + e], dtype="<f4").reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def export_lightnn(weights, out):
    """distillq-trained LightNN weights -> ONNX with distillq's normalisation."""
    model = LightNN()
    model.load_state_dict(read_safetensors(weights), strict=True)
    model.eval()
    x = torch.zeros(1, 1, 28, 28)
    torch.onnx.export(model, x, out, input_names=["input"], output_names=["logits"],
                      opset_version=13, dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    m = onnx.load(out)
    for k, v in (("distillq.mean", "0.5"), ("distillq.std", "0.5")):
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, out)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--lightnn":
        export_lightnn(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) != 2:
        sys.exit("usage: onnx_export.py OUTDIR | --lightnn WEIGHTS.safetensors OUT.onnx")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.manual_seed(0)
    seen = set()
    with open(os.path.join(outdir, "manifest.txt"), "w") as man:
        for opset in (11, 13, 17):
            torch.manual_seed(opset)
            model = Plain()
            _, ops = export(outdir, man, "plain%d" % opset, model, (1, 12, 12), opset,
                            ["logits"], meta={"mean": "0.5", "std": "0.25"})
            seen.update(ops)
            if opset == 13:
                write_u8_case(outdir, "plain13", model, 0.5, 0.25)
            torch.manual_seed(opset + 1)
            _, ops = export(outdir, man, "residual%d" % opset, Residual(), (3, 32, 32), opset,
                            ["logits", "features"],
                            meta={"mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225"})
            seen.update(ops)
        torch.manual_seed(10)
        _, ops = export(outdir, man, "clip10", Residual(), (3, 32, 32), 10,
                        ["logits", "features"])
        seen.update(ops)
        torch.manual_seed(2)
        _, ops = export(outdir, man, "matmul13", MatMulNet(), (1, 8, 8), 13, ["out"])
        seen.update(ops)
        torch.manual_seed(3)
        _, ops = export(outdir, man, "reshape13", ReshapeNet(False), (2, 6, 6), 13, ["logits"])
        seen.update(ops)
        torch.manual_seed(4)
        _, ops = export(outdir, man, "view_static13", ReshapeNet(True), (2, 6, 6), 13,
                        ["logits"], dynamic=False)
        seen.update(ops)
        # The shipped residual models' PyTorch twins (tests/torch_models.py):
        # the imported parameters must be exactly the model file's, i.e. the
        # state_dict keys; and torchvision's ResNet-18 as torch exports it by
        # default, batch norms folded into the convolutions.
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import torch_models
        torch.manual_seed(6)
        _, ops = export(outdir, man, "resnet18_13", torch_models.resnet18_fmnist(), (1, 28, 28),
                        13, ["logits"], params="resnet18-fmnist")
        seen.update(ops)
        torch.manual_seed(7)
        export(outdir, man, "resnet18_folded17", torch_models.resnet18_fmnist(), (1, 28, 28), 17,
               ["logits"], fold_bn=True)
        torch.manual_seed(8)
        _, ops = export(outdir, man, "mobilenet13", torch_models.TinyMobileNet(), (1, 28, 28), 13,
                        ["logits"], params="mobilenet-tiny-fmnist")
        seen.update(ops)
        # Identity, Constant and Dropout nodes (the exporter folds its own
        # away): the same net as reshape13 with a Constant for the Reshape's
        # shape, an Identity after the conv and a Dropout on the output;
        # none changes the outputs, so PyTorch's are the reference.
        torch.manual_seed(3)
        path, _ = export(outdir, man, "nodes13", ReshapeNet(False), (2, 6, 6), 13, ["logits"])
        m = onnx.load(path)
        g = m.graph
        nodes = list(g.node)
        out = g.output[0].name
        new = [onnx.helper.make_node(
            "Constant", [], ["shape_c"], name="shape_const",
            value=onnx.helper.make_tensor("shape_v", onnx.TensorProto.INT64, [2], [-1, 64]))]
        for node in nodes:
            if node.op_type == "Reshape":
                node.input[1] = "shape_c"
            if out in node.output:
                node.output[0] = out + "_pre"
            new.append(node)
            if node.op_type == "Conv":
                conv_out = node.output[0]
                node.output[0] = conv_out + "_id"
                new.append(onnx.helper.make_node("Identity", [conv_out + "_id"], [conv_out],
                                                 name="conv_identity"))
        new.append(onnx.helper.make_node("Dropout", [out + "_pre"], [out], name="drop"))
        del g.node[:]
        g.node.extend(new)
        onnx.checker.check_model(m)
        onnx.save(m, path)
        seen.update({"Constant", "Identity", "Dropout"})
        # Failures: an unsupported operator, a truncated file.
        torch.manual_seed(5)
        export(outdir, man, "sigmoid13", Sigmoid(), (1, 6, 6), 13, ["logits"],
               expect="unsupported operator Sigmoid")
        with open(os.path.join(outdir, "plain13.onnx"), "rb") as f:
            data = f.read()
        with open(os.path.join(outdir, "truncated.onnx"), "wb") as f:
            f.write(data[:len(data) // 2])
        man.write("truncated error truncated.onnx: not a valid ONNX model\n")
    want = {"Conv", "BatchNormalization", "Relu", "Clip", "MaxPool", "AveragePool",
            "GlobalAveragePool", "Add", "Gemm", "MatMul", "Flatten", "Reshape",
            "Identity", "Dropout", "Constant"}
    missing = want - seen
    if missing:
        sys.exit("onnx_export.py: no case exports %s" % sorted(missing))


if __name__ == "__main__":
    main()
