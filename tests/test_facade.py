"""The notebook facade of ``nbserve.Server`` on a live server (issue 10): typed status and hints,
waits and subscriptions, version choices, errors that teach (the wire unchanged), traffic and
compare."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import requests

tf = pytest.importorskip("tensorflow")

import nbserve  # noqa: E402
from nbserve.status import ModelStatus, StateChange, VersionStatus  # noqa: E402
from nbserve.teaching import PredictError  # noqa: E402
from tests.models import Affine  # noqa: E402


class Feats(tf.Module):
    """score = feats @ w: a (None, 4) float input, as a Keras Dense would have."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.w = tf.Variable(tf.fill([4, 1], scale))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="feats")])
    def __call__(self, feats):
        return {"score": tf.matmul(feats, self.w)}


@pytest.fixture(scope="module")
def feats_path(tmp_path_factory):
    """``feats``: v1 (w = 1) and v2 (w = 1.5)."""
    base = tmp_path_factory.mktemp("m") / "feats"
    for scale in (1.0, 1.5):
        module = Feats(scale)
        nbserve.export(module, str(base), signatures=module.__call__)
    return base


@pytest.fixture(scope="module")
def srv(feats_path):
    server = nbserve.serve(str(feats_path), port=0, rest_api_port=0, max_num_load_retries=0,
                           file_system_poll_wait_seconds=0.2)
    server.set_version_policy("feats", "all")
    server.wait_for("feats", 1)
    server.wait_for("feats", 2)
    yield server
    server.stop()


def test_models_are_typed(srv, feats_path):
    (model,) = srv.models()
    assert isinstance(model, ModelStatus) and model.name == "feats"
    assert model.base_path == str(feats_path) and model.policy == "all" and model.hint is None
    assert [v.version for v in model.versions] == [2, 1] and model.serving == 2
    v2 = model.version(2)
    assert isinstance(v2, VersionStatus) and v2.state == "AVAILABLE" and v2.error is None
    assert "CPU" in (v2.device or "") and v2.load_seconds is not None and v2.load_seconds >= 0
    assert srv.started_at.year >= 2024 and srv.source == str(feats_path)


def test_signature(srv):
    sig = srv.signature("feats")
    assert sig.key == "serving_default" and sig.method_name == "tensorflow/serving/predict"
    (spec,) = sig.inputs.values()
    assert (spec.alias, spec.dtype, spec.shape) == ("feats", "DT_FLOAT", (-1, 4))
    assert spec.describe() == "float32 shape (-1, 4)"
    assert srv.example_inputs("feats") == {"feats": [[1.0, 1.0, 1.0, 1.0]]}
    with pytest.raises(PredictError, match='Serving signature key "nope" not found') as info:
        srv.signature("feats", "nope")
    assert "serving_default" in info.value.context


def test_wrong_shape_teaches_and_the_wire_text_is_unchanged(srv):
    with pytest.raises(nbserve.ServingError) as info:
        srv.predict("feats", [[1.0, 2.0]], version=1)
    err = info.value
    assert isinstance(err, PredictError) and err.code == nbserve.StatusCode.INVALID_ARGUMENT
    assert "input 'feats' expects float32 shape (-1, 4); got float32 (1, 2)" in str(err)
    answer = requests.post(f"{srv.rest_url}/v1/models/feats/versions/1:predict",
                           json={"instances": [[1.0, 2.0]]}, timeout=10)
    assert answer.status_code == 400 and answer.json() == {"error": err.message}
    assert "expects float32" not in err.message


def test_wrong_input_name_teaches(srv):
    with pytest.raises(PredictError) as info:
        srv.predict("feats", {"x": [[1.0] * 4]})
    assert info.value.message.startswith("input size does not match signature") or \
        info.value.message.startswith("input tensor alias not found")
    assert "input 'x' is not in signature 'serving_default' (its inputs: 'feats')" in \
        info.value.context
    assert "input 'feats' (float32 shape (-1, 4)) is missing" in info.value.context


def test_unknown_model_lists_the_served_ones(srv):
    with pytest.raises(PredictError) as info:
        srv.predict("fetas", [[1.0] * 4])
    assert info.value.code == nbserve.StatusCode.NOT_FOUND
    assert "There is no model 'fetas' on this server; it serves 'feats'." in str(info.value)


def test_traffic_per_version_and_compare(srv):
    for _ in range(5):
        requests.post(f"{srv.rest_url}/v1/models/feats/versions/1:predict",
                      json={"instances": [[1.0] * 4]}, timeout=10).raise_for_status()
    requests.post(f"{srv.rest_url}/v1/models/feats/versions/2:predict",
                  json={"instances": [[1.0] * 2]}, timeout=10)  # a 400: an error for v2
    srv.predict("feats", [[1.0] * 4])  # in-process: the latest, v2
    traffic = {t.version: t for t in srv.traffic("feats")}
    assert traffic[1].requests >= 5 and traffic[1].p50_ms is not None
    assert traffic[1].p99_ms >= traffic[1].p50_ms and sum(traffic[1].per_second) >= 5
    assert traffic[2].errors >= 1 and traffic[2].requests >= 2

    result = srv.compare("feats", [[1.0, 2.0, 3.0, 4.0]], versions=(1, 2))
    assert result.versions == (1, 2)
    assert result.outputs[1]["score"].tolist() == [[10.0]]
    assert result.outputs[2]["score"].tolist() == [[15.0]]
    assert result.max_abs_diff == {"score": 5.0} and result.largest_diff == 5.0
    assert srv.compare("feats", [[0.0] * 4]).max_abs_diff == {"score": 0.0}  # default: 1 vs 2


def test_version_choices_and_labels_go_through_the_lifecycle(srv):
    events: list[StateChange] = []
    unsubscribe = srv.subscribe(events.append)
    try:
        srv.set_version_policy("feats", [2])
        assert srv.wait_for("feats", 1, state="END") == 1
        assert srv.model("feats").policy == "specific 2"
        assert any(e.model == "feats" and e.version == 1 and e.state == "END" for e in events)
        srv.load_version("feats", 1)
        assert srv.wait_for("feats", 1) == 1 and srv.model("feats").policy == "specific 1,2"
        srv.set_label("feats", "stable", 1)
        assert srv.model("feats").labels == {"stable": 1}
        assert srv.predict("feats", [[1.0] * 4], label="stable")["score"].tolist() == [[4.0]]
        srv.set_label("feats", "stable", 2)  # moving a label to an AVAILABLE version
        assert srv.predict("feats", [[1.0] * 4], label="stable")["score"].tolist() == [[6.0]]
        srv.unload_version("feats", 1)
        assert srv.wait_for("feats", 1, state="END") == 1
        with pytest.raises(nbserve.ServingError, match="not currently available"):
            srv.set_label("feats", "stable", 1)  # TF Serving's FAILED_PRECONDITION
        with pytest.raises(ValueError, match="only version served"):
            srv.unload_version("feats", 2)
        with pytest.raises(ValueError, match="not on disk"):
            srv.load_version("feats", 9)
        with pytest.raises(ValueError, match="Not a version policy"):
            srv.set_version_policy("feats", "newest")
    finally:
        unsubscribe()
        srv.set_label("feats", "stable", None)
        srv.set_version_policy("feats", "all")
        srv.wait_for("feats", 1)
    count = len(events)
    srv.set_version_policy("feats", "all")
    assert len(events) == count  # unsubscribed


def test_flat_export_hint_in_models_and_in_the_wait(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = Affine(1.0, 0.0)
    tf.saved_model.save(module, "export", signatures=module.__call__)  # the mistake: no /1
    with nbserve.serve("export", port=None, rest_api_port=0) as srv:
        (model,) = srv.models()
        assert model.versions == () and model.hint is not None
        assert "Did you forget to name your leaf directory as a number (eg. '/1/')?" in model.hint
        assert 'nbserve.export(model, "export")' in model.hint
        with pytest.raises(TimeoutError, match="leaf directory"):
            srv.wait_for("export", timeout=0.5)


def test_stopped_and_replaced_servers(feats_path, capsys):
    changes: list[StateChange] = []
    first = nbserve.serve(str(feats_path), port=0, rest_api_port=0)
    first.subscribe(changes.append)
    stopped = threading.Event()
    first.subscribe(lambda c: stopped.set() if c.state == "STOPPED" else None)
    capsys.readouterr()
    second = nbserve.serve(str(feats_path), port=first.grpc_port, rest_api_port=first.rest_port)
    try:
        assert stopped.is_set() and not first.running and first.replaced_by is second
        assert StateChange("", None, "REPLACED", None) in changes
        out = capsys.readouterr().out
        assert out.startswith(f"Replaced the server started from {feats_path} at "
                              f"{first.started_at:%H:%M:%S}: REST :{first.rest_port}, "
                              f"gRPC :{first.grpc_port} (stopped)")
        with pytest.raises(PredictError, match="The server is stopped") as info:
            first.predict("feats", [[1.0] * 4])
        assert info.value.code == nbserve.StatusCode.UNAVAILABLE
        assert "replaced by <nbserve.Server running" in info.value.context
    finally:
        second.stop()
    with pytest.raises(PredictError) as info:
        second.predict("feats", [[1.0] * 4])
    assert f"nbserve.serve('{feats_path}')" in info.value.context


def test_repr_html_is_the_live_view_or_a_dated_snapshot(srv):
    from nbserve import display

    page = srv._repr_html_()
    if getattr(display, "server_view", None) is None:
        assert "snapshot at" in page and srv.rest_url in page
    else:
        assert srv.rest_url in page


def test_example_request_values_for_predict(srv):
    inputs = {"feats": np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)}
    curl = srv.example_request("feats", inputs=inputs, version=1)
    assert '{"instances": [[1.0, 2.0, 3.0, 4.0]]}' in curl and "/versions/1:predict" in curl


def test_predict_while_nothing_is_served_says_why(tmp_path):
    (tmp_path / "empty").mkdir()
    with nbserve.serve(str(tmp_path / "empty"), port=None, rest_api_port=0) as srv:
        with pytest.raises(PredictError) as info:
            srv.predict("empty", [1.0])
    assert info.value.message == "Servable not found for request: Latest(empty)"
    assert "has no AVAILABLE a version (versions: none yet)" not in info.value.context
    assert "Model 'empty' has no AVAILABLE version" in info.value.context
    assert "is empty" in info.value.context
