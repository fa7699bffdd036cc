"""Graceful shutdown: stop accepting, let in-flight requests finish within the grace, exit 0."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from nbserve.codec.tensors import to_tensor_proto
from nbserve.options import ModelConfig
from nbserve.testing import FakeServable
from tests.reliability.helpers import fake_model_dir, routing_factory, serving
from tests.support import REPO, free_port, wait_for
from tests.transport.rest_client import call

BODY = b'{"instances": [2.0]}'


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False




def start_partial_post(port: int, path: str, body: bytes) -> tuple[socket.socket, bytes]:
    """Send the headers and the first half of ``body``; returns the socket and the rest."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    half = len(body) // 2
    sock.sendall(head + body[:half])
    return sock, body[half:]


def read_reply(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        pass
    finally:
        sock.close()
    if not data:
        return 0, b""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.fixture(params=["grpcio", "h2"])
def gated_server(tmp_path, request):
    from nbserve.options import ServerOptions
    from nbserve.server import Server

    gate = threading.Event()
    servable = FakeServable(gate=gate)
    srv = Server(ServerOptions(models=(ModelConfig("m", str(fake_model_dir(tmp_path, "m"))),),
                               rest_api_port=0, grpc_port=0, max_num_load_retries=0,
                               grpc_front_end=request.param),
                 loader_factory=routing_factory({"m": serving(servable)}))
    srv.start()
    srv.wait_until_available("m", timeout=30)
    yield srv, servable, gate
    gate.set()
    srv.stop(grace=1)


def test_stop_lets_in_flight_requests_finish(gated_server):
    srv, servable, gate = gated_server
    rest_port, target = srv.rest_port, srv.grpc_target
    results: dict[str, object] = {}

    def rest():
        results["rest"] = call(rest_port, "POST", "/v1/models/m:predict", BODY)

    def rpc():
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "m"
        request.inputs["x"].CopyFrom(to_tensor_proto(np.array([4.0], np.float32)))
        with grpc.insecure_channel(target) as channel:
            results["grpc"] = prediction_service_pb2_grpc.PredictionServiceStub(
                channel).Predict(request, timeout=30)

    clients = [threading.Thread(target=rest), threading.Thread(target=rpc)]
    for t in clients:
        t.start()
    for _ in clients:
        assert servable.entered.acquire(timeout=30)
    stopper = threading.Thread(target=srv.stop, kwargs={"grace": 30})
    stopper.start()
    try:
        wait_for(lambda: refused(rest_port), what="REST to stop accepting")
        with grpc.insecure_channel(target) as channel:  # gRPC refuses new calls too
            with pytest.raises(grpc.RpcError):
                request = predict_pb2.PredictRequest()
                request.model_spec.name = "m"
                prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                    request, timeout=5)
        assert stopper.is_alive()  # still waiting for the two in flight
    finally:
        gate.set()
    for t in [*clients, stopper]:
        t.join(30)
    assert not stopper.is_alive()
    assert results["rest"].status == 200 and results["rest"].json() == {"predictions": [3.0]}
    assert list(results["grpc"].outputs["y"].float_val) == [4.0]
    assert not srv.running


def test_grace_is_bounded(gated_server):
    srv, _, _ = gated_server
    sock, _rest = start_partial_post(srv.rest_port, "/v1/models/m:predict", BODY)
    wait_for(lambda: handler_started(srv), what="the upload to reach its handler")
    stopper = threading.Thread(target=srv.stop, kwargs={"grace": 0.5})
    stopper.start()
    stopper.join(30)  # the stalled upload never finishes; stop() must not wait for it
    assert not stopper.is_alive()
    status, _ = read_reply(sock)
    assert status != 200  # cut off after the grace, never served late


def handler_started(srv) -> bool:
    """True once a request has begun: aiohttp runs its handler, or (the default front end,
    rest_h1) a connection holds its head (its body may still be arriving)."""
    if any(not conn.idle for fast in srv._fast_rest for conn in fast.connections):
        return True
    server = srv._runners[0].server
    return any(getattr(conn, "_request_in_progress", True) for conn in server.connections)




@pytest.mark.tfs_testdata
def test_sigterm_drains_and_exits_zero(tfs_testdata):
    port = free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbserve", f"--rest_api_port={port}", "--port=0",
         "--model_name=hp", f"--model_base_path={tfs_testdata / 'saved_model_half_plus_two_cpu'}",
         "--shutdown_grace_seconds=60"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def available():
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                reply = call(port, "GET", "/v1/models/hp", timeout=5)
            except OSError:
                return False
            return reply.status == 200 and \
                reply.json()["model_version_status"][0]["state"] == "AVAILABLE"

        wait_for(available, timeout=120, what="the CLI server to serve")
        # A request that keeps the server busy for a while (3M instances, ~15 KB gzipped, about
        # a second or two of decoding and encoding) is in flight when SIGTERM arrives. aiohttp
        # drops body bytes arriving after shutdown begins, so the whole body goes first.
        n = 3_000_000
        body = gzip.compress(('{"instances": [' + ", ".join(["1.0"] * n) + "]}").encode())
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall((f"POST /v1/models/hp:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n"
                      "Connection: close\r\n\r\n").encode() + body)
        assert call(port, "GET", "/v1/models/hp").status == 200  # the loop has read the upload
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: refused(port), what="the server to stop accepting")
        status, reply = read_reply(sock)
        assert status == 200
        predictions = json.loads(reply)["predictions"]
        assert len(predictions) == n and predictions[0] == predictions[-1] == 2.5
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
