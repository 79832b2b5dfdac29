"""test_distillq.py - libdistillq from Python (issue 11, section 3), against
the real broker and teachers on 127.0.0.1.

  - a PyTorch student trained through the service receives, batch for batch,
    the bytes distillq-predict computes locally, and ends with the weights
    of the same loop fed those local logits;
  - a Python worker serving a torch model answers distillq-predict --teacher
    (within 1e-5 of torch's local forward) and distillq-train --teacher;
  - SIGKILL of a Python worker mid-run: another takes over, nothing lost,
    the result unchanged; a mixed pool of C and Python workers;
  - bad input raises a clear exception within the configured timeout.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import distillq
from conftest import (BIN, DATA, LIGHT, Service, load_images, load_labels, local_predict,
                      torch_lightnn, wait_until)

torch = pytest.importorskip("torch")


def _normalise(x):
    """torchvision's ToTensor + Normalize((0.5,), (0.5,)) in float32."""
    return ((x.astype(np.float32) / np.float32(255.0)) - np.float32(0.5)) / np.float32(0.5)


def _kd_loop(batches, teacher_logits, labels, T=2.0, seed=0):
    """The tutorial's train_knowledge_distillation step over given teacher logits."""
    from distillq.models import LightNN

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    student = LightNN()
    opt = torch.optim.Adam(student.parameters(), lr=0.001)
    ce = torch.nn.CrossEntropyLoss()
    student.train()
    for x, t, y in zip(batches, teacher_logits, labels):
        opt.zero_grad()
        s = student(torch.from_numpy(_normalise(x)))
        soft_t = torch.softmax(torch.from_numpy(t) / T, dim=-1)
        soft_s = torch.log_softmax(s / T, dim=-1)
        kd = torch.sum(soft_t * (soft_t.log() - soft_s)) / s.size(0) * (T ** 2)
        loss = 0.25 * kd + 0.75 * ce(s, torch.from_numpy(y))
        loss.backward()
        opt.step()
    return student.state_dict()


def test_student_gets_local_logits_bytewise_and_same_weights(procs, work, weights):
    n, bs = 512, 32
    images, labels = load_images(n), load_labels(n)
    ref = local_predict(work, weights, n, bs, "ref_student")
    svc = Service(procs)
    svc.c_teacher("c1", "fm", weights)
    svc.c_teacher("c2", "fm", weights)
    assert wait_until(10, lambda: svc.workers("fm") == 2)
    t = distillq.Teacher(svc.url("fm"), inflight=3, request_timeout=30)
    info = t.info
    assert info["model"] == "lightnn-fmnist" and info["input"] == [1, 28, 28]
    assert info["mean"] == [0.5] and info["std"] == [0.5] and info["outputs"] == {"logits": [10]}
    assert info["sha256"] == distillq.sha256_file(weights)
    got, xs, ys = [], [], []
    loader = ((images[i:i + bs], labels[i:i + bs]) for i in range(0, n, bs))
    for k, ((x, y), out) in enumerate(t.map(loader, outputs=("logits",))):
        lg = out["logits"]
        assert lg.dtype == np.float32 and lg.shape == (len(x), 10)
        assert lg.tobytes() == ref[k * bs:k * bs + len(x)].tobytes(), "batch %d differs" % k
        got.append(lg)
        xs.append(x)
        ys.append(y)
    assert len(got) == n // bs
    t.close()
    w_service = _kd_loop(xs, got, ys)
    w_local = _kd_loop(xs, [ref[i:i + bs] for i in range(0, n, bs)], ys)
    for name in w_local:
        assert torch.equal(w_service[name], w_local[name]), name


def test_python_worker_answers_predict_and_train(procs, work, weights):
    svc = Service(procs)
    py = svc.py_teacher("py1", "pyfm", weights)
    assert wait_until(30, lambda: svc.workers("pyfm") == 1), procs.log(py)
    out = os.path.join(work, "py_predict.npy")
    r = subprocess.run([os.path.join(BIN, "distillq-predict"), "--teacher", svc.url("pyfm"),
                        "--data", DATA, "--limit", "500", "--batch", "50", "--output", out,
                        "--request-timeout-ms", "30000"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    got = np.load(out)
    net = torch_lightnn(weights)
    with torch.no_grad():
        want = net(torch.from_numpy(_normalise(load_images(500)))).numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5
    r = subprocess.run([os.path.join(BIN, "distillq-train"), "--model", LIGHT, "--data", DATA,
                        "--limit-train", "200", "--limit-test", "50", "--epochs", "1", "--batch",
                        "50", "--seed", "5", "--threads", "1", "--quiet", "--loss", "kd",
                        "--teacher", svc.url("pyfm"), "--inflight", "2", "--out",
                        os.path.join(work, "student_py.safetensors")],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(os.path.join(work, "student_py.safetensors")) > 0
    st = svc.stats()
    served = sum(w["served"] for s in st["services"] if s["name"] == "pyfm" for w in s["workers"])
    assert served >= 10 + 4  # 10 predict batches + 4 training batches at least


def test_sigkill_python_worker_nothing_lost(procs, work, weights):
    n, bs = 640, 16
    images = load_images(n)
    batches = [images[i:i + bs] for i in range(0, n, bs)]
    svc = Service(procs)
    a = svc.py_teacher("pyA", "kill", weights, "--delay-ms", "30")
    assert wait_until(30, lambda: svc.workers("kill") == 1), procs.log(a)
    t = distillq.Teacher(svc.url("kill"), inflight=4, request_timeout=60)
    reference = [out["logits"] for _, out in t.map(batches)]
    got, b = [], None
    for k, (_, out) in enumerate(t.map(batches)):
        got.append(out["logits"])
        if k == 5:  # A holds requests now (4 in flight): kill it, start B
            a.send_signal(signal.SIGKILL)
            a.wait()
            b = svc.py_teacher("pyB", "kill", weights, "--delay-ms", "5")
    assert b is not None and len(got) == len(batches)
    for k, (x, y) in enumerate(zip(reference, got)):
        assert x.tobytes() == y.tobytes(), "batch %d changed" % k
    st = svc.stats()
    assert st["services"][0]["requeues"] >= 1  # A died with work in hand


def test_mixed_pool_c_and_python(procs, work, weights):
    n, bs = 800, 20
    ref = local_predict(work, weights, n, bs, "ref_mixed")
    svc = Service(procs)
    svc.c_teacher("c1", "mix", weights, "--delay-ms", "20")
    py = svc.py_teacher("py1", "mix", weights, "--max-batch", "64")  # a different limit
    assert wait_until(30, lambda: svc.workers("mix") == 2), procs.log(py)
    t = distillq.Teacher(svc.url("mix"), inflight=6)
    assert t.info["max_batch"] == 64  # the least of the pool's limits
    images = load_images(n)
    impls = set()
    for k, (_, out) in enumerate(t.map(images[i:i + bs] for i in range(0, n, bs))):
        impls.add(t.last_teacher["impl"])
        assert not t.last_teacher["changed"]
        assert np.abs(out["logits"] - ref[k * bs:(k + 1) * bs]).max() <= 1e-5
    assert impls == {"distillq-c/cpu", "python-torch/cpu"}, impls


def test_bad_input_raises_within_timeout(procs, work, weights):
    svc = Service(procs, ["--request-timeout-ms", "1000"])
    svc.c_teacher("c1", "fm", weights)
    assert wait_until(10, lambda: svc.workers("fm") == 1)
    t = distillq.Teacher(svc.url("fm"), inflight=2, request_timeout=5)
    x = load_images(8)
    with pytest.raises(distillq.BadRequest, match="uint8 pixels or float32"):
        list(t.map([x.astype(np.float64)]))
    with pytest.raises(distillq.BadRequest, match=r"\[n, 1, 28, 28\]"):
        list(t.map([x.reshape(8, 28, 28)]))
    with pytest.raises(distillq.BadRequest, match="no output 'hidden'"):
        list(t.map([x], outputs=("hidden",)))
    assert t(x)["logits"].shape == (8, 10)  # still usable after the errors
    t0 = time.time()
    with pytest.raises(distillq.ServiceNotFound, match="unknown service 'nope'"):
        distillq.Teacher(svc.url("nope"), info_timeout=3).info
    assert time.time() - t0 < 3.5
    down = svc.fe.rsplit(":", 1)[0] + ":%d" % 1  # nothing listens on port 1
    t0 = time.time()
    with pytest.raises(distillq.TeacherTimeout, match="did not answer"):
        distillq.Teacher(down + "/fm", info_timeout=1.5).info
    assert time.time() - t0 < 2.5
    # and a worker that dies with no other: the batch times out in C, not a hang
    procs.procs[-1].send_signal(signal.SIGKILL)
    procs.procs[-1].wait()
    t0 = time.time()
    with pytest.raises(distillq.DistillqError):
        list(t.map([x, x]))
    assert time.time() - t0 < 8


def test_serve_callable_and_error_reply(procs):
    """distillq.serve's Worker with a plain numpy callable; an exception in it
    is an `error` reply carrying the reason."""
    svc = Service(procs)
    calls = []

    def fn(x):
        calls.append(x.shape)
        if x.shape[0] == 3:
            raise RuntimeError("three is not served")
        return {"mean": x.mean(axis=(1, 2, 3)).reshape(-1, 1)}

    w = distillq.Worker(fn, broker=svc.be, service="np", input_shape=(2, 3, 3),
                        outputs={"mean": [1]}, mean=[0.0, 0.5], std=[1.0, 0.5], quiet=True,
                        heartbeat_ms=100).start()
    try:
        assert wait_until(10, lambda: svc.workers("np") == 1)
        t = distillq.Teacher(svc.url("np"), inflight=2)
        x = np.arange(2 * 2 * 3 * 3, dtype=np.uint8).reshape(2, 2, 3, 3)
        out = t(x, outputs=("mean",))["mean"]
        xf = x.astype(np.float32) / np.float32(255)
        xf[:, 1] = (xf[:, 1] - np.float32(0.5)) / np.float32(0.5)
        assert np.allclose(out[:, 0], xf.mean(axis=(1, 2, 3)), atol=1e-6)
        f = np.ones((2, 2, 3, 3), np.float32)
        assert np.allclose(t(f, outputs=("mean",))["mean"], 1.0)
        with pytest.raises(distillq.TeacherFailed, match="three is not served"):
            t(np.zeros((3, 2, 3, 3), np.float32), outputs=("mean",))
    finally:
        w.stop(1)
        assert w.join(10)
        w.close()


def test_long_python_forward_keeps_heartbeating(procs):
    """A forward of 700 ms against a broker that declares a worker dead after
    300 ms of silence: the library's I/O thread heartbeats meanwhile (the
    forward runs on its compute thread), so nothing dies or is requeued."""
    svc = Service(procs)

    def slow(x):
        time.sleep(0.7)
        return {"s": x.sum(axis=(1, 2, 3)).reshape(-1, 1)}

    w = distillq.Worker(slow, broker=svc.be, service="slow", input_shape=(1, 2, 2),
                        outputs={"s": [1]}, quiet=True, heartbeat_ms=100, capacity=1).start()
    try:
        assert wait_until(10, lambda: svc.workers("slow") == 1)
        t = distillq.Teacher(svc.url("slow"), inflight=2)
        xs = [np.full((1, 1, 2, 2), k, np.float32) for k in range(3)]
        outs = [out["s"][0, 0] for _, out in t.map(xs, outputs=("s",))]
        assert outs == [0.0, 4.0, 8.0]
        st = svc.stats()
        s = [x for x in st["services"] if x["name"] == "slow"][0]
        assert s["requeues"] == 0 and len(s["workers"]) == 1
        assert "died" not in procs.log(svc.broker)
    finally:
        w.stop(1)
        assert w.join(10)
        w.close()
