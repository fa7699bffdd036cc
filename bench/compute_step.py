"""The compute-bound workload (d) for batching: its model, request and in-process limit.

``python -m bench.compute_step --seconds S --rounds R`` (a child of ``bench.run``; imports
TensorFlow) uses ``bench.compute_bound`` (the batching work's module: ``prepare``,
``request_array``, ``grpc_body``, ``in_process_limit``, ``MODEL_NAME``) to export the model under
``.cache/compute-bound``, writes ``.cache/bench-data/d.tfs.grpc`` (the gRPC frame h2load sends)
and ``d.expected.npy`` (the answer, from the same session callable the peers run), measures the
limit (items/s of the model called at batch 32 in a loop; best of R runs of S seconds) and prints
``BENCH_JSON {"base", "name", "limit", "limits", "single_ms"}``; ``{"missing": why}`` when
``bench.compute_bound`` is not in this tree. ``--limit-only`` (the limit taken again, later in the
run) measures the limit alone: the model and its files are already there, ``single_ms`` is None.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from bench.config import CACHE, DATA


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--limit-only", action="store_true")
    args = parser.parse_args()
    try:
        from bench import compute_bound
    except ImportError as exc:
        print("BENCH_JSON " + json.dumps({"missing": f"bench.compute_bound: {exc}"}))
        return
    from bench.servers.session_model import load

    base = compute_bound.prepare(str(CACHE / "compute-bound"))
    name = compute_bound.MODEL_NAME
    if not args.limit_only:
        versions = sorted((e for e in os.listdir(base) if e.isdigit()), key=int)
        DATA.mkdir(parents=True, exist_ok=True)
        (DATA / "d.tfs.grpc").write_bytes(compute_bound.grpc_body(name))
        np.save(DATA / "d.expected.npy",
                load(os.path.join(base, versions[-1]))(compute_bound.request_array()))
    limits = [compute_bound.in_process_limit(base, 32, args.seconds)
              for _ in range(max(1, args.rounds))]
    single = getattr(compute_bound, "single_request_ms", None)
    print("BENCH_JSON " + json.dumps({
        "base": base, "name": name, "limit": max(limits), "limits": limits,
        "single_ms": single(base) if single and not args.limit_only else None}))


if __name__ == "__main__":
    main()
