"""Tensors -> TF Serving's REST JSON: the Predict response body (spec §1.6, §1.8).

``encode_predict_response`` writes compact JSON (floats per §1.8 via ``float_format``; a response
of one float32 tensor, the common case, in one compiled pass by ``float32_json``); strings
that are not UTF-8 are written with U+FFFD in place of the bad bytes, as JSON text must be UTF-8:
name an output ``*_bytes`` to get exact bytes as b64. ``leaf_texts`` / ``nest_texts`` are shared
with the Classify/Regress encoders. Pure functions: thread-safe, no I/O, no TensorFlow.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from nbserve.codec.float_format import COMPILED_MIN, float32_json, float_texts
from nbserve.errors import invalid_argument
from nbserve.servables.dtypes import datatype_string, dtype_name
from nbserve.servables.signature import Signature

__all__ = ["encode_predict_response", "leaf_texts", "nest_texts"]


_encode_string: Callable[[str], str] = getattr(json.encoder, "c_encode_basestring", None) \
    or json.encoder.py_encode_basestring


def _json_string(data: Any) -> str:
    """A string tensor element as a JSON string; bytes that are not UTF-8 become U+FFFD."""
    if isinstance(data, bytes):
        text = data.decode("utf-8", "replace")
    elif isinstance(data, str):
        text = data
    else:
        text = bytes(data).decode("utf-8", "replace")
    return _encode_string(text)


def _b64_json(data: Any) -> str:
    raw = data if isinstance(data, bytes) else (
        data.encode("utf-8") if isinstance(data, str) else bytes(data))
    return '{"b64":"' + base64.b64encode(raw).decode("ascii") + '"}'


def _tensor_type_name(array: np.ndarray, declared: Any = None) -> str:
    if declared is not None:
        return datatype_string(dtype_name(declared))
    if array.dtype == np.float16:
        return "half"
    return str(array.dtype.name)


def leaf_texts(alias: str, array: np.ndarray, declared_dtype: Any = None) -> list[str]:
    """Every element of an output tensor as JSON text, flat in C order (§1.6 output rules).

    Raises ServingError ``Failed to write JSON value for tensor type: <type>`` for dtypes JSON
    cannot express (half, uint16, complex, ...) when the tensor has any element.
    """
    dtype = array.dtype
    kind = dtype.kind
    if dtype == np.float32:
        return float_texts(array)
    if dtype == np.float64:
        return float_texts(array, double=True)
    if kind in "iu" and dtype != np.uint16:
        return list(map(str, array.ravel().tolist()))
    if kind == "b":
        return ["true" if v else "false" for v in array.ravel().tolist()]
    if kind in "OSU":
        items = array.ravel().tolist()
        if alias.endswith("_bytes"):
            return list(map(_b64_json, items))
        return list(map(_json_string, items))
    if array.size == 0:
        return []
    raise invalid_argument("Failed to write JSON value for tensor type: "
                           f"{_tensor_type_name(array, declared_dtype)}")


def _empty_nest(dims: tuple[int, ...]) -> str:
    """The text of an all-empty nested array; ``dims`` holds a zero somewhere."""
    if dims[0] == 0:
        return "[]"
    inner = _empty_nest(dims[1:])
    return "[" + ",".join([inner] * dims[0]) + "]"


def nest_texts(leaves: list[str], shape: tuple[int, ...], keep: int) -> list[str]:
    """Wrap flat leaf texts into nested JSON arrays for all but the first ``keep`` dimensions;
    returns one text per index of the kept leading dimensions (one text when ``keep == 0``)."""
    outer = math.prod(shape[:keep])
    inner = shape[keep:]
    if not inner:
        return leaves
    if math.prod(inner) == 0:
        return [_empty_nest(tuple(inner))] * outer
    items = leaves
    for size in reversed(inner):
        if size == 1:
            items = ["[" + item + "]" for item in items]
        else:
            items = ["[" + ",".join(items[i:i + size]) + "]" for i in range(0, len(items), size)]
    return items


def _compiled(array: np.ndarray) -> bool:
    """Whether ``float32_json`` writes this tensor: float32 with a dimension and more than
    ``COMPILED_MIN`` values (its text is byte-identical to the per-value path's)."""
    return array.dtype == np.float32 and array.ndim > 0 and array.size > COMPILED_MIN


def encode_predict_response(outputs: Mapping[str, np.ndarray], body_format: str,
                            signature: Signature | None = None) -> bytes:
    """The Predict response body (compact JSON, UTF-8).

    ``row``: ``{"predictions": [...]}``, one entry per instance (the output's value, or an object of
    all outputs when there are several); ``columnar``: ``{"outputs": value}`` or
    ``{"outputs": {alias: value}}``. ``signature`` only names dtypes in error messages.
    """
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {name: np.asarray(outputs[name]) for name in names}
    declared = {}
    if signature is not None:
        declared = {alias: info.dtype for alias, info in signature.outputs.items()}
    if body_format == "row":
        return _encode_rows(names, arrays, declared)
    if body_format == "columnar" and len(names) == 1 and _compiled(arrays[names[0]]):
        return b'{"outputs":' + float32_json(arrays[names[0]]) + b"}"
    if body_format == "columnar":
        texts = {name: nest_texts(leaf_texts(name, arrays[name], declared.get(name)),
                                  arrays[name].shape, 0)[0] for name in names}
        if len(names) == 1:
            body = texts[names[0]]
        else:
            body = "{" + ",".join(_encode_string(n) + ":" + texts[n] for n in names) + "}"
        return ('{"outputs":' + body + "}").encode("utf-8", "replace")
    raise invalid_argument("Invalid request format")


def _encode_rows(names: list[str], arrays: dict[str, np.ndarray],
                 declared: dict[str, Any]) -> bytes:
    batch = -1
    for name in names:
        array = arrays[name]
        if array.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and array.shape[0] != batch:
            raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: "
                                   f"{array.shape[0]} expecting: {batch}")
        batch = array.shape[0]
    if len(names) == 1 and _compiled(arrays[names[0]]):  # the rows nest as the whole tensor
        return b'{"predictions":' + float32_json(arrays[names[0]]) + b"}"
    rows = {name: nest_texts(leaf_texts(name, arrays[name], declared.get(name)),
                             arrays[name].shape, 1) for name in names}
    if len(names) == 1:
        items = rows[names[0]]
    else:
        keys = {name: _encode_string(name) + ":" for name in names}
        items = ["{" + ",".join(keys[name] + rows[name][i] for name in names) + "}"
                 for i in range(batch)]
    return ('{"predictions":[' + ",".join(items) + "]}").encode("utf-8", "replace")
