"""ndarray <-> TensorProto: round-trips, TF as the oracle, malformed protos, properties."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tensorflow.core.framework import tensor_pb2, types_pb2

from nbserve.codec import tensors
from nbserve.codec.tensors import from_tensor_proto, to_tensor_proto
from nbserve.errors import ServingError, StatusCode
from nbserve.servables.dtypes import dt_name
from nbserve.servables.signature import DT_ENUM, DT_TO_NUMPY

NUMERIC = [np.float32, np.float64, np.int32, np.uint8, np.int16, np.int8, np.int64, np.bool_,
           np.uint16, np.float16, np.uint32, np.uint64, np.complex64, np.complex128,
           ml_dtypes.bfloat16]
SHAPES = [(), (0,), (1,), (2, 3), (3, 0, 2), (2, 2, 2), (300,)]


def sample(dtype, shape) -> np.ndarray:
    """Deterministic values that exercise each dtype's range (negatives, extremes, fractions)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    idx = np.arange(n)
    if dtype == np.bool_:
        values = idx % 3 == 1
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        pool = np.array([info.min, info.max, 0, 1, 127, 128, 300, 2**20], dtype=object)
        values = np.array([int(v) % (int(info.max) - int(info.min) + 1) + int(info.min)
                           for v in pool[idx % pool.size]], dtype=object).astype(dtype)
    elif dtype.kind == "c":
        values = (idx * 0.5 - 3) + 1j * (2.25 - idx)
    else:
        values = (idx * 1.25 - 7.5)
        if n > 3 and dtype != np.dtype(ml_dtypes.bfloat16):
            values[1], values[2], values[3] = np.inf, -np.inf, np.nan
    return np.asarray(values).astype(dtype).reshape(shape)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bits (NaN-aware); object arrays element by element."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return a.ravel().tolist() == b.ravel().tolist()
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def tf_parse(proto: tensor_pb2.TensorProto):
    """TF's C++ ``Tensor::FromProto`` (through ParseTensor): an ndarray, or None if TF rejects
    it."""
    try:
        tensor = tf.io.parse_tensor(proto.SerializeToString(), tf.as_dtype(proto.dtype))
    except tf.errors.InvalidArgumentError:
        return None
    try:
        value = tensor.numpy()
    except (ValueError, tf.errors.InvalidArgumentError):  # TF took it; numpy cannot hold it
        return UNREPRESENTABLE
    return np.array(value, dtype=object) if isinstance(value, bytes) else value


UNREPRESENTABLE = np.empty(0)


def proto(dtype: str, dims=(), **fields) -> tensor_pb2.TensorProto:
    p = tensor_pb2.TensorProto(dtype=types_pb2.DataType.Value(dtype), **fields)
    for size in dims:
        p.tensor_shape.dim.add(size=size)
    return p


def parse_error(p, **kwargs) -> ServingError:
    with pytest.raises(ServingError) as info:
        from_tensor_proto(p, **kwargs)
    assert info.value.code == StatusCode.INVALID_ARGUMENT
    return info.value


# --- dtype table ----------------------------------------------------------------------------------


def test_supported_dtypes_cover_the_signature_table_with_the_same_enum_numbers():
    for name, np_type in DT_TO_NUMPY.items():
        assert name in tensors.SUPPORTED_DTYPES
        assert types_pb2.DataType.Value(name) == DT_ENUM[name]
        if name != "DT_STRING":
            assert tensors.dtype_name_for_numpy(np_type) == name


def test_the_dtype_table_and_field_numbers_are_tensorflows():
    """nbserve.servables.dtypes and tensors.FIELD_NUMBERS are written out (the codec never imports
    TensorFlow): every name and number must be TensorFlow's own."""
    for name, number in types_pb2.DataType.items():
        assert dt_name(number) == name
        if number < 24:
            assert DT_ENUM[name] == number
    assert dt_name(999) is None and dt_name(134) is None
    fields = {f.name: f.number for f in tensor_pb2.TensorProto.DESCRIPTOR.fields}
    for field, number in tensors.FIELD_NUMBERS.items():
        assert fields[field] == number
    assert {c.field for c in tensors.CODECS.values()} <= set(tensors.FIELD_NUMBERS)


def test_fill_in_place_equals_a_fresh_proto():
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    for content in (True, False):
        array = sample(np.float32, (2, 3))
        tensors.fill_tensor_proto(response.outputs[str(content)], array, content)
        assert response.outputs[str(content)] == to_tensor_proto(array, content)


@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.uint64, np.float16, np.bool_, object])
def test_dtype_name_agrees_with_tensorflow(dtype):
    assert tensors.dtype_name_for_numpy(dtype) == types_pb2.DataType.Name(
        tf.as_dtype(np.dtype(dtype) if dtype is not object else tf.string).as_datatype_enum)


def test_numpy_dtypes_a_tensor_cannot_hold_are_invalid_argument():
    for array in (np.array(["2020-01-01"], dtype="datetime64[D]"), np.zeros(2, dtype="V3")):
        with pytest.raises(ServingError) as info:
            to_tensor_proto(array)
        assert info.value.code == StatusCode.INVALID_ARGUMENT


# --- round trips and TF as the oracle -------------------------------------------------------------


@pytest.mark.parametrize("use_tensor_content", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", NUMERIC, ids=lambda d: np.dtype(d).name)
def test_round_trip_every_numeric_dtype_and_shape(dtype, shape, use_tensor_content):
    array = sample(dtype, shape)
    p = to_tensor_proto(array, use_tensor_content=use_tensor_content)
    assert p.dtype == tf.as_dtype(array.dtype).as_datatype_enum
    assert [d.size for d in p.tensor_shape.dim] == list(shape)
    assert bool(p.tensor_content) == (use_tensor_content and array.size > 0)
    assert same(from_tensor_proto(p), array)
    # TF reads what we write, in both forms, through Python and through C++.
    assert same(tf.make_ndarray(p), array)
    assert same(tf_parse(p), array)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", NUMERIC, ids=lambda d: np.dtype(d).name)
def test_our_protos_equal_tf_make_tensor_proto_in_the_form_tf_picks(dtype, shape):
    array = sample(dtype, shape)
    expected = tf.make_tensor_proto(array)
    ours = to_tensor_proto(array, use_tensor_content=bool(expected.tensor_content))
    if array.size == 0:
        expected.ClearField("tensor_content")
    assert ours == expected
    assert same(from_tensor_proto(expected), array)


def test_typed_fields_are_tf_servings_default_output_fields():
    cases = {np.float32: "float_val", np.float64: "double_val", np.int32: "int_val",
             np.int16: "int_val", np.int8: "int_val", np.uint8: "int_val", np.uint16: "int_val",
             np.int64: "int64_val", np.bool_: "bool_val", np.uint32: "uint32_val",
             np.uint64: "uint64_val", np.float16: "half_val", np.complex64: "scomplex_val"}
    for dtype, field in cases.items():
        array = sample(dtype, (4,))
        p = to_tensor_proto(array, use_tensor_content=False)
        assert [f.name for f, _ in p.ListFields()] == ["dtype", "tensor_shape", field]
    half = to_tensor_proto(np.array([1.0, -2.0], np.float16), use_tensor_content=False)
    assert list(half.half_val) == [0x3C00, 0xC000]  # bit patterns, as TF writes them


@pytest.mark.parametrize("small", [False, True], ids=["full range", "one-byte values"])
@pytest.mark.parametrize("n", [1, 200, 5000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128, np.int32,
                                   np.int64, np.int8, np.uint8, np.uint16, np.uint32, np.uint64,
                                   np.bool_, np.float16])
def test_packed_values_equal_protobufs_own_encoding(dtype, n, small):
    array = (np.arange(n) % 128).astype(dtype) if small else sample(dtype, (n,))
    ours = to_tensor_proto(array, use_tensor_content=False)
    field = tensors.CODECS[tensors.dtype_name_for_numpy(dtype)].field
    plain = tensor_pb2.TensorProto()
    plain.CopyFrom(ours)
    plain.ClearField(field)
    if dtype == np.float16:
        values = array.view(np.uint16).tolist()
    elif np.dtype(dtype).kind == "c":
        values = np.ascontiguousarray(array).view(array.real.dtype).tolist()
    else:
        values = array.tolist()
    getattr(plain, field).extend(values)
    assert ours.SerializeToString() == plain.SerializeToString()


def test_non_native_byte_order_and_non_contiguous_arrays_are_written_little_endian_c_order():
    big = np.arange(6, dtype=">i4").reshape(2, 3)
    assert to_tensor_proto(big).tensor_content == np.arange(6, dtype="<i4").tobytes()
    strided = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2].T
    assert same(from_tensor_proto(to_tensor_proto(strided)), np.ascontiguousarray(strided))
    assert same(from_tensor_proto(to_tensor_proto(strided, False)), np.ascontiguousarray(strided))


def test_tensor_content_decodes_to_a_read_only_view():
    out = from_tensor_proto(to_tensor_proto(np.ones((2, 2), np.float32)))
    assert not out.flags.writeable
    assert out.dtype == np.float32 and out.shape == (2, 2)


@pytest.mark.parametrize("use_tensor_content", [True, False])
def test_strings_always_travel_in_string_val(use_tensor_content):
    for array in (np.array([[b"a", b""], [b"\xff\x00", b"xyz"]], dtype=object),
                  np.array([b"ab", b"c"]), np.array(b"scalar", dtype=object)):
        p = to_tensor_proto(array, use_tensor_content=use_tensor_content)
        assert p.dtype == types_pb2.DT_STRING and not p.tensor_content
        assert list(p.string_val) == np.asarray(array, dtype=object).ravel().tolist()
        out = from_tensor_proto(p)
        assert out.dtype == object and out.shape == array.shape
        assert out.ravel().tolist() == array.ravel().tolist()
        assert tf.make_ndarray(p).ravel().tolist() == array.ravel().tolist()
        assert p == tf.make_tensor_proto(array)


def test_str_elements_are_utf8_encoded_and_other_objects_are_rejected():
    p = to_tensor_proto(np.array(["é", b"b"], dtype=object))
    assert list(p.string_val) == ["é".encode(), b"b"]
    assert list(to_tensor_proto(np.array(["xé", "y"])).string_val) == ["xé".encode(), b"y"]
    with pytest.raises(ServingError) as info:
        to_tensor_proto(np.array([b"a", 3], dtype=object))
    assert info.value.code == StatusCode.INVALID_ARGUMENT


def test_empty_string_tensor_round_trips():
    out = from_tensor_proto(to_tensor_proto(np.empty((0, 3), dtype=object)))
    assert out.shape == (0, 3) and out.dtype == object


# --- TF's FromProto value rules -------------------------------------------------------------------

FILL_CASES = {
    "single value fills the shape": proto("DT_FLOAT", (2, 3), float_val=[7.5]),
    "fewer values repeat the last": proto("DT_INT32", (5,), int_val=[1, 2, 3]),
    "no values give zeros": proto("DT_DOUBLE", (2, 2)),
    "more values are truncated": proto("DT_INT64", (2,), int64_val=[1, 2, 3, 4]),
    "values of another field are ignored": proto("DT_FLOAT", (3,), int_val=[1, 2]),
    "no shape means a scalar": proto("DT_FLOAT", (), float_val=[4.0, 5.0]),
    "int_val wraps into int8": proto("DT_INT8", (3,), int_val=[300, -200, 127]),
    "int_val wraps into uint8": proto("DT_UINT8", (3,), int_val=[300, -1, 255]),
    "int_val wraps into uint16": proto("DT_UINT16", (2,), int_val=[70000, -1]),
    "half_val keeps the low 16 bits": proto("DT_HALF", (3,), half_val=[0x3C00, 0x13C00]),
    "bfloat16 from half_val": proto("DT_BFLOAT16", (2,), half_val=[0x3FC0]),
    "bools fill": proto("DT_BOOL", (3,), bool_val=[False, True]),
    "uint64 full range": proto("DT_UINT64", (2,), uint64_val=[2**64 - 1]),
    "complex pairs, odd value dropped": proto("DT_COMPLEX64", (3,), scomplex_val=[1, 2, 3]),
    "complex128 fill": proto("DT_COMPLEX128", (2,), dcomplex_val=[1, -1]),
    "strings repeat the last": proto("DT_STRING", (3,), string_val=[b"a", b"b"]),
    "no strings give empty bytes": proto("DT_STRING", (2,)),
    "strings truncated": proto("DT_STRING", (1,), string_val=[b"a", b"b"]),
    "tensor_content wins over values": proto("DT_INT32", (2,), int_val=[9],
                                              tensor_content=np.array([1, 2], "<i4").tobytes()),
    "zero elements ignore content": proto("DT_FLOAT", (0, 4), tensor_content=b"garbage"),
    "string tensor_content": proto("DT_STRING", (3,), tensor_content=b"\x01\x00\x02abc"),
    "unknown_rank is ignored as TF ignores it": proto(
        "DT_FLOAT", (2,), float_val=[1.0], tensor_shape={"unknown_rank": True}),
}


@pytest.mark.parametrize("p", FILL_CASES.values(), ids=FILL_CASES.keys())
def test_value_rules_match_tensorflows_from_proto(p):
    if p.tensor_shape.unknown_rank:
        p.tensor_shape.dim.add(size=2)
    expected = tf_parse(p)
    assert expected is not None
    assert same(from_tensor_proto(p), expected)


# --- malformed protos -----------------------------------------------------------------------------

MALFORMED = {
    "DT_INVALID": tensor_pb2.TensorProto(dtype=0, float_val=[1.0]),
    "unknown dtype number": tensor_pb2.TensorProto(dtype=999, float_val=[1.0]),
    "reference dtype": tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT_REF, float_val=[1.0]),
    "negative dim": proto("DT_FLOAT", (2, -1), float_val=[1.0]),
    "negative dim in an empty tensor": proto("DT_FLOAT", (0, -1)),
    "rank above 254": proto("DT_FLOAT", (1,) * 255, float_val=[1.0]),
    "element count overflows int64": proto("DT_FLOAT", (2**40, 2**40, 0)),
    "tensor_content too short": proto("DT_FLOAT", (3,), tensor_content=b"x" * 11),
    "tensor_content too long": proto("DT_INT64", (1,), tensor_content=b"x" * 9),
    "bool tensor_content not 0/1": proto("DT_BOOL", (2,), tensor_content=b"\x02\x00"),
    "string tensor_content with extra bytes": proto("DT_STRING", (2,),
                                                    tensor_content=b"\x01\x02abcd"),
    "string tensor_content too few lengths": proto("DT_STRING", (3,), tensor_content=b"\x01a"),
    "string tensor_content truncated varint": proto("DT_STRING", (1,), tensor_content=b"\x80"),
}


@pytest.mark.parametrize("p", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_protos_are_invalid_argument_as_tf_rejects_them(p):
    err = parse_error(p)
    assert err.message.startswith("Unable to parse tensor proto: ")
    if p.dtype in tensors._BY_NUMBER:
        assert tf_parse(p) is None


@pytest.mark.parametrize("p", MALFORMED.values(), ids=MALFORMED.keys())
def test_with_an_alias_the_message_is_tf_servings(p):
    err = parse_error(p, alias="x")
    assert err.message == "tensor parsing error: x"
    assert isinstance(err.__cause__, ValueError) and str(err.__cause__)


@pytest.mark.parametrize("dtype", ["DT_QINT8", "DT_RESOURCE", "DT_VARIANT", "DT_QUINT16"])
def test_valid_dtypes_nbserve_cannot_represent_are_invalid_argument(dtype):
    err = parse_error(proto(dtype, (1,)), alias="in")
    assert err.message == "tensor parsing error: in"
    assert "unsupported dtype " + dtype in str(err.__cause__)


@pytest.mark.parametrize("rank", [65, 254])
def test_ranks_tensorflow_allows_but_numpy_cannot_hold_are_invalid_argument(rank):
    err = parse_error(proto("DT_FLOAT", (1,) * rank, float_val=[1.0]), alias="in")
    assert err.code == StatusCode.INVALID_ARGUMENT and err.message == "tensor parsing error: in"
    assert "cannot be represented" in str(err.__cause__)


def test_arrays_above_the_size_bound_are_rejected_before_allocation():
    p = proto("DT_FLOAT", (2**20, 2**20), float_val=[0.0])
    assert "more than the limit" in parse_error(p).message
    small = proto("DT_STRING", (100,), string_val=[b"a"])
    assert "more than the limit" in parse_error(small, max_bytes=799).message
    assert from_tensor_proto(small, max_bytes=800).shape == (100,)


# --- expected dtype -------------------------------------------------------------------------------


def test_expected_dtype_mismatch_uses_tfs_run_time_message():
    p = to_tensor_proto(np.array([b"a"], dtype=object))
    with pytest.raises(ServingError) as info:
        from_tensor_proto(p, "DT_FLOAT", alias="x", arg_index=2)
    assert info.value == ServingError(StatusCode.INVALID_ARGUMENT,
                                      "Expects arg[2] to be float but string is provided")
    assert from_tensor_proto(p, "DT_STRING").tolist() == [b"a"]
    assert from_tensor_proto(p, "DT_INVALID").tolist() == [b"a"]
    half = to_tensor_proto(np.ones(1, np.float16))
    with pytest.raises(ServingError, match=r"Expects arg\[0\] to be int64 but half is provided"):
        from_tensor_proto(half, "DT_INT64")
    qint = proto("DT_QINT8", (1,))
    with pytest.raises(ServingError, match="to be float but qint8 is provided"):
        from_tensor_proto(qint, "DT_FLOAT")


def test_parse_errors_win_over_dtype_mismatch():
    err = parse_error(proto("DT_FLOAT", (-1,)), expected_dtype="DT_INT32", alias="a")
    assert err.message == "tensor parsing error: a"


# --- properties -----------------------------------------------------------------------------------

ROUND_TRIP_DTYPES = [np.dtype(d) for d in NUMERIC if d is not ml_dtypes.bfloat16]


@st.composite
def arrays(draw):
    if draw(st.integers(0, 9)) == 0:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        items = draw(st.lists(st.binary(max_size=6), min_size=int(np.prod(shape)),
                              max_size=int(np.prod(shape))))
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out.reshape(shape)
    dtype = draw(st.sampled_from(ROUND_TRIP_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    return draw(hnp.arrays(dtype, shape))


@settings(max_examples=150, deadline=None)
@given(arrays(), st.booleans())
def test_property_round_trip(array, use_tensor_content):
    p = to_tensor_proto(array, use_tensor_content=use_tensor_content)
    assert same(from_tensor_proto(p), array)
    assert same(from_tensor_proto(tensor_pb2.TensorProto.FromString(p.SerializeToString())), array)


DTYPE_NUMBERS = [*sorted(tensors._BY_NUMBER), 0, 11, 20, 101, 999, -3]
FIELD_VALUES = {
    "float_val": st.floats(width=32),
    "double_val": st.floats(),
    "int_val": st.integers(-2**31, 2**31 - 1),
    "int64_val": st.integers(-2**63, 2**63 - 1),
    "bool_val": st.booleans(),
    "uint32_val": st.integers(0, 2**32 - 1),
    "uint64_val": st.integers(0, 2**64 - 1),
    "half_val": st.integers(-2**31, 2**31 - 1),
    "scomplex_val": st.floats(width=32),
    "dcomplex_val": st.floats(),
    "string_val": st.binary(max_size=4),
}


@st.composite
def garbage_protos(draw):
    p = tensor_pb2.TensorProto(dtype=draw(st.sampled_from(DTYPE_NUMBERS)))
    sizes = st.integers(-2, 4) | st.sampled_from([2**31, 2**40, 2**62])
    for size in draw(st.lists(sizes, max_size=4)):
        p.tensor_shape.dim.add(size=size)
    p.tensor_shape.unknown_rank = draw(st.booleans())
    for field in draw(st.sets(st.sampled_from(sorted(FIELD_VALUES)), max_size=2)):
        getattr(p, field).extend(draw(st.lists(FIELD_VALUES[field], max_size=6)))
    if draw(st.booleans()):
        p.tensor_content = draw(st.binary(max_size=40))
    return p


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage_protos())
def test_property_garbage_protos_decode_as_tf_decodes_them_or_raise_serving_error(p):
    try:
        ours = from_tensor_proto(p, max_bytes=1 << 16)
    except ServingError as err:
        assert err.code == StatusCode.INVALID_ARGUMENT
        ours = None
    if p.dtype not in tensors._BY_NUMBER:
        assert ours is None
        return
    dims = [d.size for d in p.tensor_shape.dim]
    itemsize = tensors._BY_NUMBER[p.dtype].dtype.itemsize
    if all(d >= 0 for d in dims) and int(np.prod(dims, dtype=object)) * itemsize > 1 << 16:
        assert ours is None  # over our bound; TF would try to allocate it
        return
    expected = tf_parse(p)
    if ours is None and expected is not None:
        # The one documented deviation: an empty tensor whose other dims numpy cannot represent.
        assert expected.size == 0 and 0 in dims
        assert int(np.prod([d for d in dims if d], dtype=object)) * itemsize >= 2**63
    elif ours is not None:
        assert expected is not None and same(ours, expected)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


@st.composite
def wire_records(draw):
    """Wire-format bytes: random (field 1..17, wire type, payload) records, mostly parseable."""
    out = bytearray()
    if draw(st.booleans()):  # a supported dtype first, so that later records get decoded
        out += b"\x08" + _varint(draw(st.sampled_from(sorted(tensors._BY_NUMBER))))
    for _ in range(draw(st.integers(0, 8))):
        field = draw(st.integers(1, 17))
        wire = draw(st.sampled_from([0, 1, 2, 5]))
        out += _varint((field << 3) | wire)
        if wire == 0:
            out += _varint(draw(st.integers(0, 2**64 - 1)))
        elif wire == 1:
            out += draw(st.binary(min_size=8, max_size=8))
        elif wire == 5:
            out += draw(st.binary(min_size=4, max_size=4))
        else:
            payload = draw(st.binary(max_size=24))
            out += _varint(len(payload)) + payload
    return bytes(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(wire_records() | st.binary(max_size=64))
def test_property_random_wire_bytes_raise_nothing_but_serving_error(data):
    try:
        p = tensor_pb2.TensorProto.FromString(data)
    except DecodeError:
        assume(False)
    try:
        out = from_tensor_proto(p, max_bytes=1 << 16)
    except ServingError as err:
        assert err.code in (StatusCode.INVALID_ARGUMENT, StatusCode.RESOURCE_EXHAUSTED)
    else:
        assert isinstance(out, np.ndarray)


def test_padding_from_fewer_values_is_bounded_but_full_content_is_not():
    from nbserve.codec.tensors import MAX_FILLED_BYTES

    elements = MAX_FILLED_BYTES // 4 + 1  # float32: one element past the limit
    padded = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.5])
    padded.tensor_shape.dim.add(size=elements)
    with pytest.raises(ServingError) as info:
        from_tensor_proto(padded)
    assert info.value.code == StatusCode.INVALID_ARGUMENT
    assert "padded from fewer values" in info.value.message
    padded.tensor_shape.dim[0].size = elements - 1  # at the limit: filled as TensorFlow does
    array = from_tensor_proto(padded)
    assert array.shape == (elements - 1,) and array[-1] == 1.5
    whole = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT,
                                   tensor_content=np.ones(elements, np.float32).tobytes())
    whole.tensor_shape.dim.add(size=elements)
    assert from_tensor_proto(whole).shape == (elements,)  # every element on the wire: allowed


def test_shapes_are_remembered_by_their_bytes_valid_ones_only_and_boundedly():
    p = proto("DT_FLOAT", (2, 1), float_val=[1.0, 2.0])
    first, again = from_tensor_proto(p), from_tensor_proto(p)
    assert same(first, again) and first.shape == (2, 1)
    named = proto("DT_FLOAT", (), float_val=[3.0])
    named.tensor_shape.dim.add(size=1, name="batch")  # other bytes, the same dims
    assert from_tensor_proto(named).shape == (1,)
    bad = proto("DT_FLOAT", (-1,), float_val=[1.0])
    for _ in range(2):  # an invalid shape is never remembered as valid
        assert parse_error(bad).code == StatusCode.INVALID_ARGUMENT
    for n in range(tensors._SHAPES_KEPT + 10):
        assert from_tensor_proto(proto("DT_FLOAT", (n + 1,), float_val=[0.5])).shape == (n + 1,)
    assert len(tensors._SHAPES) <= tensors._SHAPES_KEPT
