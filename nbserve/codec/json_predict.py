"""The REST Predict codec: a request body in, TF Serving's JSON response bytes out (spec §1.3).

TF Serving's order of checks is kept here, split across the service's calls:

1. ``JsonPredictCodec.from_body(body)``, before any model lookup: JSON parse, the body is an
   object, ``signature_name`` is a string (§1.3 steps 2-3).
2. the service resolves the model (404/400), then the signature: an unknown one is
   ``signature_not_found``: 400 ``Serving signature name: "<s>" not found in signature def``
   (TF Serving's REST handler looks the signature up itself, before its predictor).
3. ``decode(signature)``: the signature has inputs, the ``instances``/``inputs`` key checks, the
   tensors (steps 6-7).
4. ``encode(...)``: the outputs as ``{"predictions": ...}`` or ``{"outputs": ...}`` (step 9).

Pure: no I/O, no TensorFlow. One object per request (it remembers the request's format and, after
``encode``, the version that answered).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from nbserve.codec.dense_reader import DenseBody, read_dense_body
from nbserve.codec.json_tensor import (
    check_input_map,
    check_object_and_signature,
    decode_tensors,
    encode_predict_response,
    may_hold_bools,
    parse_json,
    predict_payload,
)
from nbserve.core.ids import ServableId
from nbserve.errors import ServingError, invalid_argument
from nbserve.servables.signature import Signature

__all__ = ["DENSE_MIN_BYTES", "JsonPredictCodec", "dense_tensors", "rest_signature_not_found"]

DENSE_MIN_BYTES = 2048  # shorter bodies parse as fast the general way (measured: bench/)
_DENSE_DTYPES = {"DT_FLOAT": np.float32, "DT_DOUBLE": np.float64}


def rest_signature_not_found(key: str) -> ServingError:
    """TF Serving's REST text for an unknown signature (INVALID_ARGUMENT, HTTP 400)."""
    return invalid_argument(f'Serving signature name: "{key}" not found in signature def')


def dense_tensors(dense: DenseBody, signature: Signature) -> dict[str, np.ndarray] | None:
    """The signature's one input from a dense body, as ``decode_tensors`` would give it; None
    unless the signature has exactly one input, of a float dtype (the general path then decides,
    errors included)."""
    if len(signature.inputs) != 1:
        return None
    alias, info = next(iter(signature.inputs.items()))
    numpy_type = _DENSE_DTYPES.get(info.dtype)
    if numpy_type is None:
        return None
    with np.errstate(over="ignore"):  # rapidjson's (float)GetDouble(): past float's range, inf
        return {alias: dense.values.astype(numpy_type)}


class JsonPredictCodec:
    """One REST Predict request body (see the module doc for the order of its checks).

    Attributes: ``signature_name`` (the body's, ``serving_default`` when absent or empty),
    ``servable_id`` (the version that answered, set by ``encode``; None before).
    """

    __slots__ = ("_dense", "_doc", "_explicit", "_maybe_bools", "_raw", "format", "servable_id",
                 "signature_name")

    output_filter: None = None  # REST has no output filter

    def __init__(self, doc: dict[str, Any] | None, signature_name: str, explicit: bool,
                 maybe_bools: bool = True, dense: tuple[DenseBody, bytes] | None = None) -> None:
        self._doc = doc
        self.signature_name = signature_name
        self._explicit = explicit
        self._maybe_bools = maybe_bools
        self._dense: DenseBody | None = dense[0] if dense is not None else None
        self._raw = dense[1] if dense is not None else b""
        self.format: Literal["row", "columnar"] = "row"
        self.servable_id: ServableId | None = None

    @classmethod
    def from_body(cls, body: bytes | bytearray | memoryview | str) -> JsonPredictCodec:
        """Parse ``body`` (§1.3 steps 2-3). Raises ServingError(INVALID_ARGUMENT).

        A body of ``DENSE_MIN_BYTES`` or more that is one dense numeric tensor is read by
        ``dense_reader`` (no Python list per row); ``decode`` falls back to the general parse
        wherever that tensor does not fit the signature as is."""
        if type(body) is bytes and len(body) >= DENSE_MIN_BYTES:
            dense = read_dense_body(body)
            if dense is not None:
                return cls(None, dense.signature_name, dense.explicit_signature,
                           dense=(dense, body))
        doc = parse_json(body)
        name, explicit = check_object_and_signature(doc)
        return cls(doc, name, explicit,
                   may_hold_bools(body) if isinstance(body, (bytes, bytearray)) else True)

    def signature_not_found(self, key: str) -> ServingError:
        return rest_signature_not_found(key)

    def decode(self, signature: Signature) -> dict[str, np.ndarray]:
        check_input_map(signature, self.signature_name, self._explicit)
        if self._dense is not None:
            tensors = dense_tensors(self._dense, signature)
            if tensors is not None:
                self.format = self._dense.format
                return tensors
            self._doc, self._maybe_bools = parse_json(self._raw), may_hold_bools(self._raw)
        assert self._doc is not None
        self.format, data = predict_payload(self._doc)
        return decode_tensors(self.format, data, signature, self._maybe_bools)

    def encode(self, servable_id: ServableId, signature: Signature,
               outputs: dict[str, np.ndarray]) -> bytes:
        self.servable_id = servable_id
        return encode_predict_response(outputs, self.format, signature)
