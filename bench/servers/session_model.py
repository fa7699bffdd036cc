"""The same TF1 session callable every non-nbserve server runs (the fair comparison).

``load(export_dir)`` opens a SavedModel with TensorFlow's TF1 loader and returns a function
``run(array) -> array`` for its ``serving_default`` signature (first input alias, first output
alias, sorted), made with ``Session._make_callable_from_options`` (~35 us a call, the same
entry point nbserve uses). Thread-safe (a session callable is). ``run.input_shape`` and
``run.output_shape`` are the signature's shapes (-1 for an unknown dimension). Depends on
TensorFlow only, so it runs in the peers' virtual environments too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def load(export_dir: str) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2

    tf.get_logger().setLevel("ERROR")  # the TF1 loader's deprecation notice
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
    signature = meta.signature_def["serving_default"]
    feed = signature.inputs[sorted(signature.inputs)[0]].name
    fetch = signature.outputs[sorted(signature.outputs)[0]].name
    options = config_pb2.CallableOptions(feed=[feed], fetch=[fetch])
    call: Any = session._make_callable_from_options(options)

    def run(array: np.ndarray) -> np.ndarray:
        return call(array)[0]

    def dims(info: Any) -> list[int]:
        return [d.size for d in info.tensor_shape.dim]

    run.session = session  # type: ignore[attr-defined]  # keep it alive
    run.input_shape = dims(signature.inputs[sorted(signature.inputs)[0]])  # type: ignore[attr-defined]
    run.output_shape = dims(signature.outputs[sorted(signature.outputs)[0]])  # type: ignore[attr-defined]
    return run


def parse_models(specs: list[str]) -> dict[str, str]:
    """``["name=path", ...]`` -> ``{name: path}`` (the servers' ``--model`` arguments)."""
    out = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        out[name] = path
    return out
