"""The gRPC Predict codec: a ``tensorflow.serving.PredictRequest`` in, a ``PredictResponse`` out.

Inputs are decoded with ``nbserve.codec.tensors.from_tensor_proto`` (TF's ``Tensor::FromProto``
rules; a malformed tensor is ``tensor parsing error: <alias>``); the request checks (aliases,
dtypes, output filter) are the servable's (``predict_util``), as in TF Serving's ``RunPredict``.
An unknown signature is FAILED_PRECONDITION ``Serving signature key "<k>" not found.``.

Importing this module imports TensorFlow's and TF Serving's generated protos (which load
TensorFlow): only the gRPC transport and warmup use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tensorflow_serving.apis import predict_pb2

from nbserve.codec.tensors import from_tensor_proto, to_tensor_proto
from nbserve.core.ids import ServableId
from nbserve.errors import ServingError
from nbserve.servables.predict_util import signature_not_found
from nbserve.servables.signature import Signature

__all__ = ["ProtoPredictCodec", "fill_model_spec", "proto_inputs"]


def fill_model_spec(target: Any, name: str, version: int, signature_name: str | None) -> None:
    """A response's ``model_spec``: the model name, the version that answered and (unless None)
    the resolved signature name."""
    target.name = name
    target.version.value = version
    if signature_name is not None:
        target.signature_name = signature_name


def proto_inputs(request: Any) -> dict[str, np.ndarray]:
    """A PredictRequest's (or PredictLog's request's) inputs as arrays, keyed by alias."""
    return {alias: from_tensor_proto(proto, alias=alias) for alias, proto in request.inputs.items()}


class ProtoPredictCodec:
    """One gRPC PredictRequest. ``tensor_content``: numeric outputs as ``tensor_content`` bytes
    (TF Serving's ``--enable_serialization_as_tensor_content``) instead of the typed fields."""

    __slots__ = ("_request", "_tensor_content", "output_filter")

    def __init__(self, request: Any, tensor_content: bool = False) -> None:
        self._request = request
        self._tensor_content = tensor_content
        self.output_filter: Sequence[str] | None = list(request.output_filter) or None

    def signature_not_found(self, key: str) -> ServingError:
        return signature_not_found(key)

    def decode(self, signature: Signature) -> dict[str, np.ndarray]:
        return proto_inputs(self._request)

    def encode(self, servable_id: ServableId, signature: Signature,
               outputs: dict[str, np.ndarray]) -> Any:
        response = predict_pb2.PredictResponse()
        fill_model_spec(response.model_spec, servable_id.name, servable_id.version, signature.key)
        for alias, array in outputs.items():
            response.outputs[alias].CopyFrom(to_tensor_proto(array, self._tensor_content))
        return response
