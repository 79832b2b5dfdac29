#!/usr/bin/env python3
"""pytorch_teacher.py - a PyTorch teacher served to distillq-train (or to
pytorch_student.py): the tutorial's DeepNN, trained here for a moment in
PyTorch, then served with distillq.serve. The identity is the SHA-256 of the
saved weights, as for distillq-teacher.

    distillq-broker --frontend tcp://127.0.0.1:5555 --backend tcp://127.0.0.1:5556 &
    python3 examples/pytorch_teacher.py --broker tcp://127.0.0.1:5556 --service fmnist &
    distillq-train --model models/lightnn-fmnist.model --data /usr/share/datasets/fashion-mnist \\
        --loss kd --teacher tcp://127.0.0.1:5555/fmnist --epochs 1 --out student.safetensors

(The same without writing Python: distillq-torch-teacher --model
distillq.models:DeepNN --weights deepnn.pt --broker ... --service ... --input 1,28,28
--mean 0.5 --std 0.5.)
"""
import argparse
import gzip
import os

import numpy as np
import torch
import torch.nn.functional as F

import distillq
from distillq.models import DeepNN


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--broker", required=True, help="broker backend, tcp://HOST:PORT")
    p.add_argument("--service", default="fmnist")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--train", type=int, default=2000, help="images to pre-train on (0: none)")
    p.add_argument("--weights", default="deepnn-teacher.pt")
    a = p.parse_args()
    torch.manual_seed(0)
    net = DeepNN()
    if a.train:
        with gzip.open(os.path.join(a.data, "train-images-idx3-ubyte.gz")) as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:a.train]
        with gzip.open(os.path.join(a.data, "train-labels-idx1-ubyte.gz")) as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)[:a.train].astype(np.int64)
        xf = torch.from_numpy((x.astype(np.float32) / 255 - 0.5) / 0.5)
        opt = torch.optim.Adam(net.parameters(), lr=0.001)
        net.train()
        for i in range(0, len(x), 64):
            loss = F.cross_entropy(net(xf[i:i + 64]), torch.from_numpy(y[i:i + 64]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.save(net.state_dict(), a.weights)
    net.eval()

    def forward(x):  # float32 [n, 1, 28, 28], already normalised by libdistillq
        with torch.no_grad():
            return {"logits": net(torch.from_numpy(x)).numpy()}

    print("serving DeepNN (%s) as '%s' at %s; Ctrl-C drains and leaves"
          % (a.weights, a.service, a.broker))
    distillq.serve(forward, broker=a.broker, service=a.service, input_shape=(1, 28, 28),
                   mean=[0.5], std=[0.5], outputs={"logits": [10]}, model="deepnn-torch",
                   sha256=distillq.sha256_file(a.weights), impl="python-torch/cpu")


if __name__ == "__main__":
    main()
