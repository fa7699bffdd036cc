"""The in-process Predict codec: Python values in, numpy arrays out (``Server.predict``).

Pure numpy; importing it never loads TensorFlow. Errors read as gRPC's (FAILED_PRECONDITION
``Serving signature key "<k>" not found.`` for an unknown signature), since a Python caller, like a
gRPC client, names the signature by key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nbserve.core.ids import ServableId
from nbserve.errors import ServingError, invalid_argument
from nbserve.servables.predict_util import signature_not_found
from nbserve.servables.signature import Signature

__all__ = ["PythonPredictCodec", "python_inputs"]


def python_inputs(inputs: Any, signature: Signature) -> dict[str, np.ndarray]:
    """``inputs`` (a mapping alias -> array-like, or one array-like for a single-input
    signature) as arrays of the signature's dtypes; aliases the signature lacks are kept as
    given (the servable's request checks name them)."""
    if not isinstance(inputs, Mapping):
        if len(signature.inputs) != 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map")
        inputs = {next(iter(signature.inputs)): inputs}
    out = {}
    for alias, value in inputs.items():
        info = signature.inputs.get(alias)
        dtype = info.numpy_dtype if info is not None else None
        out[alias] = np.asarray(value, dtype=dtype)
    return out


class PythonPredictCodec:
    """``Server.predict``'s codec: decodes with ``python_inputs``, encodes to the output dict."""

    __slots__ = ("_inputs", "output_filter")

    def __init__(self, inputs: Any, output_filter: Sequence[str] | None = None) -> None:
        self._inputs = inputs
        self.output_filter = output_filter

    def signature_not_found(self, key: str) -> ServingError:
        return signature_not_found(key)

    def decode(self, signature: Signature) -> dict[str, np.ndarray]:
        return python_inputs(self._inputs, signature)

    def encode(self, servable_id: ServableId, signature: Signature,
               outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return outputs
