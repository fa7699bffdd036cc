"""Request validation shared by every kind of servable, in TF Serving's words.

The Python twin of TF Serving's ``predict_util.cc`` checks plus the dtype check TensorFlow's
session makes on each fed argument. Every ``Servable`` (SavedModel, TFLite, test fakes) calls
these, so a client sees the same texts whatever kind of servable answers. Pure numpy: importing
this module never loads TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nbserve.errors import ServingError, StatusCode
from nbserve.servables.signature import Signature

# numpy dtype -> the TensorFlow DataType name an array of it becomes when fed (types.proto).
_NUMPY_TO_DT: Mapping[np.dtype[Any], str] = {
    np.dtype(np.float32): "DT_FLOAT", np.dtype(np.float64): "DT_DOUBLE",
    np.dtype(np.int32): "DT_INT32", np.dtype(np.uint8): "DT_UINT8",
    np.dtype(np.int16): "DT_INT16", np.dtype(np.int8): "DT_INT8",
    np.dtype(np.int64): "DT_INT64", np.dtype(np.bool_): "DT_BOOL",
    np.dtype(np.uint16): "DT_UINT16", np.dtype(np.float16): "DT_HALF",
    np.dtype(np.uint32): "DT_UINT32", np.dtype(np.uint64): "DT_UINT64",
    np.dtype(np.complex64): "DT_COMPLEX64", np.dtype(np.complex128): "DT_COMPLEX128",
}


def datatype_string(dt_name: str) -> str:
    """TensorFlow's ``DataTypeString``: ``DT_FLOAT`` -> ``float``."""
    return dt_name[3:].lower() if dt_name.startswith("DT_") else dt_name


def numpy_dt_name(dtype: np.dtype[Any]) -> str:
    """The TensorFlow DataType name a numpy array of ``dtype`` becomes when fed
    (``DT_STRING`` for object, bytes and str arrays; ``numpy <dtype>`` when there is none)."""
    if dtype.kind in "OSU":
        return "DT_STRING"
    name = _NUMPY_TO_DT.get(dtype)
    if name is None and dtype.name == "bfloat16":  # ml_dtypes' bfloat16, as TensorFlow feeds it
        name = "DT_BFLOAT16"
    return name or f"numpy {dtype}"


DEFAULT_SIGNATURE = "serving_default"


def signature_not_found(key: str) -> ServingError:
    """FAILED_PRECONDITION ``Serving signature key "<key>" not found.`` (``predict_util.cc``;
    the gRPC and Python predict text. REST's own text lives in its codec.)"""
    return ServingError(StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.')


def find_signature(signatures: Mapping[str, Signature], key: str) -> Signature:
    """``signatures[key or "serving_default"]``, else ``signature_not_found``."""
    key = key or DEFAULT_SIGNATURE
    signature = signatures.get(key)
    if signature is None:
        raise signature_not_found(key)
    return signature


def check_inputs(signature: Signature, inputs: Mapping[str, Any]) -> None:
    """The request names exactly the signature's inputs, else INVALID_ARGUMENT in TF Serving's
    words (``input size does not match signature`` / ``input tensor alias not found``)."""
    if len(inputs) != len(signature.inputs):
        sent = sorted(inputs)
        expected = sorted(signature.inputs)
        extra = sorted(set(sent) - set(expected))
        missing = sorted(set(expected) - set(sent))
        raise ServingError(
            StatusCode.INVALID_ARGUMENT,
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sent)}}}) != len({{{','.join(expected)}}}). "
            f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}.")
    for alias in sorted(inputs):
        if alias not in signature.inputs:
            raise ServingError(
                StatusCode.INVALID_ARGUMENT,
                f"input tensor alias not found in signature: {alias}. Inputs expected to be in "
                f"the set {{{','.join(sorted(signature.inputs))}}}.")


def output_aliases(signature: Signature, output_filter: Sequence[str] | None) -> tuple[str, ...]:
    """The outputs to fetch: every output without a filter, else the filter's aliases in its
    order; an unknown or repeated alias is INVALID_ARGUMENT in TF Serving's words."""
    if not output_filter:
        return tuple(signature.outputs)
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise ServingError(
                StatusCode.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                f"the set {{{','.join(sorted(signature.outputs))}}}.")
        if alias in seen:
            raise ServingError(StatusCode.INVALID_ARGUMENT,
                               f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return tuple(output_filter)


def as_feed(value: Any, expected: str, index: int) -> np.ndarray:
    """``value`` as an array fed as DataType ``expected`` (``DT_FLOAT``...) without a cast, or
    INVALID_ARGUMENT ``Expects arg[<index>] to be <dtype> but <dtype> is provided`` as
    TensorFlow words it. ``str`` arrays become object arrays of UTF-8 bytes."""
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    given = numpy_dt_name(array.dtype)
    if given != expected:
        raise ServingError(
            StatusCode.INVALID_ARGUMENT,
            f"Expects arg[{index}] to be {datatype_string(expected)} but "
            f"{datatype_string(given)} is provided")
    if array.dtype.kind == "U":
        array = np.char.encode(array, "utf-8").astype(object)
    return array
