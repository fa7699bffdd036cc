"""RESULTS.md and results.png from the harness's results dict (pure functions, no timing).

``write(results, md_path, png_path)`` renders both; ``python -m bench.report`` re-renders them from
``bench/results.json``. The summary of a cell is its best round (highest throughput) and that
round's percentiles; ratios compare those bests, all taken in the same run.
"""

from __future__ import annotations

import collections
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

from bench.config import BENCH, COMPUTE_BOUND_PREMISE_MS, WORKLOAD_TITLES

REST_PEERS = ("kserve", "mlserver", "pytriton", "ray")
ORDER = ("nbserve-rest", "nbserve-aiohttp-rest", "nbserve-grpc", "nbserve-grpcio-grpc",
         "nbserve-w2-rest",
         "nbserve-cb-grpc", "nbserve-cb-batching-grpc", "nbserve-cb-grpcio-grpc",
         "nbserve-cb-batching-grpcio-grpc",
         "nbserve-batching-rest", "nbserve-batching-grpc",
         "bare-aiohttp", "kserve", "mlserver", "mlserver-grpc", "pytriton", "pytriton-grpc", "ray",
         "echo-rest", "echo-grpc")


# -- machine ---------------------------------------------------------------------------------

def machine_description(cpuinfo: str | None = None, meminfo: str | None = None,
                        nproc: int | None = None) -> str:
    """``"2 x Intel(R) Xeon(R) Processor, 23.4 GiB RAM, Linux 6.1, Python 3.11.7"``."""
    if cpuinfo is None:
        cpuinfo = _read("/proc/cpuinfo")
    if meminfo is None:
        meminfo = _read("/proc/meminfo")
    models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    model = models[0].strip() if models else platform.processor() or "unknown CPU"
    count = nproc if nproc is not None else (os.cpu_count() or len(models) or 1)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.M)
    mem_text = f"{int(mem.group(1)) / 2**20:.1f} GiB RAM" if mem else "unknown RAM"
    return (f"{count} x {model} (nproc {count}), {mem_text}, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


# -- summaries -------------------------------------------------------------------------------

def best(rows: Iterable[dict]) -> dict | None:
    """The round with the highest throughput (errors summed over rounds), or None. A round
    with no answer and no error (a window shorter than one request) is not a figure."""
    good = [r for r in rows if "rps" in r and (r.get("requests") or r.get("errors"))]
    if not good:
        return None
    top = dict(max(good, key=lambda r: r["rps"]))
    top["errors"] = sum(r.get("errors", 0) for r in good)
    top["rounds"] = len(good)
    return top


def cell(results: dict, workload: str, key: str, concurrency: int) -> dict | None:
    rows = results.get("runs", {}).get(workload, {}).get(key, {}).get(str(concurrency), [])
    return best(rows)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _rps(results: dict, workload: str, key: str, concurrency: int = 32) -> float | None:
    found = cell(results, workload, key, concurrency)
    return found["rps"] if found else None


def _top_concurrency(results: dict, workload: str, keys: Iterable[str]) -> int | None:
    """The highest concurrency measured for every one of ``keys`` on ``workload``."""
    sets = [{int(c) for c, rows in results.get("runs", {}).get(workload, {}).get(k, {}).items()
             if best(rows)} for k in keys]
    common = set.intersection(*sets) if sets else set()
    return max(common) if common else None


def compute_goals(results: dict) -> list[dict]:
    """Issue 12's goals from this run's figures: each row has ``goal`` (1-6), ``name``,
    ``value`` (float or None), ``unit`` ("×", " ms", " s"), ``target`` (text), ``met``
    (True/False/None = not measured), ``detail`` (the figures behind it) and ``reference``.

    The goals are the default server's (REST on ``h1``, gRPC on ``h2``) and the notebook's
    start. ``reference`` rows hold the other front ends (``--rest_front_end=aiohttp``,
    ``--grpc_front_end=grpcio``) and the command line's start to the same targets: shown
    beside the goals, not goals themselves."""
    rows: list[dict] = []

    def add(goal: int, name: str, value: float | None, limit: float, unit: str = "×",
            higher_is_better: bool = True, detail: str = "", reference: bool = False) -> None:
        met = None if value is None else (value >= limit if higher_is_better else value <= limit)
        rows.append({"goal": goal, "name": name, "value": value, "unit": unit,
                     "target": ("≥ " if higher_is_better else "≤ ") + f"{limit:g}{unit}",
                     "met": met, "detail": detail, "reference": reference})

    # 1. REST, half_plus_two: the default front end (h1), and aiohttp alone for comparison
    mine, bare = _rps(results, "a", "nbserve-rest"), _rps(results, "a", "bare-aiohttp")
    add(1, "(a) REST 32 conns vs the bare aiohttp floor", _ratio(mine, bare), 1.2,
        detail=f"{_num(mine)} vs {_num(bare)} req/s")
    aiohttp_only = _rps(results, "a", "nbserve-aiohttp-rest")
    if aiohttp_only is not None:
        add(1, "(a) REST 32 conns vs the bare aiohttp floor [--rest_front_end=aiohttp]",
            _ratio(aiohttp_only, bare), 1.2, detail=f"{_num(aiohttp_only)} vs {_num(bare)} req/s",
            reference=True)
    peers = {p: _rps(results, "a", p) for p in REST_PEERS if _rps(results, "a", p) is not None}
    top = max(peers, key=lambda p: peers[p]) if peers else None
    add(1, "(a) REST 32 conns vs the best peer", _ratio(mine, peers.get(top)) if top else None,
        2.5, detail=f"{_num(mine)} vs {top} {_num(peers[top])} req/s" if top else
        "no peer measured")
    one, bare_one = cell(results, "a", "nbserve-rest", 1), cell(results, "a", "bare-aiohttp", 1)
    add(1, "(a) REST 1 conn p50 vs the floor's", _ratio(one and one["p50_ms"],
                                                        bare_one and bare_one["p50_ms"]),
        1.0, higher_is_better=False,
        detail=f"{_ms(one and one['p50_ms'])} vs {_ms(bare_one and bare_one['p50_ms'])} ms")
    # 2. gRPC, half_plus_two: the default front end (h2), and grpcio's server for comparison
    triton = _rps(results, "a", "pytriton-grpc")
    for key, front in (("nbserve-grpc", ""), ("nbserve-grpcio-grpc", " [--grpc_front_end=grpcio]")):
        if key == "nbserve-grpcio-grpc" and cell(results, "a", key, 32) is None:
            continue
        grpc = _rps(results, "a", key)
        add(2, f"(a) gRPC 32 conns vs nbserve's own REST{front}", _ratio(grpc, mine), 1.0,
            detail=f"{_num(grpc)} vs {_num(mine)} req/s", reference=bool(front))
        add(2, f"(a) gRPC 32 conns vs PyTriton gRPC{front}", _ratio(grpc, triton), 1.5,
            detail=f"{_num(grpc)} vs {_num(triton)} req/s", reference=bool(front))
        g1 = cell(results, "a", key, 1)
        g1_mean = g1.get("mean_ms") if g1 else None
        add(2, f"(a) gRPC 1 conn mean latency{front}", g1_mean, 0.3, unit=" ms",
            higher_is_better=False, detail=f"{_ms(g1_mean)} ms (h2load)", reference=bool(front))
    # 3. payloads
    cnn, ml = _rps(results, "b", "nbserve-rest"), _rps(results, "b", "mlserver")
    add(3, "(b) small CNN REST 32 conns vs MLServer", _ratio(cnn, ml), 1.5,
        detail=f"{_num(cnn)} vs {_num(ml)} req/s")
    c = _top_concurrency(results, "c", ("nbserve-rest", "mlserver"))
    large = _rps(results, "c", "nbserve-rest", c) if c else None
    ml_large = _rps(results, "c", "mlserver", c) if c else None
    add(3, f"(c) large payload REST {c or '?'} conn(s) vs MLServer", _ratio(large, ml_large), 1.0,
        detail=f"{_num(large, 2)} vs {_num(ml_large, 2)} req/s")
    codec = results.get("floor", {}).get("codec", {})
    add(3, "(c) JSON encode vs orjson (codec micro-benchmark)",
        _ratio(codec.get("nbserve_encode_ms"), codec.get("orjson_encode_ms")), 3.0,
        higher_is_better=False, detail=f"{_ms(codec.get('nbserve_encode_ms'))} vs "
        f"{_ms(codec.get('orjson_encode_ms'))} ms")
    # 4. batching on the compute-bound workload
    compute = results.get("compute_bound", {})
    limit = compute.get("limit")
    model = f"; {compute.get('name')}, single request {_ms(compute.get('single_ms'))} ms" \
        if compute.get("single_ms") else ""
    beside = max(compute.get("limits_d") or [0]) or None
    for suffix, front in (("", ""), ("-grpcio", " [--grpc_front_end=grpcio]")):
        on = _rps(results, "d", f"nbserve-cb-batching{suffix}-grpc")
        if suffix and on is None:
            continue
        add(4, f"(d) batching, 32 gRPC clients, vs the in-process limit{front}",
            _ratio(on, limit), 0.8,
            detail=f"{_num(on)} req/s vs limit {_num(limit)} items/s (no batching: "
            f"{_num(_rps(results, 'd', f'nbserve-cb{suffix}-grpc'))}{model}"
            + (f"; {on / beside:.2f}x the limit taken beside the (d) servers, "
               f"{_num(beside)} items/s" if beside and on else "") + ")", reference=bool(front))
    # 5. workers
    two = _rps(results, "a", "nbserve-w2-rest")
    add(5, "(a) 2 workers vs 1, 32 REST conns", _ratio(two, mine), 1.4,
        detail=f"{_num(two)} vs {_num(mine)} req/s")
    # 6. start-up: in the notebook (TensorFlow already imported by the training cells), and the CLI
    magic = results.get("startup", {}).get("magic_after_tf") or {}
    add(6, "start-up: `%tfserve start` to first REST answer, TensorFlow already imported",
        magic.get("in_process_s"), 3.0, unit=" s", higher_is_better=False,
        detail=f"{_num(magic.get('in_process_s'), 2)} s; in a fresh kernel, with the import: "
        f"{_num((results.get('startup', {}).get('magic') or {}).get('in_process_s'), 2)} s"
        if "in_process_s" in magic else magic.get("error", "not measured")[:120])
    start = results.get("startup", {}).get("cli_grpc") or {}
    add(6, "start-up: `python -m nbserve` to first REST answer", start.get("wall_s"), 3.0,
        unit=" s", higher_is_better=False, detail=f"{_num(start.get('wall_s'), 2)} s"
        if "wall_s" in start else start.get("error", "not measured")[:120], reference=True)
    return rows


def _value(row: dict) -> str:
    if row["value"] is None:
        return "—"
    return f"{row['value']:.2f}{row['unit']}" if row["unit"] == "×" else (
        f"{row['value']:.3g}{row['unit']}")


def _goal_table(rows: list[dict]) -> list[str]:
    out = ["| # | goal | measured | target | status | figures |", "|---|---|---|---|---|---|"]
    for row in rows:
        status = {True: "met", False: "**missed**", None: "not measured"}[row["met"]]
        out.append(f"| {row['goal']} | {row['name']} | {_value(row)} | {row['target']} | "
                   f"{status} | {row['detail']} |")
    return out


def goal_lines(results: dict) -> list[str]:
    """One line per row: ``goal 1 met: ... 1.31× (≥ 1.2×; 8,000 vs 6,100 req/s)``; a reference
    row starts ``reference 1``."""
    status = {True: "met", False: "MISSED", None: "not measured"}
    return [f"{'reference' if r['reference'] else 'goal'} {r['goal']} {status[r['met']]}: "
            f"{r['name']}: {_value(r)} ({r['target']}; {r['detail']})"
            for r in compute_goals(results)]


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


# -- profile ---------------------------------------------------------------------------------

CATEGORIES = (  # (name, pattern on a frame); the frame nearest the leaf that matches wins
    ("TensorFlow session run", r"tensorflow/python/client/session\.py|_call_tf_sessionrun|"
                               r"saved_model\.py.*\brun\b"),
    ("JSON codec (nbserve.codec)", r"nbserve/codec/json"),
    ("tensor proto codec", r"nbserve/codec/tensors\.py|protobuf"),
    ("batching", r"nbserve/batching\.py"),
    ("nbserve service/core", r"nbserve/(service|core|server|metrics)"),
    ("REST transport (nbserve)", r"nbserve/transport/rest"),
    ("gRPC transport (nbserve)", r"nbserve/transport/grpc"),
    ("aiohttp", r"aiohttp/"),
    ("grpc", r"grpc/|grpc\._cython|cygrpc"),
    ("asyncio event loop", r"asyncio/"),
    ("thread pool", r"concurrent/futures|threading\.py"),
)


def summarize_profile(raw: str, top: int = 12) -> dict:
    """py-spy ``--format raw`` text -> sample count, share per category, top self frames."""
    by_category: collections.Counter = collections.Counter()
    by_self: collections.Counter = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        by_self[_short_frame(frames[-1])] += count
        category = "other"
        for frame in reversed(frames):
            hit = next((name for name, pattern in CATEGORIES if re.search(pattern, frame)), None)
            if hit:
                category = hit
                break
        by_category[category] += count
    share = lambda c: round(100.0 * c / total, 1) if total else 0.0  # noqa: E731
    return {"samples": total,
            "categories": [(name, share(c)) for name, c in by_category.most_common()],
            "top_self": [(name, share(c)) for name, c in by_self.most_common(top)]}


def _short_frame(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py)``."""
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    name, path = match.groups()
    path = re.sub(r".*/(site-packages|lib/python3\.\d+|work/main)/", "", path)
    return f"{name} ({path})"


# -- markdown --------------------------------------------------------------------------------

def _keys(results: dict, workload: str) -> list[str]:
    present = list(results.get("runs", {}).get(workload, {}))
    return sorted(present, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER))


def render(results: dict) -> str:
    cfg = results.get("config", {})
    conc = cfg.get("concurrency", [1, 8, 32])
    labels = results.get("labels", {})
    out = ["# nbserve benchmark results", "",
           f"- Date: {results.get('date', '?')}",
           f"- Command: `{results.get('command', 'make bench')}` "
           f"(each cell: `wrk -t1` for REST, `h2load -t1 -m1` for gRPC, "
           f"{cfg.get('seconds', '?')} s, large payload x{cfg.get('large_factor', '?')}, "
           f"{cfg.get('rounds', '?')} interleaved rounds, best round shown)",
           f"- Machine: {results.get('machine', '?')}",
           f"- Whole run: {results.get('elapsed_s', 0):.0f} s", ""]
    rows = compute_goals(results)
    goals = [row for row in rows if not row["reference"]]
    missed = sum(row["met"] is not True for row in goals)
    out += ["## Issue 12 goals (computed from this run's figures)", "",
            "The default server (REST on `h1`, gRPC on `h2`) and the notebook's start: "
            + (f"all {len(goals)} goals met in this run." if not missed else
               f"{missed} of {len(goals)} goals missed or not measured in this run."), ""]
    out += _goal_table(goals)
    out += ["", "### The same targets for the other configurations (for reference, not goals)",
            "", "The other front ends (`--rest_front_end=aiohttp`, `--grpc_front_end=grpcio`) and "
            "`python -m nbserve`'s start, which includes TensorFlow's import.", ""]
    out += _goal_table([row for row in rows if row["reference"]])
    out += ["", "Issue 6's targets (3× the best Python peer, batching 3× on the small CNN) are "
            "replaced by these; the tables below hold every figure they used.", ""]
    out += ["## Throughput and latency", "",
            "req/s, p50 and p99 in ms. Closed loop: each connection sends its next request when "
            "the answer came. REST (HTTP/1.1) rows by `wrk -t1`; gRPC rows by `h2load -t1 -m1` "
            "(one HTTP/2 connection per client, one call in flight each) posting a prebuilt "
            "unary call, the same tool and settings for every server. The echo rows are the "
            "transport floor with the same payload. `!` marks a cell with failed requests. The "
            "large payload (c) runs at 1 client by default (`BENCH_LARGE_CONCURRENCY`): one (c) "
            "request costs about a second of CPU in any of these Python servers, so 8 or 32 "
            "clients would wait minutes per cell for their first answers on 2 cores, and "
            "throughput is CPU-bound already at 1 client.", ""]
    for workload in results.get("runs", {}):
        out.append(f"### {WORKLOAD_TITLES.get(workload, workload)}")
        out.append("")
        cols = [32] if workload == "d" else conc
        header = "| server | " + " | ".join(f"{c} cl. req/s | p50 | p99" for c in cols) + " |"
        out += [header, "|---|" + "---:|" * (3 * len(cols))]
        for key in _keys(results, workload):
            cells = []
            for c in cols:
                found = cell(results, workload, key, c)
                if found is None:
                    cells += ["—", "—", "—"]
                    continue
                mark = " !" if found["errors"] else ""
                rps = found["rps"]
                cells += [(f"{rps:.2f}" if rps < 10 else _num(rps)) + mark, _ms(found["p50_ms"]),
                          _ms(found["p99_ms"])]
            out.append(f"| {labels.get(key, key)} | " + " | ".join(cells) + " |")
        out.append("")
    out += (_grpc_section(results) + _compute_section(results) + _floor_section(results)
            + _startup_section(results) + _profile_section(results))
    analysis = BENCH / "analysis.md"  # hand-written reading of the numbers, kept across runs
    if analysis.exists():
        out += [analysis.read_text().rstrip(), ""]
    notes = results.get("notes", [])
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    out += ["## How to run", "",
            "`make bench` (about 16 minutes here once the peers' venvs exist; "
            "`BENCH_QUICK=1 make bench` about 5, its results in `.cache/bench-quick/`). "
            "Settings: `BENCH_SECONDS`, `BENCH_ROUNDS`, `BENCH_LARGE_FACTOR`, "
            "`BENCH_CONCURRENCY`, `BENCH_WORKLOADS`, `BENCH_PEERS`, `BENCH_PROFILE` (see "
            "`bench/config.py`). Raw numbers: `bench/results.json`; re-render with "
            "`.venv/bin/python -m bench.report`.", ""]
    return "\n".join(out)


def _grpc_section(results: dict) -> list[str]:
    """Every gRPC server: req/s at 32 conns, mean ms at 1 conn, answers OK / failed in total."""
    labels = results.get("labels", {})
    rows = []
    for workload, by_key in results.get("runs", {}).items():
        for key in _keys(results, workload):
            if not (key.endswith("-grpc")):
                continue
            cells = [r for rows_ in by_key[key].values() for r in rows_ if "rps" in r]
            ok = sum(r["requests"] for r in cells)
            failed = sum(r.get("errors", 0) for r in cells)
            at32, at1 = cell(results, workload, key, 32), cell(results, workload, key, 1)
            rows.append(f"| {labels.get(key, key)} | {workload} | "
                        f"{_num(at32['rps']) if at32 else '—'} | "
                        f"{_ms(at1.get('mean_ms')) if at1 else '—'} | {ok:,} / {failed:,} |")
    if not rows:
        return []
    checked = results.get("grpc_checked", {})
    return ["## gRPC by h2load", "",
            "One real call per server and workload first, with grpc's own client (so a non-OK "
            "grpc-status fails the check) and the answer compared with the expected output; "
            "h2load then counts an answer as OK when its HTTP status is 200 and the DATA bytes "
            "add up to one full answer per request (a gRPC error carries no message). "
            f"Checked: {', '.join(sorted(checked)) or '—'}.", "",
            "| server | workload | 32 conns req/s | 1 conn mean ms | answers OK / failed |",
            "|---|---|---:|---:|---:|", *rows, ""]


def _premise(single_ms: float | None) -> str:
    """Whether the run's (d) model was the workload goal 4 names: a single request >= 1 ms."""
    if single_ms is None:
        return ""
    met = "meets" if single_ms >= COMPUTE_BOUND_PREMISE_MS else "is under"
    return (f" (goal 4's workload: a single request of at least {COMPUTE_BOUND_PREMISE_MS:g} ms; "
            f"this {met} it)")


def _limit_beside(cb: dict) -> str:
    """The limit as the (d) servers ran (only they up, idle), when the run took it."""
    beside = max(cb.get("limits_d") or [0])
    if not beside:
        return ""
    return (f"Taken again just before the (d) rounds, every other server stopped and the (d) "
            f"servers up and idle: {_num(beside)} items/s. ")


def _compute_section(results: dict) -> list[str]:
    cb = results.get("compute_bound", {})
    if not cb.get("limit"):
        return []
    labels = results.get("labels", {})
    out = ["## Batching on the compute-bound workload (d)", "",
           f"Model `{cb.get('name')}` (`bench/compute_bound.py`); in-process limit (the "
           f"SavedModel called at batch 32 in a loop, best of {len(cb.get('limits', []))}, "
           "before and after the servers ran): "
           f"{_num(cb['limit'])} items/s; one batch-1 call: {_ms(cb.get('single_ms'))} ms"
           f"{_premise(cb.get('single_ms'))}. {_limit_beside(cb)}32 h2load gRPC clients:", "",
           "| server | req/s | × limit | mean ms |", "|---|---:|---:|---:|"]
    for key in ("nbserve-cb-grpc", "nbserve-cb-batching-grpc", "nbserve-cb-grpcio-grpc",
                "nbserve-cb-batching-grpcio-grpc"):
        found = cell(results, "d", key, 32)
        if found:
            out.append(f"| {labels.get(key, key)} | {_num(found['rps'])} | "
                       f"{found['rps'] / cb['limit']:.2f} | {_ms(found.get('mean_ms'))} |")
    return [*out, ""]


def _floor_section(results: dict) -> list[str]:
    floor = results.get("floor", {})
    out = ["## Floors measured in-process", ""]
    servable = floor.get("servable", {})
    if servable:
        out += ["| workload | `SavedModelServable.run` ms | bare session callable ms |",
                "|---|---:|---:|"]
        for w, row in servable.items():
            out.append(f"| {WORKLOAD_TITLES.get(w, w)} | {_ms(row.get('servable_run_ms'))} | "
                       f"{_ms(row.get('session_callable_ms'))} |")
        out.append("")
    codec = floor.get("codec", {})
    if codec:
        shape = "×".join(str(d) for d in codec.get("array_shape", []))
        out += [f"Codec micro-benchmark on the (c) array ({shape} float32; request body "
                f"{codec.get('body_bytes', 0) / 1e6:.1f} MB), median ms per call:", "",
                "| operation | nbserve | orjson | stdlib json | notes |",
                "|---|---:|---:|---:|---|",
                f"| JSON decode (body → float32 array) | {_ms(codec.get('nbserve_decode_ms'))} | "
                f"{_ms(codec.get('orjson_decode_ms'))} | {_ms(codec.get('json_decode_ms'))} | "
                "orjson/json: `loads` + `np.asarray(float32)` |",
                "| JSON encode (array → Predict response) | "
                f"{_ms(codec.get('nbserve_encode_ms'))} | "
                f"{_ms(codec.get('orjson_encode_ms'))} | {_ms(codec.get('json_encode_ms'))} | "
                f"orjson with `OPT_SERIALIZE_NUMPY`; orjson of `tolist()`: "
                f"{_ms(codec.get('orjson_encode_tolist_ms'))} |",
                "| gRPC encode (`to_tensor_proto` + serialize) | "
                f"{_ms(codec.get('grpc_encode_ms'))} "
                f"| | | `tf.make_tensor_proto` alone: {_ms(codec.get('tf_make_tensor_proto_ms'))}; "
                f"`tobytes`: {_ms(codec.get('tobytes_ms'))} |",
                f"| gRPC decode (parse + `from_tensor_proto`) | {_ms(codec.get('grpc_decode_ms'))} "
                f"| | | copying the wire bytes: {_ms(codec.get('frombuffer_copy_ms'))} |", ""]
    return out


def _startup_section(results: dict) -> list[str]:
    s = results.get("startup", {})
    out = ["## Start-up and warmup", ""]

    def fmt(row: dict | None, key: str = "wall_s") -> str:
        if not row:
            return "—"
        if "error" in row:
            return "failed: " + row["error"][:200].replace("|", "/")
        return f"{row[key]:.2f} s"

    if s:
        out += ["| what (fresh process each) | time |", "|---|---:|",
                f"| `python -c 'import tensorflow'` (process start to import done) | "
                f"{fmt(s.get('tf_import'))} |",
                f"| `nbserve.serve(half_plus_two)` script: process start to first REST predict "
                f"| {fmt(s.get('serve'))} |",
                f"| `%tfserve start` in a fresh IPython shell → first REST predict | "
                f"{fmt(s.get('magic'), 'in_process_s')} |",
                "| `%tfserve start` after `import tensorflow` (a kernel that has just trained) "
                f"→ first REST predict | {fmt(s.get('magic_after_tf'), 'in_process_s')} |",
                f"| `python -m nbserve` (REST + gRPC): process start to first REST predict | "
                f"{fmt(s.get('cli_grpc'))} |", ""]
    w = results.get("warmup", {})
    if w:
        def first(row: dict | None) -> str:
            if not row:
                return "—"
            if "todo" in row:
                return f"TODO ({row['todo']})"
            if "error" in row:
                return "failed: " + row["error"][:200]
            return f"{row['first_ms']:.1f} ms (next ones: {row['next_ms']:.1f} ms)"

        out += ["First REST predict on (b) after the version became AVAILABLE:", "",
                "| | first request |", "|---|---:|",
                f"| without a warmup file | {first(w.get('without'))} |",
                f"| with `nbserve.export(..., warmup=...)` | {first(w.get('with'))} |", ""]
    return out


def _profile_section(results: dict) -> list[str]:
    profiles = results.get("profiles", [])
    if not profiles:
        return []
    out = ["## Where nbserve's time goes (py-spy, GIL-holding samples)", ""]
    for p in profiles:
        out.append(f"**{p['target']} on ({p['workload']}), {p['concurrency']} clients** "
                   f"({p['samples']} samples, {p['rps_while_profiled']:,.0f} req/s while "
                   f"profiled; raw stacks in `{p['raw']}`)")
        out.append("")
        out.append("- by layer (innermost match): " + ", ".join(
            f"{name} {share}%" for name, share in p["categories"]))
        out.append("- top self frames: " + ", ".join(
            f"`{name}` {share}%" for name, share in p["top_self"][:8]))
        out.append("")
    return out


# -- plot ------------------------------------------------------------------------------------

def _pyplot():
    try:
        import matplotlib
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"],
                       check=False)
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(results: dict, path: str) -> None:
    """Throughput (top) and p50 latency (bottom) against clients, one panel per workload."""
    plt = _pyplot()
    workloads = [w for w in results.get("runs", {}) if w != "d"] or ["a"]  # (d): 1 point
    labels = results.get("labels", {})
    conc = results.get("config", {}).get("concurrency", [1, 8, 32])
    fig, axes = plt.subplots(2, len(workloads), figsize=(5.2 * len(workloads), 8), squeeze=False)
    for col, workload in enumerate(workloads):
        top, bottom = axes[0][col], axes[1][col]
        for key in _keys(results, workload):
            xs, rps, p50 = [], [], []
            for c in conc:
                found = cell(results, workload, key, c)
                if found:
                    xs.append(c)
                    rps.append(found["rps"])
                    p50.append(found["p50_ms"])
            if not xs:
                continue
            style = "--" if key.startswith("echo") else ":" if "batching" in key else "-"
            width = 2.5 if key.startswith("nbserve") else 1.2
            color = f"C{ORDER.index(key) % 10}" if key in ORDER else None  # same color everywhere
            for ax, ys in ((top, rps), (bottom, p50)):
                ax.plot(xs, ys, style, marker="o", linewidth=width, color=color,
                        label=labels.get(key, key))
        top.set_title(WORKLOAD_TITLES.get(workload, workload), fontsize=10)
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(conc)
            ax.set_xticklabels([str(c) for c in conc])
            ax.grid(True, which="both", alpha=0.3)
            ax.set_xlabel("concurrent clients")
        top.set_ylabel("throughput (req/s)")
        bottom.set_ylabel("p50 latency (ms)")
    handles, names, seen = [], [], set()
    for ax in axes[0]:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            if name not in seen:
                seen.add(name)
                handles.append(handle)
                names.append(name)
    fig.legend(handles, names, loc="lower center", ncol=4, fontsize=8)
    fig.suptitle(f"nbserve vs peers and floors ({results.get('date', '')}; "
                 f"{results.get('machine', '').split(',')[0]})", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(results: dict, md_path: Any, png_path: Any) -> None:
    with open(md_path, "w") as f:
        f.write(render(results))
    plot(results, str(png_path))


if __name__ == "__main__":
    data = json.loads((BENCH / "results.json").read_text())
    write(data, BENCH / "RESULTS.md", BENCH / "results.png")
    print("wrote bench/RESULTS.md and bench/results.png")
