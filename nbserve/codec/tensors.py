"""ndarray <-> ``tensorflow.TensorProto``: the gRPC tensor codec.

It reads and fills TensorProto messages the caller owns (a request's ``inputs[alias]``, a
response's ``outputs[alias]``) and never imports TensorFlow: the messages come from the
transport's generated stubs, the field numbers and DataType names from ``tensor.proto`` /
``nbserve.servables.dtypes`` (a test checks both against TensorFlow's descriptors).

Two wire forms exist for a numeric tensor and both are read and written here:

* ``tensor_content``: the raw little-endian bytes of the C-ordered array
  (``tf.make_tensor_proto``'s form; TF Serving's with ``--enable_serialization_as_tensor_content``).
  Encoding is one ``tobytes``, decoding one ``np.frombuffer`` (the result is then a **read-only**
  view of the proto's bytes).
* the typed repeated fields (``float_val``, ``int_val``, ... ; TF Serving's default output form).
  Reading any field is one ``np.array`` over the container.

Writing builds the message's wire bytes directly (``tensor_bytes``; numpy packs the values,
varints included): the gRPC Predict response is written from them without a message object, and
``fill_tensor_proto`` merges them into the caller's message.

Strings (``DT_STRING``) always travel in ``string_val``; ``tensor_content`` holding TF's
varint-length string encoding is accepted on input.

Decoding follows ``tensorflow::Tensor::FromProto`` (checked against ``tf.io.parse_tensor`` in the
tests):

* the shape must be valid: no negative dimension, at most 254 dimensions, and the element count must
  not overflow int64 on the way (``unknown_rank`` is ignored, as TF ignores it for a fully defined
  shape);
* ``tensor_content``, when non-empty, wins and must hold exactly elements x itemsize bytes (bool
  bytes must be 0 or 1; strings must decode to exactly elements strings);
* otherwise the dtype's ``*_val`` field is read: more values than elements are truncated, fewer are
  padded by repeating the **last** value, and none at all gives zeros (``b""`` for strings). Values
  of another field than the dtype's own (``int_val`` for ``DT_FLOAT``) are ignored, as TF ignores
  them. ``int_val`` values wrap to the narrow integer types and ``half_val`` to 16 bits, as C++'s
  conversions do;
* a tensor with zero elements ignores its content and values.

nbserve differs in three corners: a decoded array may not exceed ``MAX_TENSOR_BYTES`` (object arrays
count 8 bytes per string), and one padded from fewer values than it has elements not
``MAX_FILLED_BYTES`` (64 MiB), so a tiny ``float_val: 0`` with a huge shape cannot exhaust memory; a
tensor with zero elements whose other dimensions multiply past numpy's limit (``[0, 2**62]``) is
rejected, as numpy cannot hold its shape. Only TensorFlow's numeric and string dtypes are decoded
(``SUPPORTED_DTYPES``); quantized, resource and variant tensors are rejected like malformed ones.

Every failure on a malformed proto is ``ServingError(INVALID_ARGUMENT, ...)``: with ``alias`` given
the message is TF Serving's ``tensor parsing error: <alias>`` (the detail is chained as
``__cause__``), without it ``Unable to parse tensor proto: <detail>``.

Pure functions, thread-safe. Importing this module loads neither TensorFlow nor its protos.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from nbserve.codec.wire import varint
from nbserve.errors import ServingError, StatusCode
from nbserve.servables.dtypes import DT_ENUM, DT_TO_NUMPY, dt_name
from nbserve.servables.predict_util import check_feed_dtype

_ml_dtypes: Any
try:  # TF's own numpy bfloat16 (a TensorFlow dependency); optional here.
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover - ml_dtypes ships with tensorflow
    _ml_dtypes = None

TensorProto = Any  # a ``tensorflow.TensorProto`` message (from the caller's generated stubs)

MAX_RANK = 254  # TensorShape::MaxDimensions()
MAX_TENSOR_BYTES = 1 << 31  # nbserve: largest array from_tensor_proto builds (elements x itemsize)
# nbserve: largest array padded from fewer values than elements (a few bytes on the wire must not
# become gigabytes: a 2 GiB tensor from ``float_val: 0`` took the server down under memory pressure)
MAX_FILLED_BYTES = 64 << 20
_INT64_MAX = (1 << 63) - 1
FIELD_NUMBERS: dict[str, int] = {  # tensor.proto's typed value fields (wire numbers never change)
    "float_val": 5, "double_val": 6, "int_val": 7, "string_val": 8, "scomplex_val": 9,
    "int64_val": 10, "bool_val": 11, "dcomplex_val": 12, "half_val": 13, "uint32_val": 16,
    "uint64_val": 17,
}


@dataclass(frozen=True)
class _Codec:
    """How one DataType travels: its numpy dtype and its typed repeated field."""

    name: str  # DataType enum name
    dtype: np.dtype[Any]  # little-endian numpy dtype (object for strings)
    field: str  # the *_val field
    wire: str  # "fixed": packed fixed-width, "varint": packed varints, "bytes": string_val
    val_dtype: Any = None  # numpy dtype the field's values are read as before conversion
    enum: int = 0  # DataType enum number, filled in from the name

    def __post_init__(self) -> None:
        object.__setattr__(self, "enum", DT_ENUM[self.name])


def _codecs() -> dict[str, _Codec]:
    def le(name: str) -> np.dtype[Any]:
        return cast("np.dtype[Any]", np.dtype(DT_TO_NUMPY[name]).newbyteorder("<"))

    table = [
        _Codec("DT_FLOAT", le("DT_FLOAT"), "float_val", "fixed", np.float32),
        _Codec("DT_DOUBLE", le("DT_DOUBLE"), "double_val", "fixed", np.float64),
        _Codec("DT_INT32", le("DT_INT32"), "int_val", "varint", np.int32),
        _Codec("DT_UINT8", le("DT_UINT8"), "int_val", "varint", np.int32),
        _Codec("DT_INT16", le("DT_INT16"), "int_val", "varint", np.int32),
        _Codec("DT_INT8", le("DT_INT8"), "int_val", "varint", np.int32),
        _Codec("DT_UINT16", le("DT_UINT16"), "int_val", "varint", np.int32),
        _Codec("DT_INT64", le("DT_INT64"), "int64_val", "varint", np.int64),
        _Codec("DT_BOOL", le("DT_BOOL"), "bool_val", "varint", np.bool_),
        _Codec("DT_UINT32", le("DT_UINT32"), "uint32_val", "varint", np.uint32),
        _Codec("DT_UINT64", le("DT_UINT64"), "uint64_val", "varint", np.uint64),
        _Codec("DT_HALF", le("DT_HALF"), "half_val", "varint", np.int32),
        _Codec("DT_COMPLEX64", np.dtype("<c8"), "scomplex_val", "fixed", np.float32),
        _Codec("DT_COMPLEX128", np.dtype("<c16"), "dcomplex_val", "fixed", np.float64),
        _Codec("DT_STRING", np.dtype(object), "string_val", "bytes"),
    ]
    if _ml_dtypes is not None:
        table.append(_Codec("DT_BFLOAT16", np.dtype(_ml_dtypes.bfloat16), "half_val", "varint",
                            np.int32))
    return {c.name: c for c in table}


CODECS: dict[str, _Codec] = _codecs()
_BY_NUMBER: dict[int, _Codec] = {c.enum: c for c in CODECS.values()}
_BY_NUMPY: dict[np.dtype, _Codec] = {c.dtype: c for c in CODECS.values() if c.name != "DT_STRING"}

SUPPORTED_DTYPES: frozenset[str] = frozenset(CODECS)
"""DataType names this codec converts: signature.DT_TO_NUMPY's plus complex64/128 and bfloat16."""


def dtype_name_for_numpy(dtype: Any) -> str:
    """The DataType enum name for a numpy dtype (``U``/``S``/object -> ``DT_STRING``).

    Raises ServingError(INVALID_ARGUMENT) for dtypes a TensorProto cannot hold.
    """
    return _codec_for_numpy(np.dtype(dtype)).name


# ------------------------------------------------------------------------------------------------
# ndarray -> TensorProto


def to_tensor_proto(array: Any, use_tensor_content: bool = True) -> TensorProto:
    """A new TensorProto holding ``array`` (``fill_tensor_proto`` on a fresh message).

    The message class is the ``tensorflow.TensorProto`` that TensorFlow's generated protos
    registered with protobuf (any ``tensorflow_serving.apis`` import loads them); without them
    this raises RuntimeError. Prefer filling the caller's message in place.
    """
    proto = _tensor_proto_class()()
    fill_tensor_proto(proto, array, use_tensor_content)
    return proto


@functools.cache
def _tensor_proto_class() -> Any:
    from google.protobuf import descriptor_pool, message_factory

    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName("tensorflow.TensorProto")
    except KeyError:
        raise RuntimeError("tensorflow.TensorProto is not loaded: import TensorFlow's or TF "
                           "Serving's generated protos first") from None
    return message_factory.GetMessageClass(descriptor)


def fill_tensor_proto(proto: TensorProto, array: Any, use_tensor_content: bool = True) -> None:
    """Write ``array`` (anything ``np.asarray`` accepts) into ``proto``, an empty TensorProto
    (e.g. ``response.outputs[alias]``: filled in place, no copy): ``tensor_bytes`` merged in.

    Numeric arrays go to ``tensor_content`` (``use_tensor_content=True``) or to their typed
    ``*_val`` field (``False``, TF Serving's default output form; ``half``/``bfloat16`` as 16-bit
    patterns in ``half_val``, complex numbers as (real, imag) pairs). Strings (object arrays of
    bytes/str, numpy ``S``/``U`` arrays) always go to ``string_val``; ``str`` is encoded as UTF-8.
    An empty array writes no values. Raises ServingError(INVALID_ARGUMENT) for a dtype a
    TensorProto cannot hold.
    """
    proto.MergeFromString(tensor_bytes(array, use_tensor_content))


def tensor_bytes(array: Any, use_tensor_content: bool = True) -> bytes:
    """``array`` as a serialized TensorProto, by ``fill_tensor_proto``'s rules: what
    ``to_tensor_proto(array, use_tensor_content).SerializeToString()`` gives, without building
    the message (fields in number order, repeated numbers packed, as protobuf writes them)."""
    return b"".join(tensor_parts(array, use_tensor_content))


def tensor_parts(array: Any, use_tensor_content: bool = True) -> list[bytes]:
    """``tensor_bytes`` as pieces to join (a caller adding framing joins once)."""
    arr = np.asarray(array)
    codec = _codec_for_numpy(arr.dtype)
    shape = b"".join([_dim_bytes(size) for size in arr.shape])
    parts = [_dtype_bytes(codec.enum), b"\x12", varint(len(shape)), shape]
    if arr.size == 0:
        return parts
    if codec.wire == "bytes":
        tag = _TAGS["string_val"]
        for item in _string_items(arr):
            parts += (tag, varint(len(item)), item)
        return parts
    if use_tensor_content:
        values = arr.astype(codec.dtype, copy=False).tobytes()
        parts += (b"\x22", varint(len(values)), values)  # tensor_content, field 4
        return parts
    values = _typed_values(codec, arr)
    parts += (_TAGS[codec.field], varint(len(values)), values)
    return parts


def _typed_values(codec: _Codec, arr: np.ndarray) -> bytes:
    """The packed payload of ``codec``'s typed field for ``arr``."""
    if codec.wire == "fixed":
        # complex numbers: a complex array's bytes are its (real, imag) pairs.
        return arr.astype(codec.dtype, copy=False).tobytes()
    flat = np.ascontiguousarray(arr, dtype=codec.dtype).reshape(-1)
    if codec.name in ("DT_HALF", "DT_BFLOAT16"):
        flat = flat.view(np.uint16)
    return packed_varints(flat)


_VARINT_CHUNK = 1 << 16  # values per step of packed_varints (bounds its temporaries)
_VARINT_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)  # the ten 7-bit groups of a uint64
_VARINT_LIMITS = np.array([1 << shift for shift in range(7, 70, 7)], dtype=np.uint64)
_VARINT_COLUMNS = np.arange(10)


def packed_varints(values: np.ndarray) -> bytes:
    """Integers (or bools) as protobuf's packed varints: signed values sign-extended to 64 bits
    (ten bytes for a negative ``int32``, as protobuf writes it), unsigned ones as they are."""
    if values.dtype == np.bool_ or (values.min() >= 0 and values.max() < 0x80):
        return values.astype(np.uint8).tobytes()  # every value is one byte
    wide = (values.astype(np.int64).view(np.uint64) if values.dtype.kind == "i"
            else values.astype(np.uint64))
    out = []
    for start in range(0, len(wide), _VARINT_CHUNK):
        chunk = wide[start:start + _VARINT_CHUNK, None]
        length = 1 + (chunk >= _VARINT_LIMITS).sum(axis=1)[:, None]
        groups = (chunk >> _VARINT_SHIFTS) & 0x7F
        groups |= (_VARINT_COLUMNS < length - 1).astype(np.uint64) << 7  # continuation bits
        out.append(groups[_VARINT_COLUMNS < length].astype(np.uint8).tobytes())
    return b"".join(out)


_TAGS = {field: varint((number << 3) | 2) for field, number in FIELD_NUMBERS.items()}


@functools.lru_cache(maxsize=4096)
def _dim_bytes(size: int) -> bytes:
    """One ``TensorShapeProto.dim`` entry (field 2) of ``size`` (field 1, omitted when 0)."""
    dim = b"\x08" + varint(size) if size else b""
    return b"\x12" + varint(len(dim)) + dim


@functools.cache
def _dtype_bytes(enum: int) -> bytes:
    return b"\x08" + varint(enum)  # dtype, field 1


def _codec_for_numpy(dtype: np.dtype) -> _Codec:
    if dtype.kind in "OSU":
        return CODECS["DT_STRING"]
    codec = _BY_NUMPY.get(dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype)
    if codec is None:
        raise ServingError(StatusCode.INVALID_ARGUMENT,
                           f"Cannot convert numpy dtype {dtype} to a TensorProto")
    return codec


def _string_items(arr: np.ndarray) -> list[bytes]:
    items: list[Any] = arr.ravel().tolist()
    if arr.dtype.kind == "S":
        return items
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item.encode("utf-8"))
        elif isinstance(item, (bytes, bytearray, memoryview)):
            out.append(bytes(item))
        else:
            raise ServingError(StatusCode.INVALID_ARGUMENT,
                               f"Cannot convert {type(item).__name__} in a string tensor to bytes")
    return out


# ------------------------------------------------------------------------------------------------
# TensorProto -> ndarray


class _Malformed(ValueError):
    """Internal: why a proto does not parse (becomes the ServingError's cause)."""


def from_tensor_proto(proto: TensorProto, expected_dtype: str | None = None, *,
                      alias: str | None = None, arg_index: int = 0,
                      max_bytes: int | None = None) -> np.ndarray:
    """Decode ``proto`` into an ndarray (TF's ``Tensor::FromProto`` rules, see the module doc).

    ``expected_dtype`` (a DataType name such as ``DT_FLOAT``; None or ``DT_INVALID``: no check) is
    checked after parsing, as TF checks feeds at run time: a mismatch is INVALID_ARGUMENT
    ``Expects arg[<arg_index>] to be float but string is provided``. ``alias`` names the input in
    the error text (TF Serving's ``tensor parsing error: <alias>``). ``max_bytes`` overrides
    ``MAX_TENSOR_BYTES``. Numeric arrays decoded from ``tensor_content`` are read-only views;
    strings come back as an object array of ``bytes``. Raises only ServingError.
    """
    limit = MAX_TENSOR_BYTES if max_bytes is None else max_bytes
    try:
        shape, count = _shape(proto)
        name = _dtype_name(proto.dtype)
        codec = CODECS.get(name)
        if codec is not None:
            array = _decode(proto, codec, shape, count, limit)
    except _Malformed as exc:
        raise _parse_error(alias, str(exc)) from exc
    except MemoryError as exc:
        raise ServingError(StatusCode.RESOURCE_EXHAUSTED,
                           f"Out of memory decoding tensor{_for(alias)}") from exc
    if expected_dtype not in (None, "DT_INVALID"):
        check_feed_dtype(name, expected_dtype, arg_index)
    if codec is None:
        unsupported = _Malformed(f"unsupported dtype {name}")
        raise _parse_error(alias, str(unsupported)) from unsupported
    return array


def _for(alias: str | None) -> str:
    return "" if alias is None else f" {alias}"


def _parse_error(alias: str | None, detail: str) -> ServingError:
    if alias is not None:
        return ServingError(StatusCode.INVALID_ARGUMENT, "tensor parsing error: " + alias)
    return ServingError(StatusCode.INVALID_ARGUMENT, f"Unable to parse tensor proto: {detail}")


def _dtype_name(number: int) -> str:
    if number == 0:
        raise _Malformed("dtype is DT_INVALID")
    name = dt_name(number)
    if name is None:
        raise _Malformed(f"unknown dtype enum value {number}")
    if name.endswith("_REF"):
        raise _Malformed(f"reference dtype {name} is not a tensor value")
    return name


_SHAPES: dict[bytes, tuple[tuple[int, ...], int]] = {}  # valid shapes by their wire bytes
_SHAPES_KEPT = 256


def _shape(proto: TensorProto) -> tuple[tuple[int, ...], int]:
    """The dims and element count, validated as ``TensorShape::IsValid``. Shapes seen before
    are looked up by their wire bytes (reading the dims one message at a time costs more)."""
    key = proto.tensor_shape.SerializeToString()
    known = _SHAPES.get(key)
    if known is not None:
        return known
    shape = _valid_shape(proto)
    if len(_SHAPES) >= _SHAPES_KEPT:
        _SHAPES.clear()
    _SHAPES[key] = shape
    return shape


def _valid_shape(proto: TensorProto) -> tuple[tuple[int, ...], int]:
    dims = tuple([d.size for d in proto.tensor_shape.dim])
    if len(dims) > MAX_RANK:
        raise _Malformed(f"rank {len(dims)} exceeds the maximum of {MAX_RANK}")
    count = 1
    for size in dims:
        if size < 0:
            raise _Malformed(f"negative dimension {size} in shape {list(dims)}")
        count *= size
        if count > _INT64_MAX:
            raise _Malformed(f"number of elements of shape {list(dims)} overflows int64")
    return dims, count


def _decode(proto: TensorProto, codec: _Codec, shape: tuple[int, ...], count: int,
            limit: int) -> np.ndarray:
    itemsize = 8 if codec.wire == "bytes" else codec.dtype.itemsize
    if count * itemsize > limit:
        raise _Malformed(f"tensor of shape {list(shape)} ({codec.name}) needs "
                         f"{count * itemsize} bytes, more than the limit of {limit}")
    if count == 0:
        try:
            return np.empty(shape, dtype=codec.dtype)
        except ValueError as exc:
            raise _Malformed(f"shape {list(shape)} cannot be represented: {exc}") from None
    content = proto.tensor_content
    if content:
        flat = (_strings_from_content(content, count) if codec.wire == "bytes"
                else _numbers_from_content(content, codec, count))
    else:
        flat = _from_values(proto, codec, count)
    try:
        return flat.reshape(shape)
    except ValueError as exc:  # numpy holds at most 64 dimensions; TensorFlow allows 254
        raise _Malformed(f"shape {list(shape)} cannot be represented: {exc}") from None


def _numbers_from_content(content: bytes, codec: _Codec, count: int) -> np.ndarray:
    expected = count * codec.dtype.itemsize
    if len(content) != expected:
        raise _Malformed(f"tensor_content has {len(content)} bytes, expected {expected} "
                         f"for {count} {codec.name} elements")
    if codec.name == "DT_BOOL":
        raw = np.frombuffer(content, dtype=np.uint8)
        if raw.max(initial=0) > 1:
            raise _Malformed("tensor_content of a DT_BOOL tensor holds bytes other than 0 and 1")
        return raw.view(np.bool_)
    return np.frombuffer(content, dtype=codec.dtype)


def _strings_from_content(content: bytes, count: int) -> np.ndarray:
    """TF's string ``tensor_content``: ``count`` varint32 lengths, then the bytes back to back."""
    sizes = []
    pos, end = 0, len(content)
    for _ in range(count):
        value, shift = 0, 0
        while True:
            if pos >= end or shift > 28:
                raise _Malformed("string tensor_content has a truncated or invalid length varint")
            byte = content[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if value > 0xFFFFFFFF:
            raise _Malformed("string tensor_content has a length above 32 bits")
        sizes.append(value)
    if sum(sizes) != end - pos:
        raise _Malformed(f"string tensor_content holds {end - pos} bytes of data, "
                         f"its lengths add up to {sum(sizes)}")
    out = np.empty(count, dtype=object)
    for i, size in enumerate(sizes):
        out[i] = content[pos:pos + size]
        pos += size
    return out


def _from_values(proto: TensorProto, codec: _Codec, count: int) -> np.ndarray:
    values = getattr(proto, codec.field)
    if codec.wire == "bytes":
        return _fill(_object_array(values[:count]), count, np.dtype(object), b"")
    raw = np.array(values, dtype=codec.val_dtype)
    if codec.field in ("scomplex_val", "dcomplex_val"):
        # (real, imag) pairs; an odd last value is dropped
        raw = raw[: raw.size - raw.size % 2].view(codec.dtype)
    elif codec.name in ("DT_HALF", "DT_BFLOAT16"):
        raw = raw.astype(np.uint16).view(codec.dtype)  # keep the low 16 bits, as C++ does
    else:
        raw = raw.astype(codec.dtype)  # int_val wraps into int8/uint8/int16/uint16
    return _fill(raw[:count], count, codec.dtype, 0)


def _object_array(items: list[bytes]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _fill(head: np.ndarray, count: int, dtype: np.dtype, zero: Any) -> np.ndarray:
    """``head`` extended to ``count`` elements by repeating its last one (zeros if it is empty);
    at most ``MAX_FILLED_BYTES`` when it has to be extended."""
    if head.size == count:
        return head
    itemsize = 8 if dtype == np.dtype(object) else dtype.itemsize
    if count * itemsize > MAX_FILLED_BYTES:
        raise _Malformed(f"{head.size} values would fill {count} elements "
                         f"({count * itemsize} bytes), more than the limit of "
                         f"{MAX_FILLED_BYTES} for a tensor padded from fewer values")
    out = np.empty(count, dtype=dtype)
    out[: head.size] = head
    out[head.size:] = head[-1] if head.size else zero
    return out

