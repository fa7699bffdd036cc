"""The isolated mode: a server in a child process, driven through the same API, that can die
without taking the kernel down (issue 13, item 1). Real child processes, real sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests

import nbserve
from nbserve.errors import ServingError, StatusCode
from nbserve.isolation import IsolatedServer, describe_returncode

MODEL = "half_plus_two"


def pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie child of ours counts as gone once reaped
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def model_path(tfs_testdata: Any) -> str:
    return str(tfs_testdata / "saved_model_half_plus_two_cpu")


@pytest.fixture(scope="module")
def isolated(model_path: str) -> Iterator[IsolatedServer]:
    srv = nbserve.serve(model_path, name=MODEL, port=0, rest_api_port=0, isolate=True)
    try:
        srv.wait_until_available(MODEL, timeout=120)
        yield srv
    finally:
        srv.stop()


def test_same_api_and_answers_as_in_process(isolated: IsolatedServer) -> None:
    assert isolated.pid != os.getpid()
    out = isolated.predict(MODEL, [1.0, 2.0, 5.0])
    np.testing.assert_allclose(out["y"], np.float32([2.5, 3.0, 4.5]))
    assert isolated.status()[MODEL][0]["state"] == "AVAILABLE"
    reply = requests.post(f"{isolated.rest_url}/v1/models/{MODEL}:predict",
                          json={"instances": [1.0]}, timeout=30)
    assert reply.json() == {"predictions": [2.5]}


def test_errors_keep_their_code_and_text(isolated: IsolatedServer) -> None:
    with pytest.raises(ServingError) as info:
        isolated.predict("nope", [1.0])
    assert info.value.code == StatusCode.NOT_FOUND
    assert info.value.message == "Servable not found for request: Latest(nope)"


def test_calls_overlap(isolated: IsolatedServer) -> None:
    results: list[float] = []

    def worker() -> None:
        for _ in range(20):
            results.append(float(isolated.predict(MODEL, [2.0])["y"][0]))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [3.0] * 80


def test_child_killed_while_idle_leaves_the_kernel_and_restarts_on_the_same_ports(
        model_path: str) -> None:
    srv = nbserve.serve(model_path, name=MODEL, port=0, rest_api_port=0, isolate=True)
    try:
        srv.wait_until_available(MODEL, timeout=120)
        ports = (srv.rest_port, srv.grpc_port)
        died = threading.Event()
        events: list[Any] = []
        srv.subscribe(lambda event: (events.append(event),
                                     died.set() if event.state == "DIED" else None))
        os.kill(srv.pid, signal.SIGKILL)
        assert died.wait(30)
        assert srv.death is not None and srv.death.returncode == -signal.SIGKILL
        assert "killed by signal 9 (SIGKILL)" in str(srv.death)
        assert any("nbserve serving" in line for line in srv.death.last_lines)
        with pytest.raises(ServingError) as info:
            srv.predict(MODEL, [1.0])
        assert info.value.code == StatusCode.UNAVAILABLE
        assert "restart()" in info.value.message
        srv.restart()
        assert (srv.rest_port, srv.grpc_port) == ports
        srv.wait_until_available(MODEL, timeout=120)
        assert float(srv.predict(MODEL, [4.0])["y"][0]) == 4.0
    finally:
        srv.stop()
    assert not srv.running


def test_child_killed_under_load_fails_every_pending_call_promptly(model_path: str) -> None:
    srv = nbserve.serve(model_path, name=MODEL, port=0, rest_api_port=None, isolate=True)
    try:
        srv.wait_until_available(MODEL, timeout=120)
        outcomes: list[str] = []
        stop = threading.Event()

        def worker() -> None:
            while not stop.is_set():
                try:
                    srv.predict(MODEL, [1.0])
                    outcomes.append("ok")
                except ServingError as err:
                    outcomes.append(err.code.name)
                    return

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        while outcomes.count("ok") < 20:
            time.sleep(0.01)
        os.kill(srv.pid, signal.SIGKILL)
        for thread in threads:
            thread.join(30)
        stop.set()
        assert not any(thread.is_alive() for thread in threads)  # nobody hangs
        assert set(outcomes) == {"ok", "UNAVAILABLE"}
    finally:
        srv.stop()


def test_a_child_that_cannot_start_reports_the_in_process_error(model_path: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(Exception) as isolated_error:
            nbserve.serve(model_path, name=MODEL, port=None, rest_api_port=port, isolate=True)
        with pytest.raises(Exception) as in_process_error:
            nbserve.serve(model_path, name=MODEL, port=None, rest_api_port=port)
    assert type(isolated_error.value).__name__ == "ServerStartError"
    assert str(isolated_error.value) == str(in_process_error.value)
    assert f"Port {port}" in str(isolated_error.value)


def test_the_child_never_outlives_its_kernel(model_path: str, tmp_path: Any) -> None:
    """A 'kernel' process starts an isolated server and is killed with SIGKILL: the child stops
    on its own (it sees its channel close)."""
    script = tmp_path / "kernel.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time, nbserve
        srv = nbserve.serve({model_path!r}, name="m", port=None, rest_api_port=0, isolate=True)
        print(srv.pid, flush=True)
        time.sleep(600)
    """))
    kernel = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        assert kernel.stdout is not None
        child_pid = int(kernel.stdout.readline())
        os.kill(child_pid, 0)  # alive
        kernel.kill()
        kernel.wait(30)
        assert pid_gone(child_pid, 60), "the isolated child outlived its kernel"
    finally:
        if kernel.poll() is None:
            kernel.kill()
            kernel.wait(30)
        if kernel.stdout is not None:
            kernel.stdout.close()


def test_stop_ends_the_child_and_frees_the_ports(model_path: str) -> None:
    srv = nbserve.serve(model_path, name=MODEL, port=0, rest_api_port=0, isolate=True)
    pid, port = srv.pid, srv.rest_port
    srv.stop()
    assert pid is not None and pid_gone(pid, 30)
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))  # free again
    srv.stop()  # idempotent


def test_describe_returncode() -> None:
    assert describe_returncode(-9) == "was killed by signal 9 (SIGKILL)"
    assert describe_returncode(3) == "exited with code 3"
    assert describe_returncode(None) == "is still running"
