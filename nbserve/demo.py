"""``make demo``: export a half_plus_two model of our own and serve it on 8500/8501.

The model is made here with TensorFlow (y = 0.5 * x + 2, input ``x`` float [-1]) into
``.cache/demo_models/half_plus_two`` and served until Ctrl-C, with curl lines to paste.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import Any

DEFAULT_DIR = os.path.join(".cache", "demo_models", "half_plus_two")


def build_half_plus_two(base_path: str) -> int:
    """Export version 1 of half_plus_two into ``base_path`` if absent; return the version."""
    from nbserve.exporter import export

    if os.path.isdir(os.path.join(base_path, "1")):
        return 1
    import tensorflow as tf

    module = tf.Module()
    module.a = tf.Variable(0.5)
    module.b = tf.Variable(2.0)

    def half_plus_two(x: Any) -> dict[str, Any]:
        return {"y": module.a * x + module.b}

    module.serve = tf.function(half_plus_two,
                               input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    return export(module, base_path, version=1, signatures={"serving_default": module.serve})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", default=DEFAULT_DIR)
    parser.add_argument("--rest_api_port", type=int, default=8501)
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--seconds", type=float, default=0, help="stop after N s (0: Ctrl-C)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    build_half_plus_two(args.dir)
    from nbserve.api import serve

    server = serve(args.dir, name="half_plus_two", port=args.port, rest_api_port=args.rest_api_port)
    version = server.wait_until_available("half_plus_two", timeout=120)
    url = server.rest_url
    print(f"\nnbserve is serving half_plus_two version {version} from {os.path.abspath(args.dir)}")
    print(f"  REST {url}" + (f"   gRPC {server.grpc_target}" if server.grpc_target else ""))
    print("\nTry it (in another terminal):")
    print(f"  curl -d '{{\"instances\": [1.0, 2.0, 5.0]}}' {url}/v1/models/half_plus_two:predict")
    print(f"  curl {url}/v1/models/half_plus_two")
    print(f"  curl {url}/v1/models/half_plus_two/metadata")
    print("\nCtrl-C stops it.", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait(args.seconds or None)
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
