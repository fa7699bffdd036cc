"""The compiled float32 writer is byte-identical to TF Serving's §1.8 algorithm.

``format_float`` (one value, C's printf and an exact strtof) is the reference; ``float_texts`` and
``float32_json`` (numpy + orjson, ``fixed_decimals``) must give the very same bytes for every
float32: random bit patterns (all exponents, subnormals, NaN payloads), short decimals and their
neighbours, powers of ten, integers, ±0, ±inf, the range's edges; and whole Predict responses
must not change for any dtype.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nbserve.codec import float_format
from nbserve.codec.float_format import (
    _float_texts,
    fixed_decimals,
    float32_json,
    float_texts,
    format_float,
)
from nbserve.codec.json_output import encode_predict_response, leaf_texts, nest_texts

F32 = np.float32


def _corpus(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32).view(F32)
    scaled = (rng.standard_normal(n) * 10.0 ** rng.integers(-7, 11, n)).astype(F32)
    places = 10.0 ** rng.integers(0, 8, n)
    short = (np.round(rng.random(n) * 10.0 ** rng.integers(-6, 10, n) * places) / places)
    base = np.concatenate([short.astype(F32), [F32(10.0 ** k) for k in range(-45, 39)],
                           rng.integers(-2 ** 31, 2 ** 31, n // 4).astype(F32)])
    up = np.nextafter(base, F32(np.inf))
    down = np.nextafter(base, F32(-np.inf))
    edges = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, -1e-45, 1.1754942e-38,
                      1.17549435e-38, 3.4028235e38, -3.4028235e38, 9.9999997e-05, 1e-4, 1e-5,
                      999999.5, 999999.4, 1e6, 99999999, 1e8, 999999940, 1e9, 65504, 2.5, 0.1],
                     dtype=F32)
    nans = np.array([0x7FC00001, 0xFFC00000, 0x7F800001], dtype=np.uint32).view(F32)
    return np.concatenate([bits, scaled, base, up, down, -base, edges, nans])


@pytest.mark.parametrize("seed", [0, 1])
def test_float32_texts_are_the_reference_algorithms(seed):
    values = _corpus(seed, 50_000)
    assert values.size > 4 * float_format._CHUNK  # fixed_decimals' chunks and their seams
    with np.errstate(all="ignore"):
        expected = _float_texts(values, False)  # the vectorised %g/%.9g path (checked below)
    assert float_texts(values) == expected
    assert float32_json(values) == ("[" + ",".join(expected) + "]").encode()
    sample = values[:: max(1, values.size // 20_000)]
    assert float_texts(sample) == [format_float(v) for v in sample.tolist()]


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(F32, st.integers(0, 60), elements=st.floats(width=32)))
def test_float32_texts_match_the_scalar_algorithm(array):
    assert float_texts(array) == [format_float(v) for v in array.tolist()]


def test_fixed_decimals_mark_what_they_cannot_write():
    values = np.array([1.5, 1e-5, 1e-4, 123456789.0, 1e9, 1e6, 1234567.0, np.nan, -np.inf, -0.0,
                       0.0], dtype=F32)
    decimals, special = fixed_decimals(values)
    assert special.tolist() == [False, True, False, False, True, True, False, True, True,
                                False, False]
    assert decimals[~special].tolist() == [1.5, 0.0001, 123456792.0, 1234567.0, -0.0, 0.0]


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(F32, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
                  elements=st.floats(width=32)))
def test_float32_json_nests_as_the_text_path(array):
    texts = leaf_texts("y", array)
    assert float32_json(array).decode() == nest_texts(texts, array.shape, 0)[0]


def _text_path(outputs: dict[str, np.ndarray], body_format: str) -> bytes:
    """The Predict response written through leaf_texts/nest_texts only (the general path)."""
    names = sorted(outputs)
    if body_format == "columnar":
        value = nest_texts(leaf_texts(names[0], outputs[names[0]]), outputs[names[0]].shape, 0)[0]
        return ('{"outputs":' + value + "}").encode()
    rows = nest_texts(leaf_texts(names[0], outputs[names[0]]), outputs[names[0]].shape, 1)
    return ('{"predictions":[' + ",".join(rows) + "]}").encode()


ARRAYS = [
    np.arange(24, dtype=F32).reshape(2, 3, 4) / 7,
    np.array([[1e-30, -0.0], [np.nan, np.inf]], dtype=F32),
    np.zeros((0, 3), dtype=F32), np.zeros((2, 0), dtype=F32), np.zeros((3,), dtype=F32),
    np.linspace(-5, 5, 30).reshape(5, 6).astype(np.float64),
    np.arange(6, dtype=np.int64),
    np.array([[True, False]]), np.array([[1, -2], [3, 4]], dtype=np.int8),
    np.array([[2 ** 64 - 1]], dtype=np.uint64), np.array([b"a", b"\xff"], dtype=object),
    np.asfortranarray(np.arange(12, dtype=F32).reshape(3, 4) / 3),
]


@pytest.mark.parametrize("array", ARRAYS, ids=range(len(ARRAYS)))
@pytest.mark.parametrize("body_format", ["row", "columnar"])
def test_predict_responses_are_unchanged_for_every_dtype(array, body_format):
    assert encode_predict_response({"y": array}, body_format) == \
        _text_path({"y": array}, body_format)


def test_large_response_decodes_to_the_same_float32s():
    array = (np.random.default_rng(3).standard_normal((8, 56, 56)) * 10.0 ** 3).astype(F32)
    body = encode_predict_response({"y": array}, "row")
    assert np.array_equal(np.array(json.loads(body)["predictions"], dtype=F32), array)
