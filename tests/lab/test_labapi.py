"""The server extension: ``GET <base_url>nbserve/api/servers`` in a real ``jupyter lab``, behind
Jupyter's auth, with each server's live status and the jupyter-server-proxy path."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys

from nbserve import discovery, labapi, vocabulary

from .conftest import BASE_PATH, Kernel, free_port


def by_url(reply, server):
    return [s for s in reply["servers"] if s["rest_url"] == server.rest_url]


def test_lists_a_running_server_with_its_live_status(lab, fake_server, monkeypatch):
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(lab.runtime_dir))  # as a kernel of this lab
    server = fake_server("from_kernel", versions=(1, 2))
    code, reply = lab.request("nbserve/api/servers")
    assert code == 200, reply
    assert reply["base_url"] == BASE_PATH
    [entry] = by_url(reply, server)
    assert entry["pid"] == os.getpid()
    assert entry["reachable"] is True and entry["error"] is None
    assert entry["grpc_target"] is None
    [model] = entry["live_models"]
    assert model["name"] == "from_kernel"
    states = {v["version"]: v["state"] for v in model["model_version_status"]}
    assert states["2"] == "AVAILABLE"  # latest policy: v2 served
    assert set(states) <= {"1", "2"}
    proxy = importlib.util.find_spec("jupyter_server_proxy") is not None
    assert reply["proxy_available"] is proxy
    assert entry["proxy_path"] == (f"{BASE_PATH}proxy/{server.rest_port}/" if proxy else None)

    server.stop(grace=0)
    code, reply = lab.request("nbserve/api/servers")
    assert code == 200 and by_url(reply, server) == []


def test_a_server_with_a_token_is_listed_live_and_its_token_stays_out_of_the_reply(
        lab, tmp_path, monkeypatch):
    from nbserve.options import ModelConfig, ServerOptions
    from nbserve.server import Server
    from nbserve.testing import FakeLoader

    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(lab.runtime_dir))
    base = tmp_path / "tok" / "1"
    base.mkdir(parents=True)
    (base / "saved_model.pb").write_bytes(b"")
    token = "s3cret-token-for-the-sidebar"
    server = Server(ServerOptions(models=(ModelConfig("tok", str(base.parent)),), rest_api_port=0,
                                  grpc_port=None, auth_token=token),
                    loader_factory=lambda sid, path: FakeLoader())
    server.start()
    try:
        server.wait_until_available("tok", timeout=20)
        code, reply = lab.request("nbserve/api/servers")
        assert code == 200, reply
        [entry] = by_url(reply, server)
        assert entry["reachable"] is True and entry["auth"] is True
        assert [m["name"] for m in entry["live_models"]] == ["tok"]
        assert token not in json.dumps(reply)
    finally:
        server.stop(grace=0)


def test_a_waiting_model_carries_its_hint_to_the_sidebar(lab, tmp_path, monkeypatch):
    from nbserve.options import ModelConfig, ServerOptions
    from nbserve.server import Server
    from nbserve.testing import FakeLoader

    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(lab.runtime_dir))
    flat = tmp_path / "export"  # model.export("export"): no numeric version folder
    flat.mkdir()
    (flat / "saved_model.pb").write_bytes(b"")
    server = Server(ServerOptions(models=(ModelConfig("export", str(flat)),), rest_api_port=0,
                                  grpc_port=None), loader_factory=lambda sid, path: FakeLoader())
    server.start()
    try:
        listing = json.loads(subprocess.run(
            [sys.executable, "-c", "import sys, urllib.request; sys.stdout.write(urllib.request"
             f".urlopen('{server.rest_url}/v1/models').read().decode())"],
            capture_output=True, text=True, check=True).stdout)
        [model] = listing["models"]
        assert "Did you forget to name your leaf directory as a number" in model["hint"]
        code, reply = lab.request("nbserve/api/servers")
        assert code == 200, reply
        [entry] = by_url(reply, server)
        [live] = entry["live_models"]
        assert live["hint"] == model["hint"] and 'nbserve.export(' in live["hint"]
    finally:
        server.stop(grace=0)


def test_needs_jupyters_auth(lab):
    code, _ = lab.request("nbserve/api/servers", token=False)
    assert code == 403
    code, reply = lab.request("nbserve/api/servers?token=" + lab.token, token=False)
    assert code == 200 and "servers" in reply


def test_lives_under_the_base_url(lab):
    root = lab.url[: -len(BASE_PATH)] + "/"
    code, _ = lab.request("", url=root + "nbserve/api/servers")
    assert code == 404


def test_the_server_extension_is_enabled_by_the_installed_config():
    out = subprocess.run([sys.executable, "-m", "jupyter_server.extension.serverextension",
                          "list"], capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert "nbserve.labapi" in text and "enabled" in text.split("nbserve.labapi", 1)[1][:40], text


def record(folder, **fields):
    path = folder / f"{discovery.PREFIX}{os.getpid()}-{fields['id']}.json"
    path.write_text(json.dumps({"pid": os.getpid(), "ports": {"rest": None, "grpc": None},
                                "rest_url": None, "started": 1.0, **fields}))
    return path


def test_unreachable_and_rest_less_servers_are_marked(tmp_path):
    port = free_port()  # nothing listens there now
    record(tmp_path, id="closed", rest_url=f"http://127.0.0.1:{port}",
           ports={"rest": port, "grpc": None})
    record(tmp_path, id="grpc_only", grpc_target="127.0.0.1:1", started=2.0)
    reply = asyncio.run(labapi.servers_reply("/", str(tmp_path)))
    closed, grpc_only = reply["servers"]
    assert closed["id"] == "closed" and closed["reachable"] is False and closed["error"]
    assert closed["live_models"] == []
    assert grpc_only["reachable"] is False and "REST is off" in grpc_only["error"]


def test_proxy_path_when_jupyter_server_proxy_is_installed(tmp_path, fake_server, monkeypatch):
    server = fake_server("proxied")
    record(tmp_path, id="live", rest_url=server.rest_url,
           ports={"rest": server.rest_port, "grpc": None})
    monkeypatch.setattr(labapi, "proxy_available", lambda: True)
    reply = asyncio.run(labapi.servers_reply("/user/alice/", str(tmp_path)))
    [entry] = reply["servers"]
    assert reply["proxy_available"] is True
    assert entry["proxy_path"] == f"/user/alice/proxy/{server.rest_port}/"
    assert entry["reachable"] is True
    assert [m["name"] for m in entry["live_models"]] == ["proxied"]

    monkeypatch.setattr(labapi, "proxy_available", lambda: False)
    reply = asyncio.run(labapi.servers_reply("/user/alice/", str(tmp_path)))
    assert reply["servers"][0]["proxy_path"] is None


def test_servers_are_placed_under_their_notebook_and_others_apart(lab, fake_server, monkeypatch,
                                                                  tmp_path):
    """A server in a notebook's kernel is listed under that notebook's name; one in another
    process of the user (here: the test process) under "other"; versions carry the shared look."""
    (lab.root_dir / "work").mkdir(exist_ok=True)
    kernel = Kernel(lab, notebook="work/demo.ipynb")
    try:
        models = tmp_path / "in_kernel" / "1"
        models.mkdir(parents=True)
        (models / "saved_model.pb").write_bytes(b"")
        kernel.run(f"""
            from nbserve.options import ModelConfig, ServerOptions
            from nbserve.server import Server
            from nbserve.testing import FakeLoader
            srv = Server(ServerOptions(models=(ModelConfig("in_kernel", {str(models.parent)!r}),),
                                       rest_api_port=0, grpc_port=None),
                         loader_factory=lambda sid, path: FakeLoader()).start()
            srv.wait_until_available("in_kernel", timeout=20)
            """)
        monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(lab.runtime_dir))  # another process
        other = fake_server("elsewhere")
        code, reply = lab.request("nbserve/api/servers")
        assert code == 200, reply
        groups = [(s["group"], s["title"], s["notebook"]) for s in reply["servers"]]
        assert groups[0] == ("notebook", "demo.ipynb", "work/demo.ipynb"), groups
        [mine] = [s for s in reply["servers"] if s["group"] == "notebook"]
        assert mine["kernel_id"] == kernel.id
        [theirs] = [s for s in reply["servers"] if s["rest_url"] == other.rest_url]
        assert theirs["group"] == "other" and theirs["title"] == f"process {os.getpid()}"
        [model] = mine["live_models"]
        [v1] = model["model_version_status"]
        assert v1["look"] == vocabulary.look_json(vocabulary.version_look("AVAILABLE"))
    finally:
        kernel.close()


def test_looks_and_placing_are_pure():
    looked = labapi.with_looks([
        {"name": "m", "model_version_status": [
            {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK"}},
            {"version": "1", "state": "END", "status": {"error_code": "OK"}},
            {"version": "3", "state": "END",
             "status": {"error_code": "UNKNOWN", "error_message": "bad export"}}]},
        {"name": "empty", "model_version_status": []}])
    words = [v["look"]["words"] for v in looked[0]["model_version_status"]]
    assert words == ["serving", "unloaded (replaced by 2)", "failed: bad export"]
    assert looked[0]["model_version_status"][2]["look"]["colour"] == vocabulary.COLOURS["failed"]
    assert looked[1]["waiting"]["badge"] == "waiting"
    record = {"pid": 7, "kernel_id": "abcdef0123"}
    assert labapi.place(record, {"abcdef0123"}, {"abcdef0123": "a/b.ipynb"})["title"] == "b.ipynb"
    assert labapi.place(record, {"abcdef0123"}, {})["title"] == "kernel abcdef01"
    assert labapi.place(record, set(), {})["group"] == "other"
