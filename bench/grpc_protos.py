"""The gRPC messages the harness sends and reads, declared by small descriptors (no TensorFlow).

MLServer and Triton (PyTriton) serve KServe v2's ``inference.GRPCInferenceService/ModelInfer``;
nbserve serves TF Serving's ``tensorflow.serving.PredictionService/Predict``. The harness builds
request bytes for h2load and reads one real answer per server in its own process, where neither
peer is installed and TensorFlow is not imported, so this module declares the few fields it needs
with the same packages, names and field numbers as KServe's ``grpc_predict_v2.proto`` (Triton's
``grpc_service.proto`` is wire-compatible) and TF Serving's ``predict.proto`` / TensorFlow's
``tensor.proto``; fields it leaves out (parameters maps, model specs) are skipped by the parser as
unknown fields, and a proto map is read as the repeated entry message it is on the wire.

- ``infer_request(model, array)`` -> serialized ``ModelInferRequest`` (the tensor in
  ``raw_input_contents``, as ``tritonclient`` sends it);
- ``infer_outputs(answer)`` -> a ``ModelInferResponse``'s first output as a float32 array;
- ``predict_outputs(answer)`` -> a ``PredictResponse``'s first output (by alias) as float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

V2_METHOD = "/inference.GRPCInferenceService/ModelInfer"
TFS_METHOD = "/tensorflow.serving.PredictionService/Predict"

_F = descriptor_pb2.FieldDescriptorProto
_FIELDS = {  # message -> (name, number, type, label, type_name)
    "InferTensorContents": [
        ("bool_contents", 1, _F.TYPE_BOOL, _F.LABEL_REPEATED, None),
        ("int_contents", 2, _F.TYPE_INT32, _F.LABEL_REPEATED, None),
        ("int64_contents", 3, _F.TYPE_INT64, _F.LABEL_REPEATED, None),
        ("uint_contents", 4, _F.TYPE_UINT32, _F.LABEL_REPEATED, None),
        ("uint64_contents", 5, _F.TYPE_UINT64, _F.LABEL_REPEATED, None),
        ("fp32_contents", 6, _F.TYPE_FLOAT, _F.LABEL_REPEATED, None),
        ("fp64_contents", 7, _F.TYPE_DOUBLE, _F.LABEL_REPEATED, None),
        ("bytes_contents", 8, _F.TYPE_BYTES, _F.LABEL_REPEATED, None),
    ],
    "Tensor": [  # ModelInferRequest.InferInputTensor and ModelInferResponse.InferOutputTensor
        ("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
        ("datatype", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
        ("shape", 3, _F.TYPE_INT64, _F.LABEL_REPEATED, None),
        ("contents", 5, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".inference.InferTensorContents"),
    ],
    "RequestedOutput": [("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None)],
    "ModelInferRequest": [
        ("model_name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
        ("model_version", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
        ("id", 3, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
        ("inputs", 5, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".inference.Tensor"),
        ("outputs", 6, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".inference.RequestedOutput"),
        ("raw_input_contents", 7, _F.TYPE_BYTES, _F.LABEL_REPEATED, None),
    ],
    "ModelInferResponse": [
        ("model_name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
        ("model_version", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
        ("id", 3, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
        ("outputs", 5, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".inference.Tensor"),
        ("raw_output_contents", 6, _F.TYPE_BYTES, _F.LABEL_REPEATED, None),
    ],
    # TensorFlow's TensorProto (float fields only) and TF Serving's PredictResponse
    "Dim": [("size", 1, _F.TYPE_INT64, _F.LABEL_OPTIONAL, None)],
    "TensorShapeProto": [("dim", 2, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".inference.Dim")],
    "TensorProto": [
        ("dtype", 1, _F.TYPE_INT32, _F.LABEL_OPTIONAL, None),
        ("tensor_shape", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".inference.TensorShapeProto"),
        ("tensor_content", 4, _F.TYPE_BYTES, _F.LABEL_OPTIONAL, None),
        ("float_val", 5, _F.TYPE_FLOAT, _F.LABEL_REPEATED, None),
    ],
    "OutputsEntry": [
        ("key", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
        ("value", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".inference.TensorProto"),
    ],
    "PredictResponse": [
        ("outputs", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".inference.OutputsEntry"),
    ],
}


def _classes() -> dict[str, Any]:
    proto = descriptor_pb2.FileDescriptorProto(name="nbserve_bench_v2.proto",
                                               package="inference", syntax="proto3")
    for message, fields in _FIELDS.items():
        m = proto.message_type.add(name=message)
        for name, number, type_, label, type_name in fields:
            f = m.field.add(name=name, number=number, type=type_, label=label)
            if type_name:
                f.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"inference.{name}")) for name in _FIELDS}


_CLASSES = _classes()
ModelInferRequest = _CLASSES["ModelInferRequest"]
ModelInferResponse = _CLASSES["ModelInferResponse"]
PredictResponse = _CLASSES["PredictResponse"]
DT_FLOAT = 1

_DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64}


def infer_request(model: str, array: np.ndarray, input_name: str = "x",
                  shape: tuple[int, ...] | None = None) -> bytes:
    """A serialized FP32 ``ModelInferRequest`` (``shape`` defaults to the array's)."""
    request = ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name=input_name, datatype="FP32")
    tensor.shape.extend(list(array.shape if shape is None else shape))
    request.raw_input_contents.append(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return request.SerializeToString()


def infer_outputs(answer: bytes) -> np.ndarray:
    """The first output of a serialized ``ModelInferResponse``, shaped, as float32."""
    response = ModelInferResponse.FromString(answer)
    out = response.outputs[0]
    shape = tuple(out.shape)
    if response.raw_output_contents:
        dtype = _DTYPES.get(out.datatype, np.float32)
        data = np.frombuffer(response.raw_output_contents[0], dtype=dtype)
    else:
        data = np.asarray(out.contents.fp32_contents or out.contents.fp64_contents)
    return data.astype(np.float32).reshape(shape)


def predict_outputs(answer: bytes) -> np.ndarray:
    """The first output (sorted by alias) of a serialized ``PredictResponse``, as float32."""
    entries = sorted(PredictResponse.FromString(answer).outputs, key=lambda e: e.key)
    tensor = entries[0].value
    if tensor.dtype != DT_FLOAT:
        raise ValueError(f"output {entries[0].key!r} has dtype {tensor.dtype}, not DT_FLOAT")
    shape = tuple(d.size for d in tensor.tensor_shape.dim)
    if tensor.tensor_content:
        data = np.frombuffer(tensor.tensor_content, dtype="<f4")
    else:
        data = np.asarray(tensor.float_val, dtype=np.float32)
        if data.size == 1 and int(np.prod(shape)) > 1:  # TF's repeated-last-value encoding
            data = np.full(shape, data[0], dtype=np.float32)
    return data.astype(np.float32).reshape(shape)
