"""The orchestrator behind ``make bench``: prepare, start every server, measure interleaved, report.

``python -m bench.run`` (settings in ``bench.config``; ``BENCH_QUICK=1`` for a few minutes' smoke
run). Steps: export models and bodies (``bench.prepare``, in a child process, then
``targets.write_bodies``); the compute-bound workload (d) and its in-process limit
(``bench.compute_step``, when ``bench.compute_bound`` exists); in-process floors and the codec
micro-benchmark (``bench.floor``); start-up and warmup timings (``bench.startup``); then all
servers at once (``bench.targets``: nbserve REST + gRPC, nbserve with ``--num_workers=2``, nbserve
on (d) with and without ``--enable_batching``, the bare aiohttp server, the echo floors, KServe,
MLServer, PyTriton and Ray Serve from their own venvs under ``.cache/bench-venvs``; what is
missing is skipped with a note). Each server's answers are checked once with a real client (REST
JSON; gRPC with grpc's own client, so the grpc-status is read), then for every (workload,
concurrency) every target is measured once per round, rounds interleaved (A B C ... A B C ...):
REST by ``wrk``, gRPC by ``h2load``, same settings for everyone. Optionally a py-spy profile of
nbserve under load. (d) comes last, with every server it does not measure stopped: the limit is
taken with no server up, and the peers' idle processes (Ray's, Triton's) took ~18 % of the 2
cores from the (d) servers when they stayed up. Its limit is also taken just before its rounds,
with its own (idle) servers up (``limits_d``). Writes ``bench/results.json``, ``bench/RESULTS.md``
and ``bench/results.png``. Every process it started is stopped at the end (by its process group id).
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

from bench import loadgen, report, startup
from bench.config import BENCH, DATA, MAIN_PY, REPO, BenchConfig
from bench.targets import (
    LOGS,
    Target,
    body_file,
    build_targets,
    check_answers,
    wait_ready,
    write_bodies,
)
from nbserve.testing import free_port


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


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
                      ("magic", ["magic", base, name, body]),
                      ("magic_after_tf", ["magic-after-tf", base, name, body])):
        runs = [startup.measure(argv) for _ in range(cfg.startup_runs)]
        good = [r for r in runs if "error" not in r]
        out[key] = min(good, key=lambda r: r["wall_s"]) if good else runs[0]
        log(f"start-up {key}: {out[key]}")
    out["cli_grpc"] = startup.measure_cli(base, name, body, free_port(), free_port(), timeout=90)
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


def output_paths(cfg: BenchConfig) -> tuple[Any, Any, Any]:
    """results.json, RESULTS.md, results.png: under bench/ for a full run; a quick run's go to
    .cache/bench-quick/ so they never replace the recorded figures."""
    folder = REPO / ".cache" / "bench-quick" if cfg.quick else BENCH
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "results.json", folder / "RESULTS.md", folder / "results.png"


def compute_workload(cfg: BenchConfig, notes: list[str], limit_only: bool = False
                     ) -> dict | None:
    """Workload (d) from ``bench.compute_step`` (None, with a note, when it cannot run);
    ``limit_only``: its limit taken again (the model and its files are there already)."""
    if importlib.util.find_spec("bench.compute_bound") is None:
        notes.append("Compute-bound batching workload: `bench/compute_bound.py` is not in this "
                     "tree; goal 4 is not measured.")
        return None
    found = run_child("bench.compute_step", "--seconds", str(cfg.seconds), "--rounds",
                      str(cfg.rounds), *(["--limit-only"] if limit_only else []), timeout=900)
    if not found or "missing" in found:
        why = (found or {}).get("missing", "bench.compute_step failed (see the log above)")
        notes.append(f"Compute-bound batching workload left out: {why}")
        return None
    return found


def start_and_check(targets: list[Target], procs: list, notes: list[str]) -> list[Target]:
    """Start every process, wait for each target and check its answers; the good ones."""
    log("starting servers: " + ", ".join(p.name for p in procs))
    for proc in procs:
        proc.start()
    live = []
    for target in targets:
        why = wait_ready(target, timeout=240) or check_answers(target)
        if why:
            notes.append(f"{target.label}: left out ({why.strip()[:300]})")
            log(f"{target.key}: {why}")
        else:
            live.append(target)
    return live


def measure_all(cfg: BenchConfig, live: list[Target], workloads: list[str], runs: dict) -> None:
    """Every (workload, concurrency) cell of every live target, rounds interleaved."""
    for workload in workloads:
        for concurrency in cfg.concurrency_for(workload):
            for round_ in range(cfg.rounds):
                for target in live:
                    if not target.runs(workload, concurrency):
                        continue
                    try:
                        row = target.measure(workload, concurrency,
                                             cfg.duration(workload)).as_dict()
                    except Exception as exc:  # noqa: BLE001 - one failed cell is a note
                        row = {"error": str(exc)[:300]}
                    runs.setdefault(workload, {}).setdefault(target.key, {}).setdefault(
                        str(concurrency), []).append(row)
                    mean = f" mean {row['mean_ms']:.2f} ms" if row.get("mean_ms") else ""
                    log(f"{workload} c={concurrency} r{round_} {target.key}: "
                        + (f"{row['rps']:.0f} req/s p50 {row['p50_ms']:.2f} ms "
                           f"p99 {row['p99_ms']:.2f} ms{mean} err {row['errors']}"
                           if "rps" in row else row["error"]))


def measure_compute_bound(cfg: BenchConfig, live: list[Target], procs: list, compute: dict,
                          notes: list[str], runs: dict) -> None:
    """Workload (d) in the conditions of its limit: every process none of whose targets runs (d)
    is stopped first; the limit is then taken again beside the idle (d) servers
    (``compute["limits_d"]``, the goal's limit stays the one taken with no server up)."""
    measured = [t for t in live if "d" in t.workloads]
    keep = {id(t.proc) for t in measured}
    for proc in procs:
        if id(proc) not in keep:
            proc.stop()
    log("stopped every server but the (d) ones")
    beside = compute_workload(cfg, notes, limit_only=True)
    if beside:
        compute["limits_d"] = beside["limits"]
        log(f"compute-bound limit beside the (d) servers: {beside['limits']}")
    measure_all(cfg, measured, ["d"], runs)


def main() -> int:
    cfg = BenchConfig.from_env()
    started = time.time()
    notes: list[str] = []
    for tool, path in (("wrk", loadgen.wrk_path), ("nghttp2-client", loadgen.h2load_path)):
        if path() is None:
            log(f"{tool} missing: apt-get install -y {tool}")
            subprocess.run(["apt-get", "update", "-qq"], check=False)
            subprocess.run(["apt-get", "install", "-y", "-qq", tool], check=False)
            if path() is None:
                log(f"{tool} could not be installed; the load cannot be generated")
                return 1
    log(f"config: {cfg}")
    if run_child("bench.prepare") is None:
        return 1
    manifest = json.loads((DATA / "manifest.json").read_text())
    write_bodies(manifest)
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "make bench" + (" (BENCH_QUICK=1)" if cfg.quick else ""),
        "config": {k: v for k, v in cfg.__dict__.items() if k != "extra"},
        "machine": report.machine_description(), "manifest": manifest, "notes": notes,
        "runs": {}, "labels": {}, "profiles": [],
    }
    log("compute-bound workload (d) and its in-process limit")
    compute = compute_workload(cfg, notes)
    results["compute_bound"] = compute or {}
    log(f"compute-bound: {compute}")
    log("floors and codec micro-benchmark")
    results["floor"] = run_child("bench.floor", "--seconds", "0.2" if cfg.quick else "1.0") or {}
    log("start-up")
    results["startup"] = measure_startup(cfg, manifest)
    results["warmup"] = measure_warmup(manifest)

    targets, procs = build_targets(cfg, manifest, notes, compute)
    try:
        live = start_and_check(targets, procs, notes)
        results["labels"] = {t.key: t.label for t in live}
        results["grpc_checked"] = {t.key: t.answer_bytes for t in live if t.kind == "grpc"}
        log("measuring: " + ", ".join(t.key for t in live))
        measure_all(cfg, live, list(cfg.workloads), results["runs"])
        if cfg.profile:
            by_key = {t.key: t for t in live}
            for key, workload, concurrency in (("nbserve-rest", "a", 32),
                                               ("nbserve-grpc", "a", 32),
                                               ("nbserve-grpcio-grpc", "a", 32),
                                               ("nbserve-rest", "b", 32)):
                if key in by_key and workload in cfg.workloads:
                    log(f"profiling {key} {workload} c={concurrency}")
                    summary = profile(by_key[key], workload, concurrency, max(cfg.seconds, 4))
                    if summary:
                        results["profiles"].append(summary)
        if compute:
            measure_compute_bound(cfg, live, procs, compute, notes, results["runs"])
    finally:
        for proc in procs:
            proc.stop()
    if compute:  # the limit again, servers stopped: a busy moment must not set it alone
        again = compute_workload(cfg, notes, limit_only=True)
        if again:
            compute["limits"] += again["limits"]
            compute["limit"] = max(compute["limits"])
            log(f"compute-bound limit again: {again['limits']}")
    results["elapsed_s"] = time.time() - started
    json_path, md_path, png_path = output_paths(cfg)
    json_path.write_text(json.dumps(results, indent=1))
    report.write(results, md_path, png_path)
    log(f"done in {results['elapsed_s']:.0f} s: {md_path}, {png_path}")
    for line in report.goal_lines(results):
        log(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
