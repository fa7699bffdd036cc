"""REST JSON for Classify/Regress: golden cases from spec §1.7 (and TF Serving's
json_tensor_test)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nbserve.codec.json_examples import (
    ExampleBody,
    encode_classify_results,
    encode_regress_results,
    example_from_json,
    read_example_body,
    serialized_inputs,
)
from nbserve.codec.json_tensor import parse_json
from nbserve.errors import ServingError, StatusCode


@pytest.fixture(scope="module")
def example_pb2():
    """TensorFlow's generated Example proto, to check the hand-written wire bytes."""
    return pytest.importorskip("tensorflow.core.example.example_pb2")


def read(body: str) -> ExampleBody:
    raw = body.encode()
    return read_example_body(parse_json(raw), raw)


def as_dict(example_pb2, serialized: bytes) -> dict:
    """An Example as {feature: (kind, [values])}."""
    example = example_pb2.Example.FromString(serialized)
    out = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        out[name] = (kind, list(getattr(feature, kind).value) if kind else [])
    return out


def test_request_without_context(example_pb2):
    body = read("""{"examples": [
        {"names": ["foo", "bar"], "ratings": [8.0, 9.0], "age": 20},
        {"names": ["baz"], "ratings": 6.0}]}""")
    assert body.signature_name == "serving_default" and body.context is None
    assert not body.explicit_signature
    assert [as_dict(example_pb2, e) for e in body.examples] == [
        {"names": ("bytes_list", [b"foo", b"bar"]), "ratings": ("float_list", [8.0, 9.0]),
         "age": ("int64_list", [20])},
        {"names": ("bytes_list", [b"baz"]), "ratings": ("float_list", [6.0])}]
    assert serialized_inputs(body) == body.examples


def test_request_with_context_and_signature(example_pb2):
    body = read("""{"signature_name": "custom_signture",
      "context": {"query": "pizza", "location": ["sfo"]},
      "examples": [
        {"names": ["foo", "bar"], "ratings": [8.0, 9.0, NaN, Infinity], "age": 20},
        {"names": ["baz", {"b64": "aGVsbG8="}], "ratings": 6.0, "intboolmix": [1, true, false]},
        {"names": "bar", "ratings": -Infinity, "neg": [-5, -9223372036854775808], "empty": []}]}""")
    assert body.signature_name == "custom_signture" and body.explicit_signature
    assert as_dict(example_pb2, body.context) == {"query": ("bytes_list", [b"pizza"]),
                                                  "location": ("bytes_list", [b"sfo"])}
    first, second, third = (as_dict(example_pb2, e) for e in body.examples)
    assert first["ratings"][0] == "float_list" and first["ratings"][1][:2] == [8.0, 9.0]
    assert math.isnan(first["ratings"][1][2]) and first["ratings"][1][3] == math.inf
    assert second == {"names": ("bytes_list", [b"baz", b"hello"]),
                      "ratings": ("float_list", [6.0]),
                      "intboolmix": ("int64_list", [1, 1, 0])}
    assert third == {"names": ("bytes_list", [b"bar"]), "ratings": ("float_list", [-math.inf]),
                     "neg": ("int64_list", [-5, -9223372036854775808]), "empty": (None, [])}


def test_context_is_merged_into_every_example(example_pb2):
    body = read('{"context": {"x": 1.0, "shared": "c"}, "examples": [{"x": 2.0}, {"y": 3}]}')
    merged = [as_dict(example_pb2, s) for s in serialized_inputs(body)]
    assert merged == [{"x": ("float_list", [2.0]), "shared": ("bytes_list", [b"c"])},
                      {"x": ("float_list", [1.0]), "shared": ("bytes_list", [b"c"]),
                       "y": ("int64_list", [3])}]


def test_feature_values_follow_the_json_token(example_pb2):
    parsed = as_dict(example_pb2, example_from_json(parse_json(
        b'{"i": 2, "f": 2.0, "big": 1e39, "huge": 18446744073709551616, "s": "caf\xc3\xa9"}')))
    assert parsed["i"] == ("int64_list", [2]) and parsed["f"] == ("float_list", [2.0])
    assert parsed["big"] == ("float_list", [math.inf])  # narrowed to float32
    assert parsed["huge"][0] == "float_list"  # beyond uint64: rapidjson holds a double
    assert parsed["s"] == ("bytes_list", ["caf\u00e9".encode()])
    assert example_from_json({}) == b""


DOC_ERRORS = [
    ('{"signature_name": ["hello"], "examples": [{"names": ["foo"]}]}',
     'JSON Value: {\n    "signature_name": [\n        "hello"\n    ],\n    "examples": [\n'
     '        {\n            "names": [\n                "foo"\n            ]\n        }\n    ]\n'
     '} not formatted '
     "correctly. 'signature_name' key must be a string value."),
    ('[1]', "JSON Value: [\n    1\n] Is not object"),
    ('{"context": [{"names": ["foo", "bar"]}]}', "Example must be JSON object but got JSON Array"),
    ('{"examples": {"names": ["foo", "bar"]}}',
     'JSON Value: {\n    "examples": {\n        "names": [\n            "foo",\n            "bar"\n'
     "        ]\n    }\n} Expecting 'examples' value to be an list/array"),
    ('{"examples": [[{"names": ["foo", "bar"]}]]}',
     "Example must be JSON object but got JSON Array"),
    ('{"examples": [1]}', "Example must be JSON object but got JSON Number"),
    ('{"foo": 1}', 'JSON Value: {\n    "foo": 1\n} When method is classify, key \'examples\' is '
                   "expected and was not found"),
    ('{"examples": []}',
     'JSON Value: {\n    "examples": []\n} \'examples\' value is an empty array'),
    ('{"examples": [{"names": [10, null]}]}',
     "Feature: names has element with unexpected JSON type: Null"),
    ('{"examples": [{"names": null}]}',
     "Feature: names has element with unexpected JSON type: Null"),
    ('{"examples": [{"names": [10, 10.0]}]}',
     "Unexpected element type in feature: names expecting type: int64"),
    ('{"examples": [{"names": [1.5, "a"]}]}',
     "Unexpected element type in feature: names expecting type: float"),
    ('{"examples": [{"names": ["a", true]}]}',
     "Unexpected element type in feature: names expecting type: bytes"),
    ('{"examples": [{"names": [{"b64": "aGk="}, 1]}]}',
     "Unexpected element type in feature: names expecting type: bytes"),
    ('{"examples": [{"names": [10, {"test": 10}]}]}',
     "Feature: names has element with unexpected JSON type: Object"),
    ('{"examples": [{"names": {"test": 10}}]}',
     "Feature: names has element with unexpected JSON type: Object"),
    ('{"examples": [{"names": [[10], 20]}]}',
     "Feature: names has element with unexpected JSON type: Array"),
    ('{"examples": [{"names": [20, 18446744073709551603]}]}',
     "Feature: names has uint64_t element. Only int64_t is supported."),
    ('{"examples": [{"img": {"b64": "a"}}]}', "Unable to base64 decode"),
    ('{"context": {"x": null}, "foo": 1}',
     "Feature: x has element with unexpected JSON type: Null"),
]


@pytest.mark.parametrize("body,message", DOC_ERRORS)
def test_request_errors(body, message):
    with pytest.raises(ServingError) as info:
        read(body)
    assert (info.value.code, info.value.message) == (StatusCode.INVALID_ARGUMENT, message)


# ----------------------------------------------------------------------------- results

def test_classification_results():
    classes = np.array([[b"car", b"bike", b"bus"]] * 2, dtype=object)
    scores = np.array([[0.2, 0.7, 0.1], [0.7, 0.1, 0.2]], dtype=np.float32)
    assert encode_classify_results(classes, scores) == (
        b'{"results":[[["car",0.2],["bike",0.7],["bus",0.1]],[["car",0.7],["bike",0.1],'
        b'["bus",0.2]]]}')


def test_classification_results_without_classes_or_scores():
    hpt_scores = np.float32(0.5) * np.array([[1.0], [2.0], [0.1]], dtype=np.float32) + np.float32(2)
    assert encode_classify_results(None, hpt_scores) == \
        b'{"results":[[["",2.5]],[["",3.0]],[["",2.05]]]}'
    assert json.loads(encode_classify_results(np.array([[b"a", "\u00e9"]], dtype=object), None)) \
        == {"results": [[["a", 0.0], ["\u00e9", 0.0]]]}


def test_regression_results():
    assert encode_regress_results(np.array([0.2, 0.9, 1.0], dtype=np.float32)) == \
        b'{"results":[0.2,0.9,1.0]}'
    assert encode_regress_results(np.array([[3.5], [4.0]], dtype=np.float32)) == \
        b'{"results":[3.5,4.0]}'
    assert encode_regress_results(np.array([0.2, np.inf, 1.0, -np.inf, np.nan], np.float32)) == \
        b'{"results":[0.2,Infinity,1.0,-Infinity,NaN]}'


@pytest.mark.parametrize("call,message", [
    (lambda: encode_classify_results(None, np.zeros((0, 2), np.float32)),
     "Cannot convert empty ClassificationResults to JSON"),
    (lambda: encode_classify_results(None, None),
     "Cannot convert empty ClassificationResults to JSON"),
    (lambda: encode_regress_results(np.zeros(0, np.float32)),
     "Cannot convert empty RegressionResults to JSON"),
])
def test_empty_results(call, message):
    with pytest.raises(ServingError) as info:
        call()
    assert (info.value.code, info.value.message) == (StatusCode.INVALID_ARGUMENT, message)
