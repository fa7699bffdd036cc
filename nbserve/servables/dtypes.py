"""TensorFlow's DataType names (``types.proto``) and their numpy twins: nbserve's one table.

Every module that names a DataType (the Signature, the request checks, the JSON and TensorProto
codecs, the SavedModel servable) takes the names, enum numbers and numpy types from here, so the
wire texts (``Expects arg[0] to be float ...``, ``tensor type: half``) cannot drift apart.
Pure numpy: importing it never loads TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "DT_ENUM",
    "DT_TO_NUMPY",
    "REF_OFFSET",
    "datatype_string",
    "dt_name",
    "dtype_name",
    "numpy_dt_name",
]

# DataType enum numbers (tensorflow/core/framework/types.proto), up to DT_UINT64: the types nbserve
# knows by name in signatures and requests.
DT_ENUM: Mapping[str, int] = {
    "DT_INVALID": 0, "DT_FLOAT": 1, "DT_DOUBLE": 2, "DT_INT32": 3, "DT_UINT8": 4, "DT_INT16": 5,
    "DT_INT8": 6, "DT_STRING": 7, "DT_COMPLEX64": 8, "DT_INT64": 9, "DT_BOOL": 10, "DT_QINT8": 11,
    "DT_QUINT8": 12, "DT_QINT32": 13, "DT_BFLOAT16": 14, "DT_QINT16": 15, "DT_QUINT16": 16,
    "DT_UINT16": 17, "DT_COMPLEX128": 18, "DT_HALF": 19, "DT_RESOURCE": 20, "DT_VARIANT": 21,
    "DT_UINT32": 22, "DT_UINT64": 23,
}

# The newer value types of types.proto: named in messages, never decoded.
_LATER_DT: Mapping[str, int] = {
    "DT_FLOAT8_E5M2": 24, "DT_FLOAT8_E4M3FN": 25, "DT_FLOAT8_E4M3FNUZ": 26,
    "DT_FLOAT8_E4M3B11FNUZ": 27, "DT_FLOAT8_E5M2FNUZ": 28, "DT_INT4": 29, "DT_UINT4": 30,
    "DT_INT2": 31, "DT_UINT2": 32, "DT_FLOAT4_E2M1FN": 33,
}

REF_OFFSET = 100
"""``DT_<X>_REF`` (a TF1 reference type) is ``DT_<X>`` + 100."""

_NAME_BY_NUMBER: Mapping[int, str] = {number: name
                                      for name, number in {**DT_ENUM, **_LATER_DT}.items()}

# DataType names -> numpy scalar types, for what JSON and Python requests can carry (types.proto).
# Object dtype holds bytes.
DT_TO_NUMPY: Mapping[str, Any] = {
    "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64,
    "DT_INT32": np.int32,
    "DT_UINT8": np.uint8,
    "DT_INT16": np.int16,
    "DT_INT8": np.int8,
    "DT_STRING": np.object_,
    "DT_INT64": np.int64,
    "DT_BOOL": np.bool_,
    "DT_UINT16": np.uint16,
    "DT_HALF": np.float16,
    "DT_UINT32": np.uint32,
    "DT_UINT64": np.uint64,
}

# numpy dtype -> the DataType an array of it becomes when fed.
_NUMPY_TO_DT: Mapping[np.dtype[Any], str] = {
    **{np.dtype(numpy_type): name for name, numpy_type in DT_TO_NUMPY.items()
       if name != "DT_STRING"},
    np.dtype(np.complex64): "DT_COMPLEX64", np.dtype(np.complex128): "DT_COMPLEX128",
}


def dt_name(number: int) -> str | None:
    """types.proto's name for enum ``number`` (``DT_FLOAT``, ``DT_FLOAT_REF``), None if unknown."""
    name = _NAME_BY_NUMBER.get(number)
    if name is None and number > REF_OFFSET:
        base = _NAME_BY_NUMBER.get(number - REF_OFFSET)
        name = None if base is None else base + "_REF"
    return name


def dtype_name(dtype: str | int) -> str:
    """The DataType name for ``"DT_FLOAT"``, ``1`` or ``"float"`` (``DT_INVALID`` for an unknown
    number)."""
    if isinstance(dtype, int):
        return dt_name(dtype) or "DT_INVALID"
    name = str(dtype)
    return name if name.startswith("DT_") else "DT_" + name.upper()


def datatype_string(name: str) -> str:
    """TensorFlow's ``DataTypeString``: ``DT_FLOAT`` -> ``float``, ``DT_HALF`` -> ``half``."""
    return name[3:].lower() if name.startswith("DT_") else name


def numpy_dt_name(dtype: np.dtype[Any]) -> str:
    """The DataType name a numpy array of ``dtype`` becomes when fed (``DT_STRING`` for object,
    bytes and str arrays; ``numpy <dtype>`` when there is none)."""
    if dtype.kind in "OSU":
        return "DT_STRING"
    name = _NUMPY_TO_DT.get(dtype)
    if name is None and dtype.name == "bfloat16":  # ml_dtypes' bfloat16, as TensorFlow feeds it
        name = "DT_BFLOAT16"
    return name or f"numpy {dtype}"
