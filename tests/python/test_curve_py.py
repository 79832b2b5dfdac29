"""test_curve_py.py - CURVE from Python (issue 12 section 1): a Python worker
and a Teacher client with distillq-keygen certificates against a CURVE
broker get answers; a client with an unlisted key, or with none, gets a
clear error (DISTILLQ_EAUTH, distillq.AuthError) within seconds instead of
hanging."""
import json
import os
import subprocess
import time

import numpy as np
import pytest

import distillq
from distillq import _lib
from conftest import BIN, free_port_pair, wait_until


def _keygen(path):
    subprocess.run([os.path.join(BIN, "distillq-keygen"), path], check=True,
                   capture_output=True)


def test_python_worker_and_client_under_curve(procs, tmp_path):
    for d in ("keys", "students", "workers"):
        (tmp_path / d).mkdir()
    k = tmp_path / "keys"
    for name in ("broker", "py-student", "py-worker", "intruder"):
        _keygen(str(k / name))
    (tmp_path / "students" / "py-student").write_bytes((k / "py-student").read_bytes())
    (tmp_path / "workers" / "py-worker").write_bytes((k / "py-worker").read_bytes())
    port = free_port_pair()
    fe, be = "tcp://127.0.0.1:%d" % port, "tcp://127.0.0.1:%d" % (port + 1)
    procs.start("broker", [os.path.join(BIN, "distillq-broker"), "--frontend", fe,
                           "--backend", be, "--heartbeat-ms", "100",
                           "--curve-cert", str(k / "broker_secret"),
                           "--allow-students", str(tmp_path / "students"),
                           "--allow-workers", str(tmp_path / "workers")])
    srv = str(k / "broker")

    def stats():
        r = subprocess.run([os.path.join(BIN, "distillq-broker"), "--stats", fe,
                            "--curve-server-cert", srv, "--curve-cert",
                            str(k / "py-student_secret")],
                           capture_output=True, text=True, timeout=10)
        return json.loads(r.stdout) if r.returncode == 0 else None

    assert wait_until(10, lambda: stats() is not None)
    w = distillq.Worker(lambda x: {"sum": x.sum(axis=(1, 2, 3)).reshape(-1, 1)}, broker=be,
                        service="np", input_shape=(1, 2, 2), outputs={"sum": [1]},
                        quiet=True, heartbeat_ms=100, curve_server_cert=srv,
                        curve_cert=str(k / "py-worker_secret")).start()
    try:
        assert wait_until(10, lambda: (stats() or {}).get("workers") == 1)
        t = distillq.Teacher(fe + "/np", inflight=2, curve_server_cert=srv,
                             curve_cert=str(k / "py-student_secret"))
        x = np.ones((3, 1, 2, 2), np.float32)
        assert np.allclose(t(x, outputs=("sum",))["sum"][:, 0], 4.0)
        st = stats()
        assert any(wk["id"].startswith("py-worker@")
                   for s in st["services"] for wk in s["workers"])
        t0 = time.time()
        with pytest.raises(distillq.DistillqError) as e:
            bad = distillq.Teacher(fe + "/np", inflight=2, request_timeout=20.0,
                                   info_timeout=20.0, curve_server_cert=srv,
                                   curve_cert=str(k / "intruder_secret"))
            bad(x, outputs=("sum",))
        assert time.time() - t0 < 10
        assert e.value.code == _lib.EAUTH
        assert isinstance(e.value, distillq.AuthError)
        assert isinstance(e.value, PermissionError)
        assert "refused our CURVE key" in str(e.value)
        # no keys at all: told the broker requires CURVE, not a 20 s timeout
        t0 = time.time()
        with pytest.raises(distillq.AuthError) as e:
            plain = distillq.Teacher(fe + "/np", inflight=2, request_timeout=20.0,
                                     info_timeout=20.0)
            plain(x, outputs=("sum",))
        assert time.time() - t0 < 10
        assert "requires CURVE" in str(e.value)
    finally:
        w.stop(1)
        assert w.join(10)
        w.close()
