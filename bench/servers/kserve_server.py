"""KServe's Python model server (v1 protocol = TF Serving's REST) running the session callable.

Runs in ``.cache/bench-venvs/kserve``. ``BENCH_PORT=P python kserve_server.py NAME=VERSION_DIR ...``
(KServe parses ``sys.argv`` itself at import time, so the harness passes its own settings through
the environment and positional ``name=path`` words). One uvicorn worker, gRPC off, latency logging
and access logs off (the peer's best configuration for throughput).
"""

from __future__ import annotations

import logging
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from session_model import load, parse_models

MODEL_SPECS = [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]
sys.argv = sys.argv[:1]

import kserve  # noqa: E402


class SessionModel(kserve.Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.run = None
        self.load()

    def load(self) -> bool:
        self.run = load(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        if isinstance(payload, (bytes, bytearray)):
            import json

            payload = json.loads(payload)
        inputs = np.asarray(payload["instances"], dtype=np.float32)
        return {"predictions": self.run(inputs).tolist()}


def main() -> None:
    models = [SessionModel(name, path) for name, path in parse_models(MODEL_SPECS).items()]
    server = kserve.ModelServer(http_port=int(os.environ["BENCH_PORT"]), workers=1,
                                enable_grpc=False, enable_latency_logging=False)
    for name in ("uvicorn.access", "kserve.trace"):  # after ModelServer configured logging
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start(models)


if __name__ == "__main__":
    main()
