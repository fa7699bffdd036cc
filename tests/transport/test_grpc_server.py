"""The gRPC server machinery (issue 12): calls run on the predict pool, never on the REST loop;
raw-bytes handlers; metrics; SO_REUSEPORT on request; a stop that never blocks the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from nbserve.codec.tensors import to_tensor_proto
from nbserve.testing import FakeServable
from nbserve.transport.grpc_api import channel_options, start_grpc_server
from tests.reliability.helpers import FakeServers
from tests.support import free_port
from tests.transport.rest_client import call

PREDICT = "/tensorflow.serving.PredictionService/Predict"


@pytest.fixture(params=["grpcio", "h2"])
def fake_server(tmp_path, request):
    """A server (REST and gRPC, on either gRPC front end) over one TensorFlow-free model "m";
    stopped at teardown."""
    servers = FakeServers(tmp_path)
    yield lambda servable, **kw: servers.start(servable, grpc_front_end=request.param, **kw)
    servers.stop_all(grace=1)


def predict_request(values) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(to_tensor_proto(np.asarray(values, np.float32)))
    return request


def test_calls_run_on_the_predict_pool_and_never_stall_rest(fake_server):
    threads: list[str] = []

    def record(signature, inputs):
        threads.append(threading.current_thread().name)
        return {"y": np.asarray(inputs["x"], np.float32) * 0.5 + 2}

    gate = threading.Event()
    servable = FakeServable(fn=record, gate=gate)
    srv = fake_server(servable)
    replies = []
    with grpc.insecure_channel(srv.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        held = threading.Thread(target=lambda: replies.append(
            stub.Predict(predict_request([2.0]), timeout=30)))
        held.start()
        try:
            assert servable.entered.acquire(timeout=30)  # a gRPC call is inside the model
            assert call(srv.rest_port, "GET", "/healthz", timeout=5).status == 200
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            assert health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5).status == \
                health_pb2.HealthCheckResponse.SERVING
        finally:
            gate.set()
            held.join(30)
    assert list(replies[0].outputs["y"].float_val) == [3.0]
    assert threads and all(name.startswith("nbserve-predict") for name in threads)
    exposition = srv.metrics.exposition().decode()
    assert 'model_name="m",API="Predict",entrypoint="GRPC"' in exposition


def test_grpc_max_threads_gives_grpc_calls_a_pool_of_their_own(fake_server):
    """``--grpc_max_threads=N``: gRPC's model work runs on N threads of its own, REST's stays
    on the predict pool (by default both share that pool: the test above)."""
    threads: list[str] = []

    def record(signature, inputs):
        threads.append(threading.current_thread().name)
        return {"y": np.asarray(inputs["x"], np.float32) * 0.5 + 2}

    srv = fake_server(FakeServable(fn=record), grpc_max_threads=2, grpc_inline_threshold_us=0,
                      rest_inline_threshold_us=0)
    with grpc.insecure_channel(srv.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        calls = [stub.Predict.future(predict_request([float(i)]), timeout=30) for i in range(6)]
        assert [list(c.result().outputs["y"].float_val) for c in calls] == \
            [[i * 0.5 + 2] for i in range(6)]
    grpc_threads = set(threads)
    assert call(srv.rest_port, "POST", "/v1/models/m:predict", {"instances": [2.0]}).status == 200
    assert len(threads) == 7 and threads[-1].startswith("nbserve-predict")
    assert grpc_threads <= {"nbserve-grpc_0", "nbserve-grpc_1"}, grpc_threads


def test_a_request_that_does_not_parse_is_internal_and_the_server_goes_on(fake_server):
    srv = fake_server(FakeServable())
    with grpc.insecure_channel(srv.grpc_target) as channel:
        raw = channel.unary_unary(PREDICT)  # bytes in, bytes out
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xff\xff", timeout=10)
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert info.value.details() == "Failed to parse the PredictRequest"
        reply = predict_pb2.PredictResponse.FromString(
            raw(predict_request([4.0]).SerializeToString(), timeout=10))
        assert list(reply.outputs["y"].float_val) == [4.0]
        assert reply.model_spec.name == "m"


def test_the_call_deadline_becomes_the_run_timeout(fake_server):
    servable = FakeServable()
    srv = fake_server(servable)
    with grpc.insecure_channel(srv.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(predict_request([1.0]))  # no deadline: no timeout (not ~1e21 ms)
        stub.Predict(predict_request([1.0]), timeout=30)
    no_deadline, with_deadline = (run.timeout_ms for run in servable.calls)
    assert no_deadline is None
    assert with_deadline is not None and 20_000 < with_deadline <= 31_000  # header rounds up


def test_channel_options_reuse_port():
    assert dict(channel_options(1 << 20)) == {
        "grpc.max_send_message_length": 1 << 20, "grpc.max_receive_message_length": 1 << 20,
        "grpc.so_reuseport": 0}
    assert dict(channel_options(1 << 20, reuse_port=True))["grpc.so_reuseport"] == 1


def test_reuse_port_lets_two_servers_share_one_port_and_stop_is_prompt():
    port = free_port()

    async def scenario() -> None:
        with ThreadPoolExecutor(2) as pool:
            start = dict(max_message_bytes=1 << 20, reuse_port=True)
            first, bound = await start_grpc_server(None, pool, "127.0.0.1", port, **start)
            try:
                assert bound == port
                second, again = await start_grpc_server(None, pool, "127.0.0.1", port, **start)
                assert again == port
                ticks = 0

                async def tick() -> None:
                    nonlocal ticks
                    while True:
                        ticks += 1
                        await asyncio.sleep(0.001)

                ticker = asyncio.ensure_future(tick())
                began = time.monotonic()
                await asyncio.gather(second.stop(5), first.stop(5))
                assert time.monotonic() - began < 2  # nothing in flight: no grace to wait out
                assert ticks > 0  # the loop kept running while gRPC shut down
                ticker.cancel()
            finally:
                await first.stop(None)

    asyncio.run(scenario())


def test_without_reuse_port_a_taken_port_is_an_oserror_naming_the_address():
    async def scenario() -> None:
        with ThreadPoolExecutor(1) as pool:
            first, port = await start_grpc_server(None, pool, "127.0.0.1", 0,
                                                  max_message_bytes=1 << 20)
            try:
                with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
                    await start_grpc_server(None, pool, "127.0.0.1", port,
                                            max_message_bytes=1 << 20)
            finally:
                await first.stop(None)

    asyncio.run(scenario())
