"""tutorial_nets.py - the PyTorch knowledge-distillation tutorial's DeepNN and
LightNN for the benchmark scripts, from their one definition in the project:
python/distillq/models.py (the module paths of models/*.model, so state_dict
keys equal distillq's tensor names).

Loaded as a file rather than through the distillq package, which loads
libdistillq on import: the PyTorch benchmarks need only torch (on the GPU
machine there is no libdistillq.so at all).

    from tutorial_nets import DeepNN, LightNN   # from a script in bench/
"""
import importlib.util
import os


def _load():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python", "distillq",
                        "models.py")
    spec = importlib.util.spec_from_file_location("distillq_tutorial_models", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_models = _load()
DeepNN = _models.DeepNN
LightNN = _models.LightNN
