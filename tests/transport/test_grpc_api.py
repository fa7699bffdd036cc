"""gRPC API with the stock tensorflow-serving-api stubs over real sockets (spec §2)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from nbserve.options import ModelConfig, VersionPolicy

pytestmark = pytest.mark.tfs_testdata


@pytest.fixture(scope="module", params=["grpcio", "h2"])
def server(request, tfs_testdata):
    """Every test here runs on both gRPC front ends (``--grpc_front_end``)."""
    from nbserve.options import ServerOptions
    from nbserve.server import Server

    models = (
        ModelConfig("half_plus_two", str(tfs_testdata / "saved_model_half_plus_two_cpu")),
        ModelConfig("two", str(tfs_testdata / "saved_model_half_plus_two_2_versions"),
                    version_policy=VersionPolicy.all(), version_labels={"stable": 123}),
    )
    srv = Server(ServerOptions(models=models, rest_api_port=None, grpc_port=0,
                               max_num_load_retries=0, grpc_front_end=request.param))
    srv.start()
    for m in models:
        srv.wait_until_available(m.name, timeout=60)
    srv.wait_until_available("two", 123, timeout=60)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.grpc_target) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def model_stub(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


def example(x: float) -> example_pb2.Example:
    return example_pb2.Example(features=feature_pb2.Features(feature={
        "x": feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[x]))}))


def test_predict(stub):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[2.0]], dtype=tf.float32))
    response = stub.Predict(request, timeout=30)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [[3.0]]
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.version.value == 123
    assert response.model_spec.signature_name == "serving_default"


def test_predict_label_and_output_filter(stub):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "two"
    request.model_spec.version_label = "stable"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0, 2.0, 5.0], np.float32)))
    request.output_filter.append("y")
    response = stub.Predict(request, timeout=30)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [2.5, 3.0, 4.5]
    assert response.model_spec.version.value == 123


def test_classify_regress_multi_inference(stub):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.append(example(2.0))
    response = stub.Classify(request, timeout=30)
    assert response.result.classifications[0].classes[0].score == 3.0
    assert response.model_spec.version.value == 123

    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.append(example(2.0))
    response = stub.Regress(request, timeout=30)
    assert [r.value for r in response.result.regressions] == [3.0]

    request = inference_pb2.MultiInferenceRequest()
    for sig, method in (("classify_x_to_y", "tensorflow/serving/classify"),
                        ("regress_x_to_y", "tensorflow/serving/regress")):
        task = request.tasks.add()
        task.model_spec.name = "half_plus_two"
        task.model_spec.signature_name = sig
        task.method_name = method
    request.input.example_list.examples.append(example(2.0))
    response = stub.MultiInference(request, timeout=30)
    assert response.results[0].classification_result.classifications[0].classes[0].score == 3.0
    assert response.results[1].regression_result.regressions[0].value == 3.0


def test_metadata_and_status(stub, model_stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "half_plus_two"
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, timeout=30)
    sigs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sigs)
    assert sigs.signature_def["serving_default"].inputs["x"].name == "x:0"
    assert response.model_spec.version.value == 123

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half_plus_two"
    response = model_stub.GetModelStatus(request, timeout=30)
    assert [(s.version, s.state) for s in response.model_version_status] == [
        (123, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]


def rpc_error(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value.code(), info.value.details()


def predict_request(name="half_plus_two", **spec):
    request = predict_pb2.PredictRequest()
    if name is not None:
        request.model_spec.name = name
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    return request


def test_errors_in_tf_serving_words(stub, model_stub):
    assert rpc_error(stub.Predict, predict_pb2.PredictRequest()) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
    assert rpc_error(stub.Predict, predict_request("")) == (
        grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified.")
    assert rpc_error(stub.Predict, predict_request("nope")) == (
        grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)")
    assert rpc_error(stub.Predict, predict_request(version=9)) == (
        grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(half_plus_two, 9)")
    assert rpc_error(stub.Predict, predict_request("two", version_label="x")) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: x")
    assert rpc_error(stub.Predict, predict_request(signature_name="nope")) == (
        grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.')
    request = predict_request()
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(["a"]))
    code, message = rpc_error(stub.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "to be float but string is provided" in message
    request = predict_request()
    request.inputs["x"].dtype = 1  # DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add().size = 4
    request.inputs["x"].tensor_content = b"\x00" * 7  # not 4 floats
    code, message = rpc_error(stub.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    assert rpc_error(model_stub.GetModelStatus, request) == (
        grpc.StatusCode.NOT_FOUND, "Could not find any versions of model nope")
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "half_plus_two"
    assert rpc_error(stub.GetModelMetadata, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "GetModelMetadataRequest must specify at least one metadata_field")
    # the server is still fine
    request = predict_request()
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0], dtype=tf.float32))
    assert tf.make_ndarray(stub.Predict(request, timeout=30).outputs["y"]).tolist() == [2.5]


def test_health_and_reflection(channel):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "tensorflow.serving.PredictionService", "ModelService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as unknown:
        health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]), timeout=10)
    names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"} <= names


@pytest.mark.parametrize("front_end", ["grpcio", "h2"])
def test_reload_config_rpc(start_server, tfs_testdata, front_end):
    srv = start_server([ModelConfig("a", str(tfs_testdata / "saved_model_half_plus_two_cpu"))],
                       grpc_port=0, grpc_front_end=front_end)
    srv.wait_until_available("a")
    with grpc.insecure_channel(srv.grpc_target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = model_management_pb2.ReloadConfigRequest()
        config = request.config.model_config_list.config.add()
        config.name = "three"
        config.base_path = str(tfs_testdata / "saved_model_half_plus_three")
        config.model_platform = "tensorflow"
        response = stub.HandleReloadConfigRequest(request, timeout=60)
        assert response.status.error_code == 0
        assert srv.predict("three", [1.0])["y"].tolist() == [3.5]
        bad = model_management_pb2.ReloadConfigRequest()
        bad.config.custom_model_config.type_url = "x"
        code, message = rpc_error(stub.HandleReloadConfigRequest, bad)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert message.startswith("ServerModelConfig type not supported")
    assert "three" in srv.core.models() and "a" not in srv.core.models()
