"""conftest.py - what the Python tests of libdistillq share (run by
tests/test_python.sh under `make check`): the built programs, the library,
real processes on 127.0.0.1 killed by pid, Fashion-MNIST, a trained LightNN.

Environment (set by test_python.sh): DQ_BIN (the build dir with the
programs), DQ_SRC (the source tree), DISTILLQ_LIB (the built
libdistillq.so.0), PYTHONPATH (python/ of the source tree).
"""
import atexit
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

BIN = os.environ.get("DQ_BIN", ".")
SRC = os.environ.get("DQ_SRC", ".")
DATA = os.environ.get("DQ_FMNIST_DIR", "/usr/share/datasets/fashion-mnist")
LIGHT = os.path.join(SRC, "models", "lightnn-fmnist.model")
HB = ["--heartbeat-ms", "100", "--liveness", "3"]


_CLAIMED = []


def _port_bindable(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _port_claim(p):
    """The shell tests' reservation (tests/tap_lib.sh port_claim): a directory
    per port holding its owner's pid, so parallel tests never pick the same
    port; a dead owner's claim is taken over."""
    d = os.path.join(os.environ.get("TMPDIR", "/tmp"), "dq-port.%d" % p)
    for _ in range(2):
        try:
            os.mkdir(d)
        except FileExistsError:
            try:
                with open(os.path.join(d, "pid")) as f:
                    os.kill(int(f.read().strip()), 0)
                return False  # its owner lives
            except (OSError, ValueError):
                shutil.rmtree(d, ignore_errors=True)
                continue
        with open(os.path.join(d, "pid"), "w") as f:
            f.write("%d\n" % os.getpid())
        _CLAIMED.append(d)
        return True
    return False


@atexit.register
def _release_ports():
    for d in _CLAIMED:
        shutil.rmtree(d, ignore_errors=True)


def free_port_pair():
    """Two consecutive loopback ports, picked as tests/tap_lib.sh does: below
    Linux's ephemeral range (32768-60999), where a port can be taken at any
    moment as the local end of some outgoing connection before our broker
    binds it (bind(0) hands out exactly such ports), and reserved."""
    p = 20000 + (os.getpid() * 7) % 11000
    for _ in range(400):
        p += 2
        if p >= 32700:
            p = 20000
        if _port_bindable(p) and _port_bindable(p + 1) and _port_claim(p):
            if _port_claim(p + 1):
                return p
    raise RuntimeError("no free port pair")


def load_images(limit):
    with gzip.open(os.path.join(DATA, "t10k-images-idx3-ubyte.gz")) as f:
        d = f.read()
    return np.frombuffer(d, np.uint8, offset=16).reshape(-1, 1, 28, 28)[:limit].copy()


def load_labels(limit):
    with gzip.open(os.path.join(DATA, "t10k-labels-idx1-ubyte.gz")) as f:
        d = f.read()
    return np.frombuffer(d, np.uint8, offset=8)[:limit].astype(np.int64)


class Procs:
    """Background processes of one test, killed by pid at the end."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []

    def start(self, name, argv, env=None):
        log = open(os.path.join(self.tmp, name + ".log"), "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env or os.environ.copy())
        p.logname = log.name
        self.procs.append(p)
        return p

    def log(self, p):
        with open(p.logname) as f:
            return f.read()

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        end = time.time() + 3
        for p in self.procs:
            try:
                p.wait(max(0.1, end - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Service:
    """A broker on two free loopback ports, and workers for it."""

    def __init__(self, procs, extra=()):
        self.procs = procs
        port = free_port_pair()
        self.fe = "tcp://127.0.0.1:%d" % port
        self.be = "tcp://127.0.0.1:%d" % (port + 1)
        self.broker = procs.start("broker-%d" % port, [os.path.join(BIN, "distillq-broker"),
                                  "--frontend", self.fe, "--backend", self.be] + HB + list(extra))
        wait_until(10, lambda: self.stats() is not None)

    def url(self, service):
        return self.fe + "/" + service

    def stats(self):
        r = subprocess.run([os.path.join(BIN, "distillq-broker"), "--stats", self.fe],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def workers(self, service):
        st = self.stats() or {}
        for s in st.get("services", []):
            if s["name"] == service:
                return len(s.get("workers", []))
        return 0

    def c_teacher(self, name, service, weights, *extra):
        return self.procs.start(name, [os.path.join(BIN, "distillq-teacher"), "--broker", self.be,
                                       "--service", service, "--model", LIGHT, "--weights",
                                       weights] + HB + list(extra))

    def py_teacher(self, name, service, weights, *extra):
        """distillq-torch-teacher (as python3 -m distillq) serving LightNN."""
        return self.procs.start(name, [sys.executable, "-m", "distillq", "--model",
                                       "distillq.models:LightNN", "--weights", weights,
                                       "--broker", self.be, "--service", service,
                                       "--input", "1,28,28", "--mean", "0.5", "--std", "0.5",
                                       "--name", "lightnn-fmnist", "--heartbeat-ms", "100",
                                       "--threads", "1"] + list(extra))


def wait_until(seconds, cond):
    end = time.time() + seconds
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def procs():
    tmp = tempfile.mkdtemp(prefix="dq-py.")
    p = Procs(tmp)
    yield p
    p.stop_all()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def work():
    d = tempfile.mkdtemp(prefix="dq-pyw.")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def weights(work):
    """A LightNN teacher trained for a moment by distillq-train."""
    out = os.path.join(work, "w1.safetensors")
    subprocess.run([os.path.join(BIN, "distillq-train"), "--model", LIGHT, "--data", DATA,
                    "--limit-train", "256", "--limit-test", "64", "--batch", "64", "--epochs", "1",
                    "--seed", "1", "--quiet", "--out", out], check=True, timeout=120,
                   capture_output=True)
    return out


def local_predict(work, weights, limit, batch, name):
    """distillq-predict's local logits (the reference path) as an array."""
    out = os.path.join(work, name + ".npy")
    subprocess.run([os.path.join(BIN, "distillq-predict"), "--model", LIGHT, "--weights", weights,
                    "--data", DATA, "--limit", str(limit), "--batch", str(batch), "--output", out],
                   check=True, timeout=120, capture_output=True)
    return np.load(out)


def torch_lightnn(weights):
    import torch  # noqa: F401
    from distillq.torch_teacher import load_module

    return load_module("distillq.models:LightNN", weights)
