"""Limits: request body (plain and gzip bomb), gRPC message size, REST timeout, requests in flight.
Each exceeded limit is a clear error, never memory exhaustion or a hung server."""

from __future__ import annotations

import gzip
import resource
import threading

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from nbserve.codec.tensors import to_tensor_proto
from nbserve.testing import FakeServable
from nbserve.transport.admission import InflightLimit
from tests.reliability.helpers import FakeServers
from tests.transport.rest_client import call

BODY = '{"instances": [2.0]}'


@pytest.fixture
def limited_server(tmp_path):
    """A server over one TensorFlow-free model "m" served by ``servable``; stopped at teardown."""
    servers = FakeServers(tmp_path)
    yield servers.start
    servers.stop_all(grace=1)


def grpc_predict(srv, values, timeout=10):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(to_tensor_proto(np.asarray(values, np.float32)))
    with grpc.insecure_channel(srv.grpc_target) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=timeout)


def test_request_body_over_the_limit_is_413(limited_server):
    srv = limited_server(max_request_bytes=4096)
    body = '{"instances": [' + ", ".join(["1.0"] * 2000) + "]}"
    reply = call(srv.rest_port, "POST", "/v1/models/m:predict", body)
    assert reply.status == 413
    assert reply.json()["error"] == ("Request body is larger than the limit of 4096 bytes "
                                     "(--rest_api_max_request_bytes)")
    assert call(srv.rest_port, "POST", "/v1/models/m:predict", BODY).json() == {
        "predictions": [3.0]}


def test_gzip_bomb_is_bounded_by_the_same_limit(limited_server):
    srv = limited_server(max_request_bytes=1 << 20)
    bomb = gzip.compress(b" " * (512 << 20), 9)  # ~0.5 MB on the wire, 512 MiB inflated
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reply = call(srv.rest_port, "POST", "/v1/models/m:predict", bomb,
                 headers={"Content-Encoding": "gzip"})
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert reply.status == 413 and "larger than the limit" in reply.json()["error"]
    assert grown_mib < 256  # never inflated in full
    small = gzip.compress(BODY.encode())
    assert call(srv.rest_port, "POST", "/v1/models/m:predict", small,
                headers={"Content-Encoding": "gzip"}).json() == {"predictions": [3.0]}
    junk = call(srv.rest_port, "POST", "/v1/models/m:predict", b"not gzip at all",
                headers={"Content-Encoding": "gzip"})
    assert junk.status == 400 and "content-encoding" in junk.json()["error"]


@pytest.mark.parametrize("front_end", ["grpcio", "h2"])
def test_grpc_message_over_the_limit_is_resource_exhausted(limited_server, front_end):
    srv = limited_server(grpc_max_message_bytes=4096, grpc_front_end=front_end)
    with pytest.raises(grpc.RpcError) as info:
        grpc_predict(srv, np.ones(10_000))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert list(grpc_predict(srv, [2.0]).outputs["y"].float_val) == [3.0]


def test_rest_timeout_is_504_json(limited_server):
    gate = threading.Event()
    srv = limited_server(FakeServable(gate=gate), rest_api_timeout_in_ms=200)
    try:
        reply = call(srv.rest_port, "POST", "/v1/models/m:predict", BODY)
    finally:
        gate.set()
    assert reply.status == 504
    assert reply.json()["error"] == "Request timed out after 200 ms (--rest_api_timeout_in_ms)"


def test_requests_in_flight_are_bounded(limited_server):
    gate = threading.Event()
    servable = FakeServable(gate=gate)
    srv = limited_server(servable, max_inflight_requests=2)
    replies = []
    threads = [threading.Thread(target=lambda: replies.append(
        call(srv.rest_port, "POST", "/v1/models/m:predict", BODY))) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for _ in threads:  # both are inside the model now
            assert servable.entered.acquire(timeout=30)
        reply = call(srv.rest_port, "POST", "/v1/models/m:predict", BODY)
        assert reply.status == 503
        assert reply.json()["error"].startswith("Too many requests in flight: the limit is 2")
        assert call(srv.rest_port, "GET", "/v1/models/m").status == 503
        assert call(srv.rest_port, "GET", "/healthz").status == 200  # probes are not counted
        with pytest.raises(grpc.RpcError) as info:
            grpc_predict(srv, [1.0])
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Too many requests in flight" in info.value.details()
    finally:
        gate.set()
        for t in threads:
            t.join(30)
    assert [r.status for r in replies] == [200, 200]
    assert srv._inflight.inflight == 0
    assert call(srv.rest_port, "POST", "/v1/models/m:predict", BODY).status == 200
    assert list(grpc_predict(srv, [2.0]).outputs["y"].float_val) == [3.0]


def test_inflight_limit_unit():
    limit = InflightLimit(1)
    limit.acquire()
    with pytest.raises(Exception, match="Too many requests in flight"):
        limit.acquire()
    limit.release()
    limit.acquire()
    unlimited = InflightLimit(0)
    for _ in range(10_000):
        unlimited.acquire()
    assert unlimited.inflight == 10_000


def test_limit_flags_reach_the_options():
    from nbserve.cli import options_from_flags, parse_flags

    values, warnings = parse_flags([
        "--model_base_path=/m", "--rest_api_max_request_bytes=1000",
        "--grpc_max_message_bytes=2000", "--max_inflight_requests=3",
        "--load_timeout_seconds=4.5", "--shutdown_grace_seconds=6", "--rest_api_timeout_in_ms=7"])
    assert warnings == []
    options = options_from_flags(values)
    assert (options.max_request_bytes, options.grpc_max_message_bytes,
            options.max_inflight_requests, options.load_timeout_seconds,
            options.shutdown_grace_seconds, options.rest_api_timeout_in_ms) == (
        1000, 2000, 3, 4.5, 6.0, 7)
    defaults = options_from_flags(parse_flags(["--model_base_path=/m"])[0])
    assert defaults.max_request_bytes == 100 * 1024 * 1024
    assert defaults.max_inflight_requests == 1024
    assert defaults.load_timeout_seconds == 0.0
