"""TfLiteLoader / TfLiteServable against TF Serving's TFLite test models and a converted export."""

from __future__ import annotations

import threading

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from nbserve.errors import ServingError, StatusCode  # noqa: E402
from nbserve.servables.signature import Servable, TensorInfo  # noqa: E402
from nbserve.servables.tflite import TfLiteLoader, TfLiteServable  # noqa: E402

pytestmark = pytest.mark.tfs_testdata

PLAIN = "saved_model_half_plus_two_tflite/00000123"
SIGDEF = "saved_model_half_plus_two_tflite_with_sigdef/00000123"


@pytest.fixture
def load(tfs_testdata):
    loaders: list[TfLiteLoader] = []

    def get(path: str, **kwargs) -> TfLiteServable:
        loader = TfLiteLoader(str(tfs_testdata / path), **kwargs)
        loader.load()
        loaders.append(loader)
        return loader.servable()

    yield get
    for loader in loaders:
        loader.unload()


def test_model_without_signature_defs_gets_serving_default_from_its_tensors(load):
    servable = load(PLAIN)
    assert isinstance(servable, Servable)
    assert servable.signature_source == "tensors"
    signature = servable.signatures["serving_default"]
    assert list(servable.signatures) == ["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    assert signature.inputs == {"x": TensorInfo("x", "DT_FLOAT", (1, 1))}
    assert signature.outputs == {"y": TensorInfo("y", "DT_FLOAT", (1, 1))}
    out = servable.run(signature, {"x": np.array([2.0], np.float32)})
    assert out["y"].dtype == np.float32 and out["y"].tolist() == [3.0]


def test_model_with_signature_defs_uses_their_aliases(load):
    servable = load(SIGDEF)
    assert servable.signature_source == "metadata"
    signature = servable.signatures["serving_default"]
    # The stored SignatureDef names alias x -> the interpreter tensor "tflite_input".
    assert signature.inputs["x"].name == "tflite_input"
    assert signature.outputs["y"].name == "y"
    assert servable.run(signature, {"x": np.array([[2.0]], np.float32)})["y"].tolist() == [[3.0]]


def test_signature_def_map_is_the_metadata_payload(load):
    proto = load(SIGDEF).signature_def_map()
    assert type(proto).DESCRIPTOR.full_name == "tensorflow.serving.SignatureDefMap"
    sig = proto.signature_def["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert sig.inputs["x"].name == "tflite_input"
    assert sig.inputs["x"].dtype == 1  # DT_FLOAT
    assert [d.size for d in sig.outputs["y"].tensor_shape.dim] == [1, 1]


def test_batch_size_changes_resize_the_interpreter(load):
    servable = load(PLAIN)
    signature = servable.signatures["serving_default"]
    for rows in (3, 1, 5, 3):
        x = np.arange(rows, dtype=np.float32).reshape(rows, 1)
        assert servable.run(signature, {"x": x})["y"].tolist() == (x * 0.5 + 2).tolist()


def test_request_errors_use_tf_servings_words(load):
    servable = load(PLAIN)
    signature = servable.signatures["serving_default"]
    cases = [
        ({"z": np.array([1.0], np.float32)}, None,
         "input tensor alias not found in signature: z. Inputs expected to be in the set {x}."),
        ({"x": np.array([1.0])}, None, "Expects arg[0] to be float but double is provided"),
        ({"x": np.array([1.0], np.float32)}, ["q"],
         "output tensor alias not found in signature: q Outputs expected to be in the set {y}."),
    ]
    for inputs, output_filter, message in cases:
        with pytest.raises(ServingError) as info:
            servable.run(signature, inputs, output_filter=output_filter)
        assert (info.value.code, info.value.message) == (StatusCode.INVALID_ARGUMENT, message)


def test_concurrent_runs_with_a_pool_of_two_interpreters(load):
    servable = load(PLAIN, num_pools=1, num_interpreters_per_pool=2)
    assert servable.num_interpreters == 2
    signature = servable.signatures["serving_default"]
    wrong: list[str] = []

    def work(rows: int) -> None:
        x = np.full((rows, 1), float(rows), np.float32)
        for _ in range(200):
            got = servable.run(signature, {"x": x})["y"]
            if got.shape != (rows, 1) or not np.all(got == rows * 0.5 + 2):
                wrong.append(f"{rows}: {got.ravel()[:3]}")
                return

    threads = [threading.Thread(target=work, args=(rows,)) for rows in (1, 2, 3, 4, 5, 6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_every_interpreter_busy_waits_at_most_the_deadline(load):
    servable = load(PLAIN)  # one interpreter
    signature = servable.signatures["serving_default"]
    with servable._pool.take(None):  # hold the only interpreter
        with pytest.raises(ServingError) as info:
            servable.run(signature, {"x": np.array([1.0], np.float32)}, timeout_ms=50)
    assert info.value.code == StatusCode.DEADLINE_EXCEEDED
    assert servable.run(signature, {"x": np.array([1.0], np.float32)})["y"].tolist() == [2.5]


def test_load_errors(tmp_path):
    with pytest.raises(ServingError) as info:
        TfLiteLoader(str(tmp_path)).load()
    assert info.value.code == StatusCode.NOT_FOUND
    assert "model.tflite" in info.value.message
    (tmp_path / "model.tflite").write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ServingError) as info:
        TfLiteLoader(str(tmp_path)).load()
    assert (info.value.code, info.value.message) == (
        StatusCode.INVALID_ARGUMENT, "Cannot build FlatBufferModel from buffer.")


def test_detail_says_the_kind(tfs_testdata):
    loader = TfLiteLoader(str(tfs_testdata / PLAIN), num_pools=2, num_interpreters_per_pool=2)
    assert loader.detail() == {"kind": "tflite"}
    loader.load()
    try:
        detail = loader.detail()
        assert detail["kind"] == "tflite" and detail["interpreters"] == 4
        assert detail["device"] == "/device:CPU:0"
    finally:
        loader.unload()
    with pytest.raises(ServingError) as info:
        loader.servable()
    assert info.value.code == StatusCode.FAILED_PRECONDITION


class TwoHeads(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="features")])
    def __call__(self, features):
        return {"total": tf.reduce_sum(features, axis=1), "doubled": features * 2.0}


def test_converted_model_keeps_its_signature_aliases(tmp_path):
    """A model converted from a SavedModel carries a signature table: its aliases are served."""
    export = tmp_path / "sm"
    module = TwoHeads()
    tf.saved_model.save(module, str(export), signatures=module.__call__.get_concrete_function())
    converted = tf.lite.TFLiteConverter.from_saved_model(str(export)).convert()
    version = tmp_path / "1"
    version.mkdir()
    (version / "model.tflite").write_bytes(converted)
    loader = TfLiteLoader(str(version))
    loader.load()
    try:
        servable = loader.servable()
        assert servable.signature_source == "signature_runners"
        signature = servable.signatures["serving_default"]
        assert sorted(signature.inputs) == ["features"]
        assert sorted(signature.outputs) == ["doubled", "total"]
        assert signature.inputs["features"].shape == (-1, 2)
        x = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
        out = servable.run(signature, {"features": x}, output_filter=["total"])
        assert list(out) == ["total"] and out["total"].tolist() == [3.0, 7.0, 11.0]
        assert servable.run(signature, {"features": x[:1]})["doubled"].tolist() == [[2.0, 4.0]]
    finally:
        loader.unload()


def test_a_signature_of_another_servable_is_not_found(load):
    plain, sigdef = load(PLAIN), load(SIGDEF)
    other = sigdef.signatures["serving_default"]  # same key, different TensorInfo names
    with pytest.raises(ServingError) as info:
        plain.run(other, {"x": np.array([1.0], np.float32)})
    assert (info.value.code, info.value.message) == (
        StatusCode.FAILED_PRECONDITION, 'Serving signature key "serving_default" not found.')
