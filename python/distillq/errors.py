"""errors.py - the exceptions: every one carries libdistillq's message."""


class DistillqError(Exception):
    """A libdistillq error: `code` is the DISTILLQ_E* value, str() the C message."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class ServiceNotFound(DistillqError):
    """No live worker of the service (or an unknown_service reply)."""


class TeacherTimeout(DistillqError, TimeoutError):
    """Nothing within the timeout: broker down, or no worker took the batch."""


class BadRequest(DistillqError, ValueError):
    """The batch does not fit the service (dtype, shape, batch size, output)."""


class TeacherFailed(DistillqError):
    """The teacher failed on a valid batch, or broke the protocol."""


class AuthError(DistillqError, PermissionError):
    """CURVE: our key refused, a wrong server key, or CURVE on one side only."""


def raise_for(code, err):
    from . import _lib
    msg = err.msg.decode("utf-8", "replace") if err is not None else ""
    if not msg:
        msg = _lib.lib.distillq_strerror(code).decode()
    cls = {_lib.ENOTFOUND: ServiceNotFound, _lib.ETIMEOUT: TeacherTimeout,
           _lib.EARG: BadRequest, _lib.EAUTH: AuthError}.get(code, TeacherFailed)
    raise cls(code, msg)
