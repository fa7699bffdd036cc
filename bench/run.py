"""The orchestrator behind ``make bench``: prepare, start every server, measure interleaved, report.

``python -m bench.run`` (settings in ``bench.config``; ``BENCH_QUICK=1`` for a ~2 minute smoke
run). Steps: export models and bodies (``bench.prepare``, in a child process); in-process floors
and the codec micro-benchmark (``bench.floor``); start-up and warmup timings (``bench.startup``);
then all servers at once -- nbserve (REST + gRPC; a second one with batching on when the flag
exists), the bare aiohttp server, the echo floors, KServe and MLServer (from their own venvs under
``.cache/bench-venvs``; missing ones are skipped with a note) -- each answer checked against the
expected output, and for every (workload, concurrency) every target is measured once per round,
rounds interleaved (A B C ... A B C ...). Optionally a py-spy profile of nbserve under load. Writes
``bench/results.json``, ``bench/RESULTS.md`` and ``bench/results.png``. Every process it started
is stopped at the end (by its own process group id).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench import loadgen, report, startup
from bench.config import BENCH, DATA, MAIN_PY, REPO, VENVS, BenchConfig, peer_python
from nbserve.testing import free_port

GRPC_PREDICT = "/tensorflow.serving.PredictionService/Predict"
LOGS = REPO / ".cache" / "bench-logs"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


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
        out = open(LOGS / f"{self.name}.log", "wb")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **self.env}
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
        if self.popen is None or self.popen.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 8), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.popen.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, n: int = 1500) -> str:
        try:
            return (LOGS / f"{self.name}.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""


# -- targets ---------------------------------------------------------------------------------

@dataclass
class Target:
    """One thing measured: a server + protocol. ``address(workload)`` is a URL or host:port."""

    key: str
    label: str
    kind: str  # "rest" | "grpc"
    address: Callable[[str], str]
    body: Callable[[str], str]
    workloads: tuple[str, ...]
    concurrency: tuple[int, ...] | None = None  # None: all
    check: Callable[[bytes], np.ndarray] | None = None  # decode a REST answer for the check
    proc: Proc | None = None

    def measure(self, workload: str, concurrency: int, seconds: float) -> loadgen.Measurement:
        if self.kind == "rest":
            return loadgen.run_wrk(self.address(workload), self.body(workload), concurrency,
                                   seconds)
        return loadgen.run_grpc(self.address(workload), GRPC_PREDICT, self.body(workload),
                                concurrency, seconds)


def tfs_predictions(body: bytes) -> np.ndarray:
    return np.asarray(json.loads(body)["predictions"], dtype=np.float32)


def v2_outputs(body: bytes) -> np.ndarray:
    out = json.loads(body)["outputs"][0]
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


def wait_ready(target: Target, workloads: tuple[str, ...], timeout: float) -> str | None:
    """Poll each workload's predict until 200; None when ready, else why not."""
    deadline = time.monotonic() + timeout
    for workload in workloads:
        body = open(target.body(workload), "rb").read()
        while True:
            if target.proc is not None and not target.proc.alive():
                return f"{target.proc.name} exited: {target.proc.log_tail(600)}"
            status, _ = loadgen.post(target.address(workload), body, timeout=30)
            if status == 200:
                break
            if time.monotonic() > deadline:
                return f"not ready after {timeout:.0f} s (last status {status})"
            time.sleep(0.3)
    return None


def check_answers(target: Target, workloads: tuple[str, ...]) -> str | None:
    if target.check is None:
        return None
    for workload in workloads:
        with open(target.body(workload), "rb") as f:
            status, answer = loadgen.post(target.address(workload), f.read())
        expected = np.load(DATA / f"{workload}.expected.npy")
        try:
            got = target.check(answer).reshape(expected.shape)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return f"{workload}: unreadable answer ({status}): {exc}"
        if not np.allclose(got, expected, rtol=1e-4, atol=1e-5):
            return f"{workload}: answer differs from the expected output"
    return None


# -- the servers -----------------------------------------------------------------------------

def body_file(workload: str, kind: str) -> str:
    return str(DATA / f"{workload}.{kind}")


def batching_available() -> bool:
    try:
        from nbserve.cli import FLAGS_BY_NAME
    except ImportError:
        return False
    flag = FLAGS_BY_NAME.get("enable_batching")
    return bool(flag and flag.implemented)


def build_targets(cfg: BenchConfig, manifest: dict, notes: list[str]
                  ) -> tuple[list[Target], list[Proc]]:
    workloads = cfg.workloads
    models = {w: manifest["workloads"][w] for w in workloads}
    model_args = [f"{m['name']}={m['version_dir']}" for m in models.values()]
    names = {w: m["name"] for w, m in models.items()}
    targets: list[Target] = []
    procs: list[Proc] = []

    def nbserve_targets(key: str, label: str, extra: list[str], wls: tuple[str, ...]) -> None:
        rest, grpc = free_port(), free_port()
        proc = Proc(key, [str(MAIN_PY), str(BENCH / "servers" / "nbserve_cli.py"),
                          f"--model_config_file={DATA / 'models.config'}",
                          f"--rest_api_port={rest}", f"--port={grpc}", *extra])
        procs.append(proc)
        targets.append(Target(f"{key}-rest", f"{label} REST", "rest",
                              lambda w: f"http://127.0.0.1:{rest}/v1/models/{names[w]}:predict",
                              lambda w: body_file(w, "tfs.json"), wls, check=tfs_predictions,
                              proc=proc))
        targets.append(Target(f"{key}-grpc", f"{label} gRPC", "grpc",
                              lambda w: f"127.0.0.1:{grpc}", lambda w: body_file(w, "grpc.bin"),
                              wls, proc=proc))

    nbserve_targets("nbserve", "nbserve", [], workloads)
    if "b" in workloads:
        if batching_available():
            nbserve_targets("nbserve-batching", "nbserve batching", [
                "--enable_batching=true",
                f"--batching_parameters_file={BENCH / 'batching.config'}"], ("b",))
        else:
            notes.append("Batching: `--enable_batching` is not implemented yet in this tree; "
                         "the batching rows are missing.")

    bare_port = free_port()
    model_flags = [flag for a in model_args for flag in ("--model", a)]
    bare = Proc("bare-aiohttp", [str(MAIN_PY), str(BENCH / "servers" / "bare_aiohttp.py"),
                                 "--port", str(bare_port), *model_flags])
    procs.append(bare)
    targets.append(Target("bare-aiohttp", "bare aiohttp + session", "rest",
                          lambda w: f"http://127.0.0.1:{bare_port}/v1/models/{names[w]}:predict",
                          lambda w: body_file(w, "tfs.json"), workloads, check=tfs_predictions,
                          proc=bare))

    echo_rest, echo_grpc = free_port(), free_port()
    echo = Proc("echo", [str(MAIN_PY), str(BENCH / "servers" / "echo.py"), "--rest-port",
                         str(echo_rest), "--grpc-port", str(echo_grpc)])
    procs.append(echo)
    targets.append(Target("echo-rest", "echo floor REST (aiohttp)", "rest",
                          lambda w: f"http://127.0.0.1:{echo_rest}/echo",
                          lambda w: body_file(w, "tfs.json"), workloads, proc=echo))
    targets.append(Target("echo-grpc", "echo floor gRPC (grpc.aio)", "grpc",
                          lambda w: f"127.0.0.1:{echo_grpc}", lambda w: body_file(w, "grpc.bin"),
                          workloads, proc=echo))

    if "kserve" in cfg.peers:
        if peer_python("kserve").exists():
            port = free_port()  # (each lambda below binds its own port: ports are reassigned)
            proc = Proc("kserve", [str(peer_python("kserve")),
                                   str(BENCH / "servers" / "kserve_server.py"), *model_args],
                        env={"BENCH_PORT": str(port)})
            procs.append(proc)
            targets.append(Target("kserve", "KServe 0.21 (v1 REST)", "rest",
                                  lambda w, port=port: f"http://127.0.0.1:{port}/v1/models/{names[w]}:predict",
                                  lambda w: body_file(w, "tfs.json"), workloads,
                                  check=tfs_predictions, proc=proc))
        else:
            notes.append(f"KServe: no venv at {VENVS / 'kserve'}; skipped.")
    if "mlserver" in cfg.peers:
        if peer_python("mlserver").exists():
            sys.path.insert(0, str(BENCH / "servers"))
            from mlserver_runtime import write_settings

            port = free_port()
            folder = REPO / ".cache" / "bench-mlserver"
            shutil.rmtree(folder, ignore_errors=True)
            write_settings(str(folder), port, free_port(), free_port(),
                           {m["name"]: m["version_dir"] for m in models.values()})
            proc = Proc("mlserver", [str(VENVS / "mlserver" / "bin" / "mlserver"), "start",
                                     str(folder)], env={"PYTHONPATH": str(BENCH / "servers")})
            procs.append(proc)
            targets.append(Target("mlserver", "MLServer 1.7 (V2 REST)", "rest",
                                  lambda w, port=port: f"http://127.0.0.1:{port}/v2/models/{names[w]}/infer",
                                  lambda w: body_file(w, "v2.json"), workloads,
                                  check=v2_outputs, proc=proc))
        else:
            notes.append(f"MLServer: no venv at {VENVS / 'mlserver'}; skipped.")
    return targets, procs


# -- steps -----------------------------------------------------------------------------------

def run_child(module: str, *args: str, timeout: float = 600) -> dict | None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([str(MAIN_PY), "-m", module, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        log(f"{module} failed: {done.stderr.strip()[-1500:]}")
        return None
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    return {}


def measure_startup(cfg: BenchConfig, manifest: dict) -> dict:
    a = manifest["workloads"]["a"]
    base, name, body = os.path.dirname(a["version_dir"]), a["name"], body_file("a", "tfs.json")
    out: dict[str, Any] = {}
    for key, argv in (("tf_import", ["tf-import"]), ("serve", ["serve", base, name, body]),
                      ("magic", ["magic", base, name, body])):
        runs = [startup.measure(argv) for _ in range(cfg.startup_runs)]
        good = [r for r in runs if "error" not in r]
        out[key] = min(good, key=lambda r: r["wall_s"]) if good else runs[0]
        log(f"start-up {key}: {out[key]}")
    out["cli_grpc"] = startup.measure_cli(base, name, body, free_port(), free_port(), timeout=25)
    log(f"start-up cli_grpc: {out['cli_grpc']}")
    return out


def measure_warmup(manifest: dict) -> dict:
    b = manifest["workloads"].get("b")
    if b is None:
        return {}
    body = body_file("b", "tfs.json")
    out = {"without": startup.measure(["first-request", os.path.dirname(b["version_dir"]),
                                       b["name"], body])}
    warm = manifest.get("warmup_model")
    if warm and not str(warm).startswith("error"):
        out["with"] = startup.measure(["first-request", os.path.dirname(warm), b["name"], body])
    else:
        out["with"] = {"todo": warm or "nbserve.export(..., warmup=...) does not exist yet"}
    log(f"warmup: {out}")
    return out


def profile(target: Target, workload: str, concurrency: int, seconds: float) -> dict | None:
    """py-spy (``--gil``: samples of the thread holding the GIL) on ``target``'s server."""
    pyspy = shutil.which("py-spy") or str(MAIN_PY.parent / "py-spy")
    if not os.path.exists(pyspy) or target.proc is None:
        return None
    LOGS.mkdir(parents=True, exist_ok=True)
    raw = LOGS / f"profile-{target.key}-{workload}-{concurrency}.txt"
    spy = subprocess.Popen([pyspy, "record", "--pid", str(target.proc.pid), "--duration",
                            str(int(seconds)), "--format", "raw", "--gil", "--rate", "250",
                            "--nonblocking", "--output", str(raw)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    measurement = target.measure(workload, concurrency, seconds)
    try:
        _, err = spy.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        spy.kill()
        return None
    if spy.returncode != 0 or not raw.exists():
        log(f"py-spy failed: {err.strip()[-400:]}")
        return None
    summary = report.summarize_profile(raw.read_text())
    summary.update({"target": target.key, "workload": workload, "concurrency": concurrency,
                    "rps_while_profiled": measurement.rps, "raw": str(raw.relative_to(REPO))})
    return summary


def main() -> int:
    cfg = BenchConfig.from_env()
    started = time.time()
    notes: list[str] = []
    if loadgen.wrk_path() is None:
        log("wrk missing: apt-get install -y wrk")
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False)
        if loadgen.wrk_path() is None:
            log("wrk could not be installed; REST rows cannot be measured")
            return 1
    log(f"config: {cfg}")
    if run_child("bench.prepare") is None:
        return 1
    manifest = json.loads((DATA / "manifest.json").read_text())
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "make bench" + (" (BENCH_QUICK=1)" if cfg.quick else ""),
        "config": {k: v for k, v in cfg.__dict__.items() if k != "extra"},
        "machine": report.machine_description(), "manifest": manifest, "notes": notes,
        "runs": {}, "labels": {}, "profiles": [],
    }
    log("floors and codec micro-benchmark")
    results["floor"] = run_child("bench.floor", "--seconds", "0.2" if cfg.quick else "1.0") or {}
    log("start-up")
    results["startup"] = measure_startup(cfg, manifest)
    results["warmup"] = measure_warmup(manifest)

    targets, procs = build_targets(cfg, manifest, notes)
    try:
        log("starting servers: " + ", ".join(p.name for p in procs))
        for proc in procs:
            proc.start()
        live = []
        for target in targets:
            why = (wait_ready(target, target.workloads, timeout=240) if target.kind == "rest"
                   else None)
            why = why or check_answers(target, target.workloads)
            if why:
                notes.append(f"{target.label}: left out ({why.strip()[:300]})")
                log(f"{target.key}: {why}")
            else:
                live.append(target)
        grpc_ok = {t.proc.name for t in live if t.kind == "rest" and t.proc}
        live = [t for t in live if t.kind == "rest" or (t.proc and t.proc.name in grpc_ok)
                or t.key.startswith("echo")]
        results["labels"] = {t.key: t.label for t in live}
        log("measuring: " + ", ".join(t.key for t in live))
        for workload in cfg.workloads:
            for concurrency in cfg.concurrency_for(workload):
                for round_ in range(cfg.rounds):
                    for target in live:
                        if workload not in target.workloads:
                            continue
                        try:
                            m = target.measure(workload, concurrency, cfg.duration(workload))
                            row = m.as_dict()
                        except Exception as exc:  # noqa: BLE001 - one failed cell is a note
                            row = {"error": str(exc)[:300]}
                        results["runs"].setdefault(workload, {}).setdefault(
                            target.key, {}).setdefault(str(concurrency), []).append(row)
                        log(f"{workload} c={concurrency} r{round_} {target.key}: "
                            + (f"{row['rps']:.0f} req/s p50 {row['p50_ms']:.2f} ms "
                               f"p99 {row['p99_ms']:.2f} ms err {row['errors']}"
                               if "rps" in row else row["error"]))
        if cfg.profile:
            by_key = {t.key: t for t in live}
            for key, workload, concurrency in (("nbserve-rest", "a", 32),
                                               ("nbserve-grpc", "a", 32),
                                               ("nbserve-rest", "b", 32)):
                if key in by_key and workload in cfg.workloads:
                    log(f"profiling {key} {workload} c={concurrency}")
                    summary = profile(by_key[key], workload, concurrency, max(cfg.seconds, 4))
                    if summary:
                        results["profiles"].append(summary)
    finally:
        for proc in procs:
            proc.stop()
    results["elapsed_s"] = time.time() - started
    (BENCH / "results.json").write_text(json.dumps(results, indent=1))
    report.write(results, BENCH / "RESULTS.md", BENCH / "results.png")
    log(f"done in {results['elapsed_s']:.0f} s: bench/RESULTS.md, bench/results.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
