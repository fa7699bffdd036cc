"""PyTriton: Triton's C++ HTTP/gRPC front end calling the session callable in Python.

Runs in ``.cache/bench-venvs/pytriton`` (``nvidia-pytriton``). ``python pytriton_server.py
HTTP_PORT GRPC_PORT METRICS_PORT NAME=VERSION_DIR ...`` binds one model per ``NAME`` with an
``@batch`` function that runs the same TF1 session callable as the other peers, and serves the
Open Inference (KServe v2) protocol on REST (``POST /v2/models/NAME/infer``) and gRPC
(``inference.GRPCInferenceService/ModelInfer``). Triton's model config is PyTriton's default
(``max_batch_size`` 64, its default dynamic batcher with no queue delay). Input ``x`` and output
``y`` have the model's shapes without the batch dimension; a model of rank-1 input (TF Serving's
half_plus_two, ``[None]``) is served as items of shape ``[1]`` (requests say ``[N, 1]``).
HTTP, gRPC and metrics bind 127.0.0.1.

The Python-backend stub embeds a CPython 3.11 whose C ``RLock`` lacks ``_recursion_count``,
which this venv's newer 3.11 ``multiprocessing.resource_tracker`` calls, so the model fails to
initialise; ``ensure_rlock_fix`` gives the tracker the pure-Python lock (one line at the top of
``pytriton/proxy/data.py``, which the stub imports first), idempotently.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from session_model import load, parse_models

FIX_MARK = "# nbserve bench: pure-Python RLock for the resource tracker"
FIX = (f"{FIX_MARK}\nimport threading as _t, multiprocessing.resource_tracker as _rt\n"
       "_rt._resource_tracker._lock = _t._PyRLock()\n")


def ensure_rlock_fix() -> None:
    import pytriton.proxy.data as data

    path = data.__file__
    with open(path) as f:
        text = f.read()
    if FIX_MARK not in text:
        with open(path, "w") as f:
            f.write(FIX + text)


def item_shape(shape: list[int]) -> tuple[int, ...]:
    """Triton's per-item shape (batch dimension dropped) for a model shape."""
    return tuple(shape[1:]) if len(shape) >= 2 else (1,)


def infer_function(run):
    from pytriton.decorators import batch

    flat = len(run.input_shape) < 2

    @batch
    def infer(x: np.ndarray) -> dict[str, np.ndarray]:
        if flat:
            return {"y": run(x.reshape(-1)).reshape(-1, 1)}
        return {"y": run(x)}

    return infer


def main() -> None:
    ensure_rlock_fix()
    from pytriton.model_config import ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    http_port, grpc_port, metrics_port = (int(a) for a in sys.argv[1:4])
    models = {name: load(path) for name, path in parse_models(sys.argv[4:]).items()}
    config = TritonConfig(http_address="127.0.0.1", http_port=http_port,
                          grpc_address="127.0.0.1", grpc_port=grpc_port,
                          metrics_address="127.0.0.1", metrics_port=metrics_port)
    with Triton(config=config) as triton:
        for name, run in models.items():
            triton.bind(model_name=name, infer_func=infer_function(run),
                        inputs=[Tensor(name="x", dtype=np.float32,
                                       shape=item_shape(run.input_shape))],
                        outputs=[Tensor(name="y", dtype=np.float32,
                                        shape=item_shape(run.output_shape))],
                        config=ModelConfig(max_batch_size=64))
        triton.serve()


if __name__ == "__main__":
    main()
