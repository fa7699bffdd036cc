"""Property-based fuzzing of gRPC Predict with malformed TensorProtos (hypothesis, derandomized).

Wrong dtypes, unknown dtypes, huge or negative dims, ``tensor_content`` size mismatches, deep
nesting in ``string_val``: every call ends with a documented status (never UNKNOWN, INTERNAL or
DATA_LOSS, never a client-side deadline), and the server still predicts correctly afterwards.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from nbserve.codec.tensors import to_tensor_proto
from nbserve.options import ModelConfig
from tests.reliability.helpers import FUZZ, report

pytestmark = pytest.mark.tfs_testdata

CASES = {"tensor_protos": 0}
CODES: dict[str, int] = {}
DOCUMENTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
              grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED,
              grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNIMPLEMENTED}


@pytest.fixture(scope="module", params=["grpcio", "h2"])
def stub(tfs_testdata, request):
    from nbserve.options import ServerOptions
    from nbserve.server import Server

    srv = Server(ServerOptions(
        models=(ModelConfig("hp", str(tfs_testdata / "saved_model_half_plus_two_cpu")),),
        rest_api_port=None, grpc_port=0, max_num_load_retries=0,
        grpc_max_message_bytes=4 << 20, grpc_front_end=request.param))
    srv.start()
    srv.wait_until_available("hp", timeout=60)
    with grpc.insecure_channel(srv.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    srv.stop()
    codes = ", ".join(f"{k}={v}" for k, v in sorted(CODES.items()))
    report(request, f"\n[fuzz grpc] {CASES['tensor_protos']} malformed PredictRequests ({codes})")


def nested(depth: int, leaf: bytes) -> bytes:
    """A TensorProto nested ``depth`` times inside string_val, serialized."""
    data = leaf
    for _ in range(depth):
        data = tensor_pb2.TensorProto(dtype=7, string_val=[data]).SerializeToString()
    return data


DIM = st.one_of(st.integers(-3, 4), st.integers(-(2 ** 63), 2 ** 63 - 1),
                st.sampled_from([2 ** 31, 2 ** 32 + 1, 2 ** 62, -1]))
TENSORS = st.builds(
    lambda dtype, dims, unknown_rank, content, floats, ints, int64s, strings, bools, halfs,
    doubles, deep: tensor_pb2.TensorProto(
        dtype=dtype, tensor_content=content, float_val=floats, int_val=ints, int64_val=int64s,
        string_val=strings + ([deep] if deep else []), bool_val=bools, half_val=halfs,
        double_val=doubles, tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims],
            unknown_rank=unknown_rank)),
    dtype=st.one_of(st.sampled_from([1, 1, 1, 2, 3, 7, 9, 10, 19]), st.integers(0, 30),
                    st.integers(100, 200), st.integers(-5, -1)),
    dims=st.lists(DIM, max_size=6) | st.lists(st.integers(1, 2), min_size=30, max_size=300),
    unknown_rank=st.booleans(),
    content=st.one_of(st.just(b""), st.binary(max_size=64),
                      st.integers(0, 100).map(lambda n: np.arange(n, dtype=np.float32).tobytes())),
    floats=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=8),
    ints=st.lists(st.integers(-(2 ** 31), 2 ** 31 - 1), max_size=4),
    int64s=st.lists(st.integers(-(2 ** 63), 2 ** 63 - 1), max_size=4),
    strings=st.lists(st.binary(max_size=16), max_size=4),
    bools=st.lists(st.booleans(), max_size=4),
    halfs=st.lists(st.integers(-(2 ** 31), 2 ** 31 - 1), max_size=4),
    doubles=st.lists(st.floats(), max_size=4),
    deep=st.one_of(st.just(b""), st.integers(1, 60).map(lambda d: nested(d, b"leaf"))),
)
SPECS = st.tuples(st.sampled_from(["hp"] * 8 + ["nope", ""]),
                  st.sampled_from([""] * 4 + ["serving_default", "regress_x_to_y",
                                              "classify_x_to_y", "junk"]),
                  st.sampled_from([None] * 6 + [123, 124, 0, -1, 2 ** 63 - 1]),
                  st.lists(st.sampled_from(["y", "y", "x", "nope", ""]), max_size=2))
ALIASES = st.dictionaries(st.sampled_from(["x"] * 6 + ["y", "", "X", "x\x00", "inputs"]),
                          TENSORS, min_size=0, max_size=3)


@settings(max_examples=1000, **FUZZ)
@given(spec=SPECS, inputs=ALIASES)
def test_fuzz_malformed_tensor_protos(stub, spec, inputs):
    CASES["tensor_protos"] += 1
    name, signature, version, output_filter = spec
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    request.output_filter.extend(output_filter)
    for alias, proto in inputs.items():
        request.inputs[alias].CopyFrom(proto)
    try:
        stub.Predict(request, timeout=20)
        code = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code = exc.code()
        assert code in DOCUMENTED, (code, exc.details(), request)
    CODES[code.name] = CODES.get(code.name, 0) + 1


def test_server_alive_and_correct_after_fuzzing(stub):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hp"
    request.inputs["x"].CopyFrom(to_tensor_proto(np.array([1.0, 2.0], np.float32)))
    assert list(stub.Predict(request, timeout=20).outputs["y"].float_val) == [2.5, 3.0]
