"""Classify / Regress / MultiInference: real SavedModels for results, a fake servable for the
output checks a well-formed model never trips."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from nbserve.errors import ServingError, StatusCode
from nbserve.servables.inference import (
    CLASSIFY_METHOD_NAME,
    REGRESS_METHOD_NAME,
    InferenceResult,
    run_classify,
    run_multi_inference,
    run_regress,
    signature_debug_string,
)
from nbserve.servables.signature import Signature, TensorInfo

tf = pytest.importorskip("tensorflow")

from tensorflow.core.example import example_pb2  # noqa: E402

from nbserve.servables.saved_model import SavedModelLoader  # noqa: E402

CLASSIFY = CLASSIFY_METHOD_NAME
REGRESS = REGRESS_METHOD_NAME


def example(**features) -> bytes:
    """A serialized tf.Example; floats become float_list, ints int64_list."""
    proto = example_pb2.Example()
    for name, value in features.items():
        feature = proto.features.feature[name]
        if isinstance(value, float):
            feature.float_list.value.append(value)
        else:
            feature.int64_list.value.append(value)
    return proto.SerializeToString()


def error_of(call) -> ServingError:
    with pytest.raises(ServingError) as info:
        call()
    return info.value


@pytest.fixture(scope="module")
def servables(tfs_testdata):
    loaders = {}

    def get(path: str):
        if path not in loaders:
            loader = SavedModelLoader(str(tfs_testdata / path), device="cpu")
            loader.load()
            loaders[path] = loader
        return loaders[path].servable()

    yield get
    for loader in loaders.values():
        loader.unload()


@pytest.fixture
def half_plus_two(servables):
    return servables("saved_model_half_plus_two_cpu/00000123")


@pytest.fixture
def half_plus_two_tf2(servables):
    return servables("saved_model_half_plus_two_tf2_cpu/00000123")


@pytest.fixture
def half_plus_three(servables):
    return servables("saved_model_half_plus_three/00000123")


# ---- results from real models ---------------------------------------------------------------

@pytest.mark.tfs_testdata
def test_classify_x_to_y(half_plus_two):
    classes, scores = run_classify(half_plus_two, "classify_x_to_y", [example(x=2.0)])
    assert classes is None
    np.testing.assert_allclose(scores, np.array([[3.0]], np.float32))
    assert scores.dtype == np.float32


@pytest.mark.tfs_testdata
def test_regress_x_to_y(half_plus_two):
    values = run_regress(half_plus_two, "regress_x_to_y", [example(x=2.0), example(x=4.0)])
    np.testing.assert_allclose(values, np.array([3.0, 4.0], np.float32))
    assert values.dtype == np.float32 and values.shape == (2,)
    np.testing.assert_allclose(run_regress(half_plus_two, "regress_x_to_y2", [example(x=2.0)]),
                               [4.0])


@pytest.mark.tfs_testdata
def test_tf2_predict_method_signatures_classify_and_regress(half_plus_two_tf2):
    _, scores = run_classify(half_plus_two_tf2, "classify_x_to_y", [example(x=2.0)])
    np.testing.assert_allclose(scores, [[3.0]])
    np.testing.assert_allclose(run_regress(half_plus_two_tf2, "regress_x_to_y",
                                           [example(x=2.0)]), [3.0])


@pytest.mark.tfs_testdata
def test_half_plus_three_regress_signature(half_plus_three):
    """Its regress input claims DT_FLOAT; the graph placeholder is a string, so it runs."""
    values = run_regress(half_plus_three, "tensorflow/serving/regress",
                         [example(x=1.0), example(x=2.0)])
    np.testing.assert_allclose(values, [3.5, 4.0])


@pytest.mark.tfs_testdata
def test_context_bytes_prepended_to_each_example_merge_features(half_plus_two):
    """TF Serving serves ExampleListWithContext as context bytes + example bytes."""
    context = example(x=2.0)
    values = run_regress(half_plus_two, "regress_x_to_y",
                         [context + example(), context + example(x=4.0)])
    np.testing.assert_allclose(values, [3.0, 4.0])


@pytest.mark.tfs_testdata
def test_multi_inference(half_plus_two):
    results = run_multi_inference(
        half_plus_two, [("regress_x_to_y", REGRESS), ("classify_x_to_y", CLASSIFY),
                        ("regress_x_to_y2", REGRESS)], [example(x=2.0)])
    assert [(r.signature_key, r.method_name) for r in results] == [
        ("regress_x_to_y", REGRESS), ("classify_x_to_y", CLASSIFY), ("regress_x_to_y2", REGRESS)]
    assert all(isinstance(r, InferenceResult) for r in results)
    np.testing.assert_allclose(results[0].regression, [3.0])
    assert results[1].classification[0] is None
    np.testing.assert_allclose(results[1].classification[1], [[3.0]])
    np.testing.assert_allclose(results[2].regression, [4.0])
    assert results[0].classification is None and results[1].regression is None


@pytest.mark.tfs_testdata
def test_multi_inference_across_signatures_with_different_inputs(half_plus_two_tf2):
    """The TF2 export gives every signature its own input tensor; each task's own input gets
    the same examples (TF Serving's testMultiInferenceTf2)."""
    signatures = half_plus_two_tf2.signatures
    names = {signatures[key].inputs["inputs"].name
             for key in ("regress_x_to_y", "classify_x_to_y", "regress_x_to_y2")}
    assert len(names) == 3
    results = run_multi_inference(
        half_plus_two_tf2, [("regress_x_to_y", REGRESS), ("classify_x_to_y", CLASSIFY),
                            ("regress_x_to_y2", REGRESS)], [example(x=2.0), example(x=4.0)])
    np.testing.assert_allclose(results[0].regression, [3.0, 4.0])
    classes, scores = results[1].classification
    assert classes is None
    np.testing.assert_allclose(scores, [[3.0], [4.0]])
    np.testing.assert_allclose(results[2].regression, [4.0, 5.0])


# ---- request and signature errors -----------------------------------------------------------

@pytest.mark.tfs_testdata
def test_no_examples_is_input_is_empty(half_plus_two):
    for call in (lambda: run_classify(half_plus_two, "classify_x_to_y", []),
                 lambda: run_regress(half_plus_two, "regress_x_to_y", []),
                 lambda: run_multi_inference(half_plus_two, [("regress_x_to_y", REGRESS)], [])):
        assert error_of(call) == ServingError(StatusCode.INVALID_ARGUMENT, "Input is empty.")


@pytest.mark.tfs_testdata
def test_unknown_signature(half_plus_two):
    for call in (run_classify, run_regress):
        err = error_of(lambda call=call: call(half_plus_two, "nope", [example(x=1.0)]))
        assert err == ServingError(StatusCode.INVALID_ARGUMENT,
                                   "No signature was found with the name: nope")


@pytest.mark.tfs_testdata
def test_predict_signature_has_no_classification_or_regression_inputs(half_plus_two):
    debug = signature_debug_string(half_plus_two.signatures["serving_default"])
    # the approximation equals protobuf's own text format for this SignatureDef
    assert debug == str(half_plus_two.signature_def_map().signature_def["serving_default"])
    err = error_of(lambda: run_classify(half_plus_two, "", [example(x=1.0)]))
    assert err == ServingError(StatusCode.INVALID_ARGUMENT,
                               "No classification inputs found in SignatureDef: " + debug)
    err = error_of(lambda: run_regress(half_plus_two, "serving_default", [example(x=1.0)]))
    assert err == ServingError(StatusCode.INVALID_ARGUMENT,
                               "No regression inputs found in SignatureDef: " + debug)


@pytest.mark.tfs_testdata
def test_unknown_rank_tensor_debug_string(half_plus_two):
    assert signature_debug_string(half_plus_two.signatures["classify_x_to_y"]) == str(
        half_plus_two.signature_def_map().signature_def["classify_x_to_y"])


@pytest.mark.tfs_testdata
def test_method_name_check_is_opt_in(half_plus_two_tf2):
    err = error_of(lambda: run_classify(half_plus_two_tf2, "classify_x_to_y", [example(x=2.0)],
                                        check_method_name=True))
    assert err.message == ("Expected classification signature method_name to be "
                           "tensorflow/serving/classify. Was: tensorflow/serving/predict")
    err = error_of(lambda: run_regress(half_plus_two_tf2, "regress_x_to_y", [example(x=2.0)],
                                       check_method_name=True))
    assert err.message == ("Expected regression signature method_name to be "
                           "tensorflow/serving/regress. Was: tensorflow/serving/predict")


@pytest.mark.tfs_testdata
def test_float_input_signature_gets_tensorflows_dtype_error(half_plus_two):
    """regress_x2_to_y3's input `inputs` is the float x2:0: serialized examples can't feed it."""
    err = error_of(lambda: run_regress(half_plus_two, "regress_x2_to_y3", [example(x2=1.0)]))
    assert err == ServingError(StatusCode.INVALID_ARGUMENT,
                               "Expects arg[0] to be float but string is provided")


@pytest.mark.tfs_testdata
def test_int_feature_for_float_parse_is_a_runtime_invalid_argument(half_plus_two):
    err = error_of(lambda: run_regress(half_plus_two, "regress_x_to_y", [example(x=2)]))
    assert err.code == StatusCode.INVALID_ARGUMENT
    assert "Data types don't match" in err.message


@pytest.mark.tfs_testdata
def test_multi_inference_errors(half_plus_two):
    examples = [example(x=2.0)]
    err = error_of(lambda: run_multi_inference(
        half_plus_two, [("regress_x_to_y", REGRESS), ("regress_x_to_y", REGRESS)], examples))
    assert err == ServingError(StatusCode.INVALID_ARGUMENT,
                               "Duplicate evaluation of signature: regress_x_to_y")
    err = error_of(lambda: run_multi_inference(half_plus_two, [("nope", REGRESS)], examples))
    assert err == ServingError(StatusCode.INVALID_ARGUMENT,
                               "Requested signature not found in model graph: nope")
    err = error_of(lambda: run_multi_inference(
        half_plus_two, [("serving_default", "tensorflow/serving/predict")], examples))
    assert err == ServingError(StatusCode.UNIMPLEMENTED,
                               "Unsupported signature method_name: tensorflow/serving/predict")
    # different input tensors are allowed now; x2:0 is a float placeholder, so feeding it the
    # serialized examples fails in TensorFlow, as TF Serving's one session run does
    err = error_of(lambda: run_multi_inference(
        half_plus_two, [("regress_x_to_y", REGRESS), ("regress_x2_to_y3", REGRESS)], examples))
    assert err == ServingError(StatusCode.INVALID_ARGUMENT,
                               "Expects arg[0] to be float but string is provided")
    err = error_of(lambda: run_multi_inference(half_plus_two, [("", REGRESS)], examples))
    assert err.message.startswith("No regression inputs found in SignatureDef: ")


# ---- output checks with a fake servable -----------------------------------------------------

STRING_INPUT = {"inputs": TensorInfo("tf_example:0", "DT_STRING", (-1,))}


def out(name: str, dtype: str = "DT_FLOAT") -> TensorInfo:
    return TensorInfo(f"{name}:0", dtype, (-1, 1))


class FakeServable:
    """Returns canned outputs; records what it was asked to run."""

    def __init__(self, signatures: Sequence[Signature], outputs: Mapping[str, np.ndarray]):
        self.signatures = {sig.key: sig for sig in signatures}
        self.device = "/device:CPU:0"
        self.outputs = dict(outputs)
        self.calls: list[tuple[str, dict, list]] = []

    def run(self, signature, inputs, output_filter=None, timeout_ms=None):
        self.calls.append((signature.key, dict(inputs), list(output_filter or [])))
        return {alias: self.outputs[alias] for alias in output_filter}

    def signature_def_map(self):  # pragma: no cover - not used here
        return None


def classify_servable(outputs: Mapping[str, np.ndarray], aliases=("classes", "scores")):
    sig = Signature("c", CLASSIFY, STRING_INPUT,
                    {a: out(a, "DT_STRING" if a == "classes" else "DT_FLOAT") for a in aliases})
    return FakeServable([sig], outputs)


def regress_servable(value: np.ndarray):
    return FakeServable([Signature("r", REGRESS, STRING_INPUT, {"outputs": out("y")})],
                        {"outputs": value})


def test_classify_feeds_a_1d_string_tensor_and_returns_both_outputs():
    classes = np.array([[b"a", b"b"], [b"c", b"d"]], dtype=object)
    scores = np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)
    servable = classify_servable({"classes": classes, "scores": scores})
    got_classes, got_scores = run_classify(servable, "c", [b"e1", b"e2"], timeout_ms=7)
    assert got_classes.tolist() == classes.tolist() and got_scores is scores
    key, inputs, output_filter = servable.calls[0]
    assert key == "c" and output_filter == ["classes", "scores"]
    assert inputs["inputs"].dtype == object and inputs["inputs"].tolist() == [b"e1", b"e2"]


@pytest.mark.parametrize("outputs, message", [
    ({"classes": np.array([b"a"], dtype=object), "scores": np.zeros((1, 1), np.float32)},
     "Expected Tensor shape: [batch_size num_classes] but got [1]"),
    ({"classes": np.zeros((1, 1), np.int64), "scores": np.zeros((1, 1), np.float32)},
     "Expected classes Tensor of DT_STRING. Got: DT_INT64"),
    ({"classes": np.array([[b"a"], [b"b"]], dtype=object), "scores": np.zeros((1, 1), np.float32)},
     "Expected classes output batch size of 1. Got: 2"),
    ({"classes": np.array([[b"a"]], dtype=object), "scores": np.zeros((1, 1), np.float64)},
     "Expected scores Tensor of DT_FLOAT. Got: DT_DOUBLE"),
    ({"classes": np.array([[b"a"]], dtype=object), "scores": np.zeros((1, 2, 1), np.float32)},
     "Expected Tensor shape: [batch_size num_classes] but got [1,2,1]"),
    ({"classes": np.array([[b"a"]], dtype=object), "scores": np.zeros((1, 2), np.float32)},
     "Tensors class and score should match in dim_size(1). Got 1 vs. 2"),
])
def test_classify_output_checks(outputs, message):
    err = error_of(lambda: run_classify(classify_servable(outputs), "c", [b"e"]))
    assert err == ServingError(StatusCode.INVALID_ARGUMENT, message)


def test_classify_signature_checks():
    two_inputs = dict(STRING_INPUT, other=TensorInfo("o:0", "DT_STRING", None))
    three_outputs = {a: out(a) for a in ("classes", "scores", "extra")}
    cases = [
        (Signature("s", CLASSIFY, two_inputs, {"scores": out("s")}), "Expected one input Tensor."),
        (Signature("s", CLASSIFY, STRING_INPUT, three_outputs),
         "Expected one or two output Tensors, found 3"),
        (Signature("s", CLASSIFY, STRING_INPUT, {}), "Expected one or two output Tensors, found 0"),
    ]
    for sig, message in cases:
        err = error_of(lambda sig=sig: run_classify(FakeServable([sig], {}), "s", [b"e"]))
        assert err == ServingError(StatusCode.INVALID_ARGUMENT, message)
    sig = Signature("s", CLASSIFY, STRING_INPUT, {"probabilities": out("p")})
    err = error_of(lambda: run_classify(FakeServable([sig], {}), "s", [b"e"]))
    assert err.message == ('Expected classification signature outputs to contain at least one '
                           'of "classes" or "scores". Signature was: '
                           + signature_debug_string(sig))


def test_classify_with_only_classes():
    classes = np.array([[b"x", b"y"]], dtype=object)
    got_classes, got_scores = run_classify(classify_servable({"classes": classes}, ("classes",)),
                                           "c", [b"e"])
    assert got_scores is None and got_classes.tolist() == [[b"x", b"y"]]


@pytest.mark.parametrize("value, expected", [
    (np.array([1.5, 2.5], np.float32), [1.5, 2.5]),
    (np.array([[1.5], [2.5]], np.float32), [1.5, 2.5]),
])
def test_regress_accepts_batch_and_batch_by_one(value, expected):
    values = run_regress(regress_servable(value), "r", [b"e1", b"e2"])
    assert values.shape == (2,) and values.tolist() == expected


@pytest.mark.parametrize("value, message", [
    (np.zeros((2, 2), np.float32),
     "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got [2,2]"),
    (np.zeros((3,), np.float32), "Input batch size did not match output batch size: 2 vs. 3"),
    (np.zeros((2,), np.float64), "Expected output Tensor of DT_FLOAT.  Got: DT_DOUBLE"),
])
def test_regress_output_checks(value, message):
    err = error_of(lambda: run_regress(regress_servable(value), "r", [b"e1", b"e2"]))
    assert err == ServingError(StatusCode.INVALID_ARGUMENT, message)


def test_regress_signature_checks():
    cases = [
        (Signature("s", REGRESS, STRING_INPUT, {"outputs": out("y"), "more": out("m")}),
         "Expected one output Tensor."),
        (Signature("s", REGRESS, {"x": STRING_INPUT["inputs"]}, {"outputs": out("y")}),
         None),
        (Signature("s", REGRESS, STRING_INPUT, {"y": out("y")}), None),
    ]
    for sig, message in cases:
        err = error_of(lambda sig=sig: run_regress(FakeServable([sig], {}), "s", [b"e"]))
        assert err.code == StatusCode.INVALID_ARGUMENT
        if message is not None:
            assert err.message == message
    err = error_of(lambda: run_regress(FakeServable([cases[1][0]], {}), "s", [b"e"]))
    assert err.message == "No regression inputs found in SignatureDef: " + signature_debug_string(
        cases[1][0])
    err = error_of(lambda: run_regress(FakeServable([cases[2][0]], {}), "s", [b"e"]))
    assert err.message == ("No regression outputs found in SignatureDef: "
                           + signature_debug_string(cases[2][0]))


def test_multi_inference_feeds_each_tasks_own_input_the_same_examples():
    classify = Signature("c", CLASSIFY, {"inputs": TensorInfo("c_in:0", "DT_STRING", (-1,))},
                         {"scores": out("scores")})
    regress = Signature("r", REGRESS, {"inputs": TensorInfo("r_in:0", "DT_STRING", (-1,))},
                        {"outputs": out("y")})
    servable = FakeServable([classify, regress], {"scores": np.array([[0.5]], np.float32),
                                                  "outputs": np.array([[1.5]], np.float32)})
    results = run_multi_inference(servable, [("r", REGRESS), ("c", CLASSIFY)], [b"ex"])
    assert [(getattr(sig, "key", sig), list(inputs), fetch)  # a key, or a Signature (run API)
            for sig, inputs, fetch in servable.calls] == [
        ("r", ["inputs"], ["outputs"]), ("c", ["inputs"], ["scores"])]
    for _, inputs, _ in servable.calls:
        assert inputs["inputs"].tolist() == [b"ex"]
    np.testing.assert_allclose(results[0].regression, [1.5])
    np.testing.assert_allclose(results[1].classification[1], [[0.5]])


def test_signature_debug_string_format():
    sig = Signature("s", REGRESS, {"inputs": TensorInfo("in:0", "DT_STRING", None)},
                    {"outputs": TensorInfo("out:0", "DT_FLOAT", ())})
    assert signature_debug_string(sig) == (
        'inputs {\n  key: "inputs"\n  value {\n    name: "in:0"\n    dtype: DT_STRING\n'
        '    tensor_shape {\n      unknown_rank: true\n    }\n  }\n}\n'
        'outputs {\n  key: "outputs"\n  value {\n    name: "out:0"\n    dtype: DT_FLOAT\n'
        '    tensor_shape {\n    }\n  }\n}\nmethod_name: "tensorflow/serving/regress"\n')
