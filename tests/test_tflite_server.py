"""TFLite models served by a real Server (``prefer_tflite_model``) over REST and gRPC, with the
stock tensorflow-serving-api stubs: what TF Serving's testPredictOnTfLite and
testPredictWithSignatureDefOnTfLite send and expect, metadata, status, errors, fallback, CLI."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest

tf = pytest.importorskip("tensorflow")

from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from nbserve.cli import options_from_flags, parse_flags  # noqa: E402
from nbserve.options import ModelConfig, ServerOptions  # noqa: E402
from nbserve.server import Server  # noqa: E402
from tests.transport.rest_client import call  # noqa: E402

pytestmark = pytest.mark.tfs_testdata

MODELS = {
    "plain": "saved_model_half_plus_two_tflite",
    "sigdef": "saved_model_half_plus_two_tflite_with_sigdef",
    "fallback": "saved_model_half_plus_two_cpu",  # no model.tflite: served as a SavedModel
}


@pytest.fixture(scope="module")
def server(tfs_testdata):
    models = tuple(ModelConfig(name, str(tfs_testdata / folder)) for name, folder in MODELS.items())
    srv = Server(ServerOptions(models=models, rest_api_port=0, grpc_port=0,
                               max_num_load_retries=0, prefer_tflite_model=True,
                               num_tflite_pools=2, num_tflite_interpreters_per_pool=1,
                               prometheus_path="/monitoring/prometheus/metrics"))
    srv.start()
    for name in MODELS:
        srv.wait_until_available(name, timeout=120)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def rest_port(server: Server) -> int:
    return int(server.rest_url.rsplit(":", 1)[1].split("/")[0])


def verify_predict_request(stub, model: str, specify_output: bool):
    """The request TF Serving's VerifyPredictRequest sends: x = [2.0] as DT_FLOAT shape [1]."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    return stub.Predict(request, 30)


@pytest.mark.parametrize("model", ["plain", "sigdef"])
@pytest.mark.parametrize("specify_output", [False, True])
def test_grpc_predict_as_tf_servings_tflite_tests(stub, model, specify_output):
    result = verify_predict_request(stub, model, specify_output)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert list(result.outputs["y"].float_val) == [3.0]
    assert result.model_spec.name == model
    assert result.model_spec.version.value == 123
    assert result.model_spec.signature_name == "serving_default"


@pytest.mark.parametrize("model", ["plain", "sigdef"])
def test_rest_predict_row_and_columnar(server, model):
    port = rest_port(server)
    reply = call(port, "POST", f"/v1/models/{model}:predict", {"instances": [[1.0], [2.0], [5.0]]})
    assert reply.status == 200, reply.body
    assert reply.json() == {"predictions": [[2.5], [3.0], [4.5]]}
    reply = call(port, "POST", f"/v1/models/{model}/versions/123:predict",
                 {"inputs": {"x": [2.0]}})
    assert reply.status == 200, reply.body
    assert reply.json() == {"outputs": [3.0]}


def test_rest_metadata_of_the_signature_def_model(server):
    reply = call(rest_port(server), "GET", "/v1/models/sigdef/metadata")
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["model_spec"] == {"name": "sigdef", "signature_name": "", "version": "123"}
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["x"]["name"] == "tflite_input"
    assert sig["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert sig["outputs"]["y"]["name"] == "y"


def test_grpc_metadata_of_the_plain_model(stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "plain"
    response = stub.GetModelMetadata(request, 30)
    defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(defs)
    assert list(defs.signature_def) == ["serving_default"]
    sig = defs.signature_def["serving_default"]
    assert (sig.inputs["x"].name, sig.outputs["y"].name) == ("x", "y")
    assert [d.size for d in sig.inputs["x"].tensor_shape.dim] == [1, 1]


def test_status_says_which_kind_each_version_is(server):
    status = server.status()
    assert status["plain"][0]["kind"] == "tflite"
    assert status["sigdef"][0]["kind"] == "tflite"
    assert status["fallback"][0]["kind"] == "saved_model"
    listing = call(rest_port(server), "GET", "/v1/models").json()["models"]
    kinds = {m["name"]: [v.get("kind") for v in m["model_version_status"]] for m in listing}
    assert kinds == {"plain": ["tflite"], "sigdef": ["tflite"], "fallback": ["saved_model"]}
    # TF Serving's own status URL keeps its exact shape.
    reply = call(rest_port(server), "GET", "/v1/models/plain")
    assert reply.json() == {"model_version_status": [
        {"version": "123", "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": ""}}]}


def test_metrics_count_tflite_requests_and_versions(server, stub):
    verify_predict_request(stub, "plain", specify_output=True)
    text = call(rest_port(server), "GET", "/monitoring/prometheus/metrics").body.decode()
    assert ':tensorflow:serving:request_count{model_name="plain",status="OK"}' in text
    assert ':tensorflow:serving:model_version_state{model_name="plain",version="123"} 30' in text


def grpc_error(stub, model: str, mutate) -> tuple[grpc.StatusCode, str]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    mutate(request)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, 30)
    return info.value.code(), info.value.details()


def _rename_input(request):
    request.inputs["z"].CopyFrom(request.inputs["x"])
    del request.inputs["x"]


def _as_double(request):
    request.inputs["x"].dtype = types_pb2.DT_DOUBLE
    request.inputs["x"].ClearField("float_val")
    request.inputs["x"].double_val.append(2.0)


@pytest.mark.parametrize("mutate", [
    _rename_input,
    _as_double,
    lambda r: r.output_filter.append("q"),
    lambda r: r.output_filter.extend(["y", "y"]),
    lambda r: setattr(r.model_spec, "signature_name", "nope"),
], ids=["alias", "dtype", "output_filter", "duplicate_output", "signature"])
def test_grpc_errors_are_the_saved_model_ones(stub, mutate):
    tflite = grpc_error(stub, "plain", mutate)
    saved_model = grpc_error(stub, "fallback", mutate)
    assert tflite == saved_model
    assert tflite[0] in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)


@pytest.mark.parametrize("body", [
    {"inputs": {"z": [2.0]}},
    {"instances": [{"x": [2.0], "z": [1.0]}]},
    {"signature_name": "nope", "inputs": {"x": [2.0]}},
])
def test_rest_errors_are_the_saved_model_ones(server, body):
    port = rest_port(server)
    tflite = call(port, "POST", "/v1/models/plain:predict", body)
    saved_model = call(port, "POST", "/v1/models/fallback:predict", body)
    assert tflite.status == saved_model.status == 400
    assert tflite.json() == saved_model.json()


def test_without_prefer_tflite_the_saved_model_is_served(tfs_testdata, tmp_path):
    """The same folder served both ways: a version with both files."""
    base = tmp_path / "both"
    version = base / "00000123"
    src = tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123"
    shutil.copytree(src, version)
    (version / "model.tflite").write_bytes(
        (tfs_testdata / MODELS["plain"] / "00000123" / "model.tflite").read_bytes())
    for prefer, kind in ((False, "saved_model"), (True, "tflite")):
        with Server(ServerOptions(models=(ModelConfig("both", str(base)),), rest_api_port=0,
                                  grpc_port=None, max_num_load_retries=0,
                                  prefer_tflite_model=prefer)) as srv:
            srv.wait_until_available("both", timeout=120)
            assert srv.status("both")["both"][0]["kind"] == kind
            reply = call(rest_port(srv), "POST", "/v1/models/both:predict",
                         {"instances": [[2.0]]})
            assert reply.json() == {"predictions": [[3.0]]}


def test_cli_flags_reach_the_options(tmp_path):
    values, warnings = parse_flags([f"--model_base_path={tmp_path}", "--prefer_tflite_model=true",
                                    "--num_tflite_pools=3", "--num_tflite_interpreters_per_pool",
                                    "2"])
    assert warnings == []
    options = options_from_flags(values)
    assert (options.prefer_tflite_model, options.num_tflite_pools,
            options.num_tflite_interpreters_per_pool) == (True, 3, 2)
    default = options_from_flags(parse_flags([f"--model_base_path={tmp_path}"])[0])
    assert default.prefer_tflite_model is False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nbserve_server_with_prefer_tflite_model(tfs_testdata):
    """``nbserve-server --prefer_tflite_model=true`` as TF Serving's RunServer starts it."""
    port, rest = free_port(), free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbserve", "--model_name=default",
         f"--model_base_path={tfs_testdata / MODELS['sigdef']}", f"--port={port}",
         f"--rest_api_port={rest}", "--prefer_tflite_model=true", "--max_num_load_retries=0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline, result = time.time() + 120, None
        with grpc.insecure_channel(f"localhost:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while result is None and time.time() < deadline and proc.poll() is None:
                try:
                    result = verify_predict_request(stub, "default", specify_output=False)
                except grpc.RpcError:
                    time.sleep(0.2)
        assert result is not None, proc.poll()
        assert list(result.outputs["y"].float_val) == [3.0]
        assert result.model_spec.version.value == 123
        status = call(rest, "GET", "/v1/models").json()
        assert status["models"][0]["model_version_status"][0]["kind"] == "tflite"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()



def test_tfserve_start_tflite_flag_prefers_tflite(tmp_path):
    pytest.importorskip("IPython")
    from nbserve.magic import parse_line, serve_kwargs

    assert serve_kwargs(parse_line(f"start {tmp_path} --tflite"))["prefer_tflite_model"] is True
    assert "prefer_tflite_model" not in serve_kwargs(parse_line(f"start {tmp_path}"))
