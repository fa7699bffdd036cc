"""Load generators: Debian's ``wrk`` for REST (HTTP/1.1), Debian's ``h2load`` for gRPC.

Both return a ``Measurement`` (requests, errors, seconds, p50/p99/mean in ms). ``parse_wrk``
reads wrk's output: the ``BENCH_JSON`` line that ``post.lua`` prints when present, else wrk's
standard ``--latency`` text (so a plain wrk run parses too). ``run_h2load`` sends one prebuilt
unary gRPC call (``grpc_frame``: 5-byte header + serialized request) on ``concurrency`` HTTP/2
connections, one stream each, after a warm-up; ``parse_h2load`` reads its summary and its
per-request log (percentiles). h2load judges answers by HTTP status only and a gRPC error is an
HTTP 200 with the status in the trailers, so ``run_h2load`` also counts the DATA bytes: every
successful answer to the same request has the same size (``answer_bytes``, from one real call
made by ``grpc_call``), an error answer has none. Closed loop everywhere: each connection sends
its next request when the previous answer came.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass

from bench.config import BENCH

LUA = BENCH / "post.lua"


@dataclass
class Measurement:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_ms: float | None = None
    failed: int | None = None  # h2load: requests that failed (HTTP level or gRPC status)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "rps": self.rps}


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def duration_ms(text: str) -> float:
    """``12.5ms``, ``830us``, ``1.2s``, ``2m`` (wrk's and h2load's durations) in ms."""
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
                               d["p50_us"] / 1000, d["p99_us"] / 1000,
                               mean_ms=d["mean_us"] / 1000 if "mean_us" in d else None)
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
    return Measurement(int(requests.group(1)), errors, duration_ms(requests.group(2)) / 1000,
                       duration_ms(percentiles.get("50", "0us")),
                       duration_ms(percentiles.get("99", "0us")))


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


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC message frame: flag 0, big-endian length, the message."""
    return struct.pack(">BI", 0, len(message)) + message


def h2load_path() -> str | None:
    return shutil.which("h2load")


H2_DONE = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored, (\d+) timeout")
H2_CODES = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
H2_DATA = re.compile(r"traffic: .*\((\d+)\) data")
H2_MEAN = re.compile(r"time for request:\s+\S+\s+\S+\s+([\d.]+(?:us|ms|s))")


def parse_h2load(output: str, log: str, seconds: float,
                 answer_bytes: int | None = None) -> Measurement:
    """A Measurement from h2load's summary and ``--log-file`` lines (start us, status, us).

    ``requests`` counts answers that succeeded at the HTTP level and, with ``answer_bytes``, at
    the gRPC level too (DATA bytes = succeeded x answer_bytes; short: the missing answers were
    gRPC errors, whose trailers-only answers carry no DATA; the answers of requests still in
    flight when h2load stops may add up to one answer per connection). ``errors`` = h2load's
    failed + errored + timeout + those gRPC errors. Percentiles come from the log; the mean from
    the summary."""
    done = H2_DONE.search(output)
    if not done:
        raise ValueError("h2load output has no request count:\n" + output[-2000:])
    succeeded = int(done.group(4))
    errors = int(done.group(5)) + int(done.group(6)) + int(done.group(7))
    data = H2_DATA.search(output)
    if answer_bytes and data:
        ok = min(succeeded, int(data.group(1)) // answer_bytes)
        errors += succeeded - ok
        succeeded = ok
    times = sorted(int(parts[2]) for line in log.splitlines()
                   if len(parts := line.split("\t")) == 3 and parts[1] == "200")
    mean = H2_MEAN.search(output)

    def pct(q: float) -> float:
        return times[min(len(times) - 1, int(q * len(times)))] / 1000 if times else 0.0

    return Measurement(succeeded, errors, seconds, pct(0.50), pct(0.99),
                       mean_ms=duration_ms(mean.group(1)) if mean else None, failed=errors)


def _h2load(url: str, body_file: str, concurrency: int, duration: str,
            extra: list[str], timeout: float) -> str:
    cmd = [h2load_path() or "h2load", "-t1", f"-c{concurrency}", "-m1", f"-D{duration}",
           "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(body_file),
           *extra, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"h2load failed ({done.returncode}): "
                           f"{(done.stdout + done.stderr).strip()[-500:]}")
    return done.stdout


def run_h2load(url: str, body_file: str, concurrency: int, seconds: float,
               answer_bytes: int | None = None, warmup: float = 0.5,
               timeout_s: float = 60.0) -> Measurement:
    """``h2load -t1 -c<concurrency> -m1`` posting the gRPC frame in ``body_file`` to ``url``.

    The warm-up is a separate short h2load run (same connections count), not h2load's
    ``--warm-up-time``: its traffic totals include the warm-up's bytes, which would hide gRPC
    errors from the DATA-bytes count."""
    duration = max(1, round(seconds))
    if warmup > 0:
        _h2load(url, body_file, concurrency, f"{round(warmup * 1000)}ms", [],
                warmup + timeout_s + 30)
    with tempfile.TemporaryDirectory(prefix="bench-h2load-") as tmp:
        log_path = os.path.join(tmp, "requests.log")
        out = _h2load(url, body_file, concurrency, str(duration), [f"--log-file={log_path}"],
                      duration + timeout_s + 30)
        log = open(log_path).read() if os.path.exists(log_path) else ""
    return parse_h2load(out, log, float(duration), answer_bytes)


def grpc_call(target: str, method: str, message: bytes, timeout: float = 60.0) -> bytes:
    """One unary call with grpc's own client (raises ``grpc.RpcError`` unless status OK)."""
    import grpc

    big = 2**31 - 1
    options = [("grpc.max_receive_message_length", big), ("grpc.max_send_message_length", big)]
    with grpc.insecure_channel(target, options=options) as channel:
        answer: bytes = channel.unary_unary(method)(message, timeout=timeout)
    return answer


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
