"""_lib.py - libdistillq through ctypes (the C library does the work).

The structures mirror include/distillq.h field for field; the resend,
exactly-once and ordering logic stays in C. The library is found, in this
order, at $DISTILLQ_LIB, beside an installed package (_installed.LIBDIR),
or by the dynamic linker's search ("libdistillq.so.0").
"""
import ctypes
import ctypes.util
import os

MAX_OUTPUTS = 16
MAX_DIMS = 8
MAX_CHANNELS = 4
NAME_MAX = 64

U8 = 0
F32 = 1

OK = 0
EARG = -1
ENOMEM = -2
ENET = -3
EPROTO = -4
ETIMEOUT = -5
EAGAIN = -6
ENOTFOUND = -7
EINTR = -8
ETEACHER = -9
EAUTH = -11

c_name = ctypes.c_char * (NAME_MAX + 1)


class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("msg", ctypes.c_char * 512)]


class ServiceInfo(ctypes.Structure):
    _fields_ = [
        ("service", c_name), ("model", c_name), ("sha256", ctypes.c_char * 65),
        ("input", ctypes.c_int64 * 3), ("dtypes", ctypes.c_int), ("n_norm", ctypes.c_int),
        ("mean", ctypes.c_float * MAX_CHANNELS), ("std", ctypes.c_float * MAX_CHANNELS),
        ("n_outputs", ctypes.c_int), ("output_names", c_name * MAX_OUTPUTS),
        ("output_ndim", ctypes.c_int * MAX_OUTPUTS),
        ("output_shape", (ctypes.c_int64 * MAX_DIMS) * MAX_OUTPUTS),
        ("max_batch", ctypes.c_int64), ("n_workers", ctypes.c_int), ("capacity", ctypes.c_int),
    ]


class ClientOpts(ctypes.Structure):
    _fields_ = [("inflight", ctypes.c_int), ("request_timeout_ms", ctypes.c_int),
                ("resend_ms", ctypes.c_int), ("heartbeat_ms", ctypes.c_int),
                ("curve_server_cert", ctypes.c_char_p), ("curve_cert", ctypes.c_char_p),
                ("name", ctypes.c_char_p)]


class Output(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("ndim", ctypes.c_int),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("data", ctypes.POINTER(ctypes.c_float))]


class Result(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_uint64), ("n_outputs", ctypes.c_int),
                ("outputs", Output * MAX_OUTPUTS), ("model", ctypes.c_char_p),
                ("sha256", ctypes.c_char_p), ("impl", ctypes.c_char_p),
                ("teacher_changed", ctypes.c_int), ("sends", ctypes.c_int)]


FORWARD = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
    ctypes.POINTER(ctypes.c_int64), ctypes.c_int, ctypes.POINTER(ctypes.c_char_p),
    ctypes.POINTER(ctypes.POINTER(ctypes.c_float)), ctypes.c_void_p, ctypes.c_size_t)


class WorkerConfig(ctypes.Structure):
    _fields_ = [
        ("broker", ctypes.c_char_p), ("service", ctypes.c_char_p), ("model", ctypes.c_char_p),
        ("sha256", ctypes.c_char_p), ("input", ctypes.c_int64 * 3), ("n_norm", ctypes.c_int),
        ("mean", ctypes.c_float * MAX_CHANNELS), ("std", ctypes.c_float * MAX_CHANNELS),
        ("n_outputs", ctypes.c_int), ("output_names", ctypes.c_char_p * MAX_OUTPUTS),
        ("output_ndim", ctypes.c_int * MAX_OUTPUTS),
        ("output_shape", (ctypes.c_int64 * MAX_DIMS) * MAX_OUTPUTS),
        ("capacity", ctypes.c_int), ("max_batch", ctypes.c_int64),
        ("heartbeat_ms", ctypes.c_int), ("impl", ctypes.c_char_p), ("quiet", ctypes.c_int),
        ("forward", FORWARD), ("user", ctypes.c_void_p),
        ("curve_server_cert", ctypes.c_char_p), ("curve_cert", ctypes.c_char_p),
    ]


def _candidates():
    env = os.environ.get("DISTILLQ_LIB")
    if env:
        yield env
    try:
        from . import _installed  # written by `make install`
        yield os.path.join(_installed.LIBDIR, "libdistillq.so.0")
    except ImportError:
        pass
    yield "libdistillq.so.0"
    found = ctypes.util.find_library("distillq")
    if found:
        yield found


def _load():
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            errors.append(str(e))
    raise ImportError("distillq: cannot load libdistillq (set DISTILLQ_LIB): " + "; ".join(errors))


lib = _load()
_P = ctypes.POINTER
_sigs = {
    "distillq_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "distillq_client_opts_default": (None, [_P(ClientOpts)]),
    "distillq_client_open": (ctypes.c_int, [_P(ctypes.c_void_p), ctypes.c_char_p, _P(ClientOpts),
                                            _P(Error)]),
    "distillq_client_close": (None, [_P(ctypes.c_void_p)]),
    "distillq_client_info": (ctypes.c_int, [ctypes.c_void_p, _P(ServiceInfo), ctypes.c_int,
                                            _P(Error)]),
    "distillq_client_submit": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int, _P(ctypes.c_int64),
                                              ctypes.c_void_p, ctypes.c_int, _P(ctypes.c_char_p),
                                              _P(ctypes.c_uint64), _P(Error)]),
    "distillq_client_next": (ctypes.c_int, [ctypes.c_void_p, _P(Result), ctypes.c_int, _P(Error)]),
    "distillq_client_pending": (ctypes.c_int, [ctypes.c_void_p]),
    "distillq_worker_config_default": (None, [_P(WorkerConfig)]),
    "distillq_worker_new": (ctypes.c_int, [_P(ctypes.c_void_p), _P(WorkerConfig), _P(Error)]),
    "distillq_worker_run": (ctypes.c_int, [ctypes.c_void_p, _P(Error)]),
    "distillq_worker_stop": (None, [ctypes.c_void_p, ctypes.c_int]),
    "distillq_worker_destroy": (None, [_P(ctypes.c_void_p)]),
    "distillq_sha256_file": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, _P(Error)]),
}
for _name, (_res, _args) in _sigs.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args
