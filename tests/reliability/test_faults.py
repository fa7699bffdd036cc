"""Faults: each shows in status with its error, nothing crashes, the other models keep serving."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from nbserve.codec.tensors import to_tensor_proto
from nbserve.config_file import model_server_config_to_text
from nbserve.core.load_timeout import TimeoutLoader
from nbserve.errors import ServingError, StatusCode
from nbserve.options import ModelConfig, VersionPolicy
from nbserve.testing import FakeLoader
from tests.reliability.helpers import HalfPlusTwo, fake_model_dir, routing_factory, serving
from tests.transport.rest_client import call

BODY = '{"instances": [2.0]}'


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def end_entry(srv, name):
    """The model's newest status entry once it is END (waits for it)."""
    def ended():
        states = srv.status().get(name) or []
        return states and states[0]["state"] == "END"
    wait_for(ended, what=f"{name} to end")
    return srv.status()[name][0]


def predict_ok(srv, name, path_extra=""):
    reply = call(srv.rest_port, "POST", f"/v1/models/{name}{path_extra}:predict", BODY)
    return reply.status == 200 and reply.json() == {"predictions": [3.0]}


@pytest.fixture
def fault_server(tmp_path, model_copy):
    """One server: "good" (TF Serving's two-version half_plus_two, all versions), plus models
    whose loads raise, fail with disk errors, or whose servable fails every call, and a SavedModel
    with a garbage saved_model.pb."""
    from nbserve.options import ServerOptions
    from nbserve.server import Server

    good = model_copy("saved_model_half_plus_two_2_versions")
    root = tmp_path / "fakes"
    fakes = {
        "raises": lambda i, p: FakeLoader(error=RuntimeError("model init exploded"), label=i),
        "disk_full": lambda i, p: FakeLoader(error=OSError(errno.ENOSPC, os.strerror(
            errno.ENOSPC), p), label=i),
        "no_permission": lambda i, p: FakeLoader(error=PermissionError(errno.EACCES, os.strerror(
            errno.EACCES), p), label=i),
        "fails_calls": serving(HalfPlusTwo(error=RuntimeError("kernel failed on every call"))),
    }
    models = [ModelConfig("good", str(good), version_policy=VersionPolicy.all())]
    models += [ModelConfig(name, str(fake_model_dir(root, name))) for name in fakes]
    models.append(ModelConfig("garbage", str(fake_model_dir(
        root, "garbage", pb=b"\x00\xffthis is not a protocol buffer" * 50))))
    srv = Server(ServerOptions(models=tuple(models), rest_api_port=0, grpc_port=0,
                               max_num_load_retries=0, file_system_poll_wait_seconds=0.2,
                               version_settle_seconds=0.05),
                 loader_factory=routing_factory(fakes))
    srv.start()
    srv.wait_until_available("good", 123, timeout=60)
    srv.wait_until_available("good", 124, timeout=60)
    srv.wait_until_available("fails_calls", timeout=60)
    yield srv, good
    srv.stop(grace=1)


def test_load_and_read_faults_show_in_status(fault_server):
    srv, _ = fault_server
    raises = end_entry(srv, "raises")["status"]
    assert raises["error_code"] == "UNKNOWN" and "model init exploded" in raises["error_message"]
    disk = end_entry(srv, "disk_full")["status"]
    assert disk["error_code"] == "UNKNOWN" and "No space left on device" in disk["error_message"]
    perm = end_entry(srv, "no_permission")["status"]
    assert perm["error_code"] == "UNKNOWN" and "Permission denied" in perm["error_message"]
    garbage = end_entry(srv, "garbage")["status"]
    assert garbage["error_code"] != "OK" and garbage["error_message"]
    # the REST status of a failed model reports the same error
    rest = call(srv.rest_port, "GET", "/v1/models/disk_full").json()
    assert rest["model_version_status"][0]["state"] == "END"
    assert "No space left" in rest["model_version_status"][0]["status"]["error_message"]
    # predicting on it is the normal "not available" error, not a crash
    assert call(srv.rest_port, "POST", "/v1/models/raises:predict", BODY).status == 404
    assert predict_ok(srv, "good") and predict_ok(srv, "good", "/versions/123")


def test_a_servable_that_raises_on_every_call(fault_server):
    srv, _ = fault_server
    for _ in range(20):
        reply = call(srv.rest_port, "POST", "/v1/models/fails_calls:predict", BODY)
        assert reply.status == 500
        assert "kernel failed on every call" in reply.json()["error"]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fails_calls"
    request.inputs["x"].CopyFrom(to_tensor_proto(np.array([1.0], np.float32)))
    with grpc.insecure_channel(srv.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as info:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    assert "kernel failed on every call" in info.value.details()
    assert srv.status("fails_calls")["fails_calls"][0]["state"] == "AVAILABLE"
    assert predict_ok(srv, "good")


def test_version_folder_deleted_while_serving(fault_server):
    srv, good = fault_server
    failures = []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            if not predict_ok(srv, "good", "/versions/123"):
                failures.append("123")

    thread = threading.Thread(target=client)
    thread.start()
    try:
        assert predict_ok(srv, "good")  # latest: 124
        shutil.rmtree(good / "00000124")
        wait_for(lambda: srv.status("good")["good"][0]["state"] == "END",
                 what="version 124 to unload")
        wait_for(lambda: predict_ok(srv, "good"), what="latest to fall back to 123")
    finally:
        stop.set()
        thread.join(30)
    assert failures == []
    states = {e["version"]: e["state"] for e in srv.status("good")["good"]}
    assert states == {"124": "END", "123": "AVAILABLE"} or states == {124: "END", 123: "AVAILABLE"}
    assert predict_ok(srv, "fails_calls") is False and predict_ok(srv, "good", "/versions/123")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root reads files whatever their mode")
def test_unreadable_variables(start_server, model_copy):
    base = model_copy("saved_model_half_plus_two_cpu")
    variables = base / "00000123" / "variables"
    for child in variables.iterdir():
        child.chmod(0)
    try:
        srv = start_server([ModelConfig("locked", str(base))])
        with pytest.raises(ServingError):
            srv.wait_until_available("locked", timeout=60)
        assert srv.status("locked")["locked"][0]["state"] == "END"
    finally:
        for child in variables.iterdir():
            child.chmod(0o644)


def test_hung_load_ends_with_deadline_exceeded(tmp_path):
    from nbserve.options import ServerOptions
    from nbserve.server import Server

    release = threading.Event()
    hung = FakeLoader(block=release)
    fakes = {"hangs": lambda i, p: hung, "fine": serving(HalfPlusTwo())}
    models = tuple(ModelConfig(n, str(fake_model_dir(tmp_path, n))) for n in fakes)
    srv = Server(ServerOptions(models=models, rest_api_port=0, grpc_port=None,
                               max_num_load_retries=0, load_timeout_seconds=0.5),
                 loader_factory=routing_factory(fakes))
    srv.start()
    try:
        srv.wait_until_available("fine", timeout=30)
        entry = end_entry(srv, "hangs")["status"]
        assert entry["error_code"] == "DEADLINE_EXCEEDED"
        assert "did not finish within 0.5 s (load_timeout_seconds)" in entry["error_message"]
        assert predict_ok(srv, "fine")
    finally:
        release.set()  # the abandoned load finishes and is unloaded, not leaked
        wait_for(lambda: hung.unload_calls == 1, what="the late load to be unloaded")
        srv.stop(grace=1)
    assert hung.violations == []


def test_timeout_loader_retry_waits_for_the_same_attempt():
    release = threading.Event()
    inner = FakeLoader(block=release)
    loader = TimeoutLoader(inner, 0.2, "m:1")
    with pytest.raises(ServingError) as info:
        loader.load()
    assert info.value.code == StatusCode.DEADLINE_EXCEEDED
    release.set()
    loader.load()  # the retry picks up the first attempt's success
    assert inner.load_calls == 1 and inner.loaded and loader.servable() is inner.servable()
    loader.unload()
    assert inner.unload_calls == 1 and inner.violations == []


def test_timeout_loader_passes_errors_through():
    error = ServingError(StatusCode.NOT_FOUND, "no SavedModel")
    loader = TimeoutLoader(FakeLoader(error=error), 5, "m:1")
    with pytest.raises(ServingError) as info:
        loader.load()
    assert info.value == error


def test_config_file_that_turns_to_garbage_then_recovers(start_server, tfs_testdata, tmp_path):
    from nbserve.config_file import load_model_server_config

    two = ModelConfig("hp2", str(tfs_testdata / "saved_model_half_plus_two_cpu"))
    three = ModelConfig("hp3", str(tfs_testdata / "saved_model_half_plus_three"))
    path = tmp_path / "models.config"
    path.write_text(model_server_config_to_text([two]))
    srv = start_server(load_model_server_config(path), model_config_file=str(path),
                       model_config_file_poll_wait_seconds=0.2)
    srv.wait_until_available("hp2", timeout=60)
    for garbage in ("model_config_list { config { name: ", "\x00\xff\xfe binary junk",
                    'model_config_list { config { name: "x" base_path: "relative" } }'):
        path.write_text(garbage, errors="surrogateescape")
        wait_for(lambda: srv.config_error is not None, what="the config error")
        assert srv.config_error.code == StatusCode.INVALID_ARGUMENT and srv.config_error.message
        assert predict_ok(srv, "hp2")
        assert set(srv.core.models()) == {"hp2"}
        path.write_text(model_server_config_to_text([two]))
        wait_for(lambda: srv.config_error is None, what="the error to clear")
    path.write_text(model_server_config_to_text([two, three]))
    srv.wait_until_available("hp3", timeout=60)
    assert srv.config_error is None
    assert call(srv.rest_port, "POST", "/v1/models/hp3:predict", BODY).json() == {
        "predictions": [4.0]}
