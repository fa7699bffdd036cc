"""The pure state -> view functions behind the widget panel (no server, no widgets, no kernel)."""

from __future__ import annotations

import numpy as np
import pytest

from nbserve import vocabulary as V
from nbserve.status import (
    Comparison,
    ModelStatus,
    SignatureInfo,
    TensorSpec,
    VersionStatus,
    VersionTraffic,
)
from nbserve.widgets import builder as B
from nbserve.widgets import rows as R


def model(versions, policy="latest 1", labels=None, hint=None):
    return ModelStatus("m", "/x/m", tuple(versions), policy, labels or {}, hint)


def test_rows_merge_states_disk_labels_and_traffic_highest_first():
    m = model([VersionStatus(3, "END", error="Could not load <3>"),
               VersionStatus(2, "AVAILABLE", "/cpu:0", 0.4213), VersionStatus(1, "AVAILABLE")],
              labels={"stable": 1, "canary": 2, "old": 1})
    flow = [VersionTraffic(2, 5, 1, 1.0, 2.0, (0,) * 58 + (2, 3))]
    rows = R.version_rows(m, on_disk=[1, 2, 4], traffic=flow)
    assert [r.version for r in rows] == [4, 3, 2, 1]
    by = {r.version: r for r in rows}
    assert by[4].state == R.NOT_LOADED and by[4].look.kind == "not-loaded"
    assert by[3].look.words == "failed: Could not load <3>" and by[3].error == "Could not load <3>"
    assert by[2].device == "/cpu:0" and by[2].load_time == "0.42 s" and by[2].labels == ("canary",)
    assert by[2].traffic == "5 req, 1 err, p50 1.0 ms, p99 2.0 ms" and "<svg" in by[2].spark
    assert by[1].labels == ("old", "stable") and by[1].spark == ""
    assert [r.version for r in rows if r.serving] == [2]  # the highest AVAILABLE answers


def test_buttons_say_why_they_are_disabled():
    rows = {r.version: r for r in R.version_rows(
        model([VersionStatus(2, "AVAILABLE"), VersionStatus(1, "END")]), on_disk=[1, 2])}
    assert rows[2].load_why == "already loaded"
    assert "only loaded version" in rows[2].unload_why
    assert rows[1].load_why == "" and rows[1].unload_why == "not loaded"
    gone = R.version_rows(model([VersionStatus(1, "END")]), on_disk=[])
    assert gone[0].load_why == "its folder is no longer on disk"


def test_table_uses_the_shared_vocabulary_and_escapes():
    rows = R.version_rows(model([VersionStatus(7, "END", error="<script>x</script> & more"),
                                 VersionStatus(8, "AVAILABLE")], labels={"a<b": 7}))
    text = R.rows_html(rows)
    assert "<script>" not in text and "&lt;script&gt;" in text and "a&lt;b" in text
    for look in (V.version_look("AVAILABLE"), V.version_look("END", "x")):
        assert look.colour in text and look.css_class in text
    assert "no versions" in R.rows_html([])
    assert R.rows_text(rows).splitlines() == [
        "8: AVAILABLE \u00b7 serving (default)",
        "7: END \u00b7 failed: <script>x</script> & more (labels a<b)"]


def test_picker_in_plain_words():
    options = R.picker_options([1, 3, 2, 3], {"stable": 1}, "latest 1")
    assert options == [("the newest version", "latest"), ("every version", "all"),
                       ("version 3", "version:3"), ("version 2", "version:2"),
                       ("version 1", "version:1"), ("label stable \u2192 version 1",
                                                    "label:stable")]
    assert R.picker_options([1, 2], {}, "specific 1,2")[-1] == (
        "custom: versions 1 and 2", "custom")
    assert R.policy_title("latest 1") == (
        "serves the newest version",
        "TF Serving: model_version_policy { latest { num_versions: 1 } }")


def test_picker_value_follows_the_policy_in_force():
    labels = {"stable": 1, "canary": 2}
    assert R.picker_value("latest 1", labels) == "latest"
    assert R.picker_value("all", labels) == "all"
    assert R.picker_value("specific 1", labels) == "version:1"
    assert R.picker_value("specific 1", labels, "label:stable") == "label:stable"
    assert R.picker_value("specific 2", labels, "label:stable") == "version:2"
    assert R.picker_value("specific 1,2", labels) == "custom"
    assert R.picker_value("latest 2", labels) == "custom"


def test_choice_policy_is_what_set_version_policy_takes():
    labels = {"stable": 4}
    assert R.choice_policy("latest", labels) == "latest"
    assert R.choice_policy("all", labels) == "all"
    assert R.choice_policy("version:3", labels) == [3]
    assert R.choice_policy("label:stable", labels) == [4]
    for bad in ("custom", "label:nope", "3"):
        with pytest.raises(ValueError):
            R.choice_policy(bad, labels)


# -- the request builder and compare ---------------------------------------------------------------
SIG = SignatureInfo("serving_default", "tensorflow/serving/predict",
                    {"x": TensorSpec("x", "DT_FLOAT", (-1, 3)),
                     "name": TensorSpec("name", "DT_STRING", (-1,)),
                     "k": TensorSpec("k", "DT_INT64", None)},
                    {"y": TensorSpec("y", "DT_FLOAT", (-1, 1))})


def test_a_field_per_input_with_dtype_shape_and_the_example():
    fields = B.input_fields(SIG, {"x": np.zeros((1, 3), np.float32), "name": [b"a"], "k": 3})
    assert [(f.alias, f.describe, f.text) for f in fields] == [
        ("x", "float32 shape (-1, 3)", "[[0.0, 0.0, 0.0]]"),
        ("name", "string (bytes) shape (-1,)", '["a"]'),
        ("k", "int64 of any shape", "3")]


def test_parse_inputs_names_the_bad_field():
    assert B.parse_inputs({"x": "[[1, 2, 3]]", "k": "3"}) == {"x": [[1, 2, 3]], "k": 3}
    with pytest.raises(ValueError, match="input 'x': not JSON"):
        B.parse_inputs({"x": "[[1, 2"})


def test_comparison_side_by_side_with_the_largest_difference():
    result = Comparison((1, 2), {1: {"y": np.array([2.5, 3.0])}, 2: {"y": np.array([3.5, 4.0])}},
                        {"y": 1.0})
    page = B.comparison_html(result)
    assert "version 1" in page and "version 2" in page
    assert "[2.5, 3.0]" in page and "[3.5, 4.0]" in page and ">1</td>" in page
