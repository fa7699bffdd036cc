"""``nbserve.validate`` on version folders with ``model.tflite`` (issue 14: TFLite)."""

from __future__ import annotations

import shutil

import pytest

tf = pytest.importorskip("tensorflow")

import nbserve  # noqa: E402
from nbserve.validate import ERROR, is_servable, validate  # noqa: E402
from tests.models import Affine  # noqa: E402


def codes(findings):
    return {f.code: f.severity for f in findings}


@pytest.mark.tfs_testdata
def test_tf_servings_tflite_models(tfs_testdata):
    plain = validate(tfs_testdata / "saved_model_half_plus_two_tflite")
    assert is_servable(plain)
    assert codes(plain) == {"tflite-no-signature-defs": "warning", "tflite-only": "warning"}
    sigdef = validate(tfs_testdata / "saved_model_half_plus_two_tflite_with_sigdef" / "00000123")
    assert codes(sigdef) == {"tflite": "info", "tflite-only": "warning"}
    assert "['serving_default']" in next(f.message for f in sigdef if f.code == "tflite")


def test_an_export_with_tflite_is_servable_both_ways(tmp_path):
    module = Affine(1.0, 0.0)
    nbserve.export(module, str(tmp_path / "m"), signatures=module.__call__, tflite=True)
    findings = validate(tmp_path / "m")
    assert is_servable(findings)
    assert codes(findings)["tflite"] == "info"
    assert "tflite-only" not in codes(findings)


def test_a_broken_tflite_file_is_an_error(tmp_path):
    module = Affine(1.0, 0.0)
    nbserve.export(module, str(tmp_path / "m"), signatures=module.__call__)
    (tmp_path / "m" / "1" / "model.tflite").write_bytes(b"\x00" * 64)
    findings = validate(tmp_path / "m")
    assert codes(findings)["tflite-unreadable"] == ERROR
    shutil.rmtree(tmp_path / "m" / "1" / "variables")  # unrelated damage still reported too
    assert not is_servable(validate(tmp_path / "m"))
