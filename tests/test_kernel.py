"""Issue 4's "What it must show", in a real ipykernel driven by jupyter_client.

export v1 -> ``%tfserve start --port 0 --rest_api_port 0`` -> REST and gRPC predictions from cells
-> export v2 -> v2 AVAILABLE and v1 END -> a corrupt version 3 leaves v2 serving (3 shows END with
its error) -> ``%tfserve stop`` closes the ports -> starting again works. Every wait is bounded.
"""

from __future__ import annotations

import queue
import re
import socket
import sys
import time
from collections.abc import Callable

import pytest

pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

from tests.kernels import Kernel  # noqa: E402

SETUP = """
import json, os, shutil, socket, time
import numpy as np, requests, grpc, tensorflow as tf
import nbserve
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

class Affine(tf.Module):
    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = tf.Variable(a), tf.Variable(b)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def __call__(self, x):
        return {"y": self.a * x + self.b}

def export(a, b):
    m = Affine(a, b)
    return nbserve.export(m, "./affine", signatures={"serving_default": m.__call__})

def rest(srv, xs):
    r = requests.post(srv.rest_url + "/v1/models/affine:predict", json={"instances": xs}, timeout=10)
    r.raise_for_status()
    return r.json()["predictions"]

def grpc_predict(srv, xs):
    with grpc.insecure_channel(srv.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "affine"
        req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array(xs, np.float32)))
        resp = stub.Predict(req, timeout=10)
        return [float(v) for v in tf.make_ndarray(resp.outputs["y"])], resp.model_spec.version.value

def state(srv, version):
    return {int(e["version"]): e for e in srv.status("affine")["affine"]}.get(version)

def wait_state(srv, version, wanted, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        e = state(srv, version)
        if e is not None and e["state"] == wanted:
            return e
        time.sleep(0.05)
    raise TimeoutError(f"version {version} not {wanted}: {srv.status()}")

def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except OSError:
        return True

print(export(0.5, 2.0))
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    k = Kernel(str(tmp_path_factory.mktemp("kernel")))
    assert k.km.kernel_spec.argv[0] in ("python", sys.executable, "python3")
    try:
        yield k
    finally:
        k.close()


def test_notebook_scenario(kernel):
    assert kernel.run(SETUP).strip().endswith("1")
    assert kernel.run("import sys; print(sys.executable)").strip() == sys.executable

    kernel.run("%load_ext nbserve")
    kernel.run("srv = %tfserve start ./affine --port 0 --rest_api_port 0 --poll 0.2")
    assert kernel.json("print(json.dumps(srv.wait_until_available('affine', 1, timeout=60)))") == 1
    assert kernel.json("print(json.dumps(rest(srv, [1.0, 2.0])))") == [2.5, 3.0]
    assert kernel.json("print(json.dumps(grpc_predict(srv, [4.0])))") == [[4.0], 1]

    # a new export shows up and replaces v1 within seconds
    assert kernel.json("print(export(1.0, 0.0))") == 2
    v1 = kernel.json("wait_state(srv, 2, 'AVAILABLE'); print(json.dumps(wait_state(srv, 1, 'END')))")
    assert v1["status"]["error_code"] == "OK"
    assert kernel.json("print(json.dumps(rest(srv, [1.0, 2.0])))") == [1.0, 2.0]
    assert kernel.json("print(json.dumps(grpc_predict(srv, [4.0])))") == [[4.0], 2]

    # a corrupt version 3 ends with its error; v2 keeps serving
    v3 = kernel.json("""
        os.makedirs('affine/3/variables')
        with open('affine/3/saved_model.pb', 'wb') as f:
            f.write(b'this is not a SavedModel')
        print(json.dumps(wait_state(srv, 3, 'END', timeout=60)))
    """)
    assert v3["status"]["error_code"] != "OK" and v3["status"]["error_message"]
    assert kernel.json("print(json.dumps(state(srv, 2)['state']))") == "AVAILABLE"
    assert kernel.json("print(json.dumps(rest(srv, [3.0])))") == [3.0]
    status_text = kernel.run("st = %tfserve status\nprint(repr(st))")
    assert "AVAILABLE" in status_text and "END" in status_text

    # stop frees both ports
    ports = kernel.json("ports = [srv.rest_port, srv.grpc_port]; print(json.dumps(ports))")
    assert "Stopped 1" in kernel.run("%tfserve stop")
    assert kernel.json("print(json.dumps([refused(p) for p in ports]))") == [True, True]
    for port in ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()

    # starting again works
    kernel.run("shutil.rmtree('affine/3')")
    kernel.run("srv = %tfserve start ./affine --port 0 --rest_api_port 0")
    assert kernel.json("print(json.dumps(srv.wait_until_available('affine', timeout=60)))") == 2
    assert kernel.json("print(json.dumps(rest(srv, [5.0])))") == [5.0]
    kernel.run("%tfserve stop")


def test_bad_arguments_are_one_line_errors_and_the_kernel_lives(kernel):
    kernel.run("%load_ext nbserve")
    for line in ("bogus", "start", "start ./affine --device tpu", "start ./affine --port x",
                 "start ./no_such_folder --port 0 --rest_api_port 0"):
        with pytest.raises(AssertionError, match="UsageError"):
            kernel.run(f"%tfserve {line}")
    assert kernel.run("print(1 + 1)").strip() == "2"


def test_kernel_shutdown_frees_the_ports(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    k = Kernel(str(tmp_path))
    try:
        k.run(SETUP)
        k.run(f"%load_ext nbserve\nsrv = %tfserve start ./affine --port 0 --rest_api_port {port}")
        assert k.json("print(json.dumps(srv.rest_port))") == port
    finally:
        k.close()
    with socket.socket() as s:  # bindable again: the kernel's atexit hook stopped the server
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


QUIET_SETUP = """
import json, requests, tensorflow as tf
import nbserve

class Feats(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(tf.ones([4, 1]))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="feats")])
    def __call__(self, feats):
        return {"score": tf.matmul(feats, self.w)}

m = Feats()
print(nbserve.export(m, "./feats", signatures=m.__call__))
"""

# TensorFlow's native log lines: "I0000 00:00:1796155456.976892    9761 file.cc:31] ..." (absl)
# or "2026-12-01 20:00:00.123456: I tensorflow/...cc:123] ..." (tsl)
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\]|"
                         r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ", re.M)


class StderrWatch:
    """Runs cells on ``kernel`` and keeps every stderr stream message, including those that
    arrive after a cell went idle (fd-2 output is forwarded by a kernel thread, late)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kc = kernel.kc
        self.stderr: list[tuple[str, str]] = []  # (cell msg_id, text)
        self.seen: list[tuple[str, str]] = []

    def _read(self, until: Callable[[dict], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            content = msg["content"]
            self.seen.append((msg["msg_type"], str(content)[:200]))
            if msg["msg_type"] == "stream" and content["name"] == "stderr":
                self.stderr.append((msg["parent_header"].get("msg_id", ""), content["text"]))
            if until(msg):
                return
        raise TimeoutError(f"the kernel did not answer: {self.seen[-8:]}")

    def run(self, code: str, timeout: float = 120) -> str:
        """Run ``code``; wait for its reply and idle; return its msg_id (stdout is ignored)."""
        msg_id = self.kc.execute(code)
        self._read(lambda m: m["msg_type"] == "status" and m["parent_header"].get("msg_id")
                   == msg_id and m["content"]["execution_state"] == "idle", timeout)
        reply = self.kc.get_shell_msg(timeout=timeout)
        assert reply["content"]["status"] == "ok", reply["content"]
        return msg_id

    def drain(self, marker: str) -> None:
        """Write ``marker`` on fd 2 from the kernel and read until it arrives: every fd-2 line
        written before it has arrived too (one pipe, in order)."""
        self.kc.execute(f"import os; os.write(2, b'{marker}\\n')")
        self._read(lambda m: m["msg_type"] == "stream" and marker in m["content"]["text"], 60)
        self.kc.get_shell_msg(timeout=60)

    def native_lines(self) -> list[str]:
        return [text for _, text in self.stderr if TF_LOG_LINE.search(text)]


def test_tensorflows_native_log_lines_stay_out_of_the_cells(tmp_path):
    """Defect 5: with TensorFlow's C++ logging on, no cell gets a TensorFlow log line caused by
    the server's work (start, loads, the first run's MLIR line, a bad request's
    ``local_rendezvous`` line), not even late; they are in ``%tfserve logs``. The user's own
    fd-2 output still reaches the cell."""
    # ipykernel forwards fd 2 to the cells except under pytest (PYTEST_CURRENT_TEST): as in Lab
    k = Kernel(str(tmp_path), env={"TF_CPP_MIN_LOG_LEVEL": "0", "PYTEST_CURRENT_TEST": None})
    try:
        watch = StderrWatch(k)
        watch.run(QUIET_SETUP)  # the user's own TensorFlow import and export: theirs
        watch.run("%load_ext nbserve")
        watch.drain("setup done")
        watch.stderr.clear()
        watch.run("srv = %tfserve start ./feats --port 0 --rest_api_port 0")
        watch.run("srv.wait_for('feats', timeout=60)")
        watch.run("r = requests.post(srv.rest_url + '/v1/models/feats:predict', "
                  "json={'instances': [[1.0, 2.0]]}, timeout=10); assert r.status_code == 400")
        watch.run("r = requests.post(srv.rest_url + '/v1/models/feats:predict', "
                  "json={'instances': [[1.0, 2.0, 3.0, 4.0]]}, timeout=10); "
                  "assert r.json() == {'predictions': [[10.0]]}, r.text")
        watch.run("native = [l for l in srv.logs() if l.startswith('[native] ')]")
        watch.run("%tfserve stop")
        watch.drain("cells done")
        assert watch.native_lines() == []
        native = k.run("print('\\n'.join(native))")
        assert "local_rendezvous" in native and TF_LOG_LINE.search(
            native.replace("[native] ", "")), native
        watch.run("os.write(2, b'user line on fd 2\\n')")
        watch.drain("user done")
        assert any("user line on fd 2" in text for _, text in watch.stderr)
    finally:
        k.close()
