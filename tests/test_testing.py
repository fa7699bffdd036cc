"""nbserve.testing: FakeServable is a real Servable; start_test_server serves it on real sockets."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from nbserve.errors import ServingError, StatusCode
from nbserve.servables.signature import Servable, Signature, TensorInfo
from nbserve.testing import HALF_PLUS_TWO, FakeLoader, FakeServable, start_test_server


def test_fake_servable_is_a_servable_computing_half_plus_two():
    servable = FakeServable()
    assert isinstance(servable, Servable)
    assert servable.signatures == {"serving_default": HALF_PLUS_TWO}
    assert servable.device == "/device:CPU:0"
    out = servable.run(HALF_PLUS_TWO, {"x": np.array([1.0, 2.0], np.float32)}, timeout_ms=7)
    np.testing.assert_array_equal(out["y"], np.array([2.5, 3.0], np.float32))
    assert out["y"].dtype == np.float32
    (call,) = servable.calls
    assert (call.signature_key, call.output_filter, call.timeout_ms) == ("serving_default", None, 7)
    assert servable.run_count == 1


def test_fake_servable_signatures_fn_and_output_filter():
    sig = Signature("s", inputs={"a": TensorInfo("a:0", "DT_INT64", (-1,))},
                    outputs={"p": TensorInfo("p:0", "DT_INT64", (-1,)),
                             "q": TensorInfo("q:0", "DT_INT64", (-1,))})
    servable = FakeServable(signatures=[sig],
                            fn=lambda s, inputs: {"p": inputs["a"] + 1, "q": inputs["a"] * 2})
    assert list(servable.signatures) == ["s"]
    assert servable.run(sig, {"a": np.array([3])}, output_filter=["q"]) == {"q": 6}
    with pytest.raises(ServingError) as info:
        servable.run(HALF_PLUS_TWO, {"x": np.array([1.0])})
    assert info.value.code is StatusCode.INTERNAL


def test_fake_servable_error_knobs():
    boom = ServingError(StatusCode.RESOURCE_EXHAUSTED, "boom")
    servable = FakeServable(error=boom, fail_times=1)
    x = {"x": np.array([0.0], np.float32)}
    with pytest.raises(ServingError) as info:
        servable.run(HALF_PLUS_TWO, x)
    assert info.value is boom
    assert servable.run(HALF_PLUS_TWO, x)["y"][0] == 2.0
    servable.error = ValueError("always")
    servable._fail_times = 0
    with pytest.raises(ValueError, match="always"):
        servable.run(HALF_PLUS_TWO, x)


def test_fake_servable_gate_holds_a_run_until_opened():
    gate = threading.Event()
    servable = FakeServable(gate=gate)
    result: dict[str, np.ndarray] = {}
    worker = threading.Thread(target=lambda: result.update(
        servable.run(HALF_PLUS_TWO, {"x": np.array([4.0], np.float32)})))
    worker.start()
    assert servable.entered.acquire(timeout=10)  # the run started ...
    assert not result  # ... and waits at the gate
    gate.set()
    worker.join(10)
    assert result["y"][0] == 4.0


def test_fake_servable_gate_times_out_with_deadline_exceeded():
    servable = FakeServable(gate=threading.Event(), gate_timeout=0.01)
    with pytest.raises(ServingError) as info:
        servable.run(HALF_PLUS_TWO, {"x": np.array([1.0], np.float32)})
    assert info.value.code is StatusCode.DEADLINE_EXCEEDED


def test_fake_servable_signature_def_map_describes_the_signatures():
    sdef = FakeServable().signature_def_map().signature_def["serving_default"]
    assert sdef.method_name == "tensorflow/serving/predict"
    assert sdef.inputs["x"].name == "x:0" and sdef.inputs["x"].dtype == 1  # DT_FLOAT
    assert [d.size for d in sdef.outputs["y"].tensor_shape.dim] == [-1]


def test_fake_loader_marks_its_fake_servable_unloaded():
    servable = FakeServable()
    loader = FakeLoader(servable)
    loader.load()
    assert not servable.unloaded
    loader.unload()
    assert servable.unloaded


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_start_test_server_serves_fake_versions_over_rest():
    failing = FakeServable(error=ServingError(StatusCode.FAILED_PRECONDITION, "not today"))
    server = start_test_server({"hp2": FakeServable(), "two": {1: FakeServable(),
                                                               2: failing}})
    try:
        assert server.rest_port
        base = f"http://127.0.0.1:{server.rest_port}/v1/models"
        assert post(f"{base}/hp2:predict", {"instances": [1.0, 2.0]}) == (
            200, {"predictions": [2.5, 3.0]})
        assert post(f"{base}/two/versions/2:predict", {"instances": [1.0]}) == (
            400, {"error": "not today"})
        assert post(f"{base}/two/versions/1:predict", {"instances": [0.0]}) == (
            200, {"predictions": [2.0]})
    finally:
        server.stop()
