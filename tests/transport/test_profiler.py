"""``tensorflow.ProfilerService`` on the gRPC port (TF Serving's
test_profiler_service_with_valid_trace_request): TensorFlow's own profiler client traces a live
server under REST traffic and the trace file lands in the client's logdir."""

from __future__ import annotations

import glob
import os
import pathlib
import threading

import pytest

from nbserve.options import ModelConfig
from tests.transport.rest_client import call

grpc = pytest.importorskip("grpc")
tf = pytest.importorskip("tensorflow")

from tensorflow.python.profiler import profiler_client  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from nbserve.profiling import Capture, is_empty, profile_report, trace  # noqa: E402
from nbserve.transport.profiler import SERVICE, messages  # noqa: E402


def half_plus_two(tfs_testdata) -> list[ModelConfig]:
    return [ModelConfig("default", str(tfs_testdata / "saved_model_half_plus_two_cpu"))]


class Traffic:
    """REST predicts in a loop on a thread until stopped: the live load a profile records."""

    def __init__(self, port: int) -> None:
        self.port, self.replies = port, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            reply = call(self.port, "POST", "/v1/models/default:predict",
                         '{"instances": [2.0, 3.0, 4.0]}')
            self.replies.append(reply.status)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture(params=["grpcio", "h2"])
def server(start_server, tfs_testdata, request):
    srv = start_server(half_plus_two(tfs_testdata), grpc_port=0, grpc_front_end=request.param)
    srv.wait_until_available("default")
    return srv


def xplanes(logdir: str) -> list[str]:
    return glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))


def host_events(path: str) -> int:
    with open(path, "rb") as f:
        space = xplane_pb2.XSpace.FromString(f.read())
    return sum(len(line.events) for plane in space.planes if plane.name.startswith("/host:")
               for line in plane.lines)


def unary(channel, method: str, request_type: str, response_type: str):
    types = messages()
    return channel.unary_unary(f"/{SERVICE}/{method}",
                               request_serializer=types[request_type].SerializeToString,
                               response_deserializer=types[response_type].FromString)


@pytest.mark.tfs_testdata
def test_tensorflows_profiler_client_traces_the_live_server(server, tmp_path):
    logdir = str(tmp_path / "logs")
    os.makedirs(logdir)
    with Traffic(server.rest_port) as traffic:
        profiler_client.trace(server.grpc_target, logdir, 1000, "", 3)
    assert traffic.replies and set(traffic.replies) == {200}
    [path] = xplanes(logdir)
    # TSL's layout: <logdir>/plugins/profile/<session>/<host>_<port>.xplane.pb
    assert os.path.basename(path) == server.grpc_target.replace(":", "_") + ".xplane.pb"
    assert host_events(path) > 0


@pytest.mark.tfs_testdata
def test_the_public_api_with_a_grpc_url(server, tmp_path):
    logdir = str(tmp_path / "logs")
    with Traffic(server.rest_port):
        tf.profiler.experimental.client.trace(f"grpc://{server.grpc_target}", logdir, 500)
    assert len(xplanes(logdir)) == 1


@pytest.mark.tfs_testdata
def test_emit_xspace_returns_the_trace_and_terminate_ends_it_early(server):
    """A ten-minute profile that returns within the test's timeouts: Terminate ended it."""
    types = messages()
    request = types["ProfileRequest"](session_id="s1", emit_xspace=True)
    request.opts.duration_ms = 600_000  # only Terminate can end this one in time
    request.opts.host_tracer_level = 2
    with grpc.insecure_channel(server.grpc_target) as channel, Traffic(server.rest_port):
        future = unary(channel, "Profile", "ProfileRequest", "ProfileResponse").future(
            request, timeout=60)
        terminate = unary(channel, "Terminate", "TerminateRequest", "TerminateResponse")
        while True:  # Terminate names a session only once Profile has registered it
            terminate(types["TerminateRequest"](session_id="s1"), timeout=10)
            try:
                reply = future.result(timeout=0.2)
                break
            except grpc.FutureTimeoutError:
                continue
    assert any(plane.name == "/host:CPU" for plane in reply.xspace.planes)
    assert reply.empty_trace is is_empty(reply.xspace.SerializeToString())


@pytest.mark.tfs_testdata
def test_one_profile_at_a_time_and_monitor_is_unimplemented(server):
    types = messages()
    request = types["ProfileRequest"](session_id="s2", emit_xspace=True)
    request.opts.duration_ms = 100
    capture = Capture()  # TensorFlow allows one profiler session per process
    try:
        with grpc.insecure_channel(server.grpc_target) as channel:
            with pytest.raises(grpc.RpcError) as info:
                unary(channel, "Profile", "ProfileRequest", "ProfileResponse")(request, timeout=30)
            assert info.value.code() == grpc.StatusCode.INTERNAL
            assert "Another profiling session active" in info.value.details()
            with pytest.raises(grpc.RpcError) as info:
                unary(channel, "Monitor", "MonitorRequest", "MonitorResponse")(
                    types["MonitorRequest"](duration_ms=10), timeout=30)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        capture.collect()


@pytest.mark.tfs_testdata
def test_enable_profiler_false_leaves_the_service_out(start_server, tfs_testdata):
    srv = start_server(half_plus_two(tfs_testdata),
                       grpc_port=0, enable_profiler=False)
    types = messages()
    with grpc.insecure_channel(srv.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as info:
            unary(channel, "Profile", "ProfileRequest", "ProfileResponse")(
                types["ProfileRequest"](duration_ms=10), timeout=30)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


# -- the notebook's in-process capture ------------------------------------------------------------
@pytest.mark.tfs_testdata
def test_trace_writes_a_tensorboard_profile_of_live_traffic(server, tmp_path):
    logdir = str(tmp_path / "logs")
    with Traffic(server.rest_port):
        path, has_events = trace(logdir, 500)
    assert has_events and path in xplanes(logdir)
    assert not is_empty(pathlib.Path(path).read_bytes())
    report = profile_report(logdir, 500, path, has_events)
    assert path in report and "%load_ext tensorboard" in report
    assert f"%tensorboard --logdir {logdir}" in report and "Profile tab" in report


def test_trace_rejects_a_non_positive_duration(tmp_path):
    with pytest.raises(ValueError, match="duration_ms must be greater than zero"):
        trace(str(tmp_path), 0)
