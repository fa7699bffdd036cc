"""gRPC on a unix socket (``--grpc_socket_path``, TF Serving's testPredictUDS): real servers, a real
``tensorflow-serving-api`` client on ``unix:PATH``, stale and live socket files."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

import pytest

from nbserve.options import ModelConfig
from nbserve.server import ServerStartError
from nbserve.transport.unix_socket import (
    SocketFile,
    SocketPathError,
    claim_socket_path,
    socket_identity,
)

grpc = pytest.importorskip("grpc")
tf = pytest.importorskip("tensorflow")

from tensorflow_serving.apis import (  # noqa: E402
    predict_pb2,
    prediction_service_pb2_grpc,
)


def half_plus_two(tfs_testdata) -> list[ModelConfig]:
    return [ModelConfig("default", str(tfs_testdata / "saved_model_half_plus_two_cpu"))]


@pytest.fixture
def sock_dir():
    """A short folder for socket files (pytest's tmp_path can exceed the 107-byte limit)."""
    folder = tempfile.mkdtemp(prefix="nbs-")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def stale_socket(path: str) -> None:
    """A socket file nobody listens on: what a crashed server leaves behind."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()


def predict(target: str, x: float = 2.0) -> tuple[float, int]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([x], shape=[1]))
    with grpc.insecure_channel(target) as channel:
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 20)
    return reply.outputs["y"].float_val[0], reply.model_spec.version.value


# -- claiming the path -----------------------------------------------------------------------------
def test_a_free_path_is_returned_absolute(sock_dir, monkeypatch):
    monkeypatch.chdir(sock_dir)
    assert claim_socket_path("s.sock") == os.path.join(sock_dir, "s.sock")


def test_a_stale_socket_file_is_removed(sock_dir):
    path = os.path.join(sock_dir, "s.sock")
    stale_socket(path)
    assert socket_identity(path) is not None
    assert claim_socket_path(path) == path
    assert not os.path.exists(path)


def test_a_live_socket_is_taken_over_with_a_warning(sock_dir, caplog):
    """As TF Serving's gRPC: unlink and bind again (its e2e suite starts every server on the
    same path while the earlier ones run)."""
    path = os.path.join(sock_dir, "s.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(path)
        live.listen(1)
        with caplog.at_level("WARNING", logger="nbserve.grpc"):
            assert claim_socket_path(path) == path
    assert not os.path.exists(path)
    assert f"{path}: another server is listening there; this server takes the path over" in (
        caplog.text)


@pytest.mark.parametrize("make, message", [
    (lambda p: open(p, "w").close(), "exists and is not a socket"),
    (lambda p: None, "does not exist"),
])
def test_other_things_in_the_way_are_errors(sock_dir, make, message):
    path = os.path.join(sock_dir, "s.sock")
    make(path)
    target = path if message != "does not exist" else os.path.join(sock_dir, "no", "s.sock")
    with pytest.raises(SocketPathError, match=message):
        claim_socket_path(target)


def test_a_path_too_long_for_a_socket_is_an_error(sock_dir):
    with pytest.raises(SocketPathError, match="too long"):
        claim_socket_path(os.path.join(sock_dir, "x" * 120))


def test_socket_file_removes_only_its_own_file_and_restores_a_taken_over_one(sock_dir):
    path = os.path.join(sock_dir, "s.sock")
    stale_socket(path)
    mine = SocketFile(path)
    mine.bound()
    mine.before_stop()
    os.unlink(path)  # what gRPC does when it stops
    mine.after_stop()
    assert not os.path.exists(path)
    stale_socket(path)
    mine = SocketFile(path)
    mine.bound()
    stale_socket(path + ".other")
    os.replace(path + ".other", path)  # another server took the path over
    theirs = socket_identity(path)
    mine.before_stop()
    os.unlink(path)  # gRPC again
    mine.after_stop()
    assert socket_identity(path) == theirs
    assert os.listdir(sock_dir) == ["s.sock"]


# -- served over the socket ------------------------------------------------------------------------
@pytest.mark.tfs_testdata
@pytest.mark.parametrize("front_end", ["grpcio", "h2"])
def test_predict_over_the_unix_socket_and_tcp(start_server, tfs_testdata, sock_dir, front_end):
    path = os.path.join(sock_dir, "tf-serving.sock")
    stale_socket(path)  # a crashed run's leftover is replaced
    server = start_server(half_plus_two(tfs_testdata),
                          grpc_port=0, grpc_socket_path=path, grpc_front_end=front_end)
    server.wait_until_available("default")
    assert server.grpc_socket_path == path
    assert predict("unix:" + path) == (3.0, 123)
    assert predict(server.grpc_target) == (3.0, 123)
    server.stop()
    assert not os.path.exists(path)


@pytest.mark.tfs_testdata
def test_a_second_server_takes_the_socket_over(start_server, tfs_testdata, sock_dir):
    path = os.path.join(sock_dir, "s.sock")
    first = start_server(half_plus_two(tfs_testdata), grpc_port=0, grpc_socket_path=path)
    first.wait_until_available("default")
    assert predict("unix:" + path) == (3.0, 123)
    half_plus_three = ModelConfig("default", str(tfs_testdata / "saved_model_half_plus_three"))
    second = start_server([half_plus_three], grpc_port=0, grpc_socket_path=path)
    second.wait_until_available("default")
    assert predict("unix:" + path) == (4.0, 123)  # half_plus_three answers now
    first.stop()
    assert os.path.exists(path)  # the first server leaves the second one's socket alone
    assert predict("unix:" + path) == (4.0, 123)


def test_a_regular_file_in_the_way_fails_the_start(start_server, sock_dir):
    path = os.path.join(sock_dir, "s.sock")
    open(path, "w").close()
    with pytest.raises(ServerStartError, match=f"{path} exists and is not a socket"):
        start_server([], grpc_port=0, grpc_socket_path=path)


@pytest.mark.tfs_testdata
@pytest.mark.parametrize("front_end", ["grpcio", "h2"])
def test_socket_only_grpc(start_server, tfs_testdata, sock_dir, front_end):
    """``--port=0 --grpc_socket_path=P``: gRPC on the socket only."""
    path = os.path.join(sock_dir, "s.sock")
    server = start_server(half_plus_two(tfs_testdata), grpc_port=None, rest_api_port=None,
                          grpc_socket_path=path, grpc_front_end=front_end)
    server.wait_until_available("default")
    assert server.grpc_port is None and server.grpc_target is None
    assert predict("unix:" + path, 4.0) == (4.0, 123)
