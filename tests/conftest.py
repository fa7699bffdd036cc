"""Shared fixtures: TF Serving's test models (through NBSERVE_TFS_TESTDATA) and live servers."""

from __future__ import annotations

import os
import pathlib
import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
TESTDATA_ENV = "NBSERVE_TFS_TESTDATA"


def tfs_testdata_dir() -> pathlib.Path | None:
    """TF Serving's test models: $NBSERVE_TFS_TESTDATA, default ../shared/testdata/tfserving."""
    default = REPO.parent / "shared" / "testdata" / "tfserving"
    path = pathlib.Path(os.environ.get(TESTDATA_ENV, default))
    return path if (path / "saved_model_half_plus_two_cpu").is_dir() else None


@pytest.fixture(scope="session", autouse=True)
def isolated_jupyter_runtime(tmp_path_factory):
    """Servers started by tests write their discovery records into a private runtime folder,
    never into the user's real Jupyter runtime dir (kernels and subprocesses inherit it)."""
    old = os.environ.get("JUPYTER_RUNTIME_DIR")
    os.environ["JUPYTER_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("jupyter-runtime"))
    yield
    if old is None:
        os.environ.pop("JUPYTER_RUNTIME_DIR", None)
    else:
        os.environ["JUPYTER_RUNTIME_DIR"] = old


@pytest.fixture(scope="session")
def tfs_testdata() -> pathlib.Path:
    path = tfs_testdata_dir()
    if path is None:
        pytest.skip(f"TF Serving's test models not found: set {TESTDATA_ENV} to the folder holding "
                    "saved_model_half_plus_two_cpu (../shared/testdata/tfserving beside the clone)")
    return path


@pytest.fixture
def model_copy(tfs_testdata, tmp_path):
    """Copy one of TF Serving's test models into tmp_path (tests that change folders use it)."""

    def copy(name: str, versions: tuple[str, ...] | None = None) -> pathlib.Path:
        src = tfs_testdata / name
        dst = tmp_path / name
        dst.mkdir()
        for child in sorted(src.iterdir()):
            if versions is None or child.name in versions:
                shutil.copytree(child, dst / child.name)
        return dst

    return copy


@pytest.fixture
def start_server():
    """Start nbserve Servers on free ports; every one is stopped at teardown."""
    from nbserve.options import ServerOptions
    from nbserve.server import Server

    servers = []

    def start(models, loader_factory=None, **overrides):
        defaults = dict(rest_api_port=0, grpc_port=None, max_num_load_retries=0,
                        load_retry_interval_micros=0, file_system_poll_wait_seconds=0.2)
        defaults.update(overrides)
        server = Server(ServerOptions(models=tuple(models), **defaults),
                        loader_factory=loader_factory)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
