"""Property-based fuzzing of what the other fuzzers do not reach (hypothesis, derandomized):

- gRPC call metadata (random keys and values, ``-bin`` binary headers, broken ``authorization``
  values) against a server that requires a token: every call ends OK or with a documented status,
  OK only with the right token, and the server still answers afterwards;
- model config files: mutated ModelServerConfig texts either parse to models or raise
  ServingError(INVALID_ARGUMENT); nothing else, and never a hang.

With the REST and TensorProto fuzzers this makes over 10,000 cases (README, "Long sessions").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from nbserve.codec.tensors import to_tensor_proto
from nbserve.config_file import parse_model_server_config
from nbserve.errors import ServingError, StatusCode
from nbserve.options import ModelConfig
from tests.reliability.helpers import FUZZ, report

TOKEN = "fuzz-token-0123456789"
CASES = {"metadata": 0, "config": 0}
CODES: dict[str, int] = {}

VALID_CONFIG = """model_config_list {
  config {
    name: "a"
    base_path: "/models/a"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
  }
  config {
    name: "b" base_path: "/models/b" model_platform: "tensorflow"
    model_version_policy { latest { num_versions: 2 } }
  }
}
"""


@pytest.fixture(scope="module")
def stub(tfs_testdata: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    from nbserve.options import ServerOptions
    from nbserve.server import Server

    srv = Server(ServerOptions(
        models=(ModelConfig("hp", str(tfs_testdata / "saved_model_half_plus_two_cpu")),),
        rest_api_port=None, grpc_port=0, max_num_load_retries=0, auth_token=TOKEN))
    srv.start()
    srv.wait_until_available("hp", timeout=60)
    with grpc.insecure_channel(srv.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    srv.stop()
    codes = ", ".join(f"{k}={v}" for k, v in sorted(CODES.items()))
    report(request, f"\n[fuzz grpc metadata] {CASES['metadata']} calls ({codes})")


KEY = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=20).filter(
    lambda k: not k.startswith("grpc-") and k not in ("te", "content-type", "user-agent"))
ASCII_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=60)
AUTH_VALUE = st.one_of(
    st.just(f"Bearer {TOKEN}"), st.just(f"bearer {TOKEN}"), st.just(f"Bearer  {TOKEN} "),
    st.just("Bearer"), st.just(""), st.just(f"Basic {TOKEN}"), st.just(TOKEN),
    ASCII_VALUE.map(lambda v: "Bearer " + v))
METADATA = st.lists(st.one_of(
    st.tuples(KEY, ASCII_VALUE),
    st.tuples(KEY.map(lambda k: k + "-bin"), st.binary(max_size=40)),
    st.tuples(st.just("authorization"), AUTH_VALUE)), max_size=4)


def valid_token(metadata: list[tuple[str, Any]]) -> bool:
    """What the server must accept: its first ``authorization`` value carries the token."""
    values = [v for k, v in metadata if k == "authorization"]
    if not values:
        return False
    scheme, _, given_token = values[0].strip().partition(" ")
    return scheme.lower() == "bearer" and given_token.strip() == TOKEN


@pytest.mark.tfs_testdata
@settings(max_examples=1500, **FUZZ)
@given(metadata=METADATA)
def test_fuzz_grpc_metadata(stub: Any, metadata: list[tuple[str, Any]]) -> None:
    CASES["metadata"] += 1
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hp"
    request.inputs["x"].CopyFrom(to_tensor_proto(np.array([2.0], np.float32)))
    try:
        reply = stub.Predict(request, timeout=20, metadata=metadata)
        code = grpc.StatusCode.OK
        assert list(reply.outputs["y"].float_val) == [3.0]
    except grpc.RpcError as exc:
        code = exc.code()
        assert code == grpc.StatusCode.UNAUTHENTICATED, (code, exc.details(), metadata)
    assert (code == grpc.StatusCode.OK) == valid_token(metadata), metadata
    CODES[code.name] = CODES.get(code.name, 0) + 1


@pytest.mark.tfs_testdata
def test_server_alive_after_metadata_fuzzing(stub: Any) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hp"
    request.inputs["x"].CopyFrom(to_tensor_proto(np.array([1.0], np.float32)))
    reply = stub.Predict(request, timeout=20, metadata=(("authorization", f"Bearer {TOKEN}"),))
    assert list(reply.outputs["y"].float_val) == [2.5]


def mutate(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Apply (position, length to delete, text to insert) edits, positions modulo the length."""
    for position, length, insert in edits:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at + length:]
    return text


TOKENS = st.sampled_from(["{", "}", ":", '"', "config", "name", "base_path", "versions",
                          "model_version_policy", "specific", "latest", "all", "-1", "0",
                          "99999999999999999999", "version_labels", "key", "value", "\\",
                          "model_platform", "\n", "#", "model_config_list", "num_versions"])
EDITS = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 8),
                           st.one_of(TOKENS, st.text(max_size=6))), min_size=1, max_size=6)
# Value-level edits keep the syntax and reach the validation rules (names, paths, versions,
# policies, labels, platforms): a field's value replaced by another.
FIELDS = ['"a"', '"b"', '"/models/a"', '"/models/b"', "versions: 1", "versions: 2",
          "num_versions: 2", '"stable"', "value: 1", '"tensorflow"', "specific", "latest"]
VALUES = st.one_of(st.sampled_from(['""', '"a"', '"b"', '"../x"', '"rel/path"', "versions: -1",
                                    "versions: 0", "num_versions: 0", "value: 7", '"tflite"',
                                    "all", '"c"', '"x\\ny"', "versions: 99999999999"]),
                   st.text(max_size=8).map(lambda t: '"' + t.replace('"', "") + '"'))
REPLACEMENTS = st.lists(st.tuples(st.sampled_from(FIELDS), VALUES), min_size=1, max_size=3)


@pytest.fixture(scope="module")
def config_report(request: pytest.FixtureRequest) -> Iterator[dict[str, int]]:
    outcomes: dict[str, int] = {}
    yield outcomes
    report(request, f"\n[fuzz config] {CASES['config']} mutated ModelServerConfig texts "
                    f"({', '.join(f'{k}={v}' for k, v in sorted(outcomes.items()))})")


@settings(max_examples=5000, **FUZZ)
@given(change=st.one_of(EDITS.map(lambda e: ("edit", e)), REPLACEMENTS.map(lambda r: ("value", r))))
def test_fuzz_model_config_files(config_report: dict[str, int],
                                 change: tuple[str, list[Any]]) -> None:
    CASES["config"] += 1
    kind, changes = change
    if kind == "edit":
        text = mutate(VALID_CONFIG, changes)
    else:
        text = VALID_CONFIG
        for field, value in changes:
            text = text.replace(field, value, 1)
    try:
        models = parse_model_server_config(text, source="fuzz.config", base_dir="/models")
        outcome = "empty" if models is None else "parsed"
        for model in models or ():
            assert model.base_path.startswith("/")  # resolved against base_dir
    except ServingError as err:
        assert err.code == StatusCode.INVALID_ARGUMENT, err
        assert "fuzz.config" in err.message or err.message, err
        outcome = "INVALID_ARGUMENT"
    config_report[outcome] = config_report.get(outcome, 0) + 1
