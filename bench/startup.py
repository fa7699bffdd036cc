"""Start-up and warmup timings, each in a fresh process (the parent times the child).

``python -m bench.startup MODE ARGS`` prints ``READY <json>`` once its goal is reached:

- ``tf-import``: ``import tensorflow`` (the floor of any start-up);
- ``serve PATH NAME BODY``: ``nbserve.serve(PATH, rest_api_port=0, port=None)`` then REST predict
  (retried until 200);
- ``magic PATH NAME BODY``: an IPython shell (as in a fresh kernel), ``%load_ext nbserve`` and
  ``%tfserve start PATH --port off --rest_api_port 0``, then REST predict until 200; the JSON
  holds the seconds from the ``%tfserve`` line (IPython's own start excluded);
- ``magic-after-tf PATH NAME BODY``: the same after ``import tensorflow`` (a kernel that has just
  trained the model: the notebook's usual case); the seconds from the ``%tfserve`` line;
- ``first-request PATH NAME BODY``: ``nbserve.serve`` and wait until AVAILABLE, then time the first
  and the next few REST predicts (for the warmup comparison).

``measure(argv)`` (parent side) runs one and returns ``{"wall_s": ..., **child json}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench import loadgen
from bench.config import MAIN_PY, REPO


def _predict_until_ok(port: int, name: str, body: bytes, timeout: float = 120.0) -> int:
    url = f"http://127.0.0.1:{port}/v1/models/{name}:predict"
    deadline = time.monotonic() + timeout
    tries = 0
    while time.monotonic() < deadline:
        tries += 1
        status, _ = loadgen.post(url, body, timeout=30)
        if status == 200:
            return tries
        time.sleep(0.005)
    raise TimeoutError(f"no successful predict on {url} within {timeout} s")


def _ready(payload: dict) -> None:
    print("READY " + json.dumps(payload), flush=True)


def child(argv: list[str]) -> None:
    mode = argv[0]
    t0 = time.perf_counter()
    if mode == "tf-import":
        import tensorflow

        _ready({"in_process_s": time.perf_counter() - t0})
        return
    path, name, body_file = argv[1:4]
    with open(body_file, "rb") as f:
        body = f.read()
    if mode == "serve":
        import nbserve

        srv = nbserve.serve(path, name=name, port=None, rest_api_port=0)
        tries = _predict_until_ok(srv.rest_port, name, body)
        _ready({"in_process_s": time.perf_counter() - t0, "tries": tries})
        srv.stop()
    elif mode in ("magic", "magic-after-tf"):
        from IPython.core.interactiveshell import InteractiveShell

        if mode == "magic-after-tf":
            import tensorflow  # noqa: F401
        shell = InteractiveShell.instance()
        t1 = time.perf_counter()
        shell.run_line_magic("load_ext", "nbserve")
        srv = shell.run_line_magic("tfserve", f"start {path} --name {name} --port off "
                                   "--rest_api_port 0")
        tries = _predict_until_ok(srv.rest_port, name, body)
        _ready({"in_process_s": time.perf_counter() - t1, "ipython_s": t1 - t0, "tries": tries})
        shell.run_line_magic("tfserve", "stop")
    elif mode == "first-request":
        import nbserve

        srv = nbserve.serve(path, name=name, port=None, rest_api_port=0)
        srv.wait_until_available(name, timeout=300)
        url = f"http://127.0.0.1:{srv.rest_port}/v1/models/{name}:predict"
        times = []
        for _ in range(6):
            start = time.perf_counter()
            status, _ = loadgen.post(url, body, timeout=30)
            times.append((time.perf_counter() - start) * 1000)
            if status != 200:
                raise RuntimeError(f"predict answered {status}")
        _ready({"first_ms": times[0], "next_ms": sorted(times[1:])[len(times[1:]) // 2]})
        srv.stop()
    else:
        raise SystemExit(f"unknown mode {mode}")


def measure(argv: list[str], timeout: float = 240.0, python: str | None = None) -> dict:
    """Run ``bench.startup`` with ``argv`` in a fresh process; the parent's wall time to READY."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    proc = subprocess.Popen([python or str(MAIN_PY), "-m", "bench.startup", *argv], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = start + timeout
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("READY "):
                wall = time.perf_counter() - start
                return {"wall_s": wall, **json.loads(line[6:])}
            if time.perf_counter() > deadline:
                break
        err = proc.stderr.read()[-600:] if proc.stderr else ""
        return {"error": f"no READY (exit {proc.poll()}): {err.strip()}"}
    finally:
        proc.kill()
        proc.wait()


def measure_cli(model_base: str, name: str, body_file: str, rest_port: int, grpc_port: int,
                timeout: float = 60.0) -> dict:
    """Plain ``python -m nbserve`` (REST and gRPC on): wall time to the first REST predict."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with open(body_file, "rb") as f:
        body = f.read()
    start = time.perf_counter()
    proc = subprocess.Popen([str(MAIN_PY), "-m", "nbserve", f"--model_name={name}",
                             f"--model_base_path={model_base}", f"--rest_api_port={rest_port}",
                             f"--port={grpc_port}"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _predict_until_ok(rest_port, name, body, timeout=timeout)
        return {"wall_s": time.perf_counter() - start}
    except TimeoutError:
        proc.kill()
        err = proc.communicate()[1] or ""
        errors = [line for line in err.splitlines() if " E " in line]
        first = (errors[0] if errors else err[-300:]).strip()
        return {"error": f"no successful predict within {timeout:.0f} s: {first}"}
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    child(sys.argv[1:])
