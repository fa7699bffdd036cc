"""The dense-tensor path of REST Predict bodies (``nbserve.codec.dense_reader``).

Whatever it accepts must decode exactly as the general path (the exact reader and
``decode_tensors``): same tensors, same dtype and bytes, for every signature; and where it
declines, the codec must still give the general path's answer or error. Checked on the corner
cases and every body literal of the fast-reader tests, on generated documents, and on bodies
made to look dense (ragged arrays whose counts add up, brackets inside strings...).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbserve.codec import json_predict
from nbserve.codec.dense_reader import MAX_RANK, dense_shape, read_dense_body
from nbserve.codec.json_body import check_input_map, check_object_and_signature, predict_payload
from nbserve.codec.json_predict import JsonPredictCodec, dense_tensors
from nbserve.codec.json_tensor import decode_tensors, may_hold_bools
from nbserve.codec.rapidjson import parse_json_exact
from tests.codec.test_fast_reader import (
    CORNERS,
    LITERALS,
    NUMBER_TOKENS,
    SIGNATURES,
    _attempt,
    _tensor,
)
from tests.codec.test_json_tensor import nested_numbers


def _general(body: bytes, signature: Any) -> Any:
    def predict() -> Any:
        doc = parse_json_exact(body)
        name, explicit = check_object_and_signature(doc)
        check_input_map(signature, name, explicit)
        fmt, data = predict_payload(doc)
        tensors = decode_tensors(fmt, data, signature, may_hold_bools(body))
        return fmt, name, {alias: _tensor(array) for alias, array in tensors.items()}
    return _attempt(predict)


def _codec(body: bytes, signature: Any) -> Any:
    def predict() -> Any:
        codec = JsonPredictCodec.from_body(body)
        tensors = codec.decode(signature)
        return codec.format, codec.signature_name, \
            {alias: _tensor(array) for alias, array in tensors.items()}
    return _attempt(predict)


@pytest.fixture(autouse=True)
def _dense_for_every_size(monkeypatch):
    monkeypatch.setattr(json_predict, "DENSE_MIN_BYTES", 1)


def assert_agree(body: bytes) -> bool:
    """The codec (dense path allowed) and the general path agree on ``body`` for every
    signature; True when the dense path took the body."""
    dense = read_dense_body(body)
    for signature in SIGNATURES:
        general = _general(body, signature)
        assert _codec(body, signature) == general, (body[:200], signature)
        if dense is not None and dense_tensors(dense, signature) is not None:
            assert general[0] == "ok", body[:200]
    return dense is not None


def test_dense_shape_reads_rectangular_skeletons_only():
    assert dense_shape(b"[,,]") == (3,)
    assert dense_shape(b"[[,,],[,,]]") == (2, 3)
    assert dense_shape(b"[[[,],[,]],[[,],[,]],[[,],[,]]]") == (3, 2, 2)
    assert dense_shape(b"[]") == (1,)  # one slot: the caller counts the numbers (none here)
    for ragged in (b"[[,],[]]", b"[[,],[,],[,,]]", b"[[,,],[,],[,]]", b"[[,],[[,]]]",
                   b"[[,]],", b"[[,]", b"[,]]", b"", b"]", b"[[,],,[,]]"):
        assert dense_shape(ragged) is None, ragged
    deep = b"[" * MAX_RANK + b"]" * MAX_RANK
    assert dense_shape(deep) == (1,) * MAX_RANK
    assert dense_shape(b"[" + deep + b"]") is None


def test_benchmark_shaped_bodies_take_the_dense_path():
    rng = np.random.default_rng(1)
    for shape in ((1, 64, 64, 3), (2, 8, 8, 3), (5,)):
        values = np.round(rng.random(shape), 4)
        for doc in ({"instances": values.tolist()}, {"inputs": values.tolist()},
                    {"signature_name": "serving_default", "instances": values.tolist()}):
            body = json.dumps(doc).encode()
            assert assert_agree(body), doc.keys()
            dense = read_dense_body(body)
            assert dense is not None and dense.values.shape == shape
    pretty = json.dumps({"instances": [[1.5, 2], [3, -0.0]]}, indent=2).encode()
    assert assert_agree(pretty)


@pytest.mark.parametrize("body", [
    b'{"instances": [[1, 2], [3], [4, 5, 6]]}',  # ragged, with as many numbers as (3, 2)
    b'{"instances": [[1, 2], 3]}', b'{"instances": [1, [2, 3]]}', b'{"instances": [[], []]}',
    b'{"instances": []}', b'{"instances": [[1, 2], [3, 4]], "instances": [[5, 6], [7, 8]]}',
    b'{"instances": [1, 2], "inputs": [3, 4]}', b'{"instances": [1, 2], "extra": 1}',
    b'{"signature_name": 7, "instances": [1, 2]}', b'{"signature_name": "[1]", "instances": 5}',
    b'{"signature_name": "[1,2]", "instances": [[3, 4]]}', b'{"instances": [[1, 2]], "s": "]"}',
    b'{"instances": [true, 1]}', b'{"instances": [1e400]}', b'{"instances": [NaN]}',
    b'{"instances": [18446744073709551616]}', b'{"instances": [1] }x',
    b'\xef\xbb\xbf{"instances": [1]}', b'{"inputs": {"x": [1, 2]}}', b'{"inputs": 5}',
    b'[[1, 2]]', b'{"instances": [[1, 2], ["3", 4]]}', b'{"instances": [{"x": [1]}]}',
])
def test_bodies_that_only_look_dense_go_the_general_way(body):
    assert not assert_agree(body)


@pytest.mark.parametrize("body", [
    b'{"instances": [-0, -0.0, 0, 1e-400, 1e38, 3.5e38, 9007199254740993]}',
    b'{"instances": [18446744073709551615, -9223372036854775808]}',
    b'{"inputs": [[0.1, 0.2], [0.3, 1.00000000000000011102230246251565404236316680908203125]]}',
    b'{"signature_name": "", "instances": [[1, 2]]}', b' {"instances":[[1,2]]}\n',
])
def test_dense_numbers_decode_as_the_exact_reader_does(body):
    assert assert_agree(body)


@pytest.mark.parametrize("body", CORNERS, ids=range(len(CORNERS)))
def test_fast_reader_corner_cases_agree(body):
    assert_agree(body)


def test_every_body_literal_in_the_tests_agrees():
    taken = sum(assert_agree(body) for body in LITERALS)
    assert taken > 20  # the corpus exercises the dense path, not only the way around it


@settings(max_examples=200, deadline=None)
@given(nested_numbers, st.sampled_from([{}, {"indent": 1}, {"separators": (",", ":")}]))
def test_generated_numeric_documents_agree(value, options):
    for doc in ({"instances": value}, {"inputs": value},
                {"instances": value, "signature_name": "serving_default"}):
        assert_agree(json.dumps(doc, **options).encode())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(-3, 3) | st.floats(-1e6, 1e6), min_size=1, max_size=3),
                min_size=1, max_size=4))
def test_ragged_lists_agree(rows):
    assert_agree(json.dumps({"instances": rows}).encode())


def _nest(tokens: list[str], shape: list[int]) -> str:
    if len(shape) == 1:
        return "[" + ", ".join(tokens) + "]"
    step = len(tokens) // shape[0]
    return "[" + ", ".join(_nest(tokens[i:i + step], shape[1:])
                           for i in range(0, len(tokens), step)) + "]"


@st.composite
def dense_bodies(draw: Any) -> bytes:
    """A rectangular tensor of number tokens as clients and fuzzers write them (hard decimal
    strings, integers past 64 bits, exponents past the double range)."""
    shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4))
    count = int(np.prod(shape))
    tokens = draw(st.lists(NUMBER_TOKENS, min_size=count, max_size=count))
    key = draw(st.sampled_from(["instances", "inputs"]))
    return f'{{"{key}": {_nest(tokens, shape)}}}'.encode()


@settings(max_examples=300, deadline=None)
@given(dense_bodies())
def test_generated_dense_tensors_agree(body):
    assert_agree(body)
