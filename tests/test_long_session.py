"""A long notebook session (issue 13, item 5): 100 version swaps under traffic, in-process and
isolated; resident memory and open file descriptors must level off, not keep growing.

NBSERVE_LONG_SWAPS sets the number of swaps (default 100)."""

from __future__ import annotations

import os
import shutil
import statistics
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

import nbserve

pytestmark = pytest.mark.tfs_testdata

SWAPS = int(os.environ.get("NBSERVE_LONG_SWAPS", "100"))
WARM = 20  # swaps before the baseline: allocator pools, caches and thread pools fill up first
RSS_GROWTH_LIMIT_MIB = 48.0
FD_GROWTH_LIMIT = 4


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def publish(base: Path, source: Path, version: int) -> None:
    """Copy a version folder in under a hidden name, then rename it: an atomic publish."""
    tmp = base / f".tmp-{version}"
    shutil.copytree(source, tmp)
    os.rename(tmp, base / str(version))


def unpublish(base: Path, version: int) -> None:
    shutil.rmtree(base / str(version), ignore_errors=True)


def run_session(srv: Any, base: Path, source: Path, pid: int,
                extra_fds: Callable[[], int] = lambda: 0) -> tuple[list[float], list[int], int]:
    """SWAPS swaps under REST + in-process traffic; (rss per swap, fds per swap, failures)."""
    stop = threading.Event()
    failures: list[str] = []

    def traffic() -> None:
        with requests.Session() as http:
            while not stop.is_set():
                try:
                    reply = http.post(f"{srv.rest_url}/v1/models/m:predict",
                                      json={"instances": [2.0]}, timeout=30)
                    if reply.status_code != 200 or reply.json() != {"predictions": [3.0]}:
                        failures.append(reply.text)
                    if float(srv.predict("m", [2.0])["y"][0]) != 3.0:
                        failures.append("in-process")
                except Exception as exc:  # noqa: BLE001 - counted, the test asserts none
                    failures.append(repr(exc))

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    rss: list[float] = []
    fds: list[int] = []
    try:
        for i in range(SWAPS):
            version = 2 + i
            publish(base, source, version)
            srv.wait_until_available("m", version, timeout=60)
            unpublish(base, version - 1)
            rss.append(rss_mib(pid))
            fds.append(open_fds(pid) + extra_fds())
    finally:
        stop.set()
        thread.join(30)
    return rss, fds, len(failures)


def assert_levels_off(rss: list[float], fds: list[int]) -> None:
    early_rss = statistics.median(rss[WARM - 10:WARM])
    late_rss = statistics.median(rss[-10:])
    assert late_rss - early_rss < RSS_GROWTH_LIMIT_MIB, (
        f"resident memory grew {late_rss - early_rss:.1f} MiB between swap {WARM} and {SWAPS}: "
        f"{[round(r) for r in rss]}")
    early_fds = max(fds[WARM - 10:WARM])
    assert max(fds[-10:]) - early_fds <= FD_GROWTH_LIMIT, f"open fds keep growing: {fds}"


@pytest.fixture
def model_base(tfs_testdata: Any, tmp_path: Path) -> tuple[Path, Path]:
    source = tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123"
    base = tmp_path / "m"
    base.mkdir()
    publish(base, source, 1)
    return base, source


@pytest.mark.skipif(SWAPS < WARM + 10, reason="NBSERVE_LONG_SWAPS too small to compare")
def test_hundred_swaps_in_process(model_base: tuple[Path, Path]) -> None:
    base, source = model_base
    srv = nbserve.serve(str(base), port=None, rest_api_port=0, file_system_poll_wait_seconds=0.2)
    try:
        srv.wait_until_available("m", 1, timeout=60)
        rss, fds, failures = run_session(srv, base, source, os.getpid())
    finally:
        srv.stop()
    assert failures == 0
    assert_levels_off(rss, fds)


@pytest.mark.skipif(SWAPS < WARM + 10, reason="NBSERVE_LONG_SWAPS too small to compare")
def test_hundred_swaps_isolated(model_base: tuple[Path, Path]) -> None:
    base, source = model_base
    srv = nbserve.serve(str(base), port=None, rest_api_port=0, file_system_poll_wait_seconds=0.2,
                        isolate=True)
    try:
        srv.wait_until_available("m", 1, timeout=120)
        rss, fds, failures = run_session(srv, base, source, srv.pid,
                                         extra_fds=lambda: open_fds(os.getpid()))
    finally:
        srv.stop()
    assert failures == 0
    assert_levels_off(rss, fds)
