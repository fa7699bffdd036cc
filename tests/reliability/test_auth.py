"""Security: loopback bind by default, the exposure warning, bearer-token auth on both transports.
"""

from __future__ import annotations

import functools
import logging

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from nbserve.codec.tensors import to_tensor_proto
from nbserve.transport import auth
from tests.reliability.helpers import FakeServers
from tests.transport.rest_client import call

TOKEN = "s3cret-token"
BODY = '{"instances": [2.0]}'


@pytest.fixture
def fake_server(tmp_path):
    """Start a server with one TensorFlow-free model "m"; stopped at teardown."""
    servers = FakeServers(tmp_path)
    yield functools.partial(servers.start, file_system_poll_wait_seconds=0.2)
    servers.stop_all()


def grpc_predict(srv, metadata=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(to_tensor_proto(np.array([2.0], np.float32)))
    with grpc.insecure_channel(srv.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=10, metadata=metadata)


def grpc_health(srv, metadata=None):
    with grpc.insecure_channel(srv.grpc_target) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10, metadata=metadata)


# -- pure functions ------------------------------------------------------------------------------
@pytest.mark.parametrize("header,expected", [
    (None, auth.MISSING_TOKEN), ("", auth.MISSING_TOKEN), ("Basic abc", auth.MISSING_TOKEN),
    ("Bearer", auth.MISSING_TOKEN), ("Bearer wrong", auth.WRONG_TOKEN),
    (f"Bearer {TOKEN}x", auth.WRONG_TOKEN), (f"Bearer {TOKEN}", None), (f"bearer {TOKEN}", None),
    (f"Bearer  {TOKEN} ", None), ("Bearer \udcff", auth.WRONG_TOKEN)])
def test_check_authorization(header, expected):
    assert auth.check_authorization(header, TOKEN) == expected


def test_no_token_means_auth_off():
    assert auth.check_authorization(None, "") is None


def test_token_compared_in_constant_time(monkeypatch):
    calls = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest",
                        lambda a, b: calls.append((a, b)) or real(a, b))
    assert auth.check_authorization("Bearer nope", TOKEN) == auth.WRONG_TOKEN
    assert calls == [(b"nope", TOKEN.encode())]


def test_token_from_flag_or_environment(monkeypatch):
    from nbserve.cli import options_from_flags, parse_flags

    monkeypatch.setenv(auth.TOKEN_ENV, "from-env")
    values, _ = parse_flags(["--model_base_path=/m"])
    assert options_from_flags(values).auth_token == "from-env"
    values, _ = parse_flags(["--model_base_path=/m", "--auth_token=from-flag"])
    options = options_from_flags(values)
    assert options.auth_token == "from-flag"
    assert "from-flag" not in repr(options)  # the secret never reaches a log line
    monkeypatch.delenv(auth.TOKEN_ENV)
    values, _ = parse_flags(["--model_base_path=/m"])
    assert options_from_flags(values).auth_token == ""


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False), ("10.1.2.3", False),
    ("example.com", False)])
def test_is_loopback(host, loopback):
    assert auth.is_loopback(host) is loopback
    assert (auth.exposure_warning(host, "") is None) is loopback


def test_exposure_warning_text():
    text = auth.exposure_warning("0.0.0.0", "")
    assert text.startswith("Binding 0.0.0.0: the models are reachable from the network")
    assert auth.TOKEN_ENV in text
    assert "bearer token" in auth.exposure_warning("0.0.0.0", TOKEN)


# -- live servers --------------------------------------------------------------------------------
def test_binds_loopback_by_default(fake_server, caplog):
    from nbserve.options import ServerOptions

    assert ServerOptions().host == "127.0.0.1"
    with caplog.at_level(logging.WARNING, logger="nbserve"):
        srv = fake_server()
    addresses = [address for runner in [*srv._runners, *srv._fast_rest]
                 for address in runner.addresses]
    assert addresses and all(address[0] == "127.0.0.1" for address in addresses)
    assert not [r for r in caplog.records if "reachable from the network" in r.getMessage()]


def test_start_warns_when_the_bind_is_not_loopback(fake_server, monkeypatch, caplog):
    # Simulate a network bind without opening one: the address check says "not loopback".
    monkeypatch.setattr(auth, "is_loopback", lambda host: False)
    with caplog.at_level(logging.WARNING, logger="nbserve"):
        fake_server()
    assert any("reachable from the network" in r.getMessage() for r in caplog.records)


def test_rest_requires_the_token(fake_server):
    srv = fake_server(auth_token=TOKEN, prometheus_path="/metrics")
    port = srv.rest_port
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        for method, path, body in (("POST", "/v1/models/m:predict", BODY),
                                   ("GET", "/v1/models/m", None), ("GET", "/v1/models", None),
                                   ("GET", "/v1/models/m/metadata", None)):
            reply = call(port, method, path, body, headers=headers)
            assert reply.status == 401, (method, path, headers)
            assert set(reply.json()) == {"error"}
            assert reply.headers["www-authenticate"] == "Bearer"
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert call(port, "POST", "/v1/models/m:predict", BODY, headers=good).json() == {
        "predictions": [3.0]}
    # loopback bind: the probes and metrics stay open
    assert call(port, "GET", "/healthz").status == 200
    assert call(port, "GET", "/readyz").status == 200
    assert call(port, "GET", "/metrics").status == 200
    # a CORS preflight carries no credentials
    assert call(port, "OPTIONS", "/v1/models/m:predict",
                headers={"Origin": "http://x"}).status == 200


def test_probes_need_the_token_off_loopback(fake_server, monkeypatch):
    monkeypatch.setattr(auth, "is_loopback", lambda host: False)  # as if bound to 0.0.0.0
    srv = fake_server(auth_token=TOKEN, prometheus_path="/metrics")
    good = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/healthz", "/readyz", "/metrics"):
        assert call(srv.rest_port, "GET", path).status == 401
        assert call(srv.rest_port, "GET", path, headers=good).status == 200
    with pytest.raises(grpc.RpcError) as info:
        grpc_health(srv)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_health(srv, [("authorization", f"Bearer {TOKEN}")]).status == \
        health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("front_end", ["grpcio", "h2"])
def test_grpc_requires_the_token(fake_server, front_end):
    srv = fake_server(auth_token=TOKEN, grpc_front_end=front_end)
    for metadata in (None, [("authorization", "Bearer wrong")], [("authorization", TOKEN)]):
        with pytest.raises(grpc.RpcError) as info:
            grpc_predict(srv, metadata)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    response = grpc_predict(srv, [("authorization", f"Bearer {TOKEN}")])
    assert list(response.outputs["y"].float_val) == [3.0]
    # loopback bind: the health service stays open
    assert grpc_health(srv).status == health_pb2.HealthCheckResponse.SERVING


def test_no_token_configured_means_open(fake_server):
    srv = fake_server()
    assert call(srv.rest_port, "POST", "/v1/models/m:predict", BODY).status == 200
    assert list(grpc_predict(srv).outputs["y"].float_val) == [3.0]
