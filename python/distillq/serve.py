"""serve.py - the teacher side: distillq.serve(fn, ...) makes any callable
from a float32 NCHW array to named outputs a teacher worker.

    def fn(x):                       # x: float32 [n, c, h, w], normalised
        return {"logits": model(torch.from_numpy(x)).numpy()}
    distillq.serve(fn, broker="tcp://host:5556", service="fmnist",
                   input_shape=(1, 28, 28), mean=[0.5], std=[0.5],
                   outputs={"logits": [10]}, model="mynet", sha256=...)

The worker state machine (join, heartbeats, re-joins, drain) is
libdistillq's, the one distillq-teacher runs; fn is called on its compute
thread, so heartbeats go on while it runs. u8 requests are normalised in C
exactly as the C teacher does ((x / 255 - mean) / std in float32), so a
Python teacher of the same weights answers the same inputs.
"""
import ctypes
import hashlib
import signal
import threading
import traceback

import numpy as np

from . import _lib
from .errors import raise_for

_L = _lib.lib


def sha256_file(path):
    """The teacher identity: lowercase hex SHA-256 of the weights file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Worker:
    """A teacher worker (see serve). start() runs it on a thread; stop(1)
    drains, stop(2) leaves at once; join() waits and raises its error."""

    def __init__(self, fn, broker, service, input_shape, outputs, mean=None, std=None,
                 capacity=2, max_batch=0, model="python", sha256=None, impl=None,
                 heartbeat_ms=1000, quiet=False, curve_server_cert=None, curve_cert=None):
        self.fn = fn
        self.outputs = self._outputs(outputs)
        self._keep = []  # bytes the config points to live as long as the worker
        cfg = _lib.WorkerConfig()
        _L.distillq_worker_config_default(ctypes.byref(cfg))
        cfg.broker = self._b(broker)
        cfg.service = self._b(service)
        cfg.model = self._b(model)
        cfg.sha256 = self._b(sha256 or hashlib.sha256(model.encode()).hexdigest())
        if len(input_shape) != 3:
            raise ValueError("input_shape must be (c, h, w)")
        for i, v in enumerate(input_shape):
            cfg.input[i] = int(v)
        if (mean is None) != (std is None):
            raise ValueError("mean and std go together")
        if mean is not None:
            mean, std = list(np.atleast_1d(mean)), list(np.atleast_1d(std))
            if len(mean) == 1 and input_shape[0] > 1:
                mean, std = mean * input_shape[0], std * input_shape[0]
            cfg.n_norm = len(mean)
            for c in range(min(len(mean), _lib.MAX_CHANNELS)):
                cfg.mean[c] = float(mean[c])
                cfg.std[c] = float(std[c])
        cfg.n_outputs = len(self.outputs)
        for i, (name, shape) in enumerate(self.outputs):
            cfg.output_names[i] = self._b(name)
            cfg.output_ndim[i] = len(shape)
            for d, v in enumerate(shape):
                cfg.output_shape[i][d] = int(v)
        cfg.capacity = int(capacity)
        cfg.max_batch = int(max_batch)
        cfg.heartbeat_ms = int(heartbeat_ms)
        cfg.impl = self._b(impl or "python/cpu")
        cfg.quiet = 1 if quiet else 0
        if curve_server_cert or curve_cert:
            cfg.curve_server_cert = self._b(curve_server_cert)
            cfg.curve_cert = self._b(curve_cert)
        self._fwd = _lib.FORWARD(self._forward)  # referenced for the worker's lifetime
        cfg.forward = self._fwd
        self._cfg = cfg
        self._w = ctypes.c_void_p()
        err = _lib.Error()
        rc = _L.distillq_worker_new(ctypes.byref(self._w), ctypes.byref(cfg), ctypes.byref(err))
        if rc != 0:
            raise_for(rc, err)
        self._thread = None
        self._rc, self._err = 0, _lib.Error()

    def _b(self, s):
        b = s.encode() if isinstance(s, str) else bytes(s)
        self._keep.append(b)
        return b

    @staticmethod
    def _outputs(outputs):
        if isinstance(outputs, dict):
            return [(k, list(v)) for k, v in outputs.items()]
        return [(k, list(v)) for k, v in outputs]

    def _forward(self, user, inp, shape, n_out, names, outs, errmsg, errlen):
        try:
            n, c, h, w = (shape[i] for i in range(4))
            x = np.ctypeslib.as_array(inp, shape=(n, c, h, w))  # no copy: valid during the call
            res = self.fn(x)
            if not isinstance(res, dict):
                res = {self.outputs[0][0]: res}
            for i in range(n_out):
                name = names[i].decode()
                y = res[name]
                if hasattr(y, "detach"):
                    y = y.detach().cpu().numpy()
                y = np.asarray(y, dtype=np.float32)
                per = dict(self.outputs)[name]
                want = (n,) + tuple(per)
                if y.shape != want:
                    raise ValueError("output '%s' has shape %s, announced %s"
                                     % (name, list(y.shape), list(want)))
                dst = np.ctypeslib.as_array(outs[i], shape=(y.size,))
                dst[:] = y.reshape(-1)
            return 0
        except Exception as e:  # the request gets an `error` reply with the reason
            msg = ("%s: %s" % (type(e).__name__, e)).encode("utf-8", "replace")[:errlen - 1]
            ctypes.memmove(errmsg, msg + b"\0", len(msg) + 1)
            traceback.print_exc()
            return 1

    def run(self):
        """Serves on this thread until stop(); raises on a refusal for good."""
        self._rc = _L.distillq_worker_run(self._w, ctypes.byref(self._err))
        if self._rc != 0:
            raise_for(self._rc, self._err)

    def _run_quietly(self):
        self._rc = _L.distillq_worker_run(self._w, ctypes.byref(self._err))

    def start(self):
        self._thread = threading.Thread(target=self._run_quietly, daemon=True)
        self._thread.start()
        return self

    def stop(self, level=1):
        _L.distillq_worker_stop(self._w, int(level))

    def join(self, timeout=None):
        if self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        if self._rc != 0:
            raise_for(self._rc, self._err)
        return True

    def close(self):
        if self._thread and self._thread.is_alive():
            self.stop(2)
            self._thread.join()
        if self._w:
            _L.distillq_worker_destroy(ctypes.byref(self._w))


def serve(fn, broker, service, input_shape, outputs, mean=None, std=None, capacity=2,
          max_batch=0, model="python", sha256=None, impl=None, heartbeat_ms=1000, quiet=False,
          curve_server_cert=None, curve_cert=None):
    """Serves fn as a teacher of `service` at `broker` (the backend endpoint)
    until SIGINT/SIGTERM (first: drain and leave; second: leave at once).

    fn(x) takes float32 [n, c, h, w] and returns {name: [n, ...]} (or one
    array for the first output). outputs: {name: per-sample shape}. mean/std:
    per channel; with them the service also takes u8 pixels. sha256: the
    teacher identity (use sha256_file(weights)); model: its name."""
    w = Worker(fn, broker, service, input_shape, outputs, mean, std, capacity, max_batch,
               model, sha256, impl, heartbeat_ms, quiet, curve_server_cert, curve_cert)
    stops = [0]

    def on_signal(signum, frame):
        stops[0] += 1
        w.stop(stops[0])

    old = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, on_signal)
    try:
        w.start()
        while not w.join(0.2):
            pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        w.close()
