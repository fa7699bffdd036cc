"""``%tfserve start ... --grpc_socket_path PATH`` and ``%tfserve profile`` through a real IPython
shell (issue 14)."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import threading

import pytest

pytest.importorskip("IPython")
tf = pytest.importorskip("tensorflow")
grpc = pytest.importorskip("grpc")

from IPython.core.error import UsageError  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

import nbserve  # noqa: E402
from nbserve import logs  # noqa: E402
from nbserve.magic import TFServeMagics, parse_line, serve_kwargs  # noqa: E402
from nbserve.server import stop_all  # noqa: E402
from tests.models import Affine  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """``<root>/half``: v1 computes 0.5x + 2."""
    root = tmp_path_factory.mktemp("models")
    module = Affine(0.5, 2.0)
    nbserve.export(module, str(root / "half"), signatures=module.__call__)
    return root / "half"


@pytest.fixture
def tfserve():
    shell = InteractiveShell.instance()
    shell.register_magics(TFServeMagics(shell, display=lambda *a, **k: None))
    yield lambda line: shell.run_line_magic("tfserve", line)
    stop_all()
    logs.uninstall()


@pytest.fixture
def sock_dir():
    folder = tempfile.mkdtemp(prefix="nbs-")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_start_line_passes_the_socket_path():
    kwargs = serve_kwargs(parse_line("start ./m --grpc_socket_path /tmp/x.sock"))
    assert kwargs["grpc_socket_path"] == "/tmp/x.sock"
    assert "grpc_socket_path" not in serve_kwargs(parse_line("start ./m"))
    args = parse_line("profile --duration_ms 500 --logdir ./tb")
    assert (args.action, args.duration_ms, args.logdir) == ("profile", 500, "./tb")


def test_start_with_a_socket_path_serves_grpc_there(tfserve, model, sock_dir):
    path = os.path.join(sock_dir, "s.sock")
    server = tfserve(f"start {model} --port 0 --rest_api_port off --grpc_socket_path {path}")
    server.wait_until_available("half")
    assert server.grpc_socket_path == path
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([2.0, 4.0]))
    with grpc.insecure_channel("unix:" + path) as channel:
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 20)
    assert list(reply.outputs["y"].float_val) == [3.0, 4.0]


def test_profile_records_live_traffic_and_says_how_to_open_it(tfserve, model, tmp_path, capsys):
    server = tfserve(f"start {model} --port 0 --rest_api_port 0")
    server.wait_until_available("half")
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            server.predict("half", [1.0, 2.0])

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    logdir = str(tmp_path / "logs")
    try:
        tfserve(f"profile --duration_ms 500 --logdir {logdir}")
    finally:
        stop.set()
        worker.join(30)
    [path] = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    out = capsys.readouterr().out
    assert f"Profiled this kernel's TensorFlow work for 500 ms: {path}" in out
    assert "%load_ext tensorboard" in out and f"%tensorboard --logdir {logdir}" in out
    assert "No TensorFlow activity" not in out


def test_a_bad_profile_line_is_a_one_line_error(tfserve, tmp_path):
    with pytest.raises(UsageError, match="duration_ms must be greater than zero") as info:
        tfserve(f"profile --duration_ms 0 --logdir {tmp_path}")
    assert "\n" not in str(info.value)
