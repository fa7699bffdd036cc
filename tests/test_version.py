"""One source for the version: ``nbserve.__version__``; every place that must repeat it agrees.

pyproject.toml reads it (hatch's dynamic version); the lab extension's package.json (and its
lock file), the CLI's ``--version`` and the deploy manifests type it, and are checked here.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

import nbserve
from nbserve import cli

REPO = pathlib.Path(__file__).resolve().parent.parent

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = None


def test_version_is_a_release_number():
    assert re.fullmatch(r"\d+\.\d+\.\d+", nbserve.__version__)


def test_pyproject_takes_the_version_from_the_package():
    text = (REPO / "pyproject.toml").read_text()
    if tomllib is not None:
        project = tomllib.loads(text)
        assert "version" not in project["project"]
        assert "version" in project["project"]["dynamic"]
        assert project["tool"]["hatch"]["version"]["path"] == "nbserve/__init__.py"
    else:
        assert re.search(r'^dynamic = \["version"\]', text, re.M)


def test_lab_extension_version_agrees():
    package = json.loads((REPO / "labextension" / "package.json").read_text())
    lock = json.loads((REPO / "labextension" / "package-lock.json").read_text())
    assert package["version"] == nbserve.__version__
    assert lock["version"] == lock["packages"][""]["version"] == nbserve.__version__


def test_cli_reports_the_package_version():
    assert cli.VERSION == nbserve.__version__


def test_deploy_image_tags_agree():
    tags = re.findall(r"nbserve:(\d+\.\d+\.\d+)", (REPO / "deploy" / "README.md").read_text())
    kustomization = (REPO / "deploy" / "nbserve" / "kustomization.yaml").read_text()
    tags += re.findall(r"nbserve:(\d+\.\d+\.\d+)", kustomization)
    tags += re.findall(r"newTag: (\S+)", kustomization)
    assert tags and set(tags) == {nbserve.__version__}
