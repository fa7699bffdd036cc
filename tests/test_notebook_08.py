"""notebooks/08_isolated_server.ipynb (an isolated server survives kill -9 and restarts) runs
under nbval and matches its committed outputs."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("nbval")
pytest.importorskip("ipykernel")
pytest.importorskip("tensorflow")

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"


def test_isolated_server_notebook_runs_and_matches_its_outputs():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", str(NOTEBOOKS / "08_isolated_server.ipynb"),
         "--nbval-sanitize-with", str(NOTEBOOKS / "08_sanitize.cfg"), "--nbval-current-env",
         "--nbval-cell-timeout", "180", "-q", "-p", "no:cacheprovider", "-o", "addopts="],
        cwd=NOTEBOOKS, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
