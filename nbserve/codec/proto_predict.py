"""The gRPC Predict codec: a ``tensorflow.serving.PredictRequest`` in, a ``PredictResponse`` out.

Inputs are decoded with ``nbserve.codec.tensors.from_tensor_proto`` (TF's ``Tensor::FromProto``
rules; a malformed tensor is ``tensor parsing error: <alias>``); the request checks (aliases,
dtypes, output filter) are the servable's (``predict_util``), as in TF Serving's ``RunPredict``.
An unknown signature is FAILED_PRECONDITION ``Serving signature key "<k>" not found.``.

The response is written as wire bytes (``response_bytes``), with no message object: the bytes
protobuf serializes from the message, up to the order of the ``outputs`` map's entries, which
protobuf leaves unset (``tests/codec/test_proto_predict.py`` checks). Importing this module loads
neither TensorFlow nor TF Serving's protos.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nbserve.codec.tensors import from_tensor_proto, tensor_parts
from nbserve.codec.wire import field, varint
from nbserve.core.ids import ServableId
from nbserve.errors import ServingError
from nbserve.servables.predict_util import signature_not_found
from nbserve.servables.signature import Signature

__all__ = ["ProtoPredictCodec", "fill_model_spec", "proto_inputs", "response_bytes"]


def fill_model_spec(target: Any, name: str, version: int, signature_name: str | None) -> None:
    """A response's ``model_spec``: the model name, the version that answered and (unless None)
    the resolved signature name."""
    target.name = name
    target.version.value = version
    if signature_name is not None:
        target.signature_name = signature_name


def proto_inputs(request: Any) -> dict[str, np.ndarray]:
    """A PredictRequest's (or PredictLog's request's) inputs as arrays, keyed by alias."""
    inputs = request.inputs  # by key: a protobuf map's items() is a slow generic view
    return {alias: from_tensor_proto(inputs[alias], alias=alias) for alias in inputs}


def response_bytes(servable_id: ServableId, signature_key: str,
                   outputs: dict[str, np.ndarray], tensor_content: bool = False) -> bytes:
    """A serialized ``PredictResponse``: ``outputs`` (field 1, a map of TensorProto by alias, in
    the dict's order) and ``model_spec`` (field 2: name, version, signature name), as
    ``fill_model_spec`` and ``fill_tensor_proto`` would fill the message. Raises ServingError
    (INVALID_ARGUMENT) for an output a TensorProto cannot hold."""
    parts: list[Any] = []
    for alias, array in outputs.items():
        tensor = tensor_parts(array, tensor_content)
        size = sum(map(len, tensor))
        head = field(1, alias.encode("utf-8")) + b"\x12" + varint(size)  # key 1, value 2
        parts += (b"\x0a", varint(len(head) + size), head, *tensor)
    parts.append(_model_spec(servable_id.name, servable_id.version, signature_key))
    return b"".join(parts)


def _model_spec(name: str, version: int, signature_key: str) -> bytes:
    """``model_spec`` (field 2) of a response: name 1, version 2 (an Int64Value, present even for
    0), signature_name 3 (left out when empty, as proto3 does)."""
    spec = field(1, name.encode("utf-8")) + field(2, b"\x08" + varint(version) if version else b"")
    if signature_key:
        spec += field(3, signature_key.encode("utf-8"))
    return field(2, spec)


class ProtoPredictCodec:
    """One gRPC PredictRequest; ``encode`` answers the serialized ``PredictResponse``.
    ``tensor_content``: numeric outputs as ``tensor_content`` bytes (TF Serving's
    ``--enable_serialization_as_tensor_content``) instead of the typed fields."""

    __slots__ = ("_request", "_tensor_content")

    def __init__(self, request: Any, tensor_content: bool = False) -> None:
        self._request = request
        self._tensor_content = tensor_content

    @property
    def output_filter(self) -> Sequence[str] | None:
        aliases = self._request.output_filter
        return list(aliases) if aliases else None

    def signature_not_found(self, key: str) -> ServingError:
        return signature_not_found(key)

    def decode(self, signature: Signature) -> dict[str, np.ndarray]:
        return proto_inputs(self._request)

    def encode(self, servable_id: ServableId, signature: Signature,
               outputs: dict[str, np.ndarray]) -> bytes:
        return response_bytes(servable_id, signature.key, outputs, self._tensor_content)
