"""The servers ``make bench`` measures, how each is started, fed and checked.

``build_targets(cfg, manifest, notes, compute)`` returns the ``Target`` list (a server + protocol;
REST measured by ``wrk``, gRPC by ``h2load``) and the ``Proc`` list (processes to start, each in
its own process group). Peers run from their own venvs under ``.cache/bench-venvs`` (missing ones
and missing nbserve flags are skipped with a note). ``write_bodies(manifest)`` writes the request
files every protocol needs beside ``bench.prepare``'s: gRPC frames of TF Serving's
``PredictRequest`` and of KServe v2's ``ModelInferRequest`` (for MLServer's array shape and for
Triton's per-item shape), and Triton's V2 JSON. ``wait_ready`` polls one server until it answers;
``check_answers`` makes one real call per workload (grpc's own client for gRPC, so a non-OK
grpc-status fails), compares the answer with the expected output and records the answer's size,
which ``h2load`` runs use to count gRPC errors it cannot see.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bench import compute_bound, grpc_protos, loadgen
from bench.config import BENCH, DATA, MAIN_PY, REPO, VENVS, BenchConfig, peer_python
from bench.prepare import v2_body
from nbserve.testing import free_port

LOGS = REPO / ".cache" / "bench-logs"
PEER_PACKAGES = {"kserve": "kserve", "mlserver": "mlserver", "pytriton": "nvidia-pytriton",
                 "ray": "ray"}


# -- processes -------------------------------------------------------------------------------

@dataclass
class Proc:
    """A server process in its own process group (stopped by that group's id only)."""

    name: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        LOGS.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **self.env}
        with open(LOGS / f"{self.name}.log", "wb") as out:  # the child keeps its own copy
            self.popen = subprocess.Popen(self.cmd, cwd=REPO, env=env, stdout=out, stderr=out,
                                          start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        """SIGTERM to the process group, then SIGKILL to every process still in the session
        the server was started in (by pid: Ray's workers move to process groups of their own
        but stay in it); waits until none is left (10 s at most)."""
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 10
        while (left := session_members(self.popen.pid)) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        if self.popen.poll() is None:
            self.popen.wait(5)

    def log_tail(self, n: int = 1500) -> str:
        try:
            return (LOGS / f"{self.name}.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""


def session_members(session: int) -> list[int]:
    """Live (not zombie) processes whose session id is ``session`` (from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 3 and int(fields[3]) == session and fields[0] != "Z":
            pids.append(int(entry))
    return pids


# -- targets ---------------------------------------------------------------------------------

@dataclass
class Target:
    """One thing measured: a server + protocol.

    REST: ``address(w)`` is the predict URL, ``body(w)`` a JSON file, ``check`` decodes a JSON
    answer. gRPC: ``address(w)`` is ``host:port``, ``body(w)`` a gRPC-framed request file,
    ``method`` the call's path, ``check`` decodes the response message."""

    key: str
    label: str
    kind: str  # "rest" | "grpc"
    address: Callable[[str], str]
    body: Callable[[str], str]
    workloads: tuple[str, ...]
    concurrency: tuple[int, ...] | None = None  # None: all
    check: Callable[[bytes], np.ndarray] | None = None
    proc: Proc | None = None
    method: str = ""
    answer_bytes: dict[str, int] = field(default_factory=dict)  # gRPC: DATA bytes of an answer

    def runs(self, workload: str, concurrency: int) -> bool:
        return workload in self.workloads and (self.concurrency is None
                                               or concurrency in self.concurrency)

    def measure(self, workload: str, concurrency: int, seconds: float) -> loadgen.Measurement:
        if self.kind == "rest":
            return loadgen.run_wrk(self.address(workload), self.body(workload), concurrency,
                                   seconds)
        return loadgen.run_h2load(f"http://{self.address(workload)}{self.method}",
                                  self.body(workload), concurrency, seconds,
                                  answer_bytes=self.answer_bytes.get(workload))

    def call(self, workload: str, timeout: float = 60.0) -> tuple[int, bytes]:
        """One real request: (HTTP status or 200 for an OK gRPC call, answer body)."""
        with open(self.body(workload), "rb") as f:
            body = f.read()
        if self.kind == "rest":
            return loadgen.post(self.address(workload), body, timeout=timeout)
        import grpc

        try:
            return 200, loadgen.grpc_call(self.address(workload), self.method, body[5:],
                                          timeout=timeout)
        except grpc.RpcError as err:
            return 0, str(err).encode()


def tfs_predictions(body: bytes) -> np.ndarray:
    return np.asarray(json.loads(body)["predictions"], dtype=np.float32)


def v2_outputs(body: bytes) -> np.ndarray:
    out = json.loads(body)["outputs"][0]
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


def wait_ready(target: Target, timeout: float) -> str | None:
    """Call each workload until it answers; None when ready, else why not."""
    deadline = time.monotonic() + timeout
    for workload in target.workloads:
        while True:
            if target.proc is not None and not target.proc.alive():
                return f"{target.proc.name} exited: {target.proc.log_tail(600)}"
            status, answer = target.call(workload, timeout=30)
            if status == 200:
                break
            if time.monotonic() > deadline:
                return (f"not ready after {timeout:.0f} s (last status {status}: "
                        f"{answer[:200]!r})")
            time.sleep(0.3)
    return None


def expected_output(workload: str) -> np.ndarray:
    return np.load(DATA / f"{workload}.expected.npy")


def check_answers(target: Target) -> str | None:
    """One real call per workload, compared with the expected output; records gRPC sizes."""
    for workload in target.workloads:
        status, answer = target.call(workload)
        if status != 200:
            return f"{workload}: status {status}: {answer[:300]!r}"
        if target.kind == "grpc":
            target.answer_bytes[workload] = len(answer) + 5
        if target.check is None:
            continue
        expected = expected_output(workload)
        try:
            got = target.check(answer).reshape(expected.shape)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return f"{workload}: unreadable answer: {exc}"
        if not np.allclose(got, expected, rtol=1e-4, atol=1e-5):
            return f"{workload}: answer differs from the expected output"
    return None


# -- request files ---------------------------------------------------------------------------

def body_file(workload: str, kind: str) -> str:
    return str(DATA / f"{workload}.{kind}")


def triton_shape(shape: list[int]) -> list[int]:
    """A request shape as PyTriton's batched model takes it (rank-1 models: items of [1])."""
    return [shape[0], 1] if len(shape) == 1 else list(shape)


def write_bodies(manifest: dict) -> None:
    """The gRPC frames and Triton's JSON for every workload (cheap; rewritten every run)."""
    for workload, info in manifest["workloads"].items():
        array = np.load(DATA / f"{workload}.input.npy")
        name = info["name"]
        tfs = (DATA / f"{workload}.grpc.bin").read_bytes()
        (DATA / f"{workload}.tfs.grpc").write_bytes(loadgen.grpc_frame(tfs))
        (DATA / f"{workload}.v2.grpc").write_bytes(
            loadgen.grpc_frame(grpc_protos.infer_request(name, array)))
        shape = triton_shape(list(array.shape))
        (DATA / f"{workload}.triton.grpc").write_bytes(
            loadgen.grpc_frame(grpc_protos.infer_request(name, array, shape=tuple(shape))))
        (DATA / f"{workload}.triton.json").write_bytes(v2_body(array.reshape(shape)))


# -- the servers -----------------------------------------------------------------------------

def _flag_implemented(name: str) -> bool:
    try:
        from nbserve.cli import FLAGS_BY_NAME
    except ImportError:
        return False
    flag = FLAGS_BY_NAME.get(name)
    return bool(flag and getattr(flag, "implemented", True))


def batching_available() -> bool:
    return _flag_implemented("enable_batching")


def front_ends_available() -> bool:
    """``--grpc_front_end`` (nbserve's own HTTP/2 gRPC front end, the default, or grpcio's)."""
    return _flag_implemented("grpc_front_end")


def workers_available() -> bool:
    """``--num_workers`` in the CLI's flag table, or at least in ``--help``."""
    if _flag_implemented("num_workers"):
        return True
    try:
        done = subprocess.run([str(MAIN_PY), str(BENCH / "servers" / "nbserve_cli.py"), "--help"],
                              capture_output=True, text=True, timeout=60, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--num_workers" in done.stdout + done.stderr


def peer_version(peer: str) -> str:
    """The peer package's version in its venv ("" when unknown)."""
    code = f"import importlib.metadata as m; print(m.version({PEER_PACKAGES[peer]!r}))"
    try:
        done = subprocess.run([str(peer_python(peer)), "-c", code], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def short_version(version: str) -> str:
    return ".".join(version.split(".")[:2]) if version else "?"


def _nbserve(targets: list[Target], procs: list[Proc], key: str, label: str, args: list[str],
             workloads: tuple[str, ...], names: dict[str, str],
             rest_conc: tuple[int, ...] | None = None, grpc_conc: tuple[int, ...] | None = None,
             rest: bool = True, grpc: bool = True) -> None:
    rest_port, grpc_port = free_port(), free_port()
    proc = Proc(key, [str(MAIN_PY), str(BENCH / "servers" / "nbserve_cli.py"),
                      f"--rest_api_port={rest_port}", f"--port={grpc_port}", *args])
    procs.append(proc)
    if rest:
        targets.append(Target(
            f"{key}-rest", f"{label} REST", "rest",
            lambda w: f"http://127.0.0.1:{rest_port}/v1/models/{names[w]}:predict",
            lambda w: body_file(w, "tfs.json"), workloads, rest_conc, tfs_predictions, proc))
    if grpc:
        targets.append(Target(
            f"{key}-grpc", f"{label} gRPC", "grpc", lambda w: f"127.0.0.1:{grpc_port}",
            lambda w: body_file(w, "tfs.grpc"), workloads, grpc_conc,
            grpc_protos.predict_outputs, proc, method=grpc_protos.TFS_METHOD))


def build_targets(cfg: BenchConfig, manifest: dict, notes: list[str],
                  compute: dict | None = None) -> tuple[list[Target], list[Proc]]:
    """Every server of this run. ``compute``: the compute-bound workload (d) from
    ``bench.compute_step`` (``base``, ``name``), or None to leave it out."""
    workloads = cfg.workloads
    models = {w: manifest["workloads"][w] for w in workloads}
    names = {w: m["name"] for w, m in models.items()}
    model_args = [f"{m['name']}={m['version_dir']}" for m in models.values()]
    config_flag = f"--model_config_file={DATA / 'models.config'}"
    targets: list[Target] = []
    procs: list[Proc] = []

    _nbserve(targets, procs, "nbserve", "nbserve", [config_flag], workloads, names)
    grpcio = front_ends_available()  # then the default is h2: grpcio's server as a second row
    if grpcio:
        _nbserve(targets, procs, "nbserve-grpcio", "nbserve --grpc_front_end=grpcio",
                 [config_flag, "--grpc_front_end=grpcio"], workloads, names, rest=False)
    if "a" in workloads and _flag_implemented("rest_front_end"):  # then the default is h1
        _nbserve(targets, procs, "nbserve-aiohttp", "nbserve --rest_front_end=aiohttp",
                 [config_flag, "--rest_front_end=aiohttp"], ("a",), names, grpc=False)
    if "a" in workloads and 32 in cfg.concurrency:
        if workers_available():
            _nbserve(targets, procs, "nbserve-w2", "nbserve --num_workers=2",
                     [config_flag, "--num_workers=2"], ("a",), names, rest_conc=(32,),
                     grpc=False)
        else:
            notes.append("Worker scaling: `--num_workers` is not in this tree's nbserve-server; "
                         "the 2-worker row is missing.")
    if compute is not None:
        names = {**names, "d": compute["name"]}
        model = [f"--model_name={compute['name']}", f"--model_base_path={compute['base']}",
                 *compute_bound.SERVER_THREADING]
        for suffix, label, front_end in (
                ("", "", []),
                ("-grpcio", " --grpc_front_end=grpcio", ["--grpc_front_end=grpcio"])):
            if suffix and not grpcio:
                continue
            _nbserve(targets, procs, f"nbserve-cb{suffix}", f"nbserve{label}, no batching,",
                     [*model, *front_end], ("d",), names, grpc_conc=(32,), rest=False)
            if batching_available():
                _nbserve(targets, procs, f"nbserve-cb-batching{suffix}",
                         f"nbserve{label} --enable_batching,", [
                             *model, *front_end, "--enable_batching=true",
                             f"--batching_parameters_file={BENCH / 'batching.config'}"],
                         ("d",), names, grpc_conc=(32,), rest=False)
        else:
            notes.append("Batching: `--enable_batching` is not implemented in this tree; the "
                         "(d) batching row is missing.")

    bare_port = free_port()
    model_flags = [flag for a in model_args for flag in ("--model", a)]
    bare = Proc("bare-aiohttp", [str(MAIN_PY), str(BENCH / "servers" / "bare_aiohttp.py"),
                                 "--port", str(bare_port), *model_flags])
    procs.append(bare)
    targets.append(Target("bare-aiohttp", "bare aiohttp + session", "rest",
                          lambda w: f"http://127.0.0.1:{bare_port}/v1/models/{names[w]}:predict",
                          lambda w: body_file(w, "tfs.json"), workloads, None, tfs_predictions,
                          bare))

    echo_rest, echo_grpc = free_port(), free_port()
    echo = Proc("echo", [str(MAIN_PY), str(BENCH / "servers" / "echo.py"), "--rest-port",
                         str(echo_rest), "--grpc-port", str(echo_grpc)])
    procs.append(echo)
    targets.append(Target("echo-rest", "echo floor REST (aiohttp)", "rest",
                          lambda w: f"http://127.0.0.1:{echo_rest}/echo",
                          lambda w: body_file(w, "tfs.json"), workloads, proc=echo))
    targets.append(Target("echo-grpc", "echo floor gRPC (grpc.aio)", "grpc",
                          lambda w: f"127.0.0.1:{echo_grpc}", lambda w: body_file(w, "tfs.grpc"),
                          workloads, proc=echo, method=grpc_protos.TFS_METHOD))
    _peers(cfg, models, names, model_args, targets, procs, notes)
    return targets, procs


def _v2_targets(key: str, label: str, http_port: int, grpc_port: int, bodies: str,
                names: dict[str, str], workloads: tuple[str, ...], proc: Proc) -> list[Target]:
    """A KServe-v2 peer's REST and gRPC targets (``<bodies>.json`` / ``<bodies>.grpc``)."""
    return [
        Target(key, f"{label} (V2 REST)", "rest",
               lambda w: f"http://127.0.0.1:{http_port}/v2/models/{names[w]}/infer",
               lambda w: body_file(w, f"{bodies}.json"), workloads, None, v2_outputs, proc),
        Target(f"{key}-grpc", f"{label} (V2 gRPC)", "grpc",
               lambda w: f"127.0.0.1:{grpc_port}", lambda w: body_file(w, f"{bodies}.grpc"),
               workloads, None, grpc_protos.infer_outputs, proc, method=grpc_protos.V2_METHOD),
    ]


def _peers(cfg: BenchConfig, models: dict, names: dict[str, str], model_args: list[str],
           targets: list[Target], procs: list[Proc], notes: list[str]) -> None:
    workloads = cfg.workloads
    servers = BENCH / "servers"
    for peer in cfg.peers:
        if peer not in PEER_PACKAGES:
            notes.append(f"Unknown peer {peer!r} in BENCH_PEERS; skipped.")
            continue
        if not (peer_python(peer).exists() and (VENVS / peer / ".installed").exists()):
            notes.append(f"{peer}: no complete venv at {VENVS / peer} (`make bench` installs "
                         "it); skipped.")
            continue
        version = short_version(peer_version(peer))
        if peer == "kserve":
            port = free_port()  # (each lambda below binds its own port: ports are reassigned)
            proc = Proc("kserve", [str(peer_python(peer)), str(servers / "kserve_server.py"),
                                   *model_args], env={"BENCH_PORT": str(port)})
            procs.append(proc)
            targets.append(Target(
                "kserve", f"KServe {version} (v1 REST)", "rest",
                lambda w, port=port: f"http://127.0.0.1:{port}/v1/models/{names[w]}:predict",
                lambda w: body_file(w, "tfs.json"), workloads, None, tfs_predictions, proc))
        elif peer == "mlserver":
            sys.path.insert(0, str(servers))
            from mlserver_runtime import write_settings

            port, grpc_port = free_port(), free_port()
            folder = REPO / ".cache" / "bench-mlserver"
            shutil.rmtree(folder, ignore_errors=True)
            write_settings(str(folder), port, grpc_port, free_port(),
                           {m["name"]: m["version_dir"] for m in models.values()})
            proc = Proc("mlserver", [str(VENVS / peer / "bin" / "mlserver"), "start",
                                     str(folder)], env={"PYTHONPATH": str(servers)})
            procs.append(proc)
            targets += _v2_targets("mlserver", f"MLServer {version}", port, grpc_port, "v2",
                                   names, workloads, proc)
        elif peer == "pytriton":
            http, grpc_port = free_port(), free_port()
            proc = Proc("pytriton", [str(peer_python(peer)), str(servers / "pytriton_server.py"),
                                     str(http), str(grpc_port), str(free_port()), *model_args])
            procs.append(proc)
            targets += _v2_targets("pytriton", f"PyTriton {version}", http, grpc_port, "triton",
                                   names, workloads, proc)
        elif peer == "ray":
            port = free_port()
            proc = Proc("ray", [str(peer_python(peer)), str(servers / "ray_server.py"),
                                str(port), *model_args], env={"RAY_worker_niceness": "0"})
            procs.append(proc)
            targets.append(Target(
                "ray", f"Ray Serve {version}, 1 replica (REST)", "rest",
                lambda w, port=port: f"http://127.0.0.1:{port}/v1/models/{names[w]}:predict",
                lambda w: body_file(w, "tfs.json"), workloads, None, tfs_predictions, proc))
