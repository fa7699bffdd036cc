"""Load generators: Debian's ``wrk`` for REST, a grpc.aio client (own process) for gRPC.

Both return a ``Measurement`` (requests, errors, seconds, p50/p99 in ms). ``parse_wrk`` reads
wrk's output: the ``BENCH_JSON`` line that ``post.lua`` prints when present, else wrk's standard
``--latency`` text (so a plain wrk run parses too). Closed loop: ``concurrency`` connections (or
gRPC calls in flight on one channel) each send the next request when the previous answer came.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass

from bench.config import BENCH, MAIN_PY, REPO

LUA = BENCH / "post.lua"


@dataclass
class Measurement:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "rps": self.rps}


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> Measurement:
    """A Measurement from wrk's stdout (``BENCH_JSON`` line, else the ``--latency`` text)."""
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            d = json.loads(line[len("BENCH_JSON "):])
            errors = sum(d[k] for k in ("errors_connect", "errors_read", "errors_write",
                                        "errors_status", "errors_timeout"))
            return Measurement(d["requests"], errors, d["duration_us"] / 1e6,
                               d["p50_us"] / 1000, d["p99_us"] / 1000)
    requests = re.search(r"(\d+) requests in ([\d.]+\w+)", output)
    if not requests:
        raise ValueError("wrk output has no request count:\n" + output[-2000:])
    percentiles = dict(re.findall(r"^\s*(50|99)(?:\.0+)?%\s+(\S+)", output, re.M))
    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
    return Measurement(int(requests.group(1)), errors, _ms(requests.group(2)) / 1000,
                       _ms(percentiles.get("50", "0us")), _ms(percentiles.get("99", "0us")))


def wrk_path() -> str | None:
    return shutil.which("wrk")


def run_wrk(url: str, body_file: str, concurrency: int, seconds: float,
            timeout_s: float = 60.0) -> Measurement:
    """``wrk -t1 -c<concurrency>`` POSTing ``body_file`` to ``url`` for ``seconds``."""
    cmd = [wrk_path() or "wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
           f"--timeout={int(timeout_s)}s", "--latency", "-s", str(LUA), url]
    env = {**os.environ, "BENCH_BODY": str(body_file)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True,
                          timeout=seconds + timeout_s + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return parse_wrk(done.stdout)


def run_grpc(target: str, method: str, body_file: str, concurrency: int,
             seconds: float) -> Measurement:
    """The grpc.aio client (``bench.grpc_load``) in its own process."""
    cmd = [str(MAIN_PY), "-m", "bench.grpc_load", "--target", target, "--method", method,
           "--body", str(body_file), "--concurrency", str(concurrency), "--seconds", str(seconds)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                          timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"grpc_load failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    d = json.loads(done.stdout.strip().splitlines()[-1])
    return Measurement(d["requests"], d["errors"], d["seconds"], d["p50_ms"], d["p99_ms"])


if __name__ == "__main__":  # python -m bench.loadgen URL BODY C SECONDS
    print(run_wrk(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])).as_dict())


def post(url: str, body: bytes, timeout: float = 60.0) -> tuple[int, bytes]:
    """POST a JSON body; (status, body), or (0, b"") when the server cannot be reached."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (TimeoutError, urllib.error.URLError, ConnectionError):
        return 0, b""
