"""SavedModelLoader / SavedModelServable against TF Serving's own test models and TF2 exports."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from google.protobuf import json_format  # noqa: E402
from tensorflow.core.protobuf import config_pb2  # noqa: E402

from nbserve.errors import ServingError, StatusCode  # noqa: E402
from nbserve.servables.devices import DeviceRequest  # noqa: E402
from nbserve.servables.saved_model import (  # noqa: E402
    SavedModelLoader,
    SavedModelServable,
    missing_saved_model_message,
    missing_tags_message,
)
from nbserve.servables.signature import Servable, Signature, TensorInfo  # noqa: E402

pytestmark = pytest.mark.tfs_testdata

HAS_GPU = bool(tf.config.list_physical_devices("GPU"))

MODELS = {
    "cpu": "saved_model_half_plus_two_cpu/00000123",
    "gpu_pinned": "saved_model_half_plus_two_gpu/00000123",
    "tf2": "saved_model_half_plus_two_tf2_cpu/00000123",
    "v123": "saved_model_half_plus_two_2_versions/00000123",
    "v124": "saved_model_half_plus_two_2_versions/00000124",
    "three": "saved_model_half_plus_three/00000123",
    "counter": "saved_model_counter/00000123",
    "matrix": "matrix_half_plus_two/1",
}


def run(servable: Servable, key: str, inputs: dict[str, np.ndarray], **kwargs: object
        ) -> dict[str, np.ndarray]:
    """``servable.run`` with the signature looked up by key, as the service does."""
    return servable.run(servable.signatures[key], inputs, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def loaded(tfs_testdata):
    """Load each test model once per module (device cpu); unload them all at teardown."""
    loaders: dict[str, SavedModelLoader] = {}

    def get(name: str) -> SavedModelServable:
        if name not in loaders:
            loader = SavedModelLoader(str(tfs_testdata / MODELS[name]), device="cpu")
            loader.load()
            loaders[name] = loader
        return loaders[name].servable()

    yield get
    for loader in loaders.values():
        loader.unload()


@pytest.fixture(scope="module")
def tf2_export(tmp_path_factory):
    """A TF2 tf.Module exported by the test: 2-in/2-out predict, a spin loop, a reshape."""

    class Model(tf.Module):
        def __init__(self):
            super().__init__()
            self.scale = tf.Variable(2.0)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="a"),
                                      tf.TensorSpec([None], tf.int64, name="b")])
        def combine(self, a, b):
            b = tf.cast(b, tf.float32)
            return {"sum": a + b, "scaled": a * b * self.scale}

        @tf.function(input_signature=[tf.TensorSpec([], tf.int64, name="n")])
        def spin(self, n):
            _, total = tf.while_loop(lambda i, t: i < n, lambda i, t: (i + 1, t + 1.0),
                                     [tf.constant(0, tf.int64), tf.constant(0.0)])
            return {"total": total}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def pair(self, x):
            return {"y": tf.reshape(x, [2])}

    model = Model()
    path = tmp_path_factory.mktemp("tf2_module") / "1"
    tf.saved_model.save(model, str(path), signatures={
        "serving_default": model.combine, "spin": model.spin, "pair": model.pair})
    loader = SavedModelLoader(str(path), device="cpu")
    loader.load()
    yield loader.servable()
    loader.unload()


def f32(*values) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def error_of(call) -> ServingError:
    with pytest.raises(ServingError) as info:
        call()
    return info.value


# ---- import hygiene and cheap construction --------------------------------------------------

def test_import_and_construction_do_not_import_tensorflow():
    code = ("import sys, nbserve, nbserve.servables.saved_model as sm, nbserve.servables.inference;"
            "sm.SavedModelLoader('/nowhere', device='cpu:1');"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_invalid_device_is_rejected_at_construction():
    err = error_of(lambda: SavedModelLoader("/nowhere", device="tpu"))
    assert err.code == StatusCode.INVALID_ARGUMENT
    assert "tpu" in err.message


def test_servable_before_load_is_failed_precondition():
    err = error_of(lambda: SavedModelLoader("/nowhere").servable())
    assert err.code == StatusCode.FAILED_PRECONDITION


def test_device_request_parsing():
    assert DeviceRequest.parse("auto") == DeviceRequest("auto", 0)
    assert DeviceRequest.parse("GPU") == DeviceRequest("gpu", 0)
    assert DeviceRequest.parse("/device:CPU:1") == DeviceRequest("cpu", 1)
    assert DeviceRequest.parse("/gpu:2") == DeviceRequest("gpu", 2)
    assert DeviceRequest.parse("auto").resolve(0) == "/device:CPU:0"
    assert DeviceRequest.parse("auto").resolve(2) == "/device:GPU:0"
    assert DeviceRequest.parse("gpu:1").resolve(2) == "/device:GPU:1"
    assert error_of(lambda: DeviceRequest.parse("gpu:2").resolve(1)).code == \
        StatusCode.FAILED_PRECONDITION
    assert error_of(lambda: DeviceRequest.parse("auto:1")).code == StatusCode.INVALID_ARGUMENT


# ---- every test model loads and answers -----------------------------------------------------

@pytest.mark.parametrize("name", ["cpu", "gpu_pinned", "tf2", "v123", "v124"])
def test_half_plus_two_variants_answer(loaded, name):
    servable = loaded(name)
    assert isinstance(servable, Servable)
    out = run(servable, "serving_default", {"x": f32([1.0], [2.0], [5.0])})
    np.testing.assert_allclose(out["y"], f32([2.5], [3.0], [4.5]))
    assert out["y"].shape == (3, 1)
    assert servable.device == "/device:CPU:0"
    assert servable.load_seconds > 0


@pytest.mark.parametrize("name", ["cpu", "tf2", "matrix"])
def test_shapes_are_not_checked(loaded, name):
    """[1, 2, 5] fed as shape [3] into x declared [-1, 1] (or [1], or [-1, 3, 3]) is accepted."""
    out = run(loaded(name), "serving_default", {"x": f32(1.0, 2.0, 5.0)})
    np.testing.assert_allclose(out["y"], f32(2.5, 3.0, 4.5))
    assert out["y"].shape == (3,)


def test_matrix_half_plus_two(loaded):
    x = np.arange(18, dtype=np.float32).reshape(2, 3, 3)
    out = run(loaded("matrix"), "serving_default", {"x": x})
    np.testing.assert_allclose(out["y"], 0.5 * x + 2)


def test_half_plus_three(loaded):
    out = run(loaded("three"), "serving_default", {"x": f32([1.0], [2.0])})
    np.testing.assert_allclose(out["y"], f32([3.5], [4.0]))


def test_counter_sequence(loaded):
    counter = loaded("counter")
    seen = [float(run(counter, key, {})["output"])
            for key in ("get_counter", "incr_counter", "reset_counter", "incr_counter")]
    out = run(counter, "incr_counter_by", {"delta": np.array(3.0, np.float32)})
    assert seen == [0.0, 1.0, 0.0, 1.0]
    assert float(out["output"]) == 4.0
    assert out["output"].shape == ()


def test_tf2_module_export_loads_and_answers(tf2_export):
    out = run(tf2_export, "serving_default", {"a": f32(1.0, 2.0),
                                             "b": np.array([3, 4], np.int64)})
    np.testing.assert_allclose(out["sum"], f32(4.0, 6.0))
    np.testing.assert_allclose(out["scaled"], f32(6.0, 16.0))
    assert set(tf2_export.signatures) >= {"serving_default", "spin", "pair",
                                          "__saved_model_init_op"}


def test_output_filter_fetches_only_the_named_outputs(tf2_export):
    inputs = {"a": f32(1.0), "b": np.array([1], np.int64)}
    assert set(run(tf2_export, "serving_default", inputs, output_filter=["scaled"])) == {"scaled"}
    both = run(tf2_export, "serving_default", inputs, output_filter=["sum", "scaled"])
    assert set(both) == {"sum", "scaled"}


# ---- load failures --------------------------------------------------------------------------

def test_bad_half_plus_two_is_not_found(tfs_testdata):
    export_dir = str(tfs_testdata / "bad_half_plus_two" / "00000123")
    loader = SavedModelLoader(export_dir, device="cpu")
    err = error_of(loader.load)
    assert err.code == StatusCode.NOT_FOUND
    assert err.message == missing_saved_model_message(export_dir)
    assert err.message.startswith(
        "Could not find SavedModel .pb or .pbtxt at supplied export directory path: ")
    assert error_of(loader.servable).code == StatusCode.FAILED_PRECONDITION


def test_missing_directory_is_not_found(tmp_path):
    err = error_of(SavedModelLoader(str(tmp_path / "absent"), device="cpu").load)
    assert err.code == StatusCode.NOT_FOUND


def test_unknown_tags_are_not_found(tfs_testdata):
    loader = SavedModelLoader(str(tfs_testdata / MODELS["cpu"]), tags=("serve", "tpu"),
                              device="cpu")
    err = error_of(loader.load)
    assert err.code == StatusCode.NOT_FOUND
    assert err.message == missing_tags_message(("serve", "tpu"))


def test_corrupt_saved_model_is_data_loss(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"\x0a\xff\xff\xff not a proto")
    err = error_of(SavedModelLoader(str(tmp_path), device="cpu").load)
    assert err.code == StatusCode.DATA_LOSS
    assert "Cannot parse file" in err.message


@pytest.mark.skipif(HAS_GPU, reason="TensorFlow sees a GPU here")
def test_gpu_without_gpu_fails_to_load(tfs_testdata):
    err = error_of(SavedModelLoader(str(tfs_testdata / MODELS["cpu"]), device="gpu").load)
    assert err.code == StatusCode.FAILED_PRECONDITION
    assert "no GPU visible to TensorFlow" in err.message
    assert tf.__version__ in err.message


# ---- devices --------------------------------------------------------------------------------

@pytest.mark.skipif(HAS_GPU, reason="TensorFlow sees a GPU here")
def test_auto_without_gpu_runs_on_cpu(tfs_testdata):
    loader = SavedModelLoader(str(tfs_testdata / MODELS["gpu_pinned"]))
    loader.load()
    try:
        assert loader.servable().device == "/device:CPU:0"
        assert loader.detail()["device"] == "/device:CPU:0"
        out = run(loader.servable(), "serving_default", {"x": f32(2.0)})
        np.testing.assert_allclose(out["y"], f32(3.0))
    finally:
        loader.unload()


def test_explicit_cpu_device_places_and_runs_the_graph_there(tfs_testdata):
    """cpu:1 asks the session for two CPU devices and imports the graph onto the second."""
    loader = SavedModelLoader(str(tfs_testdata / MODELS["gpu_pinned"]), device="cpu:1")
    loader.load()
    try:
        servable = loader.servable()
        assert servable.device == "/device:CPU:1"
        np.testing.assert_allclose(run(servable, "serving_default", {"x": f32(4.0)})["y"], f32(4.0))
        assert servable._graph.get_operation_by_name("y").device == "/device:CPU:1"
        metadata = config_pb2.RunMetadata()
        servable._session.run("y:0", {"x:0": [[1.0]]}, run_metadata=metadata,
                              options=config_pb2.RunOptions(
                                  trace_level=config_pb2.RunOptions.FULL_TRACE))
        ran_on = {node.node_name: stats.device for stats in metadata.step_stats.dev_stats
                  for node in stats.node_stats}
        assert ran_on["y"].endswith("/device:CPU:1")
    finally:
        loader.unload()


def test_session_config_never_grabs_all_gpu_memory(tmp_path):
    config = SavedModelLoader(str(tmp_path))._make_config(tf, "/device:GPU:0")
    assert config.gpu_options.allow_growth and config.allow_soft_placement
    config = SavedModelLoader(str(tmp_path), gpu_memory_fraction=0.25)._make_config(
        tf, "/device:GPU:0")
    assert config.gpu_options.per_process_gpu_memory_fraction == pytest.approx(0.25)
    assert not config.gpu_options.allow_growth
    config = SavedModelLoader(str(tmp_path))._make_config(tf, "/device:CPU:2")
    assert config.device_count["CPU"] == 3 and config.device_count["GPU"] == 0


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs a GPU visible to TensorFlow")
@pytest.mark.parametrize("device", ["gpu", "auto"])
def test_gpu_device_runs_on_gpu(tfs_testdata, device):
    loader = SavedModelLoader(str(tfs_testdata / MODELS["gpu_pinned"]), device=device)
    loader.load()
    try:
        servable = loader.servable()
        assert servable.device == "/device:GPU:0"
        out = run(servable, "serving_default", {"x": f32(1.0, 2.0, 5.0)})
        np.testing.assert_allclose(out["y"], f32(2.5, 3.0, 4.5))
    finally:
        loader.unload()


# ---- signatures and metadata ----------------------------------------------------------------

def test_signatures_describe_the_signature_defs(loaded):
    signatures = loaded("cpu").signatures
    assert set(signatures) == {"serving_default", "classify_x_to_y", "regress_x_to_y",
                               "regress_x_to_y2", "regress_x2_to_y3"}
    default = signatures["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"
    assert default.inputs == {"x": TensorInfo("x:0", "DT_FLOAT", (-1, 1))}
    assert default.outputs == {"y": TensorInfo("y:0", "DT_FLOAT", (-1, 1))}
    assert signatures["classify_x_to_y"].inputs["inputs"] == TensorInfo(
        "tf_example:0", "DT_STRING", None)
    assert loaded("three").signatures["serving_default"].inputs["x"].shape is None
    init = loaded("tf2").signatures["__saved_model_init_op"]
    assert init.method_name == "" and init.inputs == {}
    assert init.outputs["__saved_model_init_op"] == TensorInfo("NoOp", "DT_INVALID", None)


def metadata_dict(servable) -> dict:
    return json_format.MessageToDict(servable.signature_def_map(),
                                     preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


@pytest.mark.parametrize("name, golden", [
    ("cpu", "half_plus_two_model_metadata.json"),
    ("v123", "saved_model_half_plus_two_2_versions_metadata.json"),
])
def test_metadata_matches_golden(loaded, tfs_testdata, name, golden):
    expected = json.loads((tfs_testdata / golden).read_text())["metadata"]["signature_def"]
    assert metadata_dict(loaded(name)) == expected


def test_tf2_metadata_matches_golden_except_recorded_defaults(loaded, tfs_testdata):
    """The TF2 golden predates SignatureDef.defaults: the model file records x's default value
    0.0 for serving_default, which TF Serving copies verbatim; the golden shows no defaults."""
    golden = json.loads((tfs_testdata / "saved_model_half_plus_two_tf2_2_versions_metadata.json")
                        .read_text())["metadata"]["signature_def"]["signature_def"]
    actual = metadata_dict(loaded("tf2"))["signature_def"]
    defaults = {key: sig.pop("defaults", {}) for key, sig in actual.items()}
    for sig in golden.values():
        sig.pop("defaults", None)
    assert actual == golden
    assert set(defaults["serving_default"]) == {"x"}
    assert defaults["serving_default"]["x"]["float_val"] == [0.0]


def test_metadata_without_tensor_shape_has_no_tensor_shape_key(loaded):
    sig = metadata_dict(loaded("three"))["signature_def"]["serving_default"]
    assert sig["inputs"]["x"] == {"name": "x:0", "dtype": "DT_FLOAT"}


def test_signature_def_map_is_a_fresh_copy(loaded):
    first = loaded("cpu").signature_def_map()
    first.signature_def.clear()
    assert len(loaded("cpu").signature_def_map().signature_def) == 5


# ---- run errors (TF Serving's texts) --------------------------------------------------------

def test_unknown_signature(loaded):
    """A Signature that is not one of the servable's own is refused (callers look it up)."""
    foreign = Signature("nope", inputs={"x": TensorInfo("x:0", "DT_FLOAT")})
    err = error_of(lambda: loaded("cpu").run(foreign, {"x": f32(1.0)}))
    assert err == ServingError(StatusCode.FAILED_PRECONDITION,
                               'Serving signature key "nope" not found.')
    equal = Signature(**vars(loaded("three").signatures["serving_default"]))  # equal, not ours
    np.testing.assert_allclose(loaded("three").run(equal, {"x": f32(2.0)})["y"], f32(4.0))


def test_input_size_mismatch(tf2_export):
    err = error_of(lambda: run(tf2_export, "serving_default", {"a": f32(1.0), "c": f32(1.0),
                                                              "z": f32(1.0)}))
    assert err == ServingError(
        StatusCode.INVALID_ARGUMENT,
        "input size does not match signature: 3!=2 len({a,c,z}) != len({a,b}). "
        "Sent extra: {c,z}. Missing but required: {b}.")
    err = error_of(lambda: run(tf2_export, "serving_default", {}))
    assert err.message == ("input size does not match signature: 0!=2 len({}) != len({a,b}). "
                           "Sent extra: {}. Missing but required: {a,b}.")


def test_unknown_input_alias_with_the_right_count(tf2_export):
    err = error_of(lambda: run(tf2_export, "serving_default", {"a": f32(1.0), "c": f32(1.0)}))
    assert err == ServingError(
        StatusCode.INVALID_ARGUMENT,
        "input tensor alias not found in signature: c. Inputs expected to be in the set {a,b}.")


def test_bad_output_filter(tf2_export):
    inputs = {"a": f32(1.0), "b": np.array([1], np.int64)}
    err = error_of(lambda: run(tf2_export, "serving_default", inputs, output_filter=["nope"]))
    assert err == ServingError(
        StatusCode.INVALID_ARGUMENT,
        "output tensor alias not found in signature: nope Outputs expected to be in the set "
        "{scaled,sum}.")
    err = error_of(lambda: run(tf2_export, "serving_default", inputs,
                                          output_filter=["sum", "sum"]))
    assert err == ServingError(StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias: sum")


def test_wrong_dtype_is_never_cast(loaded, tf2_export):
    err = error_of(lambda: run(loaded("cpu"), "serving_default",
                               {"x": np.array([b"1.0"], dtype=object)}))
    assert err == ServingError(StatusCode.INVALID_ARGUMENT,
                               "Expects arg[0] to be float but string is provided")
    err = error_of(lambda: run(loaded("cpu"), "serving_default", {"x": np.array([1.0])}))
    assert err.message == "Expects arg[0] to be float but double is provided"
    # args are numbered by graph tensor name: serving_default_a:0 < serving_default_b:0
    err = error_of(lambda: run(tf2_export, "serving_default", {"a": f32(1.0), "b": f32(1.0)}))
    assert err.message == "Expects arg[1] to be int64 but float is provided"


def test_tensorflow_runtime_errors_keep_their_code(loaded, tf2_export):
    err = error_of(lambda: run(loaded("cpu"), "classify_x_to_y",
                               {"inputs": np.array([b"garbage"], dtype=object)}))
    assert err.code == StatusCode.INVALID_ARGUMENT
    assert "Could not parse example input" in err.message
    err = error_of(lambda: run(tf2_export, "pair", {"x": f32(1.0, 2.0, 3.0)}))
    assert err.code == StatusCode.INVALID_ARGUMENT
    np.testing.assert_allclose(run(tf2_export, "pair", {"x": f32(1.0, 2.0)})["y"], f32(1.0, 2.0))


def test_string_inputs_accept_bytes_str_and_fixed_width_arrays(loaded):
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    example.features.feature["x"].float_list.value.append(2.0)
    data = example.SerializeToString()
    for inputs in (np.array([data], dtype=object), np.array([data])):
        out = run(loaded("cpu"), "classify_x_to_y", {"inputs": inputs})
        np.testing.assert_allclose(out["scores"], f32([3.0]))


# ---- timeouts, threads, lifetime ------------------------------------------------------------

def test_timeout_becomes_deadline_exceeded(tf2_export, monkeypatch):
    from nbserve.servables import saved_model

    monkeypatch.setattr(saved_model, "TIMED_RUN_MIN_SECONDS", 0.0)  # time every run
    err = error_of(lambda: run(tf2_export, "spin", {"n": np.array(10**12, np.int64)},
                                          timeout_ms=1))
    assert err.code == StatusCode.DEADLINE_EXCEEDED


def test_cheap_runs_skip_the_tensorflow_deadline(loaded):
    servable = loaded("cpu")
    for _ in range(50):  # the moving average forgets the first (slow) runs
        run(servable, "serving_default", {"x": f32(1.0)})
    for _ in range(3):
        run(servable, "serving_default", {"x": f32(1.0)}, timeout_ms=60_000)
    plan = servable._plans[("serving_default", ("x",), ("y",))]
    assert plan.timed == {}  # half_plus_two runs in µs
    assert 0 < plan.mean_seconds < 1e-3


@pytest.mark.parametrize("always_timed", [True, False])
def test_run_with_timeout_answers_like_the_callable(loaded, tf2_export, monkeypatch, always_timed):
    from nbserve.servables import saved_model

    if always_timed:
        monkeypatch.setattr(saved_model, "TIMED_RUN_MIN_SECONDS", 0.0)
    out = run(loaded("cpu"), "serving_default", {"x": f32(1.0, 2.0, 5.0)}, timeout_ms=60_000)
    np.testing.assert_allclose(out["y"], f32(2.5, 3.0, 4.5))
    out = run(tf2_export, "spin", {"n": np.array(5, np.int64)}, timeout_ms=60_000)
    assert float(out["total"]) == 5.0
    err = error_of(lambda: run(loaded("cpu"), "serving_default", {"x": np.array([1.0])},
                                             timeout_ms=60_000))
    assert err.message == "Expects arg[0] to be float but double is provided"


def test_concurrent_runs_from_eight_threads(loaded):
    servable = loaded("cpu")
    failures: list[str] = []

    def worker(seed: int) -> None:
        for step in range(40):
            x = np.full((seed + 1, 1), float(seed * 100 + step), np.float32)
            y = run(servable, "serving_default", {"x": x})["y"]
            if y.shape != x.shape or not np.allclose(y, 0.5 * x + 2):
                failures.append(f"thread {seed} step {step}: {y!r}")

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_unload_closes_and_the_loader_can_load_again(tfs_testdata):
    loader = SavedModelLoader(str(tfs_testdata / MODELS["three"]), device="cpu")
    loader.load()
    servable = loader.servable()
    assert error_of(loader.load).code == StatusCode.FAILED_PRECONDITION
    loader.unload()
    loader.unload()  # idempotent
    err = error_of(lambda: run(servable, "serving_default", {"x": f32(1.0)}))
    assert err.code == StatusCode.FAILED_PRECONDITION
    loader.load()
    try:
        out = run(loader.servable(), "serving_default", {"x": f32(1.0)})
        np.testing.assert_allclose(out["y"], f32(3.5))
    finally:
        loader.unload()


def test_output_filter_order_is_kept_and_shares_one_callable(tf2_export):
    inputs = {"a": f32(1.0), "b": np.array([1], np.int64)}
    assert list(run(tf2_export, "serving_default", inputs, output_filter=["sum", "scaled"])) == \
        ["sum", "scaled"]
    assert list(run(tf2_export, "serving_default", inputs, output_filter=["scaled", "sum"])) == \
        ["scaled", "sum"]
    keys = [key for key in tf2_export._plans if key[0] == "serving_default"]
    assert ("serving_default", ("a", "b"), ("scaled", "sum")) in keys


def test_loads_run_concurrently_on_a_pool(tfs_testdata):
    names = ["cpu", "three", "tf2", "counter"]
    loaders = [SavedModelLoader(str(tfs_testdata / MODELS[name]), device="cpu") for name in names]
    errors: list[BaseException] = []

    def load(loader: SavedModelLoader) -> None:
        try:
            loader.load()
        except ServingError as exc:  # pragma: no cover - load raises only this; reported below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(loader,)) for loader in loaders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        for loader in loaders[:3]:
            assert "serving_default" in loader.servable().signatures
        out = run(loaders[1].servable(), "serving_default", {"x": f32(1.0)})
        np.testing.assert_allclose(out["y"], f32(3.5))
    finally:
        for loader in loaders:
            loader.unload()
