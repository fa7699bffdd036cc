"""Blocking work stays off the event loop: a predict blocked inside the model never stalls the
loop (health checks, status and other requests keep being answered)."""

from __future__ import annotations

import threading

import numpy as np

from nbserve.options import ModelConfig
from nbserve.servables.signature import Signature, TensorInfo
from nbserve.testing import FakeLoader
from tests.core.test_server_core import make_versions
from tests.transport.rest_client import call


class GateServable:
    """A Servable whose run blocks until ``gate`` is set (numpy only, no TF)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        info = TensorInfo("x:0", "DT_FLOAT", (-1,))
        self.signatures = {"serving_default": Signature("serving_default",
                                                        inputs={"x": info},
                                                        outputs={"y": TensorInfo("y:0", "DT_FLOAT", (-1,))})}
        self.device = "/device:CPU:0"

    def run(self, signature, inputs, output_filter=None, timeout_ms=None):
        self.entered.set()
        assert self.gate.wait(30)
        return {"y": np.asarray(inputs["x"], np.float32) * 2}

    def signature_def_map(self):
        raise NotImplementedError


def test_loop_answers_while_a_predict_blocks(start_server, tmp_path):
    make_versions(tmp_path, 1)
    servable = GateServable()
    srv = start_server([ModelConfig("m", str(tmp_path))],
                       loader_factory=lambda sid, path: FakeLoader(servable))
    srv.wait_until_available("m")
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        reply=call(srv.rest_port, "POST", "/v1/models/m:predict", '{"instances": [1.0, 2.0]}')))
    worker.start()
    try:
        assert servable.entered.wait(10)
        assert call(srv.rest_port, "GET", "/healthz", timeout=5).status == 200
        assert call(srv.rest_port, "GET", "/v1/models/m", timeout=5).json()[
            "model_version_status"][0]["state"] == "AVAILABLE"
    finally:
        servable.gate.set()
        worker.join(30)
    assert result["reply"].json() == {"predictions": [2.0, 4.0]}
