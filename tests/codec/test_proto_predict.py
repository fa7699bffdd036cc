"""The gRPC Predict response as wire bytes: what protobuf serializes from the message."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2

from nbserve.codec import tensors, wire
from nbserve.codec.proto_predict import ProtoPredictCodec, response_bytes
from nbserve.core.ids import ServableId


def message_response(servable_id: ServableId, signature_key: str, outputs: dict,
                     tensor_content: bool) -> predict_pb2.PredictResponse:
    """The response built with protobuf's own message API, field by field."""
    response = predict_pb2.PredictResponse()
    response.model_spec.name = servable_id.name
    response.model_spec.version.value = servable_id.version
    if signature_key:
        response.model_spec.signature_name = signature_key
    for alias, array in outputs.items():
        out = response.outputs[alias]
        codec = tensors.CODECS[tensors.dtype_name_for_numpy(array.dtype)]
        out.dtype = codec.enum
        out.tensor_shape.SetInParent()
        for size in array.shape:
            out.tensor_shape.dim.add(size=size)
        if array.size == 0:
            continue
        if array.dtype == object:
            out.string_val.extend(array.reshape(-1).tolist())
            continue
        if tensor_content:
            out.tensor_content = array.astype(array.dtype.newbyteorder("<")).tobytes()
            continue
        values = array.reshape(-1)
        if array.dtype == np.float16:
            values = values.view(np.uint16)
        elif array.dtype.kind == "c":
            values = values.view(array.real.dtype)
        getattr(out, codec.field).extend(values.tolist())
    return response


OUTPUTS = {
    "one float": {"y": np.array([[2.5]], np.float32)},
    "two outputs": {"scores": np.arange(6, dtype=np.float64).reshape(2, 3) - 2.5,
                    "classes": np.array([[3], [-7]], np.int64)},
    "strings": {"labels": np.array([b"cat", "d\u00f6g".encode()], dtype=object)},
    "scalar": {"s": np.array(-1, np.int32)},
    "empty": {"e": np.zeros((0, 3), np.float32)},
    "half and complex": {"h": np.array([1.0, -2.0], np.float16),
                         "c": np.array([1 + 2j], np.complex64)},
    "large": {"big": np.linspace(-1, 1, 300_000, dtype=np.float32).reshape(1000, 300)},
    "unicode alias": {"\u00e9t\u00e9": np.array([True, False])},
}


@pytest.mark.parametrize("tensor_content", [False, True], ids=["typed", "tensor_content"])
@pytest.mark.parametrize("outputs", OUTPUTS.values(), ids=OUTPUTS.keys())
def test_response_bytes_are_protobufs_serialization_of_the_message(outputs, tensor_content):
    servable_id = ServableId("m\u00f6del", 123)
    ours = response_bytes(servable_id, "serving_default", outputs, tensor_content)
    expected = message_response(servable_id, "serving_default", outputs, tensor_content)
    assert predict_pb2.PredictResponse.FromString(ours) == expected
    if len(outputs) == 1:  # protobuf writes a map's entries in no set order
        assert ours == expected.SerializeToString()
    for alias, array in outputs.items():
        assert tensors.tensor_bytes(array, tensor_content) == \
            expected.outputs[alias].SerializeToString()


@pytest.mark.parametrize("version,signature", [(0, ""), (1, "sig"), (2**40, ""), (7, "x" * 300)])
def test_model_spec_bytes_cover_version_zero_long_names_and_no_signature(version, signature):
    servable_id = ServableId("n" * 200, version)
    outputs = {"y": np.array([1.0], np.float32)}
    ours = response_bytes(servable_id, signature, outputs)
    expected = message_response(servable_id, signature, outputs, False)
    assert ours == expected.SerializeToString()
    parsed = predict_pb2.PredictResponse.FromString(ours)
    assert parsed.model_spec.HasField("version")  # present even for version 0, as TF Serving
    assert parsed.model_spec.version.value == version


def test_codec_encodes_bytes_and_reads_the_output_filter():
    request = predict_pb2.PredictRequest()
    assert ProtoPredictCodec(request).output_filter is None
    request.output_filter.extend(["b", "a"])
    codec = ProtoPredictCodec(request)
    assert codec.output_filter == ["b", "a"]

    class Sig:
        key = "serving_default"

    data = codec.encode(ServableId("m", 3), Sig(), {"a": np.array([1.5], np.float32)})
    assert isinstance(data, bytes)
    assert predict_pb2.PredictResponse.FromString(data).outputs["a"].float_val == [1.5]


INTEGER_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                  np.uint64]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(INTEGER_DTYPES).flatmap(
    lambda dtype: hnp.arrays(dtype, st.integers(1, 40))))
def test_property_packed_varints_equal_protobufs_encoding(array):
    codec = tensors.CODECS[tensors.dtype_name_for_numpy(array.dtype)]
    plain = tensor_pb2.TensorProto()
    getattr(plain, codec.field).extend(array.tolist())
    field_bytes = plain.SerializeToString()
    ours = tensors.tensor_bytes(array, use_tensor_content=False)
    assert ours.endswith(field_bytes)


def test_packed_varints_across_chunks_equal_protobufs_encoding():
    values = np.concatenate([np.arange(-70_000, 70_000, dtype=np.int64) * 131_071,
                             np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max])])
    plain = tensor_pb2.TensorProto()
    plain.int64_val.extend(values.tolist())
    assert tensors.packed_varints(values) == plain.SerializeToString()[
        -len(tensors.packed_varints(values)):]
    assert len(values) > 2 * tensors._VARINT_CHUNK


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**31, 2**63 - 1, -1, -2**63])
def test_varint_is_protobufs_int64_encoding(value):
    plain = tensor_pb2.TensorProto()
    plain.int64_val.append(value)
    encoded = wire.varint(value)
    assert plain.SerializeToString() == b"\x52" + wire.varint(len(encoded)) + encoded
