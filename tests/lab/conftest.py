"""Fixtures for the JupyterLab side: a real ``jupyter lab`` on 127.0.0.1 with a token, a hub-style
base_url and its own runtime dir (so discovery records are isolated), and fake-loader servers."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support import free_port

BASE_PATH = "/user/tester/"
REPO = pathlib.Path(__file__).resolve().parents[2]
# The lab extension built from THIS checkout (`cd labextension && npm run build:prod`).
LOCAL_BUILD = REPO / "nbserve" / "labextension"
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


class Kernel:
    """A kernel started by the lab (``POST /api/kernels``), driven over its connection file."""

    def __init__(self, lab: Lab, notebook: str | None = None) -> None:
        """A bare kernel, or with ``notebook`` (a path under the root) a notebook session's
        kernel, as opening that notebook in the lab starts it."""
        from jupyter_client import BlockingKernelClient

        if notebook:
            code, reply = lab.request("api/sessions", method="POST", body={
                "path": notebook, "name": notebook.rsplit("/", 1)[-1], "type": "notebook",
                "kernel": {"name": "python3"}})
            assert code == 201, reply
            reply = reply["kernel"]
        else:
            code, reply = lab.request("api/kernels", method="POST", body={"name": "python3"})
            assert code == 201, reply
        self.lab, self.id = lab, reply["id"]
        connection = lab.runtime_dir / f"kernel-{self.id}.json"
        deadline = time.monotonic() + 30
        while not connection.is_file():
            assert time.monotonic() < deadline, f"no connection file:\n{lab.log_tail()}"
            time.sleep(0.1)
        self.client = BlockingKernelClient(connection_file=str(connection))
        self.client.load_connection_file()
        self.client.start_channels()
        deadline = time.monotonic() + 90
        while True:
            try:
                self.client.wait_for_ready(timeout=60)
                break
            except RuntimeError:  # "Kernel died": a heartbeat missed on a busy machine
                code, _ = lab.request(f"api/kernels/{self.id}")
                assert code == 200 and time.monotonic() < deadline, \
                    f"kernel {self.id} not ready ({code}):\n{lab.log_tail()}"
                time.sleep(0.5)

    def run(self, code: str, timeout: float = 90) -> str:
        """Execute ``code``; return its stdout; fail with the traceback on an error."""
        out: list[str] = []

        def hook(msg):
            content = msg["content"]
            if msg["msg_type"] == "stream" and content.get("name") == "stdout":
                out.append(content["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(content["traceback"]))

        reply = self.client.execute_interactive(textwrap.dedent(code), timeout=timeout,
                                                output_hook=hook)
        assert reply["content"]["status"] == "ok", "".join(out)
        return "".join(out)

    def close(self) -> None:
        self.client.stop_channels()
        self.lab.request(f"api/kernels/{self.id}", method="DELETE")


def local_extension_path(tmp: pathlib.Path) -> str | None:
    """A Jupyter data dir whose ``labextensions/nbserve-labextension`` is this checkout's build
    (a symlink), for ``JUPYTER_PATH``: it comes before the installed copy, so the lab loads the
    extension of the code under test. None when this checkout has no build."""
    if not (LOCAL_BUILD / "package.json").is_file():
        return None
    data = tmp / "jupyter-data"
    (data / "labextensions").mkdir(parents=True, exist_ok=True)
    link = data / "labextensions" / "nbserve-labextension"
    if not link.exists():
        link.symlink_to(LOCAL_BUILD, target_is_directory=True)
    return str(data)


def lab_env(tmp: pathlib.Path) -> dict[str, str]:
    """The lab's (and so its kernels') environment: isolated runtime, config and settings dirs,
    and this checkout's lab extension build first on the Jupyter path."""
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
    local = local_extension_path(tmp)
    if local:
        env["JUPYTER_PATH"] = os.pathsep.join(p for p in (local, env.get("JUPYTER_PATH")) if p)
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
