"""notebooks/06_console.ipynb (issue 10's flow: the flat-export hint, the replacement, requests
built from the signature and run as-is, traffic moving to v2, compare, a label moved) runs under
nbval and matches its committed outputs; its cells assert as they go."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("nbval")
pytest.importorskip("ipykernel")

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"


def test_console_notebook_runs_and_matches_its_outputs():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", str(NOTEBOOKS / "06_console.ipynb"),
         "--nbval-sanitize-with", str(NOTEBOOKS / "06_sanitize.cfg"), "--nbval-current-env",
         "--nbval-cell-timeout", "180", "-q", "-p", "no:cacheprovider", "-o", "addopts="],
        cwd=NOTEBOOKS, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
