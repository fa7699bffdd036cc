"""Defect 3: every generated snippet runs as-is against a live server.

For each of TF Serving's shared test models that loads and has a predict signature, for a
two-input Keras model and for a string-input model (``{"b64": ...}``), the curl, Python
``requests`` and Python gRPC snippets of ``Server.example_request`` run in a subprocess (bash /
this interpreter) and must succeed; the gRPC ones share one interpreter (each exec'd as-is in a
fresh namespace) so TensorFlow is imported once. One server serves every model (a folder of
links to them).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

tf = pytest.importorskip("tensorflow")

import nbserve  # noqa: E402
from nbserve import snippets  # noqa: E402
from nbserve.status import SignatureInfo, TensorSpec  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
TESTDATA = pathlib.Path(os.environ.get("NBSERVE_TFS_TESTDATA",
                                       REPO.parent / "shared" / "testdata" / "tfserving"))
SHARED = sorted(p.name for p in TESTDATA.iterdir() if p.is_dir() and any(
    c.name.isdigit() for c in p.iterdir()) and not p.name.startswith("bad_")
) if TESTDATA.is_dir() else []  # bad_half_plus_two is TF Serving's model that must not load
OWN = ["keras_two_inputs", "strings"]
KINDS = [("rest", "curl"), ("rest", "python"), ("grpc", "python")]
PREDICT = "tensorflow/serving/predict"


class Strings(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def __call__(self, text):
        return {"length": tf.strings.length(text)}


def keras_two_inputs() -> tf.keras.Model:
    feats = tf.keras.Input(shape=(3,), name="feats")
    extra = tf.keras.Input(shape=(2,), name="extra")
    joined = tf.keras.layers.Concatenate()([feats, extra])
    return tf.keras.Model([feats, extra], tf.keras.layers.Dense(1, name="score")(joined))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("snippet-models")
    for name in SHARED:
        (root / name).symlink_to(TESTDATA / name, target_is_directory=True)
    nbserve.export(keras_two_inputs(), str(root / "keras_two_inputs"))
    module = Strings()
    nbserve.export(module, str(root / "strings"), signatures=module.__call__)
    srv = nbserve.serve(str(root), port=0, rest_api_port=0, device="cpu",
                        max_num_load_retries=0, prefer_tflite_model=True)  # the TFLite models too
    try:
        yield srv
    finally:
        srv.stop()


def predict_signature(srv: nbserve.Server, name: str) -> str:
    """The model's predict signature with inputs (serving_default first); skip when it has
    none or does not load."""
    try:
        srv.wait_for(name, timeout=120)
    except (nbserve.ServingError, TimeoutError) as exc:
        pytest.skip(f"{name} does not load here: {exc}")
    signatures = srv.signatures(name)
    keys = sorted(signatures, key=lambda k: (k != "serving_default", k))
    for key in keys:
        if signatures[key].method_name == PREDICT and signatures[key].inputs:
            return key
    pytest.skip(f"{name} has no predict signature with inputs")


GRPC_RUNNER = """
import contextlib, io, json, sys, traceback
results = {}
for name, code in json.load(sys.stdin).items():
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, name, "exec"), {"__name__": "__main__"})
        results[name] = [True, out.getvalue()]
    except BaseException:
        results[name] = [False, out.getvalue() + traceback.format_exc()]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def grpc_runs(server) -> dict[str, tuple[bool, str]]:
    """Every model's gRPC snippet, each exec'd as-is in a fresh namespace of ONE interpreter
    (one TensorFlow import for all): name -> (ran without error, its output)."""
    codes = {}
    for name in SHARED + OWN:
        try:
            key = predict_signature(server, name)
        except pytest.skip.Exception:
            continue
        codes[name] = server.example_request(name, "grpc", "python", signature_name=key)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", GRPC_RUNNER], input=json.dumps(codes),
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return {n: (ok, text) for n, (ok, text) in json.loads(result.stdout.splitlines()[-1]).items()}


def run(snippet: str, language: str) -> str:
    argv = ["bash", "-c", snippet] if language == "curl" else [sys.executable, "-c", snippet]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, f"{snippet}\n---\n{result.stdout}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.parametrize("protocol, language", KINDS)
@pytest.mark.parametrize("name", SHARED + OWN)
def test_snippet_runs_as_is(server, grpc_runs, name, protocol, language):
    key = predict_signature(server, name)
    snippet = server.example_request(name, protocol, language, signature_name=key)
    if protocol == "grpc":
        ok, out = grpc_runs[name]
        assert ok, f"{snippet}\n---\n{out}"
    else:
        out = run(snippet, language)
    outputs = server.signature(name, key).outputs
    if language == "curl":
        answer = json.loads(out)
        assert "predictions" in answer or "outputs" in answer
    elif protocol == "grpc":
        assert all(f"{alias} " in out for alias in outputs), out
    else:
        assert out.strip()
    # the same example, in-process, answers too
    assert set(server.predict(name, server.example_inputs(name, key), signature_name=key)) \
        == set(outputs)


def test_two_inputs_use_named_rows_and_strings_use_b64():
    two = SignatureInfo("serving_default", PREDICT, {
        "feats": TensorSpec("feats", "DT_FLOAT", (-1, 3)),
        "ids": TensorSpec("ids", "DT_INT64", (-1,))}, {})
    body = snippets.rest_body(two)
    assert body == {"instances": [{"feats": [1.0, 1.0, 1.0], "ids": 1}]}
    text = SignatureInfo("serving_default", PREDICT,
                         {"text": TensorSpec("text", "DT_STRING", (-1,))}, {})
    assert snippets.rest_body(text) == {"instances": [{"b64": "ZXhhbXBsZQ=="}]}
    scalar = SignatureInfo("s", PREDICT, {"x": TensorSpec("x", "DT_FLOAT", ())}, {})
    assert snippets.rest_body(scalar, signature_name="s") == {"signature_name": "s",
                                                             "inputs": 1.0}
    unknown = SignatureInfo("s", PREDICT, {"x": TensorSpec("x", "DT_FLOAT", None)}, {})
    assert snippets.example_inputs(unknown) == {"x": 1.0}


def test_user_inputs_and_the_auth_token():
    sig = SignatureInfo("serving_default", PREDICT,
                        {"x": TensorSpec("x", "DT_FLOAT", (-1, 2))}, {})
    curl = snippets.example_request(sig, model="m", rest_url="http://h:1", grpc_target="h:2",
                                    inputs={"x": [[1.5, 2.5], [3.0, 4.0]]}, token="s3cret",
                                    version=2)
    assert "http://h:1/v1/models/m/versions/2:predict" in curl
    assert "'Authorization: Bearer s3cret'" in curl
    assert '{"instances": [[1.5, 2.5], [3.0, 4.0]]}' in curl
    grpc = snippets.example_request(sig, model="m", protocol="grpc", language="python",
                                    rest_url=None, grpc_target="h:2", token="s3cret",
                                    label="stable")
    assert "metadata=[('authorization', 'Bearer s3cret')]" in grpc
    assert "request.model_spec.version_label = 'stable'" in grpc
    assert "tf.make_tensor_proto(np.array([[1.0, 1.0]], dtype=np.float32))" in grpc
    with pytest.raises(ValueError, match="REST is off"):
        snippets.example_request(sig, model="m", rest_url=None, grpc_target="h:2")
    with pytest.raises(ValueError, match="gRPC snippets are Python"):
        snippets.example_request(sig, model="m", protocol="grpc", grpc_target="h:2")
