"""Shared machines (issue 13, item 2): under JupyterHub, or with auth_token "auto", a server
requires a generated token on REST and gRPC; an explicit empty token is open, with a warning."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import requests
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

import nbserve
from nbserve.transport import auth

MODEL = "half_plus_two"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(auth.SHARED_HOST_ENV, "alice")
    monkeypatch.delenv(auth.TOKEN_ENV, raising=False)


def test_resolve_token_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(auth.SHARED_HOST_ENV, raising=False)
    monkeypatch.delenv(auth.TOKEN_ENV, raising=False)
    assert auth.resolve_token(None) == ""  # a personal machine: open by default
    assert auth.resolve_token("") == ""
    assert auth.resolve_token("s3cret") == "s3cret"
    generated = {auth.resolve_token("auto") for _ in range(3)}
    assert len(generated) == 3 and all(len(t) >= 40 for t in generated)
    monkeypatch.setenv(auth.TOKEN_ENV, "from-env")
    assert auth.resolve_token(None) == "from-env"
    monkeypatch.setenv(auth.TOKEN_ENV, "auto")
    assert len(auth.resolve_token(None)) >= 40
    monkeypatch.setenv(auth.SHARED_HOST_ENV, "alice")
    monkeypatch.delenv(auth.TOKEN_ENV)
    assert len(auth.resolve_token(None)) >= 40  # JupyterHub: a token unless told otherwise
    assert auth.resolve_token("mine") == "mine"


def test_explicit_empty_token_on_a_shared_host_is_open_with_one_warning(
        hub: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="nbserve"):
        assert auth.resolve_token("") == ""
    assert [r.getMessage() for r in caplog.records] == [auth.OPEN_ON_SHARED_HOST]


def test_cli_auth_token_auto() -> None:
    from nbserve.cli import options_from_flags, parse_flags

    values, _ = parse_flags(["--model_base_path=/m", "--auth_token=auto"])
    first = options_from_flags(values).auth_token
    second = options_from_flags(values).auth_token
    assert len(first) >= 40 and first != second and first != "auto"


@pytest.fixture
def hub_server(hub: None, tfs_testdata: Any) -> Iterator[Any]:
    srv = nbserve.serve(str(tfs_testdata / "saved_model_half_plus_two_cpu"), name=MODEL,
                        port=0, rest_api_port=0)
    try:
        srv.wait_until_available(MODEL, timeout=60)
        yield srv
    finally:
        srv.stop()


def grpc_predict(target: str, metadata: tuple[tuple[str, str], ...]) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["x"].dtype = 1  # DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add().size = 1
    request.inputs["x"].float_val.append(2.0)
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=30, metadata=metadata)


@pytest.mark.tfs_testdata
def test_jupyterhub_server_requires_its_generated_token(hub_server: Any) -> None:
    token = hub_server.auth_token
    assert len(token) >= 40
    url = f"{hub_server.rest_url}/v1/models/{MODEL}:predict"
    body = {"instances": [2.0]}
    assert requests.post(url, json=body, timeout=30).status_code == 401
    assert requests.post(url, json=body, timeout=30,
                         headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = requests.post(url, json=body, timeout=30, headers={"Authorization": f"Bearer {token}"})
    assert ok.json() == {"predictions": [3.0]}
    assert requests.get(f"{hub_server.rest_url}/healthz", timeout=30).status_code == 200
    with pytest.raises(grpc.RpcError) as info:
        grpc_predict(hub_server.grpc_target, ())
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    reply = grpc_predict(hub_server.grpc_target, (("authorization", f"Bearer {token}"),))
    np.testing.assert_allclose(reply.outputs["y"].float_val, [3.0])
    # in-process calls need no token; the token never reaches a log line or the repr
    assert float(hub_server.predict(MODEL, [2.0])["y"][0]) == 3.0
    assert token not in repr(hub_server)
    assert not any(token in line for line in hub_server.logs())


@pytest.mark.tfs_testdata
def test_serve_with_explicit_empty_token_on_a_hub_is_open(hub: None, tfs_testdata: Any) -> None:
    with pytest.warns(UserWarning, match="every user of this shared machine"):
        srv = nbserve.serve(str(tfs_testdata / "saved_model_half_plus_two_cpu"), name=MODEL,
                            port=None, rest_api_port=0, auth_token="")
    try:
        srv.wait_until_available(MODEL, timeout=60)
        assert srv.auth_token == ""
        reply = requests.post(f"{srv.rest_url}/v1/models/{MODEL}:predict",
                              json={"instances": [2.0]}, timeout=30)
        assert reply.status_code == 200
    finally:
        srv.stop()
