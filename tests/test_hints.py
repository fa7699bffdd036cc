"""Defect 2: a model that waits for a known reason says why, with the fix (nbserve.hints), and the
facade shows it in ``ModelStatus.hint`` (and in ``wait_for``'s timeout)."""

from __future__ import annotations

import os

import pytest

from nbserve.hints import TF_SERVING_HINT, diagnose
from nbserve.status import VersionStatus


def test_flat_export_gets_tf_servings_hint_and_the_fix(tmp_path, monkeypatch):
    base = tmp_path / "export"
    base.mkdir()
    (base / "saved_model.pb").write_bytes(b"")
    (base / "variables").mkdir()
    monkeypatch.chdir(tmp_path)
    hint = diagnose("export", str(base))
    assert hint is not None and hint.startswith(TF_SERVING_HINT)
    assert 'nbserve.export(model, "export")' in hint and "export/1" in hint


def test_empty_folder(tmp_path):
    hint = diagnose("m", str(tmp_path))
    assert hint is not None and "is empty" in hint and "nbserve.export(model" in hint


def test_only_non_numeric_names(tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "model").mkdir()
    hint = diagnose("m", str(tmp_path))
    assert hint is not None and TF_SERVING_HINT in hint
    assert "model, v1" in hint and "to a number" in hint


def test_deleted_folder(tmp_path):
    hint = diagnose("m", str(tmp_path / "gone"))
    assert hint is not None and "does not exist" in hint and "deleted" in hint


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_unreadable_folder(tmp_path):
    base = tmp_path / "locked"
    base.mkdir()
    base.chmod(0)
    try:
        hint = diagnose("m", str(base))
    finally:
        base.chmod(0o755)
    assert hint is not None and "permission denied" in hint


def test_policy_that_selects_nothing(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    hint = diagnose("m", str(tmp_path), (), "specific 5")
    assert hint is not None and "specific 5" in hint and "2, 1" in hint


def test_no_hint_while_a_version_loads_or_when_versions_exist(tmp_path):
    (tmp_path / "1").mkdir()
    assert diagnose("m", str(tmp_path)) is None
    loading = (VersionStatus(1, "LOADING"),)
    assert diagnose("m", str(tmp_path / "gone"), loading) is None


def test_a_file_instead_of_a_folder(tmp_path):
    path = tmp_path / "export"
    path.write_text("")
    hint = diagnose("m", str(path))
    assert hint is not None and "is a file" in hint
