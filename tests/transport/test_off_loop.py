"""Blocking work stays off the event loop: a predict blocked inside the model never stalls the
loop (health checks, status and other requests keep being answered)."""

from __future__ import annotations

import threading

import numpy as np

from nbserve.options import ModelConfig
from nbserve.testing import FakeLoader, FakeServable, fake_version_dirs
from tests.transport.rest_client import call


def double(signature, inputs):
    return {"y": np.asarray(inputs["x"], np.float32) * 2}


def test_loop_answers_while_a_predict_blocks(start_server, tmp_path):
    fake_version_dirs(str(tmp_path), [1])
    servable = FakeServable(fn=double, gate=threading.Event())
    srv = start_server([ModelConfig("m", str(tmp_path))],
                       loader_factory=lambda sid, path: FakeLoader(servable))
    srv.wait_until_available("m")
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        reply=call(srv.rest_port, "POST", "/v1/models/m:predict", '{"instances": [1.0, 2.0]}')))
    worker.start()
    try:
        assert servable.entered.acquire(timeout=10)
        assert call(srv.rest_port, "GET", "/healthz", timeout=5).status == 200
        assert call(srv.rest_port, "GET", "/v1/models/m", timeout=5).json()[
            "model_version_status"][0]["state"] == "AVAILABLE"
    finally:
        servable.gate.set()
        worker.join(30)
    assert result["reply"].json() == {"predictions": [2.0, 4.0]}
