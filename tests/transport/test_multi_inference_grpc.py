"""MultiInference over real gRPC on TF Serving's TF2 half_plus_two (testMultiInferenceTf2): its
classify and regress signatures each have their own input tensor."""

from __future__ import annotations

import pytest

from nbserve.options import ModelConfig

grpc = pytest.importorskip("grpc")
pytest.importorskip("tensorflow")

from tensorflow_serving.apis import (  # noqa: E402
    inference_pb2,
    prediction_service_pb2_grpc,
)

REGRESS = "tensorflow/serving/regress"
CLASSIFY = "tensorflow/serving/classify"


def multi_request(tasks, xs=(2.0,)):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in tasks:
        task = request.tasks.add()
        task.model_spec.name = "default"
        task.model_spec.signature_name = signature
        task.method_name = method
    for x in xs:
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)
    return request


@pytest.fixture(scope="module")
def stub(tfs_testdata):
    from nbserve.options import ServerOptions
    from nbserve.server import Server

    model = ModelConfig("default", str(tfs_testdata / "saved_model_half_plus_two_tf2_cpu"))
    server = Server(ServerOptions(models=(model,), grpc_port=0, rest_api_port=None,
                                  max_num_load_retries=0)).start()
    server.wait_until_available("default")
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    server.stop()


@pytest.mark.tfs_testdata
def test_regress_and_classify_signatures_with_their_own_inputs(stub):
    reply = stub.MultiInference(multi_request([("regress_x_to_y", REGRESS),
                                               ("classify_x_to_y", CLASSIFY)]), 20)
    assert len(reply.results) == 2
    assert reply.results[0].regression_result.regressions[0].value == 3.0
    assert reply.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for result, signature in zip(reply.results, ("regress_x_to_y", "classify_x_to_y"),
                                 strict=True):
        assert (result.model_spec.name, result.model_spec.signature_name,
                result.model_spec.version.value) == ("default", signature, 123)


@pytest.mark.tfs_testdata
def test_every_example_reaches_every_task(stub):
    reply = stub.MultiInference(multi_request([("regress_x_to_y2", REGRESS),
                                               ("regress_x_to_y", REGRESS)], xs=(2.0, 4.0)), 20)
    assert [r.value for r in reply.results[0].regression_result.regressions] == [4.0, 5.0]
    assert [r.value for r in reply.results[1].regression_result.regressions] == [3.0, 4.0]


@pytest.mark.tfs_testdata
@pytest.mark.parametrize("tasks, code, message", [
    ([("regress_x_to_y", REGRESS), ("regress_x_to_y", REGRESS)], "INVALID_ARGUMENT",
     "Duplicate evaluation of signature: regress_x_to_y"),
    ([("nope", REGRESS)], "INVALID_ARGUMENT", "Requested signature not found in model graph: nope"),
    ([("regress_x_to_y", "tensorflow/serving/predict")], "UNIMPLEMENTED",
     "Unsupported signature method_name: tensorflow/serving/predict"),
])
def test_the_rules_tf_serving_keeps(stub, tasks, code, message):
    with pytest.raises(grpc.RpcError) as info:
        stub.MultiInference(multi_request(tasks), 20)
    assert (info.value.code().name, info.value.details()) == (code, message)
