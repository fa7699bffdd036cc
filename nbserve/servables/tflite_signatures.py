"""The signatures of a TFLite model, by TF Serving's rules (``tflite_session.cc``).

1. SignatureDefs stored in the flatbuffer's ``signature_defs_metadata`` (a flexbuffer map of key ->
   serialized SignatureDef; what TF Serving's ``tflite::GetSignatureDefMap`` reads, as in the
   ``..._tflite_with_sigdef`` test model), each TensorInfo name fixed to an interpreter tensor (the
   name itself, else its legacy name without the ``:0`` suffix);
2. else the flatbuffer's own signature table (``interpreter.get_signature_list()``, written by
   ``TFLiteConverter.from_saved_model``; nbserve's addition, so a converted SavedModel keeps its
   keys and aliases): one signature per key, run through its signature runner;
3. else one ``serving_default`` (method ``tensorflow/serving/predict``) built from the
   interpreter's input and output tensors: alias = the tensor name less any ``:N`` suffix,
   TensorInfo name = the tensor name, shape = the tensor's current dims.

Used by ``nbserve.servables.tflite`` only; takes an interpreter built there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nbserve.errors import ServingError, StatusCode
from nbserve.servables.predict_util import numpy_dt_name
from nbserve.servables.signature import Signature, TensorInfo
from nbserve.servables.signature_def import signature_def_map

SIGNATURE_DEFS_METADATA = "signature_defs_metadata"
PREDICT_METHOD = "tensorflow/serving/predict"
DEFAULT_SIGNATURE = "serving_default"


# --------------------------------------------------------------------------------------------
# Signatures


@dataclass(frozen=True)
class Binding:
    """How one signature runs: tensor indices of the primary subgraph (``runner_key`` None), or
    the flatbuffer signature runner ``runner_key``. Maps alias -> tensor index / runner name."""

    inputs: Mapping[str, int]
    outputs: Mapping[str, int]
    feed_order: tuple[str, ...]  # input aliases by tensor name (the arg[i] numbering)
    runner_key: str | None = None


@dataclass
class Described:
    """Everything ``describe`` learns from one interpreter."""

    signatures: dict[str, Signature] = field(default_factory=dict)
    bindings: dict[str, Binding] = field(default_factory=dict)
    source: str = "tensors"  # "metadata", "signature_runners" or "tensors"


def legacy_name(tensor_name: str) -> str:
    """A TF tensor name without its ``:N`` suffix (early TFLite converters stripped it)."""
    return tensor_name.split(":", 1)[0]


def _dt_name(dtype: Any) -> str:
    name = numpy_dt_name(np.dtype(dtype))
    return name if name.startswith("DT_") else "DT_INVALID"


def _tensor_info(detail: Mapping[str, Any], *, use_signature_shape: bool = False) -> TensorInfo:
    shape = detail.get("shape_signature") if use_signature_shape else None
    if shape is None or (len(shape) == 0 and len(detail["shape"]) != 0):
        shape = detail["shape"]
    return TensorInfo(name=str(detail["name"]), dtype=_dt_name(detail["dtype"]),
                      shape=tuple(int(d) for d in shape))


def metadata_signature_defs(model: bytes) -> dict[str, Any]:
    """The SignatureDef protos stored in the flatbuffer's ``signature_defs_metadata`` (a
    flexbuffer map of key -> serialized SignatureDef), by key; empty when there is none.
    Raises ServingError(INVALID_ARGUMENT) when the entry cannot be parsed (TF Serving's words)."""
    from flatbuffers import flexbuffers
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow.lite.python import schema_py_generated as schema

    try:
        root = schema.Model.GetRootAsModel(model, 0)
        for i in range(root.MetadataLength()):
            entry = root.Metadata(i)
            if entry is None or entry.Name() != SIGNATURE_DEFS_METADATA.encode():
                continue
            buffer = root.Buffers(entry.Buffer())
            data = bytes(buffer.DataAsNumpy()) if buffer is not None else b""
            mapping = flexbuffers.GetRoot(bytearray(data)).AsMap
            result: dict[str, Any] = {}
            for key, value in zip(mapping.Keys, mapping.Values, strict=True):
                signature_def = meta_graph_pb2.SignatureDef()
                signature_def.ParseFromString(
                    bytes(value.AsBlob if value.IsBlob else value.AsStringBytes))
                result[key.AsKey] = signature_def
            return result
    except ServingError:
        raise
    except Exception as exc:  # noqa: BLE001 - flatbuffer/flexbuffer/protobuf parse errors
        raise ServingError(StatusCode.INVALID_ARGUMENT,
                           f"Invalid SignatureDefs found in TfLite model: {exc}") from None
    return {}


def _fix_name(name: str, known: Mapping[str, int]) -> str:
    """TF Serving's ``FixTfLiteTensorName``: the name if a tensor has it, else its legacy name."""
    if name in known:
        return name
    legacy = legacy_name(name)
    if legacy in known:
        return legacy
    raise ServingError(StatusCode.INTERNAL, f"Unknown tensor '{name}'.")


def _feed_order(inputs: Mapping[str, TensorInfo]) -> tuple[str, ...]:
    return tuple(sorted(inputs, key=lambda alias: (inputs[alias].name, alias)))


def _from_metadata(defs: Mapping[str, Any], interpreter: Any) -> Described:
    """Signatures from stored SignatureDefs, bound to the primary subgraph's tensors."""
    ins = {str(d["name"]): d for d in interpreter.get_input_details()}
    outs = {str(d["name"]): d for d in interpreter.get_output_details()}
    in_index = {name: int(d["index"]) for name, d in ins.items()}
    out_index = {name: int(d["index"]) for name, d in outs.items()}
    described = Described(source="metadata")
    for key in sorted(defs):
        proto = defs[key]
        inputs: dict[str, TensorInfo] = {}
        outputs: dict[str, TensorInfo] = {}
        bound_in: dict[str, int] = {}
        bound_out: dict[str, int] = {}
        for aliases, side, index, infos, bound, word in (
                (proto.inputs, ins, in_index, inputs, bound_in, "input"),
                (proto.outputs, outs, out_index, outputs, bound_out, "output")):
            for alias in sorted(aliases):
                info = aliases[alias]
                try:
                    name = _fix_name(info.name, index)
                except ServingError as err:
                    raise ServingError(err.code, f"Signature {word} {alias} references an "
                                       f"unknown tensor: {err.message}") from None
                shape = None
                if info.HasField("tensor_shape") and not info.tensor_shape.unknown_rank:
                    shape = tuple(int(d.size) for d in info.tensor_shape.dim)
                infos[alias] = TensorInfo(name=name, dtype=_dt_name(side[name]["dtype"]),
                                          shape=shape)
                bound[alias] = index[name]
        signature = Signature(key=key, method_name=proto.method_name or PREDICT_METHOD,
                              inputs=inputs, outputs=outputs)
        described.signatures[key] = signature
        described.bindings[key] = Binding(bound_in, bound_out, _feed_order(inputs))
    return described


def _from_signature_runners(interpreter: Any) -> Described:
    """Signatures from the flatbuffer's signature table, each run by its signature runner."""
    described = Described(source="signature_runners")
    for key in sorted(interpreter.get_signature_list()):
        runner = interpreter.get_signature_runner(key)
        in_details = runner.get_input_details()
        out_details = runner.get_output_details()
        inputs = {alias: _tensor_info(in_details[alias], use_signature_shape=True)
                  for alias in sorted(in_details)}
        outputs = {alias: _tensor_info(out_details[alias], use_signature_shape=True)
                   for alias in sorted(out_details)}
        described.signatures[key] = Signature(key=key, method_name=PREDICT_METHOD,
                                              inputs=inputs, outputs=outputs)
        described.bindings[key] = Binding(
            {a: int(d["index"]) for a, d in in_details.items()},
            {a: int(d["index"]) for a, d in out_details.items()},
            _feed_order(inputs), runner_key=key)
    return described


def _from_tensors(interpreter: Any) -> Described:
    """TF Serving's generated ``serving_default``: aliases are the tensor names less ``:N``."""
    inputs: dict[str, TensorInfo] = {}
    outputs: dict[str, TensorInfo] = {}
    bound_in: dict[str, int] = {}
    bound_out: dict[str, int] = {}
    for details, infos, bound, word in ((interpreter.get_input_details(), inputs, bound_in,
                                         "Input"),
                                        (interpreter.get_output_details(), outputs, bound_out,
                                         "Output")):
        for detail in sorted(details, key=lambda d: str(d["name"])):
            if not detail["name"]:
                raise ServingError(StatusCode.INTERNAL,
                                   f"{word} name missing for tensor index: {detail['index']}")
            alias = legacy_name(str(detail["name"]))
            if alias in infos:
                raise ServingError(StatusCode.ALREADY_EXISTS,
                                   f"{word} tensor name: {detail['name']} has multiple indices")
            infos[alias] = _tensor_info(detail)
            bound[alias] = int(detail["index"])
    signature = Signature(key=DEFAULT_SIGNATURE, method_name=PREDICT_METHOD,
                          inputs=inputs, outputs=outputs)
    return Described({DEFAULT_SIGNATURE: signature},
                      {DEFAULT_SIGNATURE: Binding(bound_in, bound_out, _feed_order(inputs))},
                      source="tensors")


def describe(model: bytes, interpreter: Any) -> Described:
    """The model's signatures and how to run each (the rules in the module doc, in order)."""
    defs = metadata_signature_defs(model)
    if defs:
        return _from_metadata(defs, interpreter)
    if interpreter.get_signature_list():
        return _from_signature_runners(interpreter)
    return _from_tensors(interpreter)


def with_signature_defs_metadata(model: bytes, signatures: Mapping[str, Signature]) -> bytes:
    """``model`` with ``signatures`` stored as its ``signature_defs_metadata`` (replacing any), the
    way TFLite's ``SetSignatureDefMap`` writes it, so TF Serving's TFLite session reads the same
    keys and aliases. TensorInfo names must be the primary subgraph's tensor names."""
    from flatbuffers import flexbuffers
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    defs = signature_def_map(signatures).signature_def
    builder = flexbuffers.Builder()
    with builder.Map():
        for key in sorted(defs):
            builder.Key(key)
            # A flexbuffer STRING holding the serialized proto (bytes, so not Builder.String).
            builder._WriteBlob(defs[key].SerializeToString(), append_zero=True,
                               type_=flexbuffers.Type.STRING)
    payload = bytes(builder.Finish())
    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    buffer = schema.BufferT()
    buffer.data = list(payload)
    tree.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = SIGNATURE_DEFS_METADATA
    entry.buffer = len(tree.buffers) - 1
    tree.metadata = [m for m in (tree.metadata or [])
                     if m.name not in (SIGNATURE_DEFS_METADATA, SIGNATURE_DEFS_METADATA.encode())]
    tree.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))
