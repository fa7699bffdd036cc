"""Fixtures for the JupyterLab side: a real ``jupyter lab`` on 127.0.0.1 with a token, a hub-style
base_url and its own runtime dir (so discovery records are isolated), and fake-loader servers."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support import free_port

BASE_PATH = "/user/tester/"
TOKEN = "nbserve-test-token-8f2c"




@dataclass
class Lab:
    """A running ``jupyter lab``: ``url`` ends with the base_url (``http://127.0.0.1:P/user/tester/``)."""

    url: str
    token: str
    runtime_dir: pathlib.Path
    root_dir: pathlib.Path
    log_path: pathlib.Path
    proc: subprocess.Popen = field(repr=False)

    def request(self, path: str, method: str = "GET", body: Any = None, token: bool = True,
                url: str | None = None, timeout: float = 10.0) -> tuple[int, Any]:
        """(HTTP status, parsed JSON body or None) for ``path`` under the base_url."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url or self.url + path, data=data, method=method)
        if token:
            req.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw, code = resp.read(), resp.status
        except urllib.error.HTTPError as err:
            raw, code = err.read(), err.code
        try:
            return code, json.loads(raw) if raw else None
        except ValueError:
            return code, None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def lab_env(tmp: pathlib.Path) -> dict[str, str]:
    """The lab's (and so its kernels') environment: isolated runtime, config and settings dirs."""
    settings = tmp / "lab-settings"
    notif = settings / "@jupyterlab" / "apputils-extension"
    notif.mkdir(parents=True, exist_ok=True)
    # No "get notified about Jupyter news?" toast over the page.
    (notif / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    env = dict(os.environ)
    env.update({
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PATH": os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
    })
    return env


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    """A ``jupyter lab`` subprocess for this test module; stopped (with its kernels) after it."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    root.mkdir()
    (tmp / "runtime").mkdir()
    port = free_port()
    log_path = tmp / "jupyter-lab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
           "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
           f"--IdentityProvider.token={TOKEN}", f"--ServerApp.base_url={BASE_PATH}",
           f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
           "--ServerApp.open_browser=False"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=lab_env(tmp), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = Lab(f"http://127.0.0.1:{port}{BASE_PATH}", TOKEN, tmp / "runtime", root, log_path,
                 proc)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            if server.request("api/status", timeout=2)[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            _stop(proc)
            pytest.fail(f"jupyter lab not ready after 60 s:\n{server.log_tail()}")
        time.sleep(0.2)
    yield server
    _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # jupyter shuts its kernels down on SIGTERM
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture
def runtime_dir(tmp_path, monkeypatch) -> pathlib.Path:
    """This process's Jupyter runtime dir, pointed at a fresh folder."""
    path = tmp_path / "runtime"
    path.mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(path))
    return path


@pytest.fixture
def fake_server(tmp_path):
    """``start(name, versions=(1,))``: an in-process Server with FakeLoaders (no TensorFlow) on a
    free REST port, models read from a real folder; all stopped at teardown."""
    from nbserve.options import ModelConfig, ServerOptions
    from nbserve.server import Server
    from nbserve.testing import FakeLoader

    servers = []

    def start(name: str = "fake_model", versions: tuple[int, ...] = (1,)) -> Server:
        base = tmp_path / "models" / name
        for v in versions:
            (base / str(v)).mkdir(parents=True)
            (base / str(v) / "saved_model.pb").write_bytes(b"")
        options = ServerOptions(models=(ModelConfig(name, str(base)),), rest_api_port=0,
                                grpc_port=None, file_system_poll_wait_seconds=0.2)
        server = Server(options, loader_factory=lambda sid, path: FakeLoader())
        servers.append(server)
        server.start()
        server.wait_until_available(name, timeout=20)
        return server

    yield start
    for server in servers:
        server.stop(grace=0)
