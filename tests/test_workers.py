"""``nbserve-server --num_workers=N`` (issue 12): real processes on real, free ports.

The module's ``served`` server (2 workers, half_plus_two, REST + gRPC + Prometheus) is started
once; its tests run in file order and the last two change it (a worker is killed and restarted,
then the server is drained with SIGTERM)."""

from __future__ import annotations

import gzip
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from nbserve.cli import UsageError, _check_workers, options_from_flags, parse_flags
from nbserve.metrics import merge, render
from nbserve.options import ModelConfig, ServerOptions
from nbserve.workers import Supervisor, check_supported, worker_options
from tests.support import REPO, free_port, stop_process, wait_for
from tests.transport.rest_client import call

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="--num_workers needs Linux (SO_REUSEPORT)")

COUNT = ":tensorflow:serving:request_count"
STATE = ":tensorflow:serving:model_version_state"


# -- flags and pure parts ------------------------------------------------------------------------
@pytest.mark.parametrize("flags,message", [
    (["--num_workers=0"], "invalid value for --num_workers: 0 (must be at least 1)"),
    (["--num_workers=-3"], "invalid value for --num_workers: -3 (must be at least 1)"),
    (["--num_workers=2", "--grpc_socket_path=/tmp/nbserve-w.sock"],
     "--grpc_socket_path cannot be shared by several workers"),
    (["--num_workers=2", "--port=0", "--rest_api_port=0"],
     "--num_workers > 1 needs --rest_api_port or --port"),
])
def test_impossible_worker_settings_are_flag_errors(tmp_path, flags, message):
    values, _ = parse_flags([f"--model_base_path={tmp_path}", *flags])
    with pytest.raises(UsageError, match=re.escape(message)):
        _check_workers(values["num_workers"], options_from_flags(values))


def test_bad_num_workers_exits_2(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "nbserve", f"--model_base_path={tmp_path}",
                           "--num_workers=0"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2
    assert "invalid value for --num_workers: 0 (must be at least 1)" in proc.stderr


def test_one_worker_is_the_default_and_keeps_one_process(tmp_path):
    values, _ = parse_flags([f"--model_base_path={tmp_path}"])
    assert values["num_workers"] == 1
    options = options_from_flags(values)
    assert options.reuse_port is False
    assert check_supported(1, options.replace(grpc_socket_path="/tmp/x.sock")) is None


def test_worker_options_share_ports_and_split_tensorflow_threads():
    cpus = os.cpu_count() or 1
    options = worker_options(ServerOptions(), 2)
    assert options.reuse_port is True
    assert options.tensorflow_intra_op_parallelism == max(1, cpus // 2)
    chosen = worker_options(ServerOptions(tensorflow_intra_op_parallelism=3), 2)
    assert chosen.tensorflow_intra_op_parallelism == 3  # the user's choice stands


def snapshot(pid, count, state, latency_count=None):
    families = [{"name": COUNT, "type": "counter", "help": "",
                 "samples": [[f"{COUNT}_total", {"model_name": "m", "status": "OK"}, count]]},
                {"name": STATE, "type": "gauge", "help": "",
                 "samples": [[STATE, {"model_name": "m", "version": "1"}, state]]}]
    if latency_count is not None:
        families.append({"name": "h", "type": "histogram", "help": "", "samples": [
            ["h_bucket", {"le": "+Inf"}, latency_count], ["h_count", {}, latency_count]]})
    return {"pid": pid, "families": families}


@pytest.mark.parametrize("snapshots,alive,expected", [
    ([snapshot(1, 3, 30), snapshot(2, 4, 30)], {1, 2},
     {f"{COUNT}": 7, STATE: 30}),
    ([snapshot(1, 3, 30), snapshot(2, 4, 20)], {1, 2},  # a version every worker serves
     {f"{COUNT}": 7, STATE: 20}),
    ([snapshot(1, 3, 30), snapshot(2, 4, 50)], {1},  # a dead worker's counts stay, its state not
     {f"{COUNT}": 7, STATE: 30}),
    ([snapshot(1, 3, 30, 3), snapshot(2, 4, 30, 4)], {1, 2},
     {f"{COUNT}": 7, STATE: 30, "h_bucket": 7, "h_count": 7}),
])
def test_merge_sums_counters_and_histograms_and_takes_live_gauges_minimum(snapshots, alive,
                                                                         expected):
    text = render(merge(snapshots, lambda pid: pid in alive))
    values = {line.split("{")[0].split(" ")[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if not line.startswith("#")}
    assert values == expected
    assert text.startswith(f"# TYPE {COUNT} counter\n")


def test_single_process_exposition_is_unchanged():
    from nbserve.errors import StatusCode
    from nbserve.metrics import ServingMetrics

    metrics = ServingMetrics()
    metrics.observe_request("m", "predict", StatusCode.OK, 0.001, "REST")
    assert metrics.exposition() == render(metrics.registry.collect()).encode()


# -- the supervisor with quick workers (no model to load, REST only) ------------------------------
@pytest.fixture
def quick_options(tmp_path):
    (tmp_path / "m").mkdir()
    return ServerOptions(models=(ModelConfig("m", str(tmp_path / "m")),), grpc_port=None,
                         rest_api_port=0, shutdown_grace_seconds=2)


def workers_of(parent: int) -> dict[int, int]:
    """Worker index -> pid of the live workers of ``parent`` (from /proc)."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            if int(stat[stat.rindex(")") + 2:].split()[1]) != parent or \
                    stat[stat.rindex(")") + 2] == "Z":
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        except (OSError, ValueError):
            continue
        if b"NBSERVE_WORKER_INDEX" in env:
            found[int(env[b"NBSERVE_WORKER_INDEX"])] = int(name)
    return found


def run_supervisor(supervisor: Supervisor, stop: threading.Event) -> tuple[threading.Thread,
                                                                            list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(supervisor.run(stop.is_set)))
    thread.start()
    return thread, result


def test_port_0_is_picked_once_and_a_crash_loop_brings_the_server_down(quick_options, caplog):
    caplog.set_level(logging.INFO, logger="nbserve.workers")
    supervisor = Supervisor(quick_options, 2, max_restarts=1, restart_window_seconds=300)
    stop = threading.Event()
    thread, result = run_supervisor(supervisor, stop)
    try:
        wait_for(lambda: "Exporting HTTP/REST API at" in caplog.text, timeout=120,
                 what="the workers to open the port")
        port = int(caplog.text.split("Exporting HTTP/REST API at:http://127.0.0.1:")[1]
                   .split(" ")[0])
        assert call(port, "GET", "/v1/models/m").status == 404  # no version yet, but served
        first = wait_for(lambda: len(workers_of(os.getpid())) == 2 and workers_of(os.getpid()),
                         what="two workers")
        os.kill(first[1], signal.SIGKILL)
        report = (f"Worker 1 (pid {first[1]}) exited unexpectedly (signal SIGKILL); restarting "
                  "it (1 of 1 restarts within 300 s)")
        wait_for(lambda: report in caplog.text, timeout=30, what="the restart")
        wait_for(lambda: "is serving again" in caplog.text, timeout=120, what="the new worker")
        assert call(port, "GET", "/v1/models/m").status == 404
        second = workers_of(os.getpid())
        assert second[0] == first[0] and second[1] != first[1]
        os.kill(second[1], signal.SIGKILL)  # a second death within the window: give up
        thread.join(60)
        assert result == [1]
        assert "it died 2 times within 300 s: stopping the server" in caplog.text
        assert workers_of(os.getpid()) == {}
        assert not os.path.exists(supervisor.directory)  # the private folder is removed
    finally:
        stop.set()
        thread.join(60)


def test_port_held_by_another_program_fails_the_start(quick_options, capsys):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        code = Supervisor(quick_options.replace(rest_api_port=port), 2).run(lambda: False)
    assert code == 1
    assert f"Port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"  # a zombie its new parent has not reaped yet


def test_workers_stop_when_the_parent_is_killed(tmp_path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbserve", "--num_workers=2", f"--model_base_path={tmp_path}",
         "--port=0", f"--rest_api_port={port}", "--open_ports_before_load"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the ready line, once every worker has opened the port
            if "Exporting HTTP/REST API at:" in line:
                break
        workers = workers_of(proc.pid)
        assert sorted(workers) == [0, 1]
        with open(f"/proc/{workers[0]}/environ", "rb") as f:
            directory = dict(item.split(b"=", 1) for item in f.read().split(b"\0")
                             if b"=" in item)[b"NBSERVE_WORKER_DIR"].decode()
        assert os.path.isdir(directory) and (os.stat(directory).st_mode & 0o777) == 0o700
        assert call(port, "GET", "/v1/models/default").status == 404  # served, no version yet
        proc.kill()
        proc.wait()
        wait_for(lambda: all(gone(pid) for pid in workers.values()), timeout=60,
                 what="the orphaned workers to stop")
        assert not os.path.exists(directory)  # they removed the private folder
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


# -- a real server: half_plus_two, 2 workers, REST + gRPC + Prometheus ----------------------------
class Cli:
    """``python -m nbserve --num_workers=2`` on free ports, its stderr collected."""

    def __init__(self, model: str, tmp: str) -> None:
        self.rest_port, self.grpc_port = free_port(), free_port()
        monitoring = os.path.join(tmp, "monitoring.config")
        with open(monitoring, "w") as f:
            f.write('prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }')
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nbserve", "--num_workers=2", "--model_name=hp",
             f"--model_base_path={model}", f"--rest_api_port={self.rest_port}",
             f"--port={self.grpc_port}", f"--monitoring_config_file={monitoring}",
             "--shutdown_grace_seconds=60", "--max_num_load_retries=0"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for line in self.proc.stderr:
                self.lines.put(line)

    def text(self) -> str:
        while True:
            try:
                self.log.append(self.lines.get_nowait())
            except queue.Empty:
                return "".join(self.log)

    def wait_for_line(self, text: str, timeout: float = 180) -> None:
        wait_for(lambda: text in self.text() or self.proc.poll() is not None, timeout=timeout,
                 what=repr(text), interval=0.05)
        assert text in self.text(), self.text()

    def stop(self) -> int:
        return stop_process(self.proc, self._reader, timeout=90)


@pytest.fixture(scope="module")
def served(tfs_testdata, tmp_path_factory):
    cli = Cli(str(tfs_testdata / "saved_model_half_plus_two_cpu"),
              str(tmp_path_factory.mktemp("workers")))
    try:
        cli.wait_for_line("Running gRPC ModelServer at")
        yield cli
    finally:
        cli.stop()


def predict_rest(cli: Cli) -> None:
    reply = call(cli.rest_port, "POST", "/v1/models/hp:predict", '{"instances": [1.0, 2.0]}')
    assert reply.status == 200, reply.body
    assert reply.json() == {"predictions": [2.5, 3.0]}


def predict_grpc(cli: Cli, n: int) -> None:
    import grpc
    import numpy as np
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from nbserve.codec.tensors import to_tensor_proto

    for _ in range(n):  # a channel each: connections spread over the workers too
        with grpc.insecure_channel(f"127.0.0.1:{cli.grpc_port}") as channel:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "hp"
            request.inputs["x"].CopyFrom(to_tensor_proto(np.array([1.0, 5.0], np.float32)))
            reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                request, timeout=30)
            assert list(reply.outputs["y"].float_val) == [2.5, 4.5]


def ok_count(cli: Cli) -> int:
    text = call(cli.rest_port, "GET", "/monitoring/prometheus/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(f'{COUNT}{{model_name="hp",status="OK"}}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def worker_counts(cli: Cli) -> dict[int, int]:
    """Worker pid -> the OK requests in its own last snapshot (from the private folder)."""
    pids = workers_of(cli.proc.pid)
    with open(f"/proc/{pids[0]}/environ", "rb") as f:
        env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    directory = env[b"NBSERVE_WORKER_DIR"].decode()
    counts = {}
    for pid in pids.values():
        with open(os.path.join(directory, f"metrics-{pid}.json")) as f:
            families = {fam["name"]: fam for fam in json.load(f)["families"]}
        counts[pid] = sum(int(value) for _, labels, value in families[COUNT]["samples"]
                          if labels == {"model_name": "hp", "status": "OK"})
    return counts


@pytest.mark.tfs_testdata
def test_ready_lines_appear_once(served):
    text = served.text()
    assert text.count("Exporting HTTP/REST API at:") == 1
    assert text.count(f"Running gRPC ModelServer at 127.0.0.1:{served.grpc_port}") == 1
    assert "2 workers serving (pids " in text
    assert "[worker 0]" in text and "[worker 1]" in text


@pytest.mark.tfs_testdata
def test_both_workers_serve_rest_and_grpc_and_metrics_count_every_request(served):
    before = ok_count(served)
    rest, grpc_calls = 40, 6
    for _ in range(rest):  # a connection each: SO_REUSEPORT spreads them over the workers
        predict_rest(served)
    predict_grpc(served, grpc_calls)
    total = before + rest + grpc_calls
    # the answering worker counts live, the other's snapshot is at most ~1 s old: soon, every
    # scrape (on a new connection each, so whichever worker answers) reports the total
    wait_for(lambda: [ok_count(served) for _ in range(6)] == [total] * 6, timeout=15,
             what=f"{total} requests counted by every worker")
    counts = wait_for(lambda: (c := worker_counts(served)) and sum(c.values()) == total and c,
                      timeout=15, what="both snapshots")
    assert len(counts) == 2 and all(count > 0 for count in counts.values()), counts


def reload_config(cli: Cli, models: dict[str, str]) -> tuple[object, str]:
    """HandleReloadConfigRequest with ``models`` (name -> base path) on a new connection: the
    gRPC status code and details."""
    import grpc
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

    request = model_management_pb2.ReloadConfigRequest()
    for name, path in models.items():
        config = request.config.model_config_list.config.add()
        config.name, config.base_path, config.model_platform = name, path, "tensorflow"
    with grpc.insecure_channel(f"127.0.0.1:{cli.grpc_port}") as channel:
        try:
            reply = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
                request, timeout=120)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
        return grpc.StatusCode.OK, reply.status.error_message


def states_seen(cli: Cli, name: str, connections: int = 20) -> list[object]:
    """``name``'s state as each of ``connections`` new REST connections (spread over the
    workers) sees it: "AVAILABLE", or the HTTP status when there is no such model."""
    seen = []
    for _ in range(connections):
        reply = call(cli.rest_port, "GET", f"/v1/models/{name}")
        seen.append(reply.json()["model_version_status"][0]["state"] if reply.status == 200
                    else reply.status)
    return seen


@pytest.mark.tfs_testdata
def test_a_config_reload_reaching_one_worker_applies_to_every_worker(served, tfs_testdata):
    import grpc

    models = {"hp": str(tfs_testdata / "saved_model_half_plus_two_cpu"),
              "three": str(tfs_testdata / "saved_model_half_plus_three")}
    assert reload_config(served, models) == (grpc.StatusCode.OK, "")
    # the answer waited for every worker: from now on, whichever worker a connection reaches
    assert states_seen(served, "three") == ["AVAILABLE"] * 20
    served.wait_for_line("Applying the model config another worker received (generation 1)",
                         timeout=10)
    # an invalid config is refused with TF Serving's words and reaches no worker
    code, message = reload_config(served, {"hp": models["hp"], "rel": "relative/path"})
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith(
        "Expected model rel to have an absolute path or URI"), message
    assert states_seen(served, "three") == ["AVAILABLE"] * 20
    assert "generation 2" not in served.text()


@pytest.mark.tfs_testdata
def test_a_killed_worker_is_reported_and_restarted_while_the_other_serves(served):
    before = wait_for(lambda: (c := ok_count(served)) and c == ok_count(served) and c,
                      timeout=15, what="settled counts")
    time.sleep(1.5)  # every count is in a snapshot
    victim = workers_of(served.proc.pid)[1]
    os.kill(victim, signal.SIGKILL)
    served.wait_for_line(f"Worker 1 (pid {victim}) exited unexpectedly (signal SIGKILL); "
                         "restarting it", timeout=30)
    for _ in range(10):  # the other worker serves meanwhile
        predict_rest(served)
    served.wait_for_line("is serving again", timeout=180)
    assert victim not in workers_of(served.proc.pid).values()
    # the new worker starts from the config the others serve (the reload above), not the flags'
    assert states_seen(served, "three") == ["AVAILABLE"] * 20
    predict_grpc(served, 2)
    # the dead worker's counts stay in the total
    wait_for(lambda: ok_count(served) == before + 12, timeout=15, what="the total")


@pytest.mark.tfs_testdata
def test_sigterm_drains_in_flight_requests_and_exits_zero(served):
    n = 2_000_000  # a request that keeps a worker busy for a second or more
    body = gzip.compress(('{"instances": [' + ", ".join(["1.0"] * n) + "]}").encode())
    sock = socket.create_connection(("127.0.0.1", served.rest_port), timeout=120)
    sock.sendall((f"POST /v1/models/hp:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n"
                  "Connection: close\r\n\r\n").encode() + body)
    time.sleep(1.0)  # the worker has read the upload (aiohttp drops bytes after shutdown begins)
    served.proc.send_signal(signal.SIGTERM)
    data = b""
    while chunk := sock.recv(1 << 20):
        data += chunk
    sock.close()
    head, _, reply = data.partition(b"\r\n\r\n")
    assert head.split()[1] == b"200", data[:300]
    predictions = json.loads(reply)["predictions"]
    assert len(predictions) == n and predictions[0] == predictions[-1] == 2.5
    assert served.proc.wait(timeout=90) == 0
    text = served.text()
    assert "Shutting down 2 workers" in text and "killing" not in text
