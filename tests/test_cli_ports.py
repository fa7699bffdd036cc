"""``nbserve-server`` opens its ports as TF Serving does: gRPC, then REST, once every initial model
has settled (AVAILABLE, or END with its error); ``--open_ports_before_load`` opens them at once.

The load is held back deterministically: the model's base path starts empty, so nothing can load
until the test moves a version folder in."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from tests.support import stop_process
from tests.transport.rest_client import call

grpc = pytest.importorskip("grpc")
tf = pytest.importorskip("tensorflow")

from tensorflow_serving.apis import (  # noqa: E402
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

WAITING = "Opening the ports once the initial models have loaded; waiting for: default"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Cli:
    """``python -m nbserve`` on free ports; its stderr lines are collected on a thread."""

    def __init__(self, *flags: str) -> None:
        self.grpc_port, self.rest_port = free_port(), free_port()
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nbserve", f"--port={self.grpc_port}",
             f"--rest_api_port={self.rest_port}", "--file_system_poll_wait_seconds=0.1",
             "--max_num_load_retries=0", *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:  # closed by the reader once the server's stderr ends
            for line in self.proc.stderr:
                self.lines.put(line)

    def wait_for_line(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no {text!r} in: {''.join(self.log)}") from None
            self.log.append(line)
            if text in line:
                return

    def wait_until_rest_accepts(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not accepts(self.rest_port):
            assert self.proc.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "REST never opened"
            time.sleep(0.02)

    def stop(self) -> int:
        return stop_process(self.proc, self._reader, timeout=60)


@pytest.fixture
def cli():
    started: list[Cli] = []

    def start(*flags: str) -> Cli:
        started.append(Cli(*flags))
        return started[-1]

    yield start
    for one in started:
        one.stop()


def model_status(cli: Cli) -> dict:
    return call(cli.rest_port, "GET", "/v1/models/default").json()


def add_version(tfs_testdata, base, tmp_path) -> None:
    """Publish half_plus_two's version 123 into ``base`` in one rename."""
    staging = tmp_path / "staging"
    shutil.copytree(tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123", staging)
    os.rename(staging, base / "00000123")


@pytest.mark.tfs_testdata
def test_grpc_then_rest_open_after_the_initial_load(cli, tfs_testdata, tmp_path):
    base = tmp_path / "default"
    base.mkdir()
    sock_dir = tempfile.mkdtemp(prefix="nbs-")
    sock = os.path.join(sock_dir, "tf-serving.sock")
    try:
        server = cli("--model_name=default", f"--model_base_path={base}",
                     f"--grpc_socket_path={sock}")
        server.wait_for_line(WAITING)
        # no version can load yet: nothing listens, on either port or the socket
        assert not accepts(server.rest_port) and not accepts(server.grpc_port)
        assert not os.path.exists(sock)
        add_version(tfs_testdata, base, tmp_path)
        server.wait_until_rest_accepts()
        # the moment REST accepts, the model is AVAILABLE and gRPC is already up
        assert model_status(server)["model_version_status"][0]["state"] == "AVAILABLE"
        assert accepts(server.grpc_port)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "default"
        with grpc.insecure_channel(f"localhost:{server.grpc_port}") as channel:
            reply = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, 20)
        assert reply.model_version_status[0].state == 30  # AVAILABLE
        predict = predict_pb2.PredictRequest()
        predict.model_spec.name = "default"
        predict.inputs["x"].CopyFrom(tf.make_tensor_proto([2.0], shape=[1]))
        with grpc.insecure_channel("unix:" + sock) as channel:  # TF Serving's testPredictUDS
            out = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(predict, 20)
        assert out.outputs["y"].float_val[0] == 3.0
        assert server.stop() == 0
        assert not os.path.exists(sock)  # removed on shutdown
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.mark.tfs_testdata
def test_a_model_that_fails_to_load_opens_the_ports_and_the_server_stays_up(cli, tfs_testdata):
    server = cli("--model_name=default",
                 f"--model_base_path={tfs_testdata / 'bad_half_plus_two'}")
    server.wait_until_rest_accepts()
    [version] = model_status(server)["model_version_status"]
    assert version["state"] == "END" and version["status"]["error_code"] != "OK"
    assert accepts(server.grpc_port) and server.proc.poll() is None


def test_open_ports_before_load_opens_them_while_nothing_can_load(cli, tmp_path):
    base = tmp_path / "default"
    base.mkdir()  # stays empty: the load never ends
    server = cli("--model_name=default", f"--model_base_path={base}",
                 "--open_ports_before_load")
    server.wait_until_rest_accepts()
    assert accepts(server.grpc_port)
    reply = call(server.rest_port, "GET", "/v1/models/default")
    assert "AVAILABLE" not in reply.body.decode()


def test_sigterm_during_the_initial_load_stops_before_any_port_opens(cli, tmp_path):
    base = tmp_path / "default"
    base.mkdir()
    server = cli("--model_name=default", f"--model_base_path={base}")
    server.wait_for_line(WAITING)
    assert server.stop() == 0
    server.wait_for_line("Stopped before the ports opened", timeout=10)
    assert not accepts(server.rest_port) and not accepts(server.grpc_port)
