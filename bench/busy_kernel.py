"""REST latency of a notebook's server while its kernel is busy (issue 13, item 4).

``python -m bench.busy_kernel [SECONDS]`` starts half_plus_two the way a notebook does
(``nbserve.serve`` in this process, or ``isolate=True``), then for each workload runs it on the
main thread (the "cell") while a client process sends paced REST predicts (one keep-alive
connection, 100 req/s) and records their latencies:

- ``idle``: the cell sleeps;
- ``python loop``: a pure-Python loop that holds the GIL (only released at the interpreter's
  switch interval, 5 ms by default);
- ``model.fit``: a small Keras model trained on random data (TensorFlow releases the GIL in its
  kernels, but uses the cores).

``in-process (default: switch 1 ms)`` is the mitigation ``nbserve.serve`` applies by default:
a shorter ``sys.setswitchinterval`` lets the IO and predict threads take the GIL back from a busy
cell sooner; ``in-process, switch 5 ms`` is Python's default interval
(``switch_interval=None``). Writes bench/busy_kernel.json and prints a markdown table (p50/p99 ms,
req/s, errors).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RATE = 100.0

CLIENT = r"""
import http.client, json, sys, time
port, seconds, rate = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
body = json.dumps({"instances": [1.0, 2.0, 5.0]})
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
lat, errors = [], 0
interval, start = 1.0 / rate, time.monotonic()
next_at = start
while time.monotonic() - start < seconds:
    sent = time.perf_counter()
    try:
        conn.request("POST", "/v1/models/m:predict", body, {"Content-Type": "application/json"})
        reply = conn.getresponse(); reply.read()
        if reply.status != 200: errors += 1
    except Exception:
        errors += 1; conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    lat.append((time.perf_counter() - sent) * 1000)
    next_at += interval
    delay = next_at - time.monotonic()
    if delay > 0: time.sleep(delay)
    else: next_at = time.monotonic()
print(json.dumps({"latencies_ms": lat, "errors": errors, "seconds": time.monotonic() - start}))
"""


def python_loop(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(i * i for i in range(2000))


def make_fit() -> Callable[[float], None]:
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.Input((32,)), tf.keras.layers.Dense(256, "relu"),
                                 tf.keras.layers.Dense(256, "relu"), tf.keras.layers.Dense(1)])
    model.compile("adam", "mse")
    x = np.random.rand(4096, 32).astype("float32")
    y = np.random.rand(4096, 1).astype("float32")
    model.fit(x, y, epochs=1, verbose=0)  # build and trace outside the measurement

    def fit(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            model.fit(x, y, epochs=1, batch_size=64, verbose=0)

    return fit


def export_model(folder: Path) -> Path:
    import tensorflow as tf

    class HalfPlusTwo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, x: Any) -> Any:
            return {"y": x / 2 + 2}

    import nbserve

    base = folder / "m"
    module = HalfPlusTwo()
    nbserve.export(module, str(base))
    return base


def measure(port: int, seconds: float, work: Callable[[float], None]) -> dict[str, Any]:
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), str(seconds), str(RATE)],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(0.2)
    work(seconds)
    out, _ = client.communicate(timeout=seconds + 60)
    result = json.loads(out)
    lat = np.array(result["latencies_ms"])
    return {"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "req_s": len(lat) / result["seconds"], "errors": result["errors"]}


def main(seconds: float = 8.0) -> list[dict[str, Any]]:
    import tempfile

    import nbserve

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = export_model(Path(tmp))
        fit = make_fit()
        workloads: dict[str, Callable[[float], None]] = {
            "idle": time.sleep, "python loop": python_loop, "model.fit": fit}
        for mode in ("in-process, switch 5 ms", "in-process (default: switch 1 ms)", "isolated"):
            old_interval = sys.getswitchinterval()
            sys.setswitchinterval(0.005)  # Python's default, whatever an earlier mode set
            srv = nbserve.serve(str(base), port=None, rest_api_port=0,
                                isolate=mode == "isolated",
                                switch_interval=None if "5 ms" in mode else 0.001)
            try:
                srv.wait_until_available("m", timeout=120)
                for name, work in workloads.items():
                    row = {"mode": mode, "workload": name, **measure(srv.rest_port, seconds, work)}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
            finally:
                sys.setswitchinterval(old_interval)
                srv.stop()
    (HERE / "busy_kernel.json").write_text(json.dumps(rows, indent=1))
    print("\n| server | cell running | p50 ms | p99 ms | req/s | errors |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['workload']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['req_s']:.0f} | {r['errors']} |")
    return rows


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 8.0)
