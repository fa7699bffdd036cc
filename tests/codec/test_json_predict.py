"""JsonPredictCodec: TF Serving's REST order of checks around the service's lookups (§1.3)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nbserve.codec.json_predict import JsonPredictCodec
from nbserve.core.ids import ServableId
from nbserve.errors import ServingError, StatusCode
from nbserve.servables.signature import Signature, TensorInfo

SIG = Signature("serving_default", inputs={"x": TensorInfo("x:0", "DT_FLOAT")},
                outputs={"y": TensorInfo("y:0", "DT_FLOAT")})


def error_of(fn, *args) -> ServingError:
    with pytest.raises(ServingError) as info:
        fn(*args)
    return info.value


def test_parse_and_signature_name_type_are_checked_at_once():
    err = error_of(JsonPredictCodec.from_body, b"[1")
    assert err.message == "JSON Parse error: Missing a comma or ']' after an array element. " \
                          "at offset: 2"
    err = error_of(JsonPredictCodec.from_body, b'{"signature_name": 1, "instances": [1]}')
    assert err.message.endswith("'signature_name' key must be a string value.")


def test_key_errors_wait_until_the_signature_is_known():
    """A body without instances/inputs is fine until decode: a missing model or signature is
    reported first, as TF Serving does."""
    codec = JsonPredictCodec.from_body(b'{"foo": 1}')
    assert (codec.signature_name, codec.output_filter) == ("serving_default", None)
    assert error_of(codec.decode, Signature("get_counter")).message == \
        "Failed to get input map for signature: DEFAULT"
    assert error_of(codec.decode, SIG) == ServingError(StatusCode.INVALID_ARGUMENT,
                                                       "Missing 'inputs' or 'instances' key")
    named = JsonPredictCodec.from_body(b'{"signature_name": "get_counter", "instances": [1]}')
    assert error_of(named.decode, Signature("get_counter")).message == \
        "Failed to get input map for signature: get_counter"


def test_unknown_signature_is_rest_text():
    codec = JsonPredictCodec.from_body(b'{"signature_name": "nope", "instances": [1]}')
    assert codec.signature_not_found("nope") == ServingError(
        StatusCode.INVALID_ARGUMENT, 'Serving signature name: "nope" not found in signature def')


@pytest.mark.parametrize("body,expected", [
    (b'{"instances": [1.5, 2]}', {"predictions": [3.0, 4.0]}),
    (b'{"inputs": [1.5, 2]}', {"outputs": [3.0, 4.0]}),
])
def test_decode_then_encode_in_the_request_format(body, expected):
    codec = JsonPredictCodec.from_body(body)
    inputs = codec.decode(SIG)
    assert inputs["x"].dtype == np.float32 and inputs["x"].tolist() == [1.5, 2.0]
    assert codec.servable_id is None
    reply = codec.encode(ServableId("m", 7), SIG, {"y": inputs["x"] * 2})
    assert json.loads(reply) == expected
    assert codec.servable_id == ServableId("m", 7)
