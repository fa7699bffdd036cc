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

from bench.config import BENCH, WORKLOAD_TITLES

PEERS = ("kserve", "mlserver")
ORDER = ("nbserve-rest", "nbserve-grpc", "nbserve-batching-rest", "nbserve-batching-grpc",
         "bare-aiohttp", "kserve", "mlserver", "echo-rest", "echo-grpc")


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
    """The round with the highest throughput (errors summed over rounds), or None."""
    good = [r for r in rows if "rps" in r]
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


def compute_targets(results: dict) -> list[dict]:
    """Issue 6's targets: name, measured ratio, goal text, met (True/False/None = not measured)."""
    rows: list[dict] = []

    def rps(w: str, key: str, c: int = 32) -> float | None:
        found = cell(results, w, key, c)
        return found["rps"] if found else None

    def add(name: str, value: float | None, goal: float, higher_is_better: bool = True,
            detail: str = "") -> None:
        met = None if value is None else (value >= goal if higher_is_better else value <= goal)
        rows.append({"name": name, "value": value, "goal": ("≥ " if higher_is_better else "≤ ")
                     + f"{goal:g}×", "met": met, "detail": detail})

    for w in ("a", "b"):
        peer_rps = {p: rps(w, p) for p in PEERS if rps(w, p) is not None}
        best_peer = max(peer_rps, key=peer_rps.get) if peer_rps else None
        for proto in ("rest", "grpc"):
            mine = rps(w, f"nbserve-{proto}")
            add(f"({w}) nbserve {proto.upper()} vs best Python peer, 32 clients",
                _ratio(mine, peer_rps.get(best_peer)) if best_peer else None, 3,
                detail=f"{_num(mine)} vs {best_peer} {_num(peer_rps.get(best_peer))} req/s"
                if best_peer else "no peer measured")
        for proto in ("rest", "grpc"):
            mine = rps(w, f"nbserve-{proto}")
            bare = rps(w, "bare-aiohttp")
            add(f"({w}) nbserve {proto.upper()} vs bare aiohttp, 32 clients", _ratio(mine, bare), 1,
                detail=f"{_num(mine)} vs {_num(bare)} req/s")
    mine, bare = cell(results, "a", "nbserve-rest", 1), cell(results, "a", "bare-aiohttp", 1)
    add("(a) nbserve REST p50 vs bare aiohttp p50, 1 client",
        _ratio(mine and mine["p50_ms"], bare and bare["p50_ms"]), 1.2, higher_is_better=False,
        detail=f"{_num(mine and mine['p50_ms'], 3)} vs {_num(bare and bare['p50_ms'], 3)} ms")
    codec = results.get("floor", {}).get("codec", {})
    for op in ("decode", "encode"):
        add(f"(c) JSON {op}: nbserve vs orjson", _ratio(codec.get(f"nbserve_{op}_ms"),
                                                        codec.get(f"orjson_{op}_ms")),
            3, higher_is_better=False,
            detail=(f"{_num(codec.get(f'nbserve_{op}_ms'))} vs "
                    f"{_num(codec.get(f'orjson_{op}_ms'))} ms"))
    for proto in ("rest", "grpc"):
        on, off = rps("b", f"nbserve-batching-{proto}"), rps("b", f"nbserve-{proto}")
        add(f"(b) batching on vs off, {proto.upper()}, 32 clients", _ratio(on, off), 3,
            detail=f"{_num(on)} vs {_num(off)} req/s")
    return rows


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
           f"(each cell: `wrk -t1` or the grpc.aio client for {cfg.get('seconds', '?')} s, "
           f"large payload x{cfg.get('large_factor', '?')}, {cfg.get('rounds', '?')} interleaved "
           "rounds, best round shown)",
           f"- Machine: {results.get('machine', '?')}",
           f"- Whole run: {results.get('elapsed_s', 0):.0f} s", ""]
    out += ["## Targets (issue 6; ratios from this run)", "",
            "| target | measured | goal | status | figures |", "|---|---|---|---|---|"]
    for row in compute_targets(results):
        status = {True: "met", False: "**missed**", None: "not measured"}[row["met"]]
        value = "—" if row["value"] is None else f"{row['value']:.2f}×"
        out.append(f"| {row['name']} | {value} | {row['goal']} | {status} | {row['detail']} |")
    out.append("")
    out += ["## Throughput and latency", "",
            "req/s, p50 and p99 in ms. Closed loop: each client sends its next request when the "
            "answer came. REST rows by `wrk` (1 thread), gRPC rows by one Python grpc.aio "
            "client process, which shares the 2 cores with the server (so gRPC figures are "
            "lower bounds); the echo rows are the transport floor with the same payload. "
            "`!` marks a cell with failed requests. The large payload (c) runs at 1 client by "
            "default (`BENCH_LARGE_CONCURRENCY`): one (c) request costs about a second of CPU in "
            "any of these Python servers, so 8 or 32 clients would wait minutes per cell for "
            "their first answers on 2 cores, and throughput is CPU-bound already at 1 client.", ""]
    for workload in results.get("runs", {}):
        out.append(f"### {WORKLOAD_TITLES.get(workload, workload)}")
        out.append("")
        header = "| server | " + " | ".join(f"{c} cl. req/s | p50 | p99" for c in conc) + " |"
        out += [header, "|---|" + "---:|" * (3 * len(conc))]
        for key in _keys(results, workload):
            cells = []
            for c in conc:
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
    out += _floor_section(results) + _startup_section(results) + _profile_section(results)
    analysis = BENCH / "analysis.md"  # hand-written reading of the numbers, kept across runs
    if analysis.exists():
        out += [analysis.read_text().rstrip(), ""]
    notes = results.get("notes", [])
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    out += ["## How to run", "",
            "`make bench` (about 9 minutes here once the peers' venvs exist; "
            "`BENCH_QUICK=1 make bench` about 2). Settings: "
            "`BENCH_SECONDS`, `BENCH_ROUNDS`, `BENCH_LARGE_FACTOR`, `BENCH_CONCURRENCY`, "
            "`BENCH_WORKLOADS`, `BENCH_PEERS`, `BENCH_PROFILE` (see `bench/config.py`). Raw "
            "numbers: `bench/results.json`; re-render with `.venv/bin/python -m bench.report`.", ""]
    return "\n".join(out)


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
    workloads = list(results.get("runs", {})) or ["a"]
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
