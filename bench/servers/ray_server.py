"""Ray Serve, one replica, speaking TF Serving's REST predict and running the session callable.

Runs in ``.cache/bench-venvs/ray`` (``ray[serve]``). ``python ray_server.py PORT NAME=VERSION_DIR
...`` starts a local Ray (2 CPUs, no dashboard), Serve's HTTP proxy on 127.0.0.1:PORT and one
deployment (one replica, Ray's default ``max_ongoing_requests``, access log off) routed at
``/v1/models``: ``POST /v1/models/NAME:predict`` with ``{"instances": [...]}`` ->
``{"predictions": [...]}``. Ray's node address is 127.0.0.1 (its daemons talk over loopback).
The harness starts it with ``RAY_worker_niceness=0``: Ray runs its workers (the replica and the
HTTP proxy) at nice 15 by default, which would hand the CPU to the load generator. The driver then
waits until it is killed; Ray's workers run in process groups of their own but in the driver's
session, and the harness stops every process of that session. REST only: Ray Serve's gRPC proxy
needs the user's own compiled service, not a standard inference protocol.
"""

from __future__ import annotations

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from session_model import parse_models


def main() -> None:
    import numpy as np
    import ray
    from ray import serve
    from starlette.requests import Request

    port = int(sys.argv[1])
    specs = parse_models(sys.argv[2:])
    here = os.path.dirname(os.path.abspath(__file__))

    @serve.deployment(num_replicas=1, logging_config={"enable_access_log": False})
    class TfsModels:
        def __init__(self, specs: dict[str, str]) -> None:
            sys.path.insert(0, here)
            from session_model import load

            self.models = {name: load(path) for name, path in specs.items()}

        async def __call__(self, request: Request) -> dict:
            name = request.url.path.rsplit("/", 1)[-1].partition(":")[0]
            body = await request.json()
            inputs = np.asarray(body["instances"], dtype=np.float32)
            return {"predictions": self.models[name](inputs).tolist()}

    for attempt in range(3):  # Ray gives its raylet 30 s, too little on a busy 2-core machine
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                     _node_ip_address="127.0.0.1",
                     runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3"}})
            break
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception on this timeout
            print(f"ray.init failed ({exc}); attempt {attempt + 1} of 3", flush=True)
            ray.shutdown()
    else:
        sys.exit("ray.init failed 3 times")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(TfsModels.bind(specs), name="tfs", route_prefix="/v1/models", blocking=False)
    print(f"ray serve ready on {port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
