"""REST JSON for Predict: golden cases from spec §1.3, §1.6, §1.8 (and TF Serving's
json_tensor_test)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nbserve.codec import json_tensor as jt
from nbserve.codec import rapidjson
from nbserve.codec.json_tensor import (
    PredictBody,
    decode_inputs,
    encode_predict_response,
    float_texts,
    format_float,
    json_value_to_string,
    parse_json,
    read_predict_body,
)
from nbserve.errors import ServingError, StatusCode
from nbserve.servables.signature import Signature, TensorInfo

F32 = np.float32


def signature(key: str = "serving_default", **inputs: str) -> Signature:
    return Signature(key, inputs={a: TensorInfo(f"{a}:0", d) for a, d in inputs.items()},
                     outputs={"y": TensorInfo("y:0", "DT_FLOAT")})


def predict(body: str | bytes, sig: Signature) -> dict[str, np.ndarray]:
    raw = body.encode() if isinstance(body, str) else body
    return decode_inputs(read_predict_body(parse_json(raw), raw), sig)


def error_of(fn, *args) -> ServingError:
    with pytest.raises(ServingError) as info:
        fn(*args)
    return info.value


# ----------------------------------------------------------------------------- §1.8 floats

def hpt(x: float) -> np.float32:
    """half_plus_two computed in float32, as the model does."""
    return F32(0.5) * F32(x) + F32(2)


HPT_GOLDEN = [(1, "2.5"), (2, "3.0"), (5, "4.5"), (0.1, "2.05"), (1e6, "500002.0"),
              (2e7, "10000002.0"), (9999996, "5e+06"), (-4, "0.0"), (1e-05, "2.00000501"),
              (-3.99998, "1.00135803e-05"), (1 / 3, "2.16666675")]


@pytest.mark.parametrize("x,text", HPT_GOLDEN)
def test_format_float_half_plus_two_golden(x, text):
    assert format_float(hpt(x)) == text
    assert float_texts(np.array([hpt(x)])) == [text]


@pytest.mark.parametrize("value,text", [
    (math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity"),
    (9000000, "9e+06"), (999999, "999999.0"), (0.5, "0.5"), (0.0003, "0.0003"),
    (0.00003, "3e-05"), (555557.5, "555557.5"), (0.0, "0.0"), (-0.0, "-0.0"), (0.2, "0.2"),
    (1e39, "Infinity"),  # narrowed to float32 first
])
def test_format_float_six_digits_then_nine(value, text):
    assert format_float(value) == text


@pytest.mark.parametrize("value,text", [
    (0.1, "0.1"), (1 / 3, "0.33333333333333331"), (2.0, "2.0"), (1e300, "1e+300"),
    (1e16, "1e+16"), (12345678901234567.0, "12345678901234568.0"), (math.nan, "NaN"),
])
def test_format_float_double(value, text):
    assert format_float(value, double=True) == text
    assert float_texts(np.array([value]), double=True) == [text]


finite_or_not_f32 = hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=5),
                               elements=st.floats(width=32))


@settings(max_examples=150, deadline=None)
@given(finite_or_not_f32)
def test_float32_outputs_round_trip_exactly(array):
    """encode -> Python json -> float32 gives back the very same values (NaN, ±inf, ±0 included)."""
    for body_format, key in (("row", "predictions"), ("columnar", "outputs")):
        if body_format == "row" and array.ndim == 0:
            continue
        decoded = json.loads(encode_predict_response({"y": array}, body_format))[key]
        back = np.array(decoded, dtype=np.float32).reshape(array.shape)
        assert np.array_equal(back, array, equal_nan=True)
        numbers = ~np.isnan(array)  # a NaN's sign is not carried by the bare NaN token
        assert np.array_equal(np.signbit(back[numbers]), np.signbit(array[numbers]))


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.float32, st.integers(0, 40), elements=st.floats(width=32)))
def test_vectorised_float_texts_match_the_scalar_algorithm(array):
    assert float_texts(array) == [format_float(v) for v in array.tolist()]


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, st.integers(0, 40), elements=st.floats()))
def test_vectorised_double_texts_match_the_scalar_algorithm(array):
    assert float_texts(array, double=True) == [format_float(v, double=True)
                                               for v in array.tolist()]


def test_six_digit_decimals_keep_their_short_form():
    values = np.array([0.1, 0.25, 123.456, 1e-30, 3.14159, 65504.0, 1e-45], dtype=np.float32)
    assert float_texts(values) == ["0.1", "0.25", "123.456", "1e-30", "3.14159", "65504.0",
                                   "1.4013e-45"]


# ----------------------------------------------------------------------------- parsing

def test_parse_keeps_integers_and_decimals_apart():
    doc = parse_json(b'{"a": [1, 1.0, -0, 1e2, 18446744073709551615, 2.5E-3]}')
    assert [type(v) for v in doc["a"]] == [int, float, int, float, int, float]
    assert doc["a"][4] == 2 ** 64 - 1


@pytest.mark.parametrize("body,values", [
    (b"[Inf, Infinity, -Inf, -Infinity, 1]", [math.inf, math.inf, -math.inf, -math.inf, 1]),
    (b"[Infinity, -Infinity, 1]", [math.inf, -math.inf, 1]),  # the fast path
])
def test_parse_accepts_infinity_tokens(body, values):
    assert parse_json(body) == values


@pytest.mark.parametrize("body", [b"[NaN, -NaN]", b"[NaN]"])
def test_parse_accepts_nan_tokens(body):
    assert all(math.isnan(v) for v in parse_json(body))


def test_number_beyond_double_range_is_infinite_on_the_fast_path():
    """Documented deviation: rapidjson reports 'Number too big to be stored in double.'."""
    assert parse_json(b"[1e400, -1e400]") == [math.inf, -math.inf]


@pytest.mark.parametrize("body,value", [
    (b'{"a": 1} trailing garbage', {"a": 1}),
    (b'  \n{"a": 1}}}', {"a": 1}),
    (b'\xef\xbb\xbf{"a": Inf}', {"a": math.inf}),  # UTF-8 BOM skipped
    (b'{"a": 1, "a": 2}', {"a": 1}),  # rapidjson's FindMember: the first wins
    (b'{"a": 1, "a": 2, "b": Inf}', {"a": 1, "b": math.inf}),
    (b'"\\ud83d\\ude00 \\u00e9\\/"', "\U0001F600 \u00e9/"),
    (b'123abc', 123),
    (b'{"s": "caf\xc3\xa9"}', {"s": "caf\u00e9"}),
])
def test_parse_golden_values(body, value):
    assert parse_json(body) == value


def test_parse_keeps_bytes_that_are_not_utf8():
    doc = parse_json(b'{"s": "a\xff\xfeb"}')
    assert jt.utf8_bytes(doc["s"]) == b"a\xff\xfeb"


PARSE_ERRORS = [
    (b"", "JSON Parse error: The document is empty"),
    (b"   ", "JSON Parse error: The document is empty. at offset: 3"),
    (b"{", "JSON Parse error: Missing a name for object member. at offset: 1"),
    (b'{"a" 1}', "JSON Parse error: Missing a colon after a name of object member. at offset: 5"),
    (b'{"a": 1 "b": 2}',
     "JSON Parse error: Missing a comma or '}' after an object member. at offset: 8"),
    (b'{"a": 1,}', "JSON Parse error: Missing a name for object member. at offset: 8"),
    (b"[1 2]", "JSON Parse error: Missing a comma or ']' after an array element. at offset: 3"),
    (b"[1,]", "JSON Parse error: Invalid value. at offset: 3"),
    (b"{'a': 1}", "JSON Parse error: Missing a name for object member. at offset: 1"),
    (b"nul", "JSON Parse error: Invalid value. at offset: 3"),
    (b"[tru]", "JSON Parse error: Invalid value. at offset: 4"),
    (b"[Nan]", "JSON Parse error: Invalid value. at offset: 3"),
    (b"[Infinit]", "JSON Parse error: Invalid value. at offset: 8"),
    (b"[-]", "JSON Parse error: Invalid value. at offset: 2"),
    (b"[1.]", "JSON Parse error: Miss fraction part in number. at offset: 3"),
    (b"[1e+]", "JSON Parse error: Miss exponent in number. at offset: 4"),
    (b'["\\u12g4"]',
     "JSON Parse error: Incorrect hex digit after \\u escape in string. at offset: 2"),
    (b'["\\ud800"]', "JSON Parse error: The surrogate pair in string is invalid. at offset: 2"),
    (b'["\\udc00"]', "JSON Parse error: The surrogate pair in string is invalid. at offset: 2"),
    (b'["\\x"]', "JSON Parse error: Invalid escape character in string. at offset: 2"),
    (b'{"a": "abc', "JSON Parse error: Missing a closing quotation mark in string. at offset: 10"),
    (b'["a\nb"]', "JSON Parse error: Invalid encoding in string. at offset: 3"),
    (b'["a\x00b"]', "JSON Parse error: Missing a closing quotation mark in string. at offset: 3"),
    (b'{"\xff": x}', "JSON Parse error: Invalid value. at offset: 6"),  # offsets count bytes
    (b"[Inf, 1e400]", "JSON Parse error: Number too big to be stored in double. at offset: 6"),
]


@pytest.mark.parametrize("body,message", PARSE_ERRORS)
def test_parse_errors_are_rapidjsons(body, message):
    err = error_of(parse_json, body)
    assert err.code == StatusCode.INVALID_ARGUMENT
    assert err.message == message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_fast_and_exact_parsers_agree_with_python_json(value):
    body = json.dumps(value).encode()
    expected = json.loads(body, parse_int=_rj_int)
    assert parse_json(body) == expected
    assert rapidjson.parse_json_exact(body) == expected
    assert rapidjson._ExactParser(body).parse() == expected


def _rj_int(token: str) -> int | float:
    """rapidjson holds an integer outside [-2**63, 2**64) as a double."""
    value = int(token)
    return value if rapidjson.INT64_MIN <= value < rapidjson.UINT64_END else float(value)


def test_integers_beyond_64_bits_are_doubles_as_in_rapidjson():
    values = [2 ** 64 - 1, 2.0 ** 64, -(2.0 ** 63), 7.777777777777778e299]
    body = b"[18446744073709551615, 18446744073709551616, -9223372036854775809, " + b"7" * 300
    for tail in (b"]", b", NaN]"):  # orjson, then the exact readers
        for parse in (parse_json, rapidjson.parse_json_exact,
                      lambda b: rapidjson._ExactParser(b).parse()):
            doc = parse(body + tail)
            assert doc[:4] == values and [type(v) for v in doc[:4]] == [int, float, float, float]


def test_integers_past_pythons_digit_limit_are_infinite_or_too_big():
    body = b"[" + b"7" * 5000 + b"]"
    assert parse_json(body) == rapidjson.parse_json_exact(body) == [math.inf]
    err = error_of(lambda b: rapidjson._ExactParser(b).parse(), body)
    assert err.message == "JSON Parse error: Number too big to be stored in double. at offset: 1"


# ----------------------------------------------------------------------------- rendering

@pytest.mark.parametrize("value,text", [
    ({"instances": [1.0]}, '{\n    "instances": [\n        1.0\n    ]\n}'),
    ({"a": {}, "b": [], "c": None, "d": True, "e": "x\"\n\x01"},
     '{\n    "a": {},\n    "b": [],\n    "c": null,\n    "d": true,\n    "e": "x\\"\\n\\u0001"\n}'),
    (0.1, "0.1"), (2.0, "2.0"), (5, "5"), (1e39, "1e+39"), (math.nan, "NaN"),
    (-math.inf, "-Infinity"), ("a", '"a"'),
    ([1e21, 1e-7, 0.001, 1e20],
     "[\n    1e21,\n    1e-7,\n    0.001,\n    100000000000000000000.0\n]"),
    ([1.0, math.nan, 2.0], "[\n    1.0,\n    "),  # rapidjson's writer stops at a nested NaN
    (2 ** 64, "1.84467441e+19"),  # beyond uint64: a double
])
def test_json_value_to_string_is_rapidjsons_pretty_writer(value, text):
    assert json_value_to_string(value) == text


# ----------------------------------------------------------------------------- request body

BODY_ERRORS = [
    (b"[1]", "JSON Value: [\n    1\n] Is not object"),
    (b"1.5", "JSON Value: 1.5 Is not object"),
    (b'{"signature_name": 5, "instances": [1]}',
     'JSON Value: {\n    "signature_name": 5,\n    "instances": [\n        1\n    ]\n} '
     'not formatted '
     "correctly. 'signature_name' key must be a string value."),
    (b'{"instances": [1], "inputs": [1]}',
     'JSON Value: {\n    "instances": [\n        1\n    ],\n    "inputs": [\n        1\n    ]\n'
     '} Not '
     "formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "),
    (b'{"foo": 1}', "Missing 'inputs' or 'instances' key"),
    (b'{"instances": 1}', 'JSON Value: {\n    "instances": 1\n} Expecting \'instances\' to be an '
                          "list/array"),
    (b'{"instances": []}',
     'JSON Value: {\n    "instances": []\n} No values in \'instances\' array'),
]


@pytest.mark.parametrize("raw,message", BODY_ERRORS)
def test_read_predict_body_errors(raw, message):
    err = error_of(read_predict_body, parse_json(raw), raw)
    assert (err.code, err.message) == (StatusCode.INVALID_ARGUMENT, message)


def test_read_predict_body_formats_and_signature():
    body = read_predict_body(parse_json(b'{"instances": [1, 2]}'), b"")
    assert (body.signature_name, body.format, body.data) == ("serving_default", "row", [1, 2])
    assert not body.explicit_signature and not body.maybe_bools
    body = read_predict_body(parse_json(b'{"signature_name": "s", "inputs": 3, "x": true}'))
    assert (body.signature_name, body.format, body.data) == ("s", "columnar", 3)
    assert body.explicit_signature and body.maybe_bools


def test_zero_input_signature_cannot_be_called():
    body = read_predict_body(parse_json(b'{"signature_name": "get_counter", "instances": [1]}'))
    err = error_of(decode_inputs, body, Signature("get_counter"))
    assert err.message == "Failed to get input map for signature: get_counter"


# ----------------------------------------------------------------------------- decoding

def test_row_single_unnamed_tensor():
    x = predict('{"instances": [[1,2],[3,4],[5,6]]}', signature(default="DT_INT32"))["default"]
    assert x.dtype == np.int32 and x.tolist() == [[1, 2], [3, 4], [5, 6]]


def test_row_mixed_numbers_for_float_and_double():
    f = predict('{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}', signature(x="DT_FLOAT"))["x"]
    assert f.dtype == np.float32
    assert f.tolist() == np.array([1, 2, 3, 4, 5.003, 0.007, 0], dtype=np.float32).tolist()
    d = predict('{"instances": [1.0, 2, 0.662, 0]}', signature(x="DT_DOUBLE"))["x"]
    assert d.dtype == np.float64 and d.tolist() == [1.0, 2.0, 0.662, 0.0]


def test_float_narrowing():
    x = predict('{"instances": [1435774380, 1e39, -1e39, 1e-50, NaN]}',
                signature(x="DT_FLOAT"))["x"]
    assert x[0] == F32(1435774336.0)
    assert x[1] == np.inf and x[2] == -np.inf and x[3] == 0 and np.isnan(x[4])


def test_integers_reach_float_through_double_as_in_rapidjson():
    """(float)(double)i, not (float)i: 2^60 + 2^36 + 1 rounds to the float32 2^60."""
    value = 2 ** 60 + 2 ** 36 + 1
    body = f'{{"instances": [{value}, 1]}}'
    assert predict(body, signature(x="DT_FLOAT"))["x"][0] == F32(2 ** 60)
    dtype = jt._make_dtype("DT_FLOAT")
    values, _ = jt._decode_exact([value], dtype)
    assert dtype.stack(values)[0] == F32(2 ** 60)


def test_row_base64_strings():
    sig = signature(default="DT_STRING")
    x = predict('{"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}', sig)["default"]
    assert x.dtype == object and x.tolist() == [b"hello", b"world"]
    x = predict('{"instances": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}', sig)["default"]
    assert x.shape == (2, 1) and x.tolist() == [[b"hello"], [b"world"]]
    x = predict('{"instances": [{"default": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}]}',
                sig)["default"]
    assert x.shape == (1, 2, 1)
    x = predict('{"instances": ["caf\u00e9", "x"]}', sig)["default"]
    assert x.tolist() == ["caf\u00e9".encode(), b"x"]


def test_row_multiple_named_tensors():
    sig = signature(int_tensor="DT_INT32", str_tensor="DT_STRING", float_tensor="DT_FLOAT",
                    dbl_tensor="DT_DOUBLE")
    out = predict("""{"instances": [
        {"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"],
         "float_tensor": [1.0, NaN], "dbl_tensor": [NaN]},
        {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"],
         "float_tensor": [2.0, Infinity], "dbl_tensor": [2.0]}]}""", sig)
    assert out["int_tensor"].shape == (2, 3, 2)
    assert out["int_tensor"][1].tolist() == [[7, 8], [9, 0], [1, 2]]
    assert out["str_tensor"].tolist() == [[b"foo", b"bar"], [b"baz", b"bat"]]
    assert out["float_tensor"].dtype == np.float32 and out["float_tensor"][1, 1] == np.inf
    assert out["dbl_tensor"].shape == (2, 1) and np.isnan(out["dbl_tensor"][0, 0])


def test_columnar_formats():
    sig = signature(int_tensor="DT_INT32")
    for body in ('{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]]}}',
                 '{"inputs": [[[1,2],[3,4],[5,6]]]}'):
        assert predict(body, sig)["int_tensor"].shape == (1, 3, 2)
    multi = signature(int_tensor="DT_INT32", str_tensor="DT_STRING", bin_tensor="DT_STRING")
    out = predict('{"inputs": {"int_tensor": [1, 2], "str_tensor": ["foo", "bar"], '
                  '"bin_tensor": {"b64": "aGVsbG8="}, "ignored": 1}}', multi)
    assert set(out) == {"int_tensor", "str_tensor", "bin_tensor"}
    assert out["bin_tensor"].shape == () and out["bin_tensor"][()] == b"hello"
    scalar = predict('{"inputs": 3.5}', signature(x="DT_FLOAT"))["x"]
    assert scalar.shape == () and scalar == F32(3.5)


def test_shapes_in_the_signature_are_not_checked():
    sig = Signature("s", inputs={"x": TensorInfo("x:0", "DT_FLOAT", (-1, 1))})
    assert predict('{"instances": [[1, 2], [3, 4]]}', sig)["x"].shape == (2, 2)


@pytest.mark.parametrize("dtype,body,expected", [
    ("DT_INT8", "[127, -128, 300]", [127, -128, 44]),  # int_val -> int8 wraps, as TF's cast
    ("DT_UINT8", "[0, 255, 256]", [0, 255, 0]),
    ("DT_INT16", "[-32768, 32767]", [-32768, 32767]),
    ("DT_INT32", "[-2147483648, 2147483647]", [-2147483648, 2147483647]),
    ("DT_INT64", "[-9223372036854775808, 9223372036854775807]",
     [-9223372036854775808, 9223372036854775807]),
    ("DT_UINT32", "[0, 4294967295]", [0, 4294967295]),
    ("DT_UINT64", "[0, 18446744073709551615]", [0, 18446744073709551615]),
    ("DT_BOOL", "[true, false]", [True, False]),
])
def test_integer_and_bool_dtypes(dtype, body, expected):
    x = predict(f'{{"instances": {body}}}', signature(x=dtype))["x"]
    assert x.dtype == jt._make_dtype(dtype).numpy and x.tolist() == expected


DECODE_ERRORS = [
    # (input dtypes, body, code, message)
    ({"x": "DT_INT32"}, '{"instances": [[1,2],[3,4],[5,6,7]]}', StatusCode.INVALID_ARGUMENT,
     "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: Expecting tensor "
     "size: 2 but got: 3"),
    ({"x": "DT_INT32"}, '{"instances": [[1,2],[3,4],[[5,6]]]}', StatusCode.INVALID_ARGUMENT,
     "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: Expecting shape "
     "[2] but got: [1,2]"),
    ({"x": "DT_INT32"}, '{"instances": [1, [1]]}', StatusCode.INVALID_ARGUMENT,
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting shape "
     "[] but got: [1]"),
    ({"x": "DT_INT32"}, '{"instances": [[1,2],["a", "b"]]}', StatusCode.INVALID_ARGUMENT,
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: \"a\" "
     "Type: String is not of expected type: int32"),
    ({"x": "DT_INT32"}, '{"instances": [1.0]}', StatusCode.INVALID_ARGUMENT,
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: 1.0 "
     "Type: Number is not of expected type: int32"),
    ({"x": "DT_INT32"}, '{"instances": [2147483648]}', StatusCode.INVALID_ARGUMENT,
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: "
     "2147483648 Type: Number is not of expected type: int32"),
    ({"x": "DT_UINT32"}, '{"inputs": [-1]}', StatusCode.INVALID_ARGUMENT,
     "JSON Value: -1 Type: Number is not of expected type: uint32"),
    ({"x": "DT_INT64"}, '{"inputs": [true]}', StatusCode.INVALID_ARGUMENT,
     "JSON Value: true Type: True is not of expected type: int64"),
    ({"x": "DT_FLOAT"}, '{"inputs": [1, false]}', StatusCode.INVALID_ARGUMENT,
     "JSON Value: false Type: False is not of expected type: float"),
    ({"x": "DT_FLOAT"}, '{"inputs": [null]}', StatusCode.INVALID_ARGUMENT,
     "JSON Value: null Type: Null is not of expected type: float"),
    ({"x": "DT_FLOAT"}, '{"inputs": {"x": {"b64": "aGk="}}}', StatusCode.INVALID_ARGUMENT,
     'JSON Value: {\n    "b64": "aGk="\n} Type: Object is not of expected type: float'),
    ({"x": "DT_BOOL"}, '{"inputs": [1]}', StatusCode.INVALID_ARGUMENT,
     "JSON Value: 1 Type: Number is not of expected type: bool"),
    ({"x": "DT_STRING"}, '{"inputs": [1]}', StatusCode.INVALID_ARGUMENT,
     "JSON Value: 1 Type: Number is not of expected type: string"),
    ({"x": "DT_STRING"}, '{"inputs": [{"b64": "a"}]}', StatusCode.INVALID_ARGUMENT,
     "Unable to base64 decode"),
    ({"x": "DT_STRING"}, '{"inputs": [{"b64": 1}]}', StatusCode.INVALID_ARGUMENT,
     'JSON Value: {\n    "b64": 1\n} not formatted correctly for base64 data'),
    ({"x": "DT_STRING"}, '{"inputs": [{"b64": "aGk=", "x": 1}]}', StatusCode.INVALID_ARGUMENT,
     'JSON Value: {\n    "b64": "aGk=",\n    "x": 1\n} not formatted correctly for base64 data'),
    ({"x": "DT_HALF"}, '{"inputs": [1.5]}', StatusCode.UNIMPLEMENTED,
     "Conversion of JSON Value: 1.5 to type: half"),
    ({"x": "DT_BFLOAT16"}, '{"inputs": 1}', StatusCode.UNIMPLEMENTED,
     "Conversion of JSON Value: 1 to type: bfloat16"),
    ({"x": "DT_HALF"}, '{"instances": [1]}', StatusCode.INVALID_ARGUMENT,
     "Failed to process element: 0 of 'instances' list. Error: UNIMPLEMENTED: Conversion of JSON "
     "Value: 1 to type: half"),
    ({"x": "DT_INT32"}, '{"inputs": [[1, 2], [3]]}', StatusCode.INVALID_ARGUMENT,
     "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
    ({"x": "DT_INT32"}, '{"inputs": [[1, 2], 3]}', StatusCode.INVALID_ARGUMENT,
     "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
    ({"x": "DT_INT32"}, '{"inputs": [1, [2]]}', StatusCode.INVALID_ARGUMENT,
     "Encountered list at unexpected level: 1 expected < 1"),
    ({"x": "DT_INT32", "y": "DT_INT32"}, '{"instances": [1, 2]}', StatusCode.INVALID_ARGUMENT,
     "instances is a plain list, but expecting list of objects as multiple input tensors required "
     "as per tensorinfo_map"),
    ({"x": "DT_INT32", "y": "DT_INT32"}, '{"inputs": [1, 2]}', StatusCode.INVALID_ARGUMENT,
     "inputs is a plain value/list, but expecting an object as multiple input tensors required as "
     "per tensorinfo_map"),
    ({"x": "DT_INT32", "y": "DT_INT32"}, '{"inputs": {"x": 1}}', StatusCode.INVALID_ARGUMENT,
     "Missing named input: y in 'inputs' object."),
    ({"x": "DT_INT32", "y": "DT_INT32"}, '{"instances": [{"x": 1, "y": 2}, [1, 20, 30]]}',
     StatusCode.INVALID_ARGUMENT, "Expecting object but got list at item 1 of input list"),
    ({"x": "DT_STRING"}, '{"instances": [["baz", "bar"], {"x": ["baz", "bat"]}]}',
     StatusCode.INVALID_ARGUMENT, "Expecting value/list but got object at item 1 of input list"),
    ({"x": "DT_INT32", "y": "DT_INT32"}, '{"instances": [{"x": 1, "z": 2}]}',
     StatusCode.INVALID_ARGUMENT,
     "Failed to process element: 0 key: z of 'instances' list. Error: INVALID_ARGUMENT: JSON "
     "object: does not have named input: z"),
    ({"x": "DT_INT32", "y": "DT_INT32"}, '{"instances": [{"x": 1}]}', StatusCode.INVALID_ARGUMENT,
     "Failed to process element: 0 of 'instances' list. JSON object: {\n    \"x\": 1\n} "
     "keys must be equal to: x,y"),
    ({"x": "DT_INT32", "y": "DT_STRING"},
     '{"instances": [{"x": [[1,2],[3,4]], "y": ["a"]}, {"x": [[[1,2],[3,4]]], "y": ["b"]}]}',
     StatusCode.INVALID_ARGUMENT,
     "Failed to process element: 1 key: x of 'instances' list. Error: INVALID_ARGUMENT: Expecting "
     "shape [2,2] but got: [1,2,2]"),
    ({"x": "DT_INT32", "y": "DT_STRING"},
     '{"instances": [{"x": [1, 2], "y": ["a"]}, {"x": [1, 2], "y": [1]}]}',
     StatusCode.INVALID_ARGUMENT,
     "Failed to process element: 1 key: y of 'instances' list. Error: INVALID_ARGUMENT: JSON "
     "Value: 1 Type: Number is not of expected type: string"),
]


@pytest.mark.parametrize("inputs,body,code,message", DECODE_ERRORS)
def test_decode_errors(inputs, body, code, message):
    err = error_of(predict, body, signature(**inputs))
    assert (err.code, err.message) == (code, message)


nested_numbers = st.recursive(
    st.integers(-2 ** 65, 2 ** 65) | st.floats(width=32) | st.booleans() | st.none(),
    lambda children: st.lists(children, min_size=0, max_size=3), max_leaves=12)


def _reference(value, dtype):
    """The exact element-wise decoder alone (no numpy fast path)."""
    try:
        out, shape = jt._decode_exact(value, dtype)
        return dtype.stack(out).reshape(shape)
    except ServingError as err:
        return err


@settings(max_examples=300, deadline=None)
@given(nested_numbers, st.sampled_from(["DT_FLOAT", "DT_DOUBLE", "DT_INT8", "DT_UINT8", "DT_INT32",
                                        "DT_INT64", "DT_UINT32", "DT_UINT64", "DT_BOOL"]),
       st.booleans())
def test_numeric_fast_path_agrees_with_the_exact_decoder(value, dtype_name, rectangular):
    if rectangular:  # give the fast path something it can take
        value = np.asarray([value, value], dtype=object).tolist() if not isinstance(value, list) \
            else [value, value]
    dtype = jt._make_dtype(dtype_name)
    expected = _reference(value, dtype)
    try:
        got = jt._decode_value(value, dtype, maybe_bools=True)
    except ServingError as err:
        got = err
    if isinstance(expected, ServingError):
        assert got == expected
    else:
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert np.array_equal(got, expected, equal_nan=got.dtype.kind == "f")


def test_fast_path_rejects_bools_hidden_among_numbers():
    sig = signature(x="DT_FLOAT")
    raw = b'{"instances": [1.0, true]}'
    err = error_of(decode_inputs, read_predict_body(parse_json(raw), raw), sig)
    assert err.message.endswith("JSON Value: true Type: True is not of expected type: float")


def test_large_float_batch_decodes_exactly():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 16, 16, 3)).astype(np.float32)
    raw = json.dumps({"instances": images.tolist()}).encode()
    x = decode_inputs(read_predict_body(parse_json(raw), raw), signature(x="DT_FLOAT"))["x"]
    assert x.dtype == np.float32 and np.array_equal(x, images)


# ----------------------------------------------------------------------------- encoding

def loads(data: bytes):
    return json.loads(data)


def test_encode_single_tensor_row_and_columnar():
    t = np.array([[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]], dtype=np.int32)
    assert loads(encode_predict_response({"int_tensor": t}, "row")) == {"predictions": t.tolist()}
    assert loads(encode_predict_response({"int_tensor": t}, "columnar")) == {"outputs": t.tolist()}
    assert encode_predict_response({"y": np.arange(5, dtype=np.int64)}, "row") == \
        b'{"predictions":[0,1,2,3,4]}'


def test_encode_floats_in_tf_format():
    y = np.array([[hpt(1)], [hpt(2)], [hpt(5)]])
    assert encode_predict_response({"y": y}, "row") == b'{"predictions":[[2.5],[3.0],[4.5]]}'
    t = np.array([[9000000, 999999, 0.5], [0.0003, 0.00003, 555557.5]], dtype=np.float32)
    assert encode_predict_response({"float_tensor": t}, "row") == \
        b'{"predictions":[[9e+06,999999.0,0.5],[0.0003,3e-05,555557.5]]}'
    t = np.array([[np.nan, np.inf], [3, -np.inf]], dtype=np.float32)
    assert encode_predict_response({"float_tensor": t}, "columnar") == \
        b'{"outputs":[[NaN,Infinity],[3.0,-Infinity]]}'


def test_encode_bytes_and_strings():
    t = np.array([[b"hello", b"world"], [b"tf", b"serving"]], dtype=object)
    assert loads(encode_predict_response({"str_tensor_bytes": t}, "row")) == {"predictions": [
        [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}], [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]]}
    s = np.array([b"caf\xc3\xa9", b"bad\xff", b'q"\n'], dtype=object)
    assert loads(encode_predict_response({"s": s}, "columnar")) == \
        {"outputs": ["caf\u00e9", "bad\ufffd", 'q"\n']}


def test_encode_multiple_named_tensors():
    outputs = {
        "int_tensor": np.array([[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]],
                               dtype=np.int32),
        "str_tensor": np.array([[b"foo", b"bar"], [b"baz", b"bat"]], dtype=object),
        "float_tensor": np.array([[1.0], [2.0]], dtype=np.float32),
        "double_scalar_tensor": np.array([8.0, 9.0]),
        "str_tensor_bytes": np.array([[b"hello", b"world"], [b"tf", b"serving"]], dtype=object),
        "flag": np.array([True, False]),
    }
    row = loads(encode_predict_response(outputs, "row"))
    assert row["predictions"][1] == {
        "double_scalar_tensor": 9.0, "float_tensor": [2.0], "int_tensor": [[7, 8], [9, 0], [1, 2]],
        "str_tensor": ["baz", "bat"],
        "str_tensor_bytes": [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}], "flag": False}
    columnar = loads(encode_predict_response(outputs, "columnar"))["outputs"]
    assert columnar["double_scalar_tensor"] == [8.0, 9.0]
    assert columnar["int_tensor"] == outputs["int_tensor"].tolist()


def test_encode_zero_batch_and_empty_dims():
    assert encode_predict_response({"a": np.zeros((0, 2), np.int32)}, "row") == \
        b'{"predictions":[]}'
    assert encode_predict_response({"a": np.zeros((0, 1, 2), object),
                                    "b": np.zeros((0, 3, 4), np.float32)}, "row") == \
        b'{"predictions":[]}'
    assert encode_predict_response({"a": np.zeros((2, 3, 0), np.float32)}, "columnar") == \
        b'{"outputs":[[[],[],[]],[[],[],[]]]}'
    assert encode_predict_response({"a": np.float32(1.5)}, "columnar") == b'{"outputs":1.5}'


@pytest.mark.parametrize("outputs,body_format,message", [
    ({}, "row", "Cannot convert empty tensor map to JSON"),
    ({"tensor": np.array([1, 2], dtype=np.complex64)}, "row",
     "Failed to write JSON value for tensor type: complex64"),
    ({"tensor": np.array([1, 2], dtype=np.float16)}, "columnar",
     "Failed to write JSON value for tensor type: half"),
    ({"tensor": np.array([1, 2], dtype=np.uint16)}, "row",
     "Failed to write JSON value for tensor type: uint16"),
    ({"tensor": np.array(1, dtype=np.int32)}, "row",
     "Tensor name: tensor has no shape information "),
    ({"int_tensor": np.zeros((2, 3), np.int32), "str_tensor": np.zeros((1, 3), object)}, "row",
     "Tensor name: str_tensor has inconsistent batch size: 1 expecting: 2"),
    ({"int_tensor": np.zeros((0, 2), np.int32), "str_tensor": np.zeros((1, 2), object)}, "row",
     "Tensor name: str_tensor has inconsistent batch size: 1 expecting: 0"),
])
def test_encode_errors(outputs, body_format, message):
    err = error_of(encode_predict_response, outputs, body_format)
    assert (err.code, err.message) == (StatusCode.INVALID_ARGUMENT, message)


def test_encode_error_names_the_signatures_dtype():
    sig = Signature("s", outputs={"y": TensorInfo("y:0", "DT_BFLOAT16")})
    err = error_of(encode_predict_response, {"y": np.ones(2, np.float16)}, "row", sig)
    assert err.message == "Failed to write JSON value for tensor type: bfloat16"


def test_predict_body_is_a_plain_value():
    body = PredictBody(data=[1])
    assert body.signature_name == "serving_default" and body.format == "row"
    assert decode_inputs(body, signature(x="DT_INT64"))["x"].tolist() == [1]
