"""TF Serving's REST JSON for Predict requests: body checks and JSON values -> tensors.

Spec: ``tfserving.md`` §1.3, §1.6, §1.9 (``tensorflow_serving/util/json_tensor.cc``).
Every error is ``ServingError`` with TF Serving's text; the code is INVALID_ARGUMENT unless noted.

The request side, in TF Serving's order (``nbserve.codec.json_predict.JsonPredictCodec`` drives
it around the service's model and signature lookups):

1. ``rapidjson.parse_json(body)`` then ``json_body.check_object_and_signature(doc)``: §1.3
   steps 2-3.
2. ``json_body.check_input_map(signature, ...)``: the signature has inputs (step 6).
3. ``json_body.predict_payload(doc)``: the ``instances``/``inputs`` key checks.
4. ``decode_tensors(format, data, signature)`` (this module): step 7, the tensors as numpy
   arrays. Numeric tensors take numpy's bulk conversion when that provably gives the same
   result, else the exact element-wise validator runs (and produces TF Serving's error).

``json_body.read_predict_body`` + ``decode_inputs`` do 1-4 at once. The response side lives in
``json_output``, the float format in ``float_format``, the reader in ``rapidjson``; their public
functions are re-exported here.

Everything here is a pure function of its arguments: thread-safe, no I/O, no TensorFlow.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from nbserve.codec.float_format import float_texts, format_float
from nbserve.codec.json_body import (
    PredictBody,
    b64_decode,
    check_input_map,
    check_object_and_signature,
    is_b64_object,
    may_hold_bools,
    predict_payload,
    read_predict_body,
)
from nbserve.codec.json_output import encode_predict_response, leaf_texts, nest_texts
from nbserve.codec.rapidjson import (
    INT64_END,
    INT64_MIN,
    UINT64_END,
    as_double,
    json_type_name,
    json_value_to_string,
    parse_json,
    utf8_bytes,
)
from nbserve.errors import ServingError, StatusCode, invalid_argument
from nbserve.servables.dtypes import datatype_string, dtype_name
from nbserve.servables.signature import Signature

__all__ = [
    "PredictBody",
    "b64_decode",
    "check_input_map",
    "check_object_and_signature",
    "data_type_string",
    "decode_inputs",
    "decode_tensors",
    "encode_predict_response",
    "float_texts",
    "format_float",
    "is_b64_object",
    "json_type_name",
    "json_value_to_string",
    "leaf_texts",
    "may_hold_bools",
    "nest_texts",
    "parse_json",
    "predict_payload",
    "read_predict_body",
    "utf8_bytes",
]

_INT32_MIN = -(1 << 31)
_INT32_END = 1 << 31
_UINT32_END = 1 << 32


def data_type_string(dtype: Any) -> str:
    """TF's ``DataTypeString`` of ``DT_FLOAT``, ``1`` or ``float``: ``float``."""
    return datatype_string(dtype_name(dtype))


# --------------------------------------------------------------------------------------------
# JSON values -> tensors.
# --------------------------------------------------------------------------------------------


def _type_error(value: Any, dtype: str) -> ServingError:
    return invalid_argument(f"JSON Value: {json_value_to_string(value)} Type: "
                            f"{json_type_name(value)} is not of expected type: {dtype}")


def _b64_object_bytes(value: Any) -> bytes:
    if not is_b64_object(value):
        raise invalid_argument(f"JSON Value: {json_value_to_string(value)} "
                               "not formatted correctly for base64 data")
    decoded = b64_decode(value["b64"])
    if decoded is None:
        raise invalid_argument("Unable to base64 decode")
    return decoded


def _ranged_int(low: int, end: int, dtype: str) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if type(value) is int and low <= value < end:
            return value
        raise _type_error(value, dtype)
    return convert


@dataclass(frozen=True)
class _Dtype:
    """How JSON scalars of one signature dtype are checked and stacked."""

    enum_name: str
    name: str
    numpy: Any  # None: conversion unimplemented
    convert: Callable[[Any], Any]
    stack: Callable[[list[Any]], np.ndarray]


def _stack_as(numpy_type: Any, via: Any = None) -> Callable[[list[Any]], np.ndarray]:
    def stack(values: list[Any]) -> np.ndarray:
        with np.errstate(over="ignore"):
            if via is None:
                return np.array(values, dtype=numpy_type)
            return np.array(values, dtype=via).astype(numpy_type)
    return stack


def _stack_strings(values: list[Any]) -> np.ndarray:
    result = np.empty(len(values), dtype=object)
    result[:] = values
    return result


@functools.lru_cache(maxsize=64)  # pure per dtype; building the converters costs ~10 us
def _make_dtype(dtype: Any) -> _Dtype:
    enum_name = dtype_name(dtype)
    name = data_type_string(enum_name)

    def floating(value: Any) -> float:
        kind = type(value)
        if kind is float:
            return cast(float, value)
        if kind is int:
            return as_double(value)
        raise _type_error(value, name)

    def boolean(value: Any) -> bool:
        if type(value) is bool:
            return value
        raise _type_error(value, name)

    def string(value: Any) -> bytes:
        if type(value) is str:
            return utf8_bytes(value)
        raise _type_error(value, name)

    def unimplemented(value: Any) -> Any:
        raise ServingError(StatusCode.UNIMPLEMENTED, f"Conversion of JSON Value: "
                           f"{json_value_to_string(value)} to type: {name}")

    table: dict[str, tuple[Any, Callable[[Any], Any], Callable[[list[Any]], np.ndarray]]] = {
        "DT_FLOAT": (np.float32, floating, _stack_as(np.float32, np.float64)),
        "DT_DOUBLE": (np.float64, floating, _stack_as(np.float64)),
        "DT_INT32": (np.int32, _ranged_int(_INT32_MIN, _INT32_END, name), _stack_as(np.int32)),
        "DT_INT16": (np.int16, _ranged_int(_INT32_MIN, _INT32_END, name),
                     _stack_as(np.int16, np.int64)),
        "DT_INT8": (np.int8, _ranged_int(_INT32_MIN, _INT32_END, name),
                    _stack_as(np.int8, np.int64)),
        "DT_UINT8": (np.uint8, _ranged_int(_INT32_MIN, _INT32_END, name),
                     _stack_as(np.uint8, np.int64)),
        "DT_INT64": (np.int64, _ranged_int(INT64_MIN, INT64_END, name), _stack_as(np.int64)),
        "DT_UINT32": (np.uint32, _ranged_int(0, _UINT32_END, name), _stack_as(np.uint32)),
        "DT_UINT64": (np.uint64, _ranged_int(0, UINT64_END, name), _stack_as(np.uint64)),
        "DT_BOOL": (np.bool_, boolean, _stack_as(np.bool_)),
        "DT_STRING": (np.object_, string, _stack_strings),
    }
    if enum_name in table:
        numpy_type, convert, stack = table[enum_name]
        return _Dtype(enum_name, name, numpy_type, convert, stack)
    return _Dtype(enum_name, name, None, unimplemented, _stack_unimplemented(name))


def _stack_unimplemented(name: str) -> Callable[[list[Any]], np.ndarray]:
    def stack(values: list[Any]) -> np.ndarray:  # only reached with zero values
        raise ServingError(StatusCode.UNIMPLEMENTED,
                           f"Conversion of JSON Value: [] to type: {name}")
    return stack


def _dense_shape(value: Any) -> list[int]:
    """GetDenseTensorShape: the nested-list shape read along the first element of each level."""
    shape = []
    while type(value) is list:
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value: Any, level: int, shape: list[int], dtype: _Dtype, out: list[Any]) -> None:
    """FillTensorProto: checks levels/sizes and converts scalars, depth first, into ``out``."""
    rank = len(shape)
    if type(value) is not list:
        if level != rank:
            raise invalid_argument(
                f"JSON Value: {json_value_to_string(value)} found at incorrect level: "
                f"{level + 1} in the JSON DOM. Expected at level: {rank}")
        out.append(_scalar(value, dtype))
        return
    if level >= rank:
        raise invalid_argument(
            f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}")
    if level + 1 == rank:
        convert = dtype.convert
        for element in value:
            kind = type(element)
            if kind is list:
                raise invalid_argument(
                    f"Encountered list at unexpected level: {level + 1} expected < {rank}")
            out.append(_scalar(element, dtype) if kind is dict else convert(element))
        return
    for element in value:
        _fill(element, level + 1, shape, dtype, out)


def _scalar(value: Any, dtype: _Dtype) -> Any:
    if type(value) is dict:
        if dtype.enum_name == "DT_STRING":
            return _b64_object_bytes(value)
        raise _type_error(value, dtype.name)
    return dtype.convert(value)


_MAX_RANK = 64  # numpy's limit (TF's is 254; deeper JSON nesting is refused either way)


def _decode_exact(value: Any, dtype: _Dtype,
                  max_rank: int = _MAX_RANK) -> tuple[list[Any], list[int]]:
    shape = _dense_shape(value)
    if len(shape) > max_rank:
        raise invalid_argument(f"JSON value nested {len(shape)} lists deep: tensors of more than "
                               f"{_MAX_RANK} dimensions are not supported")
    out: list[Any] = []
    _fill(value, 0, shape, dtype, out)
    return out, shape


_NUMERIC_KINDS = {
    "DT_FLOAT": "fiu", "DT_DOUBLE": "fiu", "DT_INT32": "i", "DT_INT16": "i", "DT_INT8": "i",
    "DT_UINT8": "i", "DT_INT64": "i", "DT_UINT32": "iu", "DT_UINT64": "iu", "DT_BOOL": "b",
}
_INT_BOUNDS = {
    "DT_INT32": (_INT32_MIN, _INT32_END), "DT_INT16": (_INT32_MIN, _INT32_END),
    "DT_INT8": (_INT32_MIN, _INT32_END), "DT_UINT8": (_INT32_MIN, _INT32_END),
    "DT_UINT32": (0, _UINT32_END), "DT_UINT64": (0, UINT64_END),
}


def _decode_fast(value: Any, dtype: _Dtype, maybe_bools: bool) -> np.ndarray | None:
    """numpy's own conversion when it provably gives what ``_decode_exact`` would; else None.

    Valid iff numpy sees a rectangular array of the expected shape whose elements are all JSON
    numbers of an acceptable kind (or all booleans for DT_BOOL) within the dtype's range.
    """
    kinds = _NUMERIC_KINDS.get(dtype.enum_name)
    if kinds is None or type(value) is not list:
        return None
    try:
        array = np.array(value)
    except (ValueError, TypeError, OverflowError):
        return None
    if array.dtype.kind not in kinds or list(array.shape) != _dense_shape(value) or not array.size:
        return None
    if array.dtype.kind != "b" and maybe_bools:
        boxed = np.array(value, dtype=object)
        if bool in set(map(type, boxed.flat)):
            return None
    bounds = _INT_BOUNDS.get(dtype.enum_name)
    if bounds is not None and (int(array.min()) < bounds[0] or int(array.max()) >= bounds[1]):
        return None
    with np.errstate(over="ignore"):
        if dtype.enum_name == "DT_FLOAT" and array.dtype.kind in "iu":
            array = array.astype(np.float64)  # rapidjson: GetFloat() = (float)GetDouble()
        return np.ascontiguousarray(array.astype(dtype.numpy))


def _decode_value(value: Any, dtype: _Dtype, maybe_bools: bool) -> np.ndarray:
    """One JSON value as one tensor (columnar format)."""
    fast = _decode_fast(value, dtype, maybe_bools)
    if fast is not None:
        return fast
    out, shape = _decode_exact(value, dtype)
    return dtype.stack(out).reshape(shape)


def _input_dtypes(signature: Signature) -> dict[str, _Dtype]:
    return {alias: _make_dtype(info.dtype) for alias, info in sorted(signature.inputs.items())}


def decode_inputs(body: PredictBody, signature: Signature) -> dict[str, np.ndarray]:
    """Steps 6-7 of §1.3: the signature's inputs (alias -> ndarray of the signature's dtype;
    DT_STRING as an object array of bytes). Shapes in the signature are not checked (TF Serving
    does not either). Raises ServingError (INVALID_ARGUMENT; UNIMPLEMENTED for dtypes JSON cannot
    express, e.g. half, in the columnar format)."""
    check_input_map(signature, body.signature_name, body.explicit_signature)
    return decode_tensors(body.format, body.data, signature, body.maybe_bools)


def decode_tensors(body_format: Literal["row", "columnar"], data: Any, signature: Signature,
                   maybe_bools: bool = True) -> dict[str, np.ndarray]:
    """Step 7 of §1.3: the ``instances`` list (``row``) or ``inputs`` value (``columnar``) as
    the signature's input tensors. Raises ServingError (see ``decode_inputs``)."""
    dtypes = _input_dtypes(signature)
    try:
        if body_format == "row":
            return _decode_rows(data, dtypes, maybe_bools)
        return _decode_columns(data, dtypes, maybe_bools)
    except RecursionError:
        raise invalid_argument("JSON value nested too deeply") from None


def _decode_columns(value: Any, dtypes: dict[str, _Dtype],
                    maybe_bools: bool) -> dict[str, np.ndarray]:
    if type(value) is not dict or is_b64_object(value):
        if len(dtypes) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map")
        alias, dtype = next(iter(dtypes.items()))
        return {alias: _decode_value(value, dtype, maybe_bools)}
    result = {}
    for alias, dtype in dtypes.items():
        if alias not in value:
            raise invalid_argument(f"Missing named input: {alias} in 'inputs' object.")
        result[alias] = _decode_value(value[alias], dtype, maybe_bools)
    return result


def _is_element_object(value: Any) -> bool:
    return type(value) is dict and not is_b64_object(value)


def _decode_rows(instances: list[Any], dtypes: dict[str, _Dtype],
                 maybe_bools: bool) -> dict[str, np.ndarray]:
    if type(instances[0]) is not dict and len(dtypes) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map")
    objects = _is_element_object(instances[0])
    fast = _decode_rows_fast(instances, dtypes, objects, maybe_bools)
    if fast is not None:
        return fast
    return _decode_rows_exact(instances, dtypes, objects)


def _decode_rows_fast(instances: list[Any], dtypes: dict[str, _Dtype], objects: bool,
                      maybe_bools: bool) -> dict[str, np.ndarray] | None:
    if not objects:
        alias, dtype = next(iter(dtypes.items()))
        array = _decode_fast(instances, dtype, maybe_bools)
        return None if array is None else {alias: array}
    names = dtypes.keys()
    if not all(type(item) is dict and item.keys() == names for item in instances):
        return None
    result = {}
    for alias, dtype in dtypes.items():
        array = _decode_fast([item[alias] for item in instances], dtype, maybe_bools)
        if array is None:
            return None
        result[alias] = array
    return result


class _Stacker:
    """AddInstanceItem: per input, every instance must give the same size and shape."""

    def __init__(self, dtypes: dict[str, _Dtype]) -> None:
        self.dtypes = dtypes
        self.values: dict[str, list[Any]] = {}
        self.shapes: dict[str, list[int]] = {}

    def add(self, alias: str, item: Any) -> None:
        if alias not in self.dtypes:
            raise invalid_argument(f"JSON object: does not have named input: {alias}")
        out, shape = _decode_exact(item, self.dtypes[alias], _MAX_RANK - 1)
        if alias not in self.shapes:
            self.shapes[alias] = shape
            self.values[alias] = out
            return
        expected = self.shapes[alias]
        expected_size = math.prod(expected)
        if expected_size != len(out):
            raise invalid_argument(
                f"Expecting tensor size: {expected_size} but got: {len(out)}")
        if expected != shape:
            raise invalid_argument(f"Expecting shape {_shape_text(expected)} but got: "
                                   f"{_shape_text(shape)}")
        self.values[alias].extend(out)

    def tensors(self, count: int) -> dict[str, np.ndarray]:
        return {alias: self.dtypes[alias].stack(values).reshape([count] + self.shapes[alias])
                for alias, values in self.values.items()}


def _shape_text(shape: list[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _nested(err: ServingError) -> str:
    return err.with_prefix()


def _decode_rows_exact(instances: list[Any], dtypes: dict[str, _Dtype],
                       objects: bool) -> dict[str, np.ndarray]:
    stacker = _Stacker(dtypes)
    names = sorted(dtypes)
    for index, item in enumerate(instances):
        if objects:
            if not _is_element_object(item):
                raise invalid_argument(
                    f"Expecting object but got list at item {index} of input list")
            for key, member in item.items():
                try:
                    stacker.add(key, member)
                except ServingError as err:
                    raise invalid_argument(
                        f"Failed to process element: {index} key: {key} of 'instances' list. "
                        f"Error: {_nested(err)}") from None
            if set(item) != set(names):
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{json_value_to_string(item)} keys must be equal to: {','.join(names)}")
        else:
            if _is_element_object(item):
                raise invalid_argument(
                    f"Expecting value/list but got object at item {index} of input list")
            try:
                stacker.add(names[0], item)
            except ServingError as err:
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. "
                    f"Error: {_nested(err)}") from None
    return stacker.tensors(len(instances))
