"""distillq - the distillq teacher service from Python (libdistillq via ctypes).

Student side:  distillq.Teacher(url, inflight=K) -> .info, .map(batches, outputs)
Teacher side:  distillq.serve(fn, broker=..., service=..., input_shape=..., ...)
               distillq-torch-teacher --model MODULE:FACTORY --weights FILE ...
numpy in and out; PyTorch is optional (distillq.torch_teacher needs it).
"""
from .errors import (AuthError, BadRequest, DistillqError, ServiceNotFound,  # noqa: F401
                     TeacherFailed, TeacherTimeout)
from .serve import Worker, serve, sha256_file  # noqa: F401
from .teacher import Teacher  # noqa: F401

__version__ = "0.1.0"
