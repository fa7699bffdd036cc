"""The orjson fast path and the exact reader agree on every body the tests use.

``parse_json`` (orjson first) and ``parse_json_exact`` (the reference: ``json.JSONDecoder`` and the
byte-level rapidjson parser) must give the same document, and then the same tensors (dtype, shape,
bytes), tf.Examples or error (code and text) through the whole REST decoding, for every body
literal in tests/codec, tests/transport and tests/reliability, the REST fuzzer's and the codec
tests' generators, the benchmark's bodies, and the corner cases orjson and rapidjson disagree on.
"""

from __future__ import annotations

import ast
import json
import math
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbserve.codec import fast_reader
from nbserve.codec.fast_reader import UNDECIDED, fast_parse
from nbserve.codec.json_body import check_input_map, check_object_and_signature, predict_payload
from nbserve.codec.json_examples import read_example_body, serialized_inputs
from nbserve.codec.json_tensor import decode_tensors, may_hold_bools
from nbserve.codec.rapidjson import parse_json, parse_json_exact
from nbserve.errors import ServingError
from nbserve.servables.signature import Signature, TensorInfo
from tests.codec.test_json_tensor import json_values, nested_numbers
from tests.reliability.test_fuzz_rest import BODIES

TESTS = pathlib.Path(__file__).resolve().parent.parent
SOURCES = sorted([*TESTS.glob("codec/*.py"), *TESTS.glob("transport/*.py"),
                  *TESTS.glob("reliability/*.py")])


def _signature(**inputs: str) -> Signature:
    return Signature("serving_default",
                     inputs={a: TensorInfo(f"{a}:0", d) for a, d in inputs.items()},
                     outputs={"y": TensorInfo("y:0", "DT_FLOAT")})


SIGNATURES = [_signature(x=d) for d in ("DT_FLOAT", "DT_DOUBLE", "DT_INT8", "DT_INT32",
                                        "DT_INT64", "DT_UINT32", "DT_UINT64", "DT_BOOL",
                                        "DT_STRING", "DT_HALF")]
SIGNATURES += [_signature(x="DT_FLOAT", y="DT_STRING"), _signature(a="DT_INT64", b="DT_DOUBLE")]


def _canonical(value: Any) -> list[Any]:
    """A flat, type-tagged rendering (NaN == NaN, -0.0 != 0.0, 1 != 1.0, key order kept);
    iterative, so documents nested hundreds deep are fine."""
    out: list[Any] = []
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is list:
            out.append(("list", len(item)))
            stack.extend(reversed(item))
        elif kind is dict:
            out.append(("dict", len(item)))
            for key, member in reversed(list(item.items())):
                stack.append(member)
                stack.append(("key", key))
        elif kind is tuple:
            out.append(item)
        elif kind is float:
            out.append(("float", repr(item)))
        else:
            out.append((kind.__name__, item))
    return out


def _tensor(array: np.ndarray) -> tuple[Any, ...]:
    if array.dtype == object:
        return ("object", array.shape, array.ravel().tolist())
    return (array.dtype.str, array.shape, array.tobytes())


def _attempt(fn: Callable[[], Any]) -> Any:
    try:
        return ("ok", fn())
    except ServingError as err:
        return ("error", err.code, err.message)


def outcome(body: bytes, parse: Callable[[bytes], Any]) -> list[Any]:
    """What the REST layer makes of ``body`` with this reader: the document, then for every
    signature the Predict tensors or error, then the Classify/Regress examples or error."""
    parsed = _attempt(lambda: parse(body))
    if parsed[0] == "error":
        return [parsed]
    doc = parsed[1]
    result: list[Any] = [_canonical(doc)]
    for signature in SIGNATURES:
        def predict(signature: Signature = signature) -> Any:
            name, explicit = check_object_and_signature(doc)
            check_input_map(signature, name, explicit)
            fmt, data = predict_payload(doc)
            tensors = decode_tensors(fmt, data, signature, may_hold_bools(body))
            return {alias: _tensor(array) for alias, array in tensors.items()}
        result.append(_attempt(predict))
    result.append(_attempt(lambda: serialized_inputs(read_example_body(doc, body))))
    return result


def assert_agree(body: bytes) -> None:
    fast = fast_parse(body) if body else UNDECIDED
    if fast is not UNDECIDED:
        assert _canonical(fast) == _canonical(parse_json_exact(body)), body[:200]
    assert outcome(body, parse_json) == outcome(body, parse_json_exact), body[:200]


def _literals() -> list[bytes]:
    """Every str/bytes constant in the test sources: a superset of their JSON bodies."""
    found: set[bytes] = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
                value = node.value
                found.add(value if isinstance(value, bytes)
                          else value.encode("utf-8", "surrogateescape"))
    return sorted(found)


LITERALS = _literals()

CORNERS = [
    b'{"a": 1, "a": 2}', b'{"instances": [1], "instances": [2]}',
    b'{"instances": [{"x": 1, "x": 2}]}', b'{"inputs": {"x": [1.5], "x": [2.5], "y": "a"}}',
    b'{"signature_name": "a:b", "instances": [1.0]}', b'{"instances": ["a:b", "{", "}"]}',
    b'{"instances": [1.0], "k": {"a": 1, "a": 2}}', b'{"instances": [[1, 2], [3, 4]], "z": "{"}',
    b'[18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809]',
    b'{"instances": [18446744073709551616]}', b'{"instances": [' + b"9" * 400 + b"]}",
    b'{"instances": [' + b"9" * 5000 + b"]}", b'{"instances": [1e400]}', b'{"instances": [-0]}',
    b'{"instances": [NaN, Infinity, -Infinity]}', b'\xef\xbb\xbf{"instances": [1]}',
    b'{"instances": [1]} trailing', b'{"instances": [1]}\x00', b' \t\n\r{"instances": [1]} ',
    b'{"instances": ["\\ud83d\\ude00", "\\u0000", "\xc3\xa9"]}', b'{"instances": ["\xff"]}',
    b'{"instances": ["\\ud800"]}', b'{"instances": ["\xed\xa0\x80"]}', b'   ', b"\x0c[1]",
    b'{"instances": [true, 1.5]}', b'{"instances": [[1, 2], [3]]}', b'{"inputs": 5}',
    b'{"instances": [4.9406564584124654e-324, 2.4703282292062327e-324, 1.7976931348623157e308]}',
    b'{"instances": [0.1, 1.00000000000000011102230246251565404236316680908203125]}',
    b'{"instances": [1], "inputs": [1]}', b'{"examples": [{"x": 1, "x": 2.5}]}',
    b'{"examples": [{"x": [18446744073709551615]}, {"x": [18446744073709551616]}]}',
] + [b'{"instances": ' + b"[" * n + b"1.0" + b"]" * n + b"}"
     for n in (1, 63, 64, 65, 510, 511, 512, 513, 900, 1022, 1023, 1024, 3000)] \
  + [b"[" * n + b"]" * n for n in (511, 512, 513, 1024, 1025)] \
  + [b'{"instances": ' + b'[{"a":' * n + b"1" + b"}]" * n + b"}" for n in (200, 300, 600)]


@pytest.mark.parametrize("body", CORNERS, ids=range(len(CORNERS)))
def test_corner_cases_agree(body):
    assert_agree(body)


def test_every_body_literal_in_the_tests_agrees():
    assert len(LITERALS) > 500
    for body in LITERALS:
        assert_agree(body)


def test_benchmark_bodies_agree():
    rng = np.random.default_rng(0)
    image = np.round(rng.random((1, 64, 64, 3)), 4)
    body = json.dumps({"instances": image.tolist()}).encode()  # (b)'s shape and digits
    assert_agree(body)
    assert fast_parse(body) is not UNDECIDED


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_rest_fuzzer_bodies_agree(data):
    body = data.draw(BODIES)
    assert_agree(body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body)


@settings(max_examples=200, deadline=None)
@given(json_values | nested_numbers,
       st.sampled_from([{}, {"indent": 1}, {"separators": (",", ":")}]))
def test_generated_documents_agree(value, options):
    for doc in ({"instances": value}, {"inputs": value}, {"examples": value}, value):
        assert_agree(json.dumps(doc, **options).encode())


NUMBER_TOKENS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10 ** 30), 10 ** 30).map(str),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(-(10 ** 25), 10 ** 25),
              st.integers(-360, 330)),
    st.builds(lambda i, f, e: f"{i}.{f}e{e}", st.integers(0, 10 ** 20),
              st.text("0123456789", min_size=1, max_size=40), st.integers(-330, 310)),
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(NUMBER_TOKENS, min_size=1, max_size=8))
def test_orjson_numbers_are_pythons(tokens):
    """orjson's doubles are correctly rounded, and its integers as rapidjson holds them."""
    body = ("[" + ",".join(tokens) + "]").encode()
    assert_agree(body)


def test_hard_decimal_to_double_cases():
    """Halfway and near-halfway decimals, subnormals and the double range's edges."""
    tokens = ["2.2250738585072011e-308", "2.2250738585072012e-308", "4.9e-324", "2.5e-324",
              "1.7976931348623158e308", "1.7976931348623157e308", "9007199254740993",
              "9007199254740993.0", "0.30000000000000004441", "1.00000000000000011102230246",
              "7.4109846876186981626485318930233205854758970392148714663837852375101326090531312"
              "779794975454245398856969484704316857659638998506553390969459816219401617281718945"
              "106978546710679176872575177347315553307795408549809608457500958111373034747658096"
              "871009590975442271004757307809711118935784838675653998783503015228055934046593739"
              "79179e-308", "123456789012345678901234567890e-30", "0." + "0" * 400 + "1e400"]
    for token in tokens:
        body = f"[{token}]".encode()
        if "." in token or "e" in token:
            assert orjson.loads(body) == [float(token)], token
        assert_agree(body)


def test_orjsons_depth_limit_is_what_the_fast_path_assumes():
    depth = fast_reader.ORJSON_DEPTH
    assert orjson.loads(b"[" * depth + b"]" * depth) is not None
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(b"[" * (depth + 1) + b"]" * (depth + 1))
    assert fast_parse(b"[" * fast_reader.MAX_DEPTH + b"]" * fast_reader.MAX_DEPTH) \
        is not UNDECIDED
    assert fast_parse(b"[" * (fast_reader.MAX_DEPTH + 1) + b"]" * (fast_reader.MAX_DEPTH + 1)) \
        is UNDECIDED


def test_fast_path_declines_exactly_the_ambiguous_bodies():
    assert fast_parse(b'{"a": 1, "a": 2}') is UNDECIDED  # duplicate key
    assert fast_parse(b'{"a": "x:y"}') is UNDECIDED  # a colon in a string: slow, still exact
    assert fast_parse(b"[NaN]") is UNDECIDED
    assert fast_parse(b'{"a": 1} x') is UNDECIDED
    assert fast_parse(b"  ") is UNDECIDED
    assert fast_parse(b'{"a": [1, 2.5], "b": {"c": null}}') == {"a": [1, 2.5], "b": {"c": None}}
    big = [[float(i)] * 3 for i in range(400)]
    assert fast_parse(json.dumps({"instances": big}).encode()) == {"instances": big}
    assert math.isinf(parse_json(b"[1e400]")[0])
