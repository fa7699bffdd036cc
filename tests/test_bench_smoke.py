"""Smoke tests of the benchmark harness's pure parts (bench/): parsing, summaries, report, plot.

Nothing here is timed or measured; the numbers are synthetic.
"""

from __future__ import annotations

import sys

import pytest

from tests.support import REPO

sys.path.insert(0, str(REPO))

import numpy as np

from bench import grpc_protos, loadgen, report
from bench.config import BenchConfig

WRK_TEXT = """Running 3s test @ http://127.0.0.1:8501/v1/models/half_plus_two:predict
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.87ms    1.10ms  21.32ms   91.02%
    Req/Sec     6.61k   302.11     7.00k    80.00%
  Latency Distribution
     50%    4.71ms
     75%    5.02ms
     90%    5.60ms
     99%    9.25ms
  19743 requests in 3.00s, 2.60MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   6578.97
Transfer/sec:    887.90KB
"""

BENCH_JSON = ('BENCH_JSON {"requests": 1200, "duration_us": 3000000, "bytes": 10, '
              '"errors_connect": 0, "errors_read": 0, "errors_write": 0, "errors_status": 2, '
              '"errors_timeout": 0, "p50_us": 812, "p90_us": 900, "p99_us": 2400, '
              '"mean_us": 830.5, "max_us": 5000}')


def test_parse_wrk_standard_text():
    m = loadgen.parse_wrk(WRK_TEXT)
    assert m.requests == 19743
    assert m.seconds == pytest.approx(3.0)
    assert m.p50_ms == pytest.approx(4.71)
    assert m.p99_ms == pytest.approx(9.25)
    assert m.errors == 2 + 1 + 4
    assert m.rps == pytest.approx(19743 / 3.0)


def test_parse_wrk_prefers_the_lua_summary_line():
    m = loadgen.parse_wrk(WRK_TEXT + BENCH_JSON + "\n")
    assert (m.requests, m.errors) == (1200, 2)
    assert m.p50_ms == pytest.approx(0.812)
    assert m.p99_ms == pytest.approx(2.4)
    assert m.rps == pytest.approx(400.0)


def test_parse_wrk_units_and_garbage():
    text = WRK_TEXT.replace("4.71ms", "812.00us").replace("9.25ms", "1.20s")
    m = loadgen.parse_wrk(text)
    assert m.p50_ms == pytest.approx(0.812)
    assert m.p99_ms == pytest.approx(1200.0)
    with pytest.raises(ValueError):
        loadgen.parse_wrk("wrk: connection refused")


H2LOAD_TEXT = """finished in 3.00s, 1000.00 req/s, 35.00KB/s
requests: 3000 total, 3004 started, 3000 done, 2998 succeeded, 1 failed, 1 errored, 0 timeout
status codes: 2998 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 70.01KB (71687) total, 5.34KB (5469) headers (space savings 96.08%), 117.09KB (119880) data
                     min         max         mean         sd        +/- sd
time for request:      418us     37.86ms      7.66ms      5.97ms    69.95%
"""


def test_parse_h2load_counts_grpc_errors_from_data_bytes():
    log = "".join(f"1796166791194570\t200\t{us}\n" for us in range(1000, 2000)) + "x\n"
    m = loadgen.parse_h2load(H2LOAD_TEXT, log, 3.0)
    assert (m.requests, m.errors, m.failed) == (2998, 2, 2)
    assert m.mean_ms == pytest.approx(7.66)
    assert m.p50_ms == pytest.approx(1.5) and m.p99_ms == pytest.approx(1.99)
    assert m.rps == pytest.approx(2998 / 3.0)
    # 119,880 DATA bytes are 2,997 answers of 40 bytes: one 200 was a gRPC error
    m = loadgen.parse_h2load(H2LOAD_TEXT, log, 3.0, answer_bytes=40)
    assert (m.requests, m.errors) == (2997, 3)
    with pytest.raises(ValueError):
        loadgen.parse_h2load("connect to 127.0.0.1 failed", "", 3.0)


def test_grpc_frames_and_messages_round_trip():
    body = grpc_protos.infer_request("m", np.arange(6, dtype=np.float32).reshape(2, 3))
    frame = loadgen.grpc_frame(body)
    assert frame[:5] == b"\x00" + len(body).to_bytes(4, "big") and frame[5:] == body
    request = grpc_protos.ModelInferRequest.FromString(body)
    assert request.model_name == "m" and list(request.inputs[0].shape) == [2, 3]
    response = grpc_protos.ModelInferResponse(model_name="m")
    out = response.outputs.add(name="y", datatype="FP32", shape=[2, 1])
    response.raw_output_contents.append(np.float32([1.5, 2.5]).tobytes())
    got = grpc_protos.infer_outputs(response.SerializeToString())
    assert got.shape == (2, 1) and got.ravel().tolist() == [1.5, 2.5]
    del response.raw_output_contents[:]
    out.contents.fp32_contents.extend([3.5, 4.5])
    assert grpc_protos.infer_outputs(response.SerializeToString()).ravel().tolist() == [3.5, 4.5]
    predict = grpc_protos.PredictResponse()
    entry = predict.outputs.add(key="y")
    entry.value.dtype = grpc_protos.DT_FLOAT
    entry.value.tensor_shape.dim.add(size=2)
    entry.value.tensor_content = np.float32([2.5, 3.0]).tobytes()
    assert grpc_protos.predict_outputs(predict.SerializeToString()).tolist() == [2.5, 3.0]


def _row(rps: float, p50: float = 1.0, p99: float = 3.0, errors: int = 0,
         mean: float | None = None) -> dict:
    return {"requests": int(rps * 3), "errors": errors, "seconds": 3.0, "p50_ms": p50,
            "p99_ms": p99, "rps": rps, "mean_ms": mean}


def synthetic_results() -> dict:
    runs = {}
    for w, scale in (("a", 1.0), ("b", 0.1)):
        runs[w] = {
            "nbserve-rest": {"1": [_row(2000 * scale, 0.40)], "8": [_row(5000 * scale)],
                             "32": [_row(6000 * scale), _row(7000 * scale)]},
            "nbserve-grpc": {"1": [_row(1500 * scale, mean=0.25)],
                             "32": [_row(8000 * scale)]},
            "pytriton-grpc": {"1": [_row(900 * scale, mean=1.1)], "32": [_row(4000 * scale)]},
            "bare-aiohttp": {"1": [_row(2500 * scale, 0.30)], "32": [_row(6500 * scale)]},
            "kserve": {"1": [_row(1000 * scale)], "32": [_row(1900 * scale)]},
            "mlserver": {"1": [_row(900 * scale)], "32": [_row(1500 * scale, errors=1)]},
            "echo-rest": {"1": [_row(9000 * scale)], "32": [{"error": "wrk failed"}]},
        }
    runs["a"]["nbserve-w2-rest"] = {"32": [_row(9000)]}
    runs["a"]["nbserve-grpcio-grpc"] = {"1": [_row(3000, mean=0.35)], "32": [_row(4000)]}
    runs["a"]["nbserve-aiohttp-rest"] = {"1": [_row(1500, 0.5)], "32": [_row(5200)]}
    runs["c"] = {"nbserve-rest": {"1": [_row(0.7, 1400, 1500)]},
                 "mlserver": {"1": [_row(3.5, 270, 300)]}}
    runs["d"] = {"nbserve-cb-grpc": {"32": [_row(300)]},
                 "nbserve-cb-batching-grpc": {"32": [_row(850)]},
                 "nbserve-cb-batching-grpcio-grpc": {"32": [_row(700)]}}
    return {
        "date": "2026-01-01 00:00 UTC", "command": "make bench", "machine": "2 x test CPU",
        "config": {"seconds": 3, "rounds": 2, "large_factor": 3, "concurrency": [1, 8, 32]},
        "runs": runs, "labels": {"nbserve-rest": "nbserve REST"}, "notes": ["a note"],
        "compute_bound": {"name": "cnn96", "limit": 1000.0, "limits": [1000.0],
                          "limits_d": [880.0, 900.0], "single_ms": 2.0},
        "grpc_checked": {"nbserve-grpc": {"a": 40}},
        "floor": {"servable": {"a": {"servable_run_ms": 0.01, "session_callable_ms": 0.007}},
                  "codec": {"array_shape": [8, 224, 224, 3], "body_bytes": 10_000_000,
                            "nbserve_decode_ms": 800, "orjson_decode_ms": 500,
                            "nbserve_encode_ms": 500, "orjson_encode_ms": 36}},
        "startup": {"tf_import": {"wall_s": 2.7}, "serve": {"wall_s": 2.8},
                    "magic": {"wall_s": 2.6, "in_process_s": 2.5},
                    "cli_grpc": {"error": "no successful predict"}},
        "warmup": {"without": {"first_ms": 80.0, "next_ms": 5.0}, "with": {"todo": "missing"}},
        "profiles": [{"target": "nbserve-rest", "workload": "a", "concurrency": 32,
                      "samples": 10, "rps_while_profiled": 5000.0, "raw": "x.txt",
                      "categories": [("aiohttp", 50.0)], "top_self": [("f (m.py)", 20.0)]}],
    }


def test_best_round_and_goals():
    results = synthetic_results()
    top = report.cell(results, "a", "nbserve-rest", 32)
    assert top["rps"] == 7000 and top["rounds"] == 2
    assert report.cell(results, "a", "echo-rest", 32) is None  # only a failed round
    assert report.best([_row(0.0)]) is None  # no answer within the window: not a figure
    goals = {g["name"]: g for g in report.compute_goals(results)}
    assert sorted({g["goal"] for g in goals.values()}) == [1, 2, 3, 4, 5, 6]
    floor = goals["(a) REST 32 conns vs the bare aiohttp floor"]
    assert floor["value"] == pytest.approx(7000 / 6500) and floor["met"] is False
    peer = goals["(a) REST 32 conns vs the best peer"]
    assert peer["value"] == pytest.approx(7000 / 1900) and peer["met"] is True
    assert "kserve" in peer["detail"]
    aiohttp_only = goals["(a) REST 32 conns vs the bare aiohttp floor [--rest_front_end=aiohttp]"]
    assert aiohttp_only["value"] == pytest.approx(5200 / 6500) and aiohttp_only["met"] is False
    p50 = goals["(a) REST 1 conn p50 vs the floor's"]
    assert p50["value"] == pytest.approx(0.40 / 0.30) and p50["met"] is False
    assert goals["(a) gRPC 32 conns vs nbserve's own REST"]["met"] is True
    assert goals["(a) gRPC 32 conns vs PyTriton gRPC"]["value"] == pytest.approx(2.0)
    mean = goals["(a) gRPC 1 conn mean latency"]
    assert mean["value"] == pytest.approx(0.25) and mean["met"] is True
    h2 = goals["(a) gRPC 32 conns vs nbserve's own REST [--grpc_front_end=grpcio]"]
    assert h2["value"] == pytest.approx(4000 / 7000) and h2["met"] is False
    assert goals["(a) gRPC 1 conn mean latency [--grpc_front_end=grpcio]"]["met"] is False
    h2_batching = goals["(d) batching, 32 gRPC clients, vs the in-process limit "
                        "[--grpc_front_end=grpcio]"]
    assert h2_batching["value"] == pytest.approx(0.7) and "no batching: —" in \
        h2_batching["detail"]
    cnn = goals["(b) small CNN REST 32 conns vs MLServer"]
    assert cnn["value"] == pytest.approx(700 / 150) and cnn["met"] is True
    large = goals["(c) large payload REST 1 conn(s) vs MLServer"]
    assert large["value"] == pytest.approx(0.2) and large["met"] is False
    assert goals["(c) JSON encode vs orjson (codec micro-benchmark)"]["met"] is False
    batching = goals["(d) batching, 32 gRPC clients, vs the in-process limit"]
    assert batching["value"] == pytest.approx(0.85) and batching["met"] is True
    assert "cnn96, single request 2.00 ms" in batching["detail"]
    assert "0.94x the limit taken beside the (d) servers, 900 items/s" in batching["detail"]
    workers = goals["(a) 2 workers vs 1, 32 REST conns"]
    assert workers["value"] == pytest.approx(9000 / 7000) and workers["met"] is False
    start = goals["start-up: `python -m nbserve` to first REST answer"]
    assert start["met"] is None and "no successful" in start["detail"]
    lines = report.goal_lines(results)
    assert len(lines) == len(goals) and lines[0].startswith("goal 1 MISSED: ")
    # the other front ends and the command line's start are shown beside the goals, not as goals
    references = {name for name, g in goals.items() if g["reference"]}
    assert references == {
        "(a) REST 32 conns vs the bare aiohttp floor [--rest_front_end=aiohttp]",
        "(a) gRPC 32 conns vs nbserve's own REST [--grpc_front_end=grpcio]",
        "(a) gRPC 32 conns vs PyTriton gRPC [--grpc_front_end=grpcio]",
        "(a) gRPC 1 conn mean latency [--grpc_front_end=grpcio]",
        "(d) batching, 32 gRPC clients, vs the in-process limit [--grpc_front_end=grpcio]",
        "start-up: `python -m nbserve` to first REST answer"}
    assert sum(line.startswith("reference ") for line in lines) == len(references)
    del results["runs"]["d"], results["compute_bound"]
    goals = {g["name"]: g for g in report.compute_goals(results)}
    assert goals["(d) batching, 32 gRPC clients, vs the in-process limit"]["met"] is None


def test_render_markdown_has_every_section():
    text = report.render(synthetic_results())
    for heading in ("## Issue 12 goals", "### (a) half_plus_two", "### (c) large payload",
                    "## gRPC by h2load", "## Batching on the compute-bound workload (d)",
                    "## Floors measured in-process", "## Start-up and warmup",
                    "## Where nbserve's time goes", "## Notes", "## How to run"):
        assert heading in text
    assert "| nbserve REST | 2,000 | 0.400 |" in text
    assert "1,500 !" in text  # a cell with failed requests is marked
    assert "**missed**" in text and "TODO (missing)" in text and "failed: no successful" in text
    goals, references = text.split("### The same targets for the other configurations")
    assert "goals missed or not measured in this run." in goals
    assert "[--grpc_front_end=grpcio]" not in goals.split("## Throughput")[0]
    assert "| 6 | start-up: `python -m nbserve` to first REST answer |" in \
        references.split("## Throughput")[0]
    assert "| nbserve-cb-batching-grpc | 850 | 0.85 |" in text
    assert "one batch-1 call: 2.00 ms (goal 4's workload: a single request of at least 1 ms; " \
        "this meets it)" in text
    assert "every other server stopped and the (d) servers up and idle: 900 items/s." in text
    assert "| nbserve-grpc | a | 8,000 | 0.250 | 28,500 / 0 |" in text


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "results.png"
    report.plot(synthetic_results(), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summarize_profile():
    raw = ("MainThread;run (asyncio/base_events.py:600);"
           "_dispatch (nbserve/transport/rest_api.py:70) 6\n"
           "nbserve-predict_0;_worker (concurrent/futures/thread.py:80);_predict "
           "(nbserve/transport/rest_api.py:130);"
           "decode_inputs (nbserve/codec/json_tensor.py:1020) 3\n"
           "nbserve-predict_1;_worker (concurrent/futures/thread.py:80);"
           "_call_tf_sessionrun (/x/site-packages/tensorflow/python/client/session.py:1500) 1\n"
           "garbage line\n")
    summary = report.summarize_profile(raw)
    assert summary["samples"] == 10
    assert dict(summary["categories"]) == {"REST transport (nbserve)": 60.0,
                                           "JSON codec (nbserve.codec)": 30.0,
                                           "TensorFlow session run": 10.0}
    assert summary["top_self"][0] == ("_dispatch (nbserve/transport/rest_api.py)", 60.0)
    tf_run = ("_call_tf_sessionrun (tensorflow/python/client/session.py)", 10.0)
    assert tf_run in summary["top_self"]


def test_machine_description_and_config(monkeypatch):
    cpus = "model name\t: Test CPU @ 2GHz\nmodel name\t: Test CPU @ 2GHz\n"
    text = report.machine_description(cpus, "MemTotal:       24576000 kB\n", nproc=2)
    assert text.startswith("2 x Test CPU @ 2GHz (nproc 2), 23.4 GiB RAM")
    monkeypatch.setenv("BENCH_QUICK", "1")
    monkeypatch.delenv("BENCH_SECONDS", raising=False)
    monkeypatch.setenv("BENCH_CONCURRENCY", "1, 4")
    cfg = BenchConfig.from_env()
    assert cfg.quick and cfg.seconds == 1.0 and cfg.rounds == 1 and cfg.concurrency == (1, 4)
    assert cfg.duration("c") == 3.0 and cfg.duration("a") == 1.0
    assert cfg.concurrency_for("c") == (1,) and not cfg.profile


def test_target_helpers():
    import os

    from bench import targets

    assert targets.triton_shape([1]) == [1, 1]  # half_plus_two: items of [1]
    assert targets.triton_shape([8, 224, 224, 3]) == [8, 224, 224, 3]
    assert os.getpid() in targets.session_members(os.getsid(0))
    assert targets.short_version("0.21.0") == "0.21" and targets.short_version("") == "?"
    rest = targets.Target("t", "T", "rest", str, str, ("a", "d"), concurrency=(32,))
    assert rest.runs("a", 32) and not rest.runs("a", 1) and not rest.runs("b", 32)


def test_compute_bound_runs_with_only_its_servers_up(monkeypatch, tmp_path):
    """(d) and its limit beside it are measured once every process that no (d) target uses has
    stopped: the limit is taken with no server up, and idle peers took ~18 % of the cores."""
    from bench import run, targets

    monkeypatch.setattr(targets, "LOGS", tmp_path)
    procs = [targets.Proc(name, [sys.executable, "-c", "import time; time.sleep(120)"])
             for name in ("peer", "cb")]
    peer, cb = (p.start() for p in procs)
    live = [targets.Target("peer-grpc", "P", "grpc", str, str, ("a", "b"), proc=peer),
            targets.Target("cb-grpc", "C", "grpc", str, str, ("d",), proc=cb)]
    seen: dict = {}

    def fake_limit(cfg, notes, limit_only=False):
        assert limit_only  # the model and its files are there: the limit alone
        seen["alive when the limit ran"] = [p.name for p in procs if p.alive()]
        return {"limits": [321.0]}

    def fake_measure(cfg, measured, workloads, runs):
        seen["measured"] = ([t.key for t in measured], workloads)
        seen["alive when (d) ran"] = [p.name for p in procs if p.alive()]

    monkeypatch.setattr(run, "compute_workload", fake_limit)
    monkeypatch.setattr(run, "measure_all", fake_measure)
    compute: dict = {"limits": [300.0]}
    try:
        run.measure_compute_bound(BenchConfig.from_env(), live, procs, compute, [], {})
    finally:
        for proc in procs:
            proc.stop()
    assert seen == {"alive when the limit ran": ["cb"], "measured": (["cb-grpc"], ["d"]),
                    "alive when (d) ran": ["cb"]}
    assert compute == {"limits": [300.0], "limits_d": [321.0]}
