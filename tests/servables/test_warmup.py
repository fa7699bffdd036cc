"""SavedModel warmup (nbserve.servables.warmup): TFRecord framing against TensorFlow's own reader
and writer, replay rules on a fake servable, and loads of TF Serving's half_plus_two with a warmup
file."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping

import numpy as np
import pytest

from nbserve.errors import ServingError, StatusCode
from nbserve.servables.signature import Signature, TensorInfo
from nbserve.servables.warmup import (
    MAX_WARMUP_RECORDS,
    TFRECORD_HINT,
    crc32c,
    encode_tfrecord,
    iter_tfrecords,
    predict_request,
    read_tfrecords,
    run_warmup,
    warmup_path,
    write_tfrecords,
    write_warmup_file,
)
from nbserve.testing import FakeServable

prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")
from tensorflow_serving.apis import classification_pb2, inference_pb2, regression_pb2  # noqa: E402


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def warmup_log():
    """The ``nbserve.warmup`` log lines (own handler: ``nbserve`` may not propagate to root)."""
    logger = logging.getLogger("nbserve.warmup")
    handler, level = _Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


# -- CRC-32C and TFRecord framing ----------------------------------------------------------------

def test_crc32c_known_values_and_lane_path_agree_with_the_byte_loop():
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    from nbserve.servables import warmup

    rng = np.random.default_rng(0)
    for size in (4096, 5000, 65_537):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert crc32c(data) == warmup._update(0xFFFFFFFF, data) ^ 0xFFFFFFFF


def test_our_tfrecords_are_read_by_tensorflow_and_theirs_by_us(tmp_path):
    tf = pytest.importorskip("tensorflow")
    records = [b"", b"one", os.urandom(5000), os.urandom(70_000)]
    ours = tmp_path / "ours.tfrecord"
    assert write_tfrecords(ours, records) == len(records)
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(ours))] == records
    theirs = tmp_path / "theirs.tfrecord"
    with tf.io.TFRecordWriter(str(theirs)) as writer:
        for record in records:
            writer.write(record)
    assert theirs.read_bytes() == ours.read_bytes()
    assert list(read_tfrecords(theirs)) == records


@pytest.mark.parametrize("data,message", [
    (b"this is not a TFRecord file", "corrupted record at 0"),
    (encode_tfrecord(b"abc")[:-1], "truncated record at 12"),
    (encode_tfrecord(b"abc") + b"\x01\x02", "truncated record at 19"),
    (encode_tfrecord(b"abc")[:12] + b"abd" + encode_tfrecord(b"abc")[15:],
     "corrupted record at 12"),
])
def test_bad_framing_is_data_loss(data, message):
    with pytest.raises(ServingError) as err:
        list(iter_tfrecords(data))
    assert err.value == ServingError(StatusCode.DATA_LOSS, message)


# -- replay rules on a fake servable -------------------------------------------------------------

def counting_servable() -> FakeServable:
    """Accepts predict on ``x`` (float) and examples on ``inputs``; ``calls`` records every run."""
    float_in = {"x": TensorInfo("x:0", "DT_FLOAT", (-1, 1))}
    examples = {"inputs": TensorInfo("tf_example:0", "DT_STRING", None)}
    signatures = [
        Signature("serving_default", inputs=float_in,
                  outputs={"y": TensorInfo("y:0", "DT_FLOAT", (-1, 1))}),
        Signature("classify", "tensorflow/serving/classify", inputs=examples,
                  outputs={"scores": TensorInfo("s:0", "DT_FLOAT", (-1, 1))}),
        Signature("regress", "tensorflow/serving/regress", inputs=examples,
                  outputs={"outputs": TensorInfo("o:0", "DT_FLOAT", (-1, 1))}),
    ]

    def answer(signature: Signature, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        (array,) = inputs.values()
        if signature.key == "serving_default":
            return {"y": array * 0.5 + 2}
        key = "scores" if signature.key == "classify" else "outputs"
        return {key: np.ones((len(array), 1), np.float32)}

    return FakeServable(signatures=signatures, fn=answer)


def runs(servable: FakeServable) -> list[tuple[str, tuple[int, ...]]]:
    """(signature key, input shape) of every run, in order."""
    return [(c.signature_key, next(iter(c.inputs.values())).shape) for c in servable.calls]


def example_input(target, count: int = 2) -> None:
    for i in range(count):
        target.example_list.examples.add().features.feature["x"].float_list.value.append(i)


def all_kinds() -> list:
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.signature_name = "classify"
    example_input(classify.input)
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.signature_name = "regress"
    example_input(regress.input, 3)
    multi = inference_pb2.MultiInferenceRequest()
    for key, method in (("classify", "tensorflow/serving/classify"),
                        ("regress", "tensorflow/serving/regress")):
        task = multi.tasks.add()
        task.model_spec.signature_name, task.method_name = key, method
    example_input(multi.input, 4)
    return [{"x": np.ones((5, 1), np.float32)}, classify, regress, multi]


def test_every_record_kind_is_replayed_num_iterations_times(tmp_path, warmup_log):
    assert write_warmup_file(tmp_path, all_kinds()) == 4  # a folder: its assets.extra file
    assert os.path.isfile(warmup_path(tmp_path))
    servable = counting_servable()
    assert run_warmup(servable, tmp_path, num_request_iterations=2) == 4
    once = [("serving_default", (5, 1)), ("classify", (2,)), ("regress", (3,)),
            ("classify", (4,)), ("regress", (4,))]
    assert runs(servable) == [call for call in once[:3] for _ in range(2)] + once[3:] * 2
    assert (f"Finished reading warmup data for model at {warmup_path(tmp_path)}. "
            "Number of warmup records read: 4.") in warmup_log.text


def test_missing_file_means_no_warmup(tmp_path):
    servable = counting_servable()
    assert run_warmup(servable, tmp_path) == 0
    assert servable.calls == []


def test_more_than_the_maximum_records_fails_after_running_the_first_1000(tmp_path):
    record = prediction_log_pb2.PredictionLog()
    record.predict_log.request.CopyFrom(predict_request({"x": np.ones((1, 1), np.float32)}))
    write_tfrecords(warmup_path_dir(tmp_path), [record.SerializeToString()] * 1001)
    servable = counting_servable()
    with pytest.raises(ServingError) as err:
        run_warmup(servable, tmp_path)
    assert err.value == ServingError(
        StatusCode.INVALID_ARGUMENT,
        f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at "
        f"{warmup_path(tmp_path)}")
    assert len(servable.calls) == MAX_WARMUP_RECORDS


def warmup_path_dir(folder) -> str:
    path = warmup_path(folder)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


@pytest.mark.parametrize("kind", ["predict_streamed_log", "session_run_log", None])
def test_unsupported_log_types_are_unimplemented(tmp_path, kind):
    record = prediction_log_pb2.PredictionLog()
    if kind:
        getattr(record, kind).SetInParent()
    write_tfrecords(warmup_path_dir(tmp_path), [record.SerializeToString()])
    with pytest.raises(ServingError) as err:
        run_warmup(counting_servable(), tmp_path)
    number = {"predict_streamed_log": 7, "session_run_log": 5, None: 0}[kind]
    assert err.value == ServingError(StatusCode.UNIMPLEMENTED,
                                     f"Unsupported log_type for warmup: {number}")


def test_unparsable_record_and_non_tfrecord_file(tmp_path):
    write_tfrecords(warmup_path_dir(tmp_path), [b"\xff\xff\xff"])
    with pytest.raises(ServingError) as err:
        run_warmup(counting_servable(), tmp_path)
    assert err.value.code == StatusCode.INVALID_ARGUMENT
    assert err.value.message == (f"Failed to parse warmup record: \\xff\\xff\\xff from "
                                 f"{warmup_path(tmp_path)}")
    with open(warmup_path(tmp_path), "wb") as file:
        file.write(b"plain text, not TFRecord")
    with pytest.raises(ServingError) as err:
        run_warmup(counting_servable(), tmp_path)
    assert err.value == ServingError(StatusCode.DATA_LOSS, "corrupted record at 0" + TFRECORD_HINT)


# -- loads of a real SavedModel ------------------------------------------------------------------

@pytest.fixture
def half_plus_two(tfs_testdata, tmp_path):
    """A private copy of saved_model_half_plus_two_cpu's version folder."""
    pytest.importorskip("tensorflow")
    version = tmp_path / "half_plus_two" / "00000123"
    shutil.copytree(tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123", version)
    return version


def test_load_replays_the_warmup_file_before_the_servable_is_ready(half_plus_two, warmup_log):
    from nbserve.servables.saved_model import SavedModelLoader

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.signature_name = "classify_x_to_y"
    example_input(classify.input)
    write_warmup_file(half_plus_two, [{"x": np.array([[1.0], [2.0]], np.float32)}, classify])
    loader = SavedModelLoader(str(half_plus_two), device="cpu", warmup_iterations=3)
    loader.load()
    try:
        assert "Number of warmup records read: 2." in warmup_log.text
        servable = loader.servable()
        out = servable.run(servable.signatures["serving_default"],
                           {"x": np.array([[4.0]], np.float32)})
        np.testing.assert_allclose(out["y"], [[4.0]])
    finally:
        loader.unload()


def test_a_failing_warmup_request_fails_the_load(half_plus_two):
    from nbserve.servables.saved_model import SavedModelLoader

    write_warmup_file(half_plus_two, {"x": np.array([[1.0]], np.float64)})  # wrong dtype
    loader = SavedModelLoader(str(half_plus_two), device="cpu")
    with pytest.raises(ServingError) as err:
        loader.load()
    assert err.value == ServingError(StatusCode.INVALID_ARGUMENT,
                                     "Expects arg[0] to be float but double is provided")
    with pytest.raises(ServingError):
        loader.servable()  # nothing is left loaded


def test_garbage_warmup_file_is_data_loss_unless_warmup_is_off(half_plus_two):
    from nbserve.servables.saved_model import SavedModelLoader

    path = warmup_path_dir(half_plus_two)
    with open(path, "wb") as file:
        file.write(b"garbage garbage garbage")
    with pytest.raises(ServingError) as err:
        SavedModelLoader(str(half_plus_two), device="cpu").load()
    assert err.value == ServingError(StatusCode.DATA_LOSS, "corrupted record at 0" + TFRECORD_HINT)
    loader = SavedModelLoader(str(half_plus_two), device="cpu", enable_warmup=False)
    loader.load()
    loader.unload()


def test_server_reports_a_bad_warmup_as_the_versions_error(half_plus_two, start_server):
    from nbserve.options import ModelConfig

    write_tfrecords(warmup_path_dir(half_plus_two), [b"\xff"])
    server = start_server([ModelConfig("hpt", str(half_plus_two.parent))])
    with pytest.raises(ServingError) as err:
        server.wait_until_available("hpt", timeout=60)
    assert err.value.message.startswith("Failed to parse warmup record: ")
    server.stop()
    off = start_server([ModelConfig("hpt", str(half_plus_two.parent))], enable_model_warmup=False)
    assert off.wait_until_available("hpt", timeout=60) == 123


# -- nbserve.export(..., warmup=...) --------------------------------------------------------------

def test_export_with_warmup_writes_a_replayable_file_and_serves(tmp_path, start_server, warmup_log):
    tf = pytest.importorskip("tensorflow")
    import nbserve
    from nbserve.options import ModelConfig

    class Affine(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": x * 3.0}

    base = tmp_path / "affine"
    version = nbserve.export(Affine(), str(base), signatures=Affine().__call__,
                             warmup=[{"x": [[1, 2]]}, {"x": [[3, 4], [5, 6]]}])
    records = list(read_tfrecords(warmup_path(base / str(version))))
    assert [r.numpy() for r in tf.data.TFRecordDataset(warmup_path(base / str(version)))] == records
    entry = prediction_log_pb2.PredictionLog.FromString(records[1])
    assert entry.predict_log.request.model_spec.signature_name == "serving_default"
    assert tf.make_ndarray(entry.predict_log.request.inputs["x"]).dtype == np.float32
    single = nbserve.export(Affine(), str(base), signatures=Affine().__call__,
                            warmup=np.zeros((1, 2)))  # one array for the only input
    assert len(list(read_tfrecords(warmup_path(base / str(single))))) == 1

    server = start_server([ModelConfig("affine", str(base))])
    server.wait_until_available("affine", version=single, timeout=60)  # a fresh folder settles
    assert "Number of warmup records read: 1." in warmup_log.text
    np.testing.assert_allclose(server.predict("affine", [[1.0, 1.0]], version=single)["y"],
                               [[3.0, 3.0]])
