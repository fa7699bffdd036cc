"""Where the harness keeps things, and how long it measures (environment variables).

``BENCH_QUICK=1`` shortens everything to a few minutes' smoke run (its results go to
``.cache/bench-quick/``, never over ``bench/results.json``). Durations: ``BENCH_SECONDS``
(one load run, default 3; 1 when quick), ``BENCH_ROUNDS`` (interleaved rounds, default 2; 1 when
quick), ``BENCH_LARGE_FACTOR`` (the large payload runs this many times longer, default 3),
``BENCH_CONCURRENCY`` (default ``1,8,32``), ``BENCH_LARGE_CONCURRENCY`` (the large payload's,
default ``1``: one (c) request costs ~1.5 s of CPU in a Python server on this 2-core machine, so
8 or 32 clients would need minutes per cell before the first answer; throughput is CPU-bound
already at 1 client), ``BENCH_WORKLOADS`` (default ``a,b,c``; (d), the compute-bound batching
workload, runs at 32 clients whenever ``bench/compute_bound.py`` exists), ``BENCH_PEERS``
(default ``kserve,mlserver,pytriton,ray``; empty skips them), ``BENCH_VENVS`` (where the peers'
venvs are, default ``.cache/bench-venvs``), ``BENCH_PROFILE`` (``1``: record a py-spy profile of
nbserve under load when py-spy is installed; default 1, 0 when quick).
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field

REPO = pathlib.Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
CACHE = REPO / ".cache"
MODELS = CACHE / "bench-models"
DATA = CACHE / "bench-data"
VENVS = pathlib.Path(os.environ.get("BENCH_VENVS", CACHE / "bench-venvs"))
MAIN_PY = REPO / ".venv" / "bin" / "python"
TESTDATA_ENV = "NBSERVE_TFS_TESTDATA"

WORKLOADS = {
    "a": "half_plus_two",
    "b": "cnn",
    "c": "large",
}
WORKLOAD_TITLES = {
    "a": "(a) half_plus_two, 1 instance",
    "b": "(b) small CNN, 1x64x64x3 float",
    "c": "(c) large payload, 8x224x224x3 float",
    "d": "(d) compute-bound CNN for batching (bench/compute_bound.py), gRPC",
}
# Goal 4's workload (issue 12): a CNN whose batch-1 call takes at least this long.
COMPUTE_BOUND_PREMISE_MS = 1.0


def tfs_testdata() -> pathlib.Path:
    default = REPO.parent / "shared" / "testdata" / "tfserving"
    return pathlib.Path(os.environ.get(TESTDATA_ENV, default))


def peer_python(peer: str) -> pathlib.Path:
    return VENVS / peer / "bin" / "python"


def _int_env(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    return int(text) if text else default


def _float_env(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    return float(text) if text else default


def _list_env(name: str, default: str) -> list[str]:
    text = os.environ.get(name)
    text = default if text is None else text
    return [item.strip() for item in text.split(",") if item.strip()]


@dataclass(frozen=True)
class BenchConfig:
    quick: bool = False
    seconds: float = 3.0
    rounds: int = 2
    large_factor: float = 3.0
    concurrency: tuple[int, ...] = (1, 8, 32)
    large_concurrency: tuple[int, ...] = (1,)
    workloads: tuple[str, ...] = ("a", "b", "c")
    peers: tuple[str, ...] = ("kserve", "mlserver", "pytriton", "ray")
    profile: bool = True
    startup_runs: int = 1
    extra: dict = field(default_factory=dict)

    @staticmethod
    def from_env() -> BenchConfig:
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        return BenchConfig(
            quick=quick,
            seconds=_float_env("BENCH_SECONDS", 1.0 if quick else 3.0),
            rounds=_int_env("BENCH_ROUNDS", 1 if quick else 2),
            large_factor=_float_env("BENCH_LARGE_FACTOR", 3.0),
            concurrency=tuple(int(c) for c in _list_env("BENCH_CONCURRENCY", "1,8,32")),
            large_concurrency=tuple(int(c) for c in _list_env("BENCH_LARGE_CONCURRENCY", "1")),
            workloads=tuple(w for w in _list_env("BENCH_WORKLOADS", "a,b,c") if w in WORKLOADS),
            peers=tuple(_list_env("BENCH_PEERS", "kserve,mlserver,pytriton,ray")),
            profile=os.environ.get("BENCH_PROFILE", "0" if quick else "1") not in ("", "0"),
            startup_runs=_int_env("BENCH_STARTUP_RUNS", 1),
        )

    def concurrency_for(self, workload: str) -> tuple[int, ...]:
        if workload == "d":  # the batching workload: 32 clients only
            return (32,)
        return self.large_concurrency if workload == "c" else self.concurrency

    def duration(self, workload: str) -> float:
        return self.seconds * (self.large_factor if workload == "c" else 1.0)
