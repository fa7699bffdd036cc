"""Seldon MLServer custom runtime (V2 / Open Inference protocol) running the session callable.

Runs in ``.cache/bench-venvs/mlserver`` under ``mlserver start FOLDER`` with this folder on
PYTHONPATH; ``write_settings`` (importable without mlserver) writes that FOLDER: ``settings.json``
(ports, ``parallel_workers: 0``, loopback only where MLServer allows, gRPC messages up to 2 GiB
as nbserve and Triton take them) and one sub-folder per model
with ``model-settings.json`` (``implementation: mlserver_runtime.SessionRuntime``,
``parameters.uri`` = the SavedModel version folder).
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def write_settings(folder: str, http_port: int, grpc_port: int, metrics_port: int,
                   models: dict) -> None:
    os.makedirs(folder, exist_ok=True)
    settings = {"http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port,
                "parallel_workers": 0, "host": "127.0.0.1", "debug": False,
                "metrics_endpoint": None, "grpc_max_message_length": 2**31 - 1}
    with open(os.path.join(folder, "settings.json"), "w") as f:
        json.dump(settings, f)
    for name, path in models.items():
        sub = os.path.join(folder, name)
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, "model-settings.json"), "w") as f:
            json.dump({"name": name, "implementation": "mlserver_runtime.SessionRuntime",
                       "parameters": {"uri": path}}, f)


try:
    from mlserver import MLModel
    from mlserver.codecs import NumpyCodec
    from mlserver.types import InferenceRequest, InferenceResponse
except ImportError:  # imported by the harness (no mlserver there) for write_settings only
    MLModel = object  # type: ignore[misc,assignment]


class SessionRuntime(MLModel):  # type: ignore[misc,valid-type]
    async def load(self) -> bool:
        from session_model import load

        self._run = load(self.settings.parameters.uri)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        import numpy as np

        inputs = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        outputs = self._run(inputs)
        return InferenceResponse(model_name=self.name,
                                 outputs=[NumpyCodec.encode_output("y", outputs)])
