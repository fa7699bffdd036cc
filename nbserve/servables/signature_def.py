"""``Signature`` -> TF Serving's ``SignatureDefMap`` proto, for GetModelMetadata (servables that
have no SignatureDefs of their own: TFLite models, ``nbserve.testing``'s fakes). Kept apart from
``signature`` so the codecs and the service, which use ``Signature``, never reach TensorFlow."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbserve.servables.signature import DT_ENUM, Signature


def signature_def_map(signatures: Mapping[str, Signature]) -> Any:
    """``signatures`` as a ``tensorflow.serving.SignatureDefMap`` (GetModelMetadata's payload).
    Imports TF Serving's protos (and so TensorFlow) only when called."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    result = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in signatures.items():
        proto = result.signature_def[key]
        proto.method_name = signature.method_name
        for infos, target in ((signature.inputs, proto.inputs),
                              (signature.outputs, proto.outputs)):
            for alias, info in infos.items():
                entry = target[alias]
                entry.name = info.name
                entry.dtype = DT_ENUM.get(info.dtype, 0)
                if info.shape is None:
                    entry.tensor_shape.unknown_rank = True
                else:
                    for size in info.shape:
                        entry.tensor_shape.dim.add().size = size
    return result
