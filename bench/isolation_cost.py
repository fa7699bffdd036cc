"""What the isolated mode costs (issue 13, item 1): start-up and in-process ``predict`` latency.

``python -m bench.isolation_cost [CALLS]`` exports half_plus_two, then for an in-process and an
isolated server (interleaved, two rounds each) measures the seconds from ``nbserve.serve`` to the
version being AVAILABLE, and the p50/p99 of ``srv.predict`` over CALLS calls (default 2000).
REST and gRPC clients talk to the child's ports directly, so they pay nothing extra. Writes
bench/isolation_cost.json and prints a markdown table.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def one(base: str, isolate: bool, calls: int) -> dict[str, Any]:
    import nbserve

    started = time.perf_counter()
    srv = nbserve.serve(base, port=None, rest_api_port=0, isolate=isolate)
    try:
        srv.wait_until_available("m", timeout=180)
        start_s = time.perf_counter() - started
        x = [1.0, 2.0, 5.0]
        for _ in range(50):
            srv.predict("m", x)
        latencies = []
        for _ in range(calls):
            t = time.perf_counter()
            srv.predict("m", x)
            latencies.append((time.perf_counter() - t) * 1000)
    finally:
        srv.stop()
    lat = np.array(latencies)
    return {"mode": "isolated" if isolate else "in-process", "start_s": start_s,
            "predict_p50_ms": float(np.percentile(lat, 50)),
            "predict_p99_ms": float(np.percentile(lat, 99))}


def main(calls: int = 2000) -> list[dict[str, Any]]:
    from bench.busy_kernel import export_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = str(export_model(Path(tmp)))
        for _ in range(2):
            for isolate in (False, True):
                row = one(base, isolate, calls)
                print(json.dumps(row), flush=True)
                rows.append(row)
    (HERE / "isolation_cost.json").write_text(json.dumps(rows, indent=1))
    print("\n| server | start to AVAILABLE s | predict p50 ms | predict p99 ms |")
    print("|---|---:|---:|---:|")
    for mode in ("in-process", "isolated"):
        best = min((r for r in rows if r["mode"] == mode), key=lambda r: r["predict_p50_ms"])
        print(f"| {mode} | {best['start_s']:.2f} | {best['predict_p50_ms']:.3f} | "
              f"{best['predict_p99_ms']:.3f} |")
    return rows


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
