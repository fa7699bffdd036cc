"""``nbserve.export(model, path, tflite=True)``: model.tflite beside saved_model.pb, served both
ways by a real Server with the same client code (REST and gRPC)."""

from __future__ import annotations

import os

import grpc
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

import nbserve  # noqa: E402
from nbserve.options import ModelConfig, ServerOptions  # noqa: E402
from nbserve.server import Server  # noqa: E402
from tests.models import Affine  # noqa: E402
from tests.transport.rest_client import call  # noqa: E402


def keras_model():
    inputs = tf.keras.Input(shape=(2,), name="features")
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(inputs))
    model.layers[-1].set_weights([np.array([[1.0], [10.0]]), np.array([0.5])])
    return model


def predict_both_ways(base: str, name: str, rest_body: dict, grpc_request) -> list:
    """The same REST and gRPC requests against a SavedModel server and a TFLite server."""
    answers = []
    for prefer in (False, True):
        options = ServerOptions(models=(ModelConfig(name, base),), rest_api_port=0, grpc_port=0,
                                max_num_load_retries=0, prefer_tflite_model=prefer)
        with Server(options) as srv:
            srv.wait_until_available(name, timeout=120)
            kind = srv.status(name)[name][0]["kind"]
            port = int(srv.rest_url.rsplit(":", 1)[1].split("/")[0])
            reply = call(port, "POST", f"/v1/models/{name}:predict", rest_body)
            assert reply.status == 200, reply.body
            with grpc.insecure_channel(srv.grpc_target) as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                response = stub.Predict(grpc_request, 30)
            outputs = {k: list(v.float_val) for k, v in response.outputs.items()}
            answers.append((kind, reply.json(), outputs))
    return answers


def test_module_export_served_both_ways(tmp_path):
    base = str(tmp_path / "affine")
    module = Affine(0.5, 2.0)
    version = nbserve.export(module, base, signatures=module.__call__, tflite=True)
    folder = os.path.join(base, str(version))
    assert {"saved_model.pb", "model.tflite"} <= set(os.listdir(folder))
    assert not [n for n in os.listdir(base) if n.startswith(".tmp-export-")]

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "affine"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([2.0, 4.0], np.float32)))
    saved_model, tflite = predict_both_ways(base, "affine", {"instances": [2.0, 4.0]}, request)
    assert saved_model == ("saved_model", {"predictions": [3.0, 4.0]}, {"y": [3.0, 4.0]})
    assert tflite == ("tflite", {"predictions": [3.0, 4.0]}, {"y": [3.0, 4.0]})


def test_keras_export_served_both_ways(tmp_path):
    base = str(tmp_path / "dense")
    nbserve.export(keras_model(), base, tflite=True)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "dense"
    request.inputs["features"].CopyFrom(
        tf.make_tensor_proto(np.array([[1.0, 2.0], [3.0, 0.0]], np.float32)))
    body = {"instances": [{"features": [1.0, 2.0]}, {"features": [3.0, 0.0]}]}
    (kind_a, rest_a, grpc_a), (kind_b, rest_b, grpc_b) = predict_both_ways(
        base, "dense", body, request)
    assert (kind_a, kind_b) == ("saved_model", "tflite")
    assert rest_a == rest_b and grpc_a == grpc_b
    (output,) = grpc_a.values()
    assert output == [21.5, 3.5]


def test_warmup_is_replayed_by_the_tflite_loader_too(tmp_path):
    from nbserve.servables.tflite import TfLiteLoader

    base = str(tmp_path / "warm")
    module = Affine(1.0, 1.0)
    version = nbserve.export(module, base, signatures=module.__call__, tflite=True,
                             warmup={"x": [1.0, 2.0]})
    loader = TfLiteLoader(os.path.join(base, str(version)))
    loader.load()
    try:
        servable = loader.servable()
        signature = servable.signatures["serving_default"]
        x = np.array([5.0], np.float32)
        assert servable.run(signature, {"x": x})["y"].tolist() == [6.0]
    finally:
        loader.unload()


def test_a_model_tflite_cannot_express_is_not_published(tmp_path):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def python_op(x):
        return {"y": tf.numpy_function(lambda v: v * 2, [x], tf.float32)}

    base = tmp_path / "py"
    with pytest.raises(ValueError, match="Cannot convert the SavedModel"):
        nbserve.export(python_op, str(base), tflite=True)
    assert os.listdir(base) == []


def test_request_types_match_the_dtype_rule(tmp_path):
    """A double input to a float TFLite model fails with TensorFlow's words, as a SavedModel."""
    base = str(tmp_path / "affine")
    module = Affine(0.5, 2.0)
    nbserve.export(module, base, signatures=module.__call__, tflite=True)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "affine"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([2.0], np.float64)))
    options = ServerOptions(models=(ModelConfig("affine", base),), rest_api_port=None,
                            grpc_port=0, max_num_load_retries=0, prefer_tflite_model=True)
    with Server(options) as srv:
        srv.wait_until_available("affine", timeout=120)
        with grpc.insecure_channel(srv.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(request, 30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "Expects arg[0] to be float but double is provided"
    assert request.inputs["x"].dtype == types_pb2.DT_DOUBLE


def test_export_stores_the_signature_where_tf_serving_reads_it(tmp_path):
    """TF Serving's TFLite session reads SignatureDefs from the flatbuffer's metadata only."""
    from nbserve.servables.tflite import TfLiteLoader
    from nbserve.servables.tflite_signatures import metadata_signature_defs

    base = str(tmp_path / "affine")
    module = Affine(0.5, 2.0)
    version = nbserve.export(module, base, signatures=module.__call__, tflite=True)
    folder = os.path.join(base, str(version))
    with open(os.path.join(folder, "model.tflite"), "rb") as file:
        defs = metadata_signature_defs(file.read())
    assert list(defs) == ["serving_default"]
    assert (list(defs["serving_default"].inputs), list(defs["serving_default"].outputs)) == (
        ["x"], ["y"])
    loader = TfLiteLoader(folder)
    loader.load()
    try:
        assert loader.servable().signature_source == "metadata"
    finally:
        loader.unload()
