"""teacher.py - the student side: distillq.Teacher, a teacher service seen
from Python.

    t = distillq.Teacher("tcp://host:5555/fmnist", inflight=8)
    print(t.info)                        # model, sha256, input, normalisation...
    for (images, labels), out in t.map(loader, outputs=("logits",)):
        ...                              # out["logits"]: float32 [n, 10]

map() keeps the next K batches at the teachers while the caller works on
the current one and yields results strictly in order, each exactly once:
libdistillq's ordered client does the resends, restarts and timeouts.
Inputs are numpy arrays (or anything with .numpy(), such as a CPU torch
tensor): uint8 pixels the teacher normalises, or float32 already normalised,
NCHW. They are handed to C without a copy when already contiguous.
"""
import collections
import ctypes

import numpy as np

from . import _lib
from .errors import BadRequest, raise_for

_L = _lib.lib


def _as_array(x):
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class Teacher:
    """A connection to one teacher service (URL: tcp://HOST:PORT/SERVICE).

    inflight: batches at the teachers at once (K); request_timeout: seconds
    after which an unanswered batch raises TeacherTimeout (0: never);
    info_timeout: seconds to wait for the broker's answer to `info`.
    One thread at a time."""

    def __init__(self, url, inflight=16, request_timeout=60.0, info_timeout=10.0,
                 resend=60.0, heartbeat=1.0, curve_server_cert=None, curve_cert=None,
                 name=None):
        self.url = url
        self.inflight = int(inflight)
        self.info_timeout = float(info_timeout)
        self._c = ctypes.c_void_p()
        self._info = None
        opts = _lib.ClientOpts()
        _L.distillq_client_opts_default(ctypes.byref(opts))
        opts.inflight = self.inflight
        opts.request_timeout_ms = int(request_timeout * 1000)
        opts.resend_ms = int(resend * 1000)
        opts.heartbeat_ms = max(1, int(heartbeat * 1000))
        # CURVE certificates (docs/operations.md) and the fair-sharing name;
        # the bytes live in self so the C side's pointers stay valid
        self._strs = [s.encode() if s else None for s in (curve_server_cert, curve_cert, name)]
        opts.curve_server_cert, opts.curve_cert, opts.name = self._strs
        self._opts = opts
        self._open()

    def _open(self):
        err = _lib.Error()
        rc = _L.distillq_client_open(ctypes.byref(self._c), self.url.encode(),
                                     ctypes.byref(self._opts), ctypes.byref(err))
        if rc != 0:
            raise_for(rc, err)

    # -- lifetime
    def close(self):
        if self._c:
            _L.distillq_client_close(ctypes.byref(self._c))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- the service
    @property
    def info(self):
        """The service's description (a dict): service, model, sha256, input
        [c, h, w], dtypes, mean/std (None when not announced), outputs
        {name: per-sample shape}, max_batch, workers, capacity. Asked from the
        broker once; raises ServiceNotFound / TeacherTimeout."""
        if self._info is None:
            self._info = self._ask_info()
        return self._info

    def _ask_info(self):
        if _L.distillq_client_pending(self._c) != 0:
            raise BadRequest(_lib.EARG, "Teacher.info: only with no batch in flight")
        inf = _lib.ServiceInfo()
        err = _lib.Error()
        rc = _L.distillq_client_info(self._c, ctypes.byref(inf), int(self.info_timeout * 1000),
                                     ctypes.byref(err))
        if rc != 0:
            raise_for(rc, err)
        n_norm = inf.n_norm
        return {
            "service": inf.service.decode(), "model": inf.model.decode(),
            "sha256": inf.sha256.decode(), "input": [int(v) for v in inf.input],
            "dtypes": [d for d, bit in (("u8", 1), ("f32", 2)) if inf.dtypes & bit],
            "mean": [float(inf.mean[c]) for c in range(n_norm)] if n_norm else None,
            "std": [float(inf.std[c]) for c in range(n_norm)] if n_norm else None,
            "outputs": {inf.output_names[i].value.decode(): [int(inf.output_shape[i][d]) for d in range(inf.output_ndim[i])]
                        for i in range(inf.n_outputs)},
            "max_batch": int(inf.max_batch), "workers": int(inf.n_workers),
            "capacity": int(inf.capacity),
        }

    # -- batches
    def _check(self, x, outputs):
        info = self.info
        if x.dtype == np.uint8:
            dtype = _lib.U8
        elif x.dtype == np.float32:
            dtype = _lib.F32
        else:
            raise BadRequest(_lib.EARG, "service %s: batches must be uint8 pixels or float32 "
                             "normalised values, not %s" % (info["service"], x.dtype))
        name = "u8" if dtype == _lib.U8 else "f32"
        if name not in info["dtypes"]:
            raise BadRequest(_lib.EARG, "service %s: does not take %s batches (takes %s)"
                             % (info["service"], name, ", ".join(info["dtypes"])))
        if x.ndim != 4 or list(x.shape[1:]) != info["input"] or x.shape[0] < 1:
            raise BadRequest(_lib.EARG, "service %s: batches must be [n, %d, %d, %d] (NCHW), "
                             "got %s" % ((info["service"],) + tuple(info["input"]) +
                                         (list(x.shape),)))
        if info["max_batch"] and x.shape[0] > info["max_batch"]:
            raise BadRequest(_lib.EARG, "service %s: batch of %d, the service takes at most %d"
                             % (info["service"], x.shape[0], info["max_batch"]))
        for o in outputs:
            if o not in info["outputs"]:
                raise BadRequest(_lib.EARG, "service %s: no output '%s' (has %s)"
                                 % (info["service"], o, ", ".join(info["outputs"])))
        return dtype

    def _submit(self, x, names):
        dtype = self._check(x, [n.decode() for n in names])
        x = np.ascontiguousarray(x)
        shape = (ctypes.c_int64 * 4)(*x.shape)
        arr = (ctypes.c_char_p * len(names))(*names)
        err = _lib.Error()
        rc = _L.distillq_client_submit(self._c, dtype, shape, x.ctypes.data_as(ctypes.c_void_p),
                                       len(names), arr, None, ctypes.byref(err))
        if rc != 0:
            raise_for(rc, err)

    def _next(self):
        res = _lib.Result()
        err = _lib.Error()
        while True:  # short waits: Ctrl-C gets through between them
            rc = _L.distillq_client_next(self._c, ctypes.byref(res), 200, ctypes.byref(err))
            if rc == _lib.EAGAIN:
                continue
            if rc != 0:
                raise_for(rc, err)
            break
        out = {}
        for i in range(res.n_outputs):
            o = res.outputs[i]
            shape = tuple(o.shape[d] for d in range(o.ndim))
            out[o.name.decode()] = np.ctypeslib.as_array(o.data, shape=shape).copy()
        self.last_teacher = {"model": res.model.decode(), "sha256": res.sha256.decode(),
                             "impl": res.impl.decode(), "changed": bool(res.teacher_changed),
                             "sends": res.sends}
        return out

    def map(self, batches, outputs=("logits",)):
        """Yields (item, outputs) for each item of `batches`, in order.

        An item is a uint8 or float32 NCHW array (numpy, or a CPU torch
        tensor), or a tuple/list whose first element is one (e.g. (images,
        labels) from a DataLoader); it is yielded back unchanged. outputs is a
        dict name -> float32 array [n, ...]. Errors raise DistillqError
        subclasses carrying the C library's message."""
        names = [o.encode() for o in outputs]
        held = collections.deque()
        try:
            for item in batches:
                x = _as_array(item[0] if isinstance(item, (tuple, list)) else item)
                if len(held) >= self.inflight:
                    done = held.popleft()
                    yield done, self._next()
                self._submit(x, names)
                held.append(item)
            while held:
                done = held.popleft()
                yield done, self._next()
        finally:
            if held:  # abandoned mid-way: the order is gone, start afresh next time
                self._reopen()

    def __call__(self, x, outputs=("logits",)):
        """One batch, synchronously: outputs dict."""
        for _, out in self.map([x], outputs):
            return out

    def _reopen(self):
        self.close()
        self._open()
