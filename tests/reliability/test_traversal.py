"""Security: names, labels and versions from URLs never reach the file system; only SavedModels
load."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import shutil

import pytest

from nbserve.options import ModelConfig, VersionPolicy
from tests.transport.rest_client import call

pytestmark = pytest.mark.tfs_testdata

SENTINEL = "secret_sentinel"


@pytest.fixture
def file_access_log(monkeypatch):
    """Every path the process opens, stats or lists from now on (Python-level calls)."""
    seen: list[str] = []

    def spy(fn):
        def wrapper(path, *args, **kwargs):
            if isinstance(path, (str, bytes, os.PathLike)):
                seen.append(os.fsdecode(path))
            return fn(path, *args, **kwargs)
        return wrapper

    for module, name in ((os, "stat"), (os, "lstat"), (os, "listdir"), (os, "scandir"),
                         (os, "open"), (builtins, "open"), (io, "open"), (os.path, "exists"),
                         (os.path, "isdir"), (os.path, "isfile")):
        monkeypatch.setattr(module, name, spy(getattr(module, name)))
    return seen


TRAVERSALS = [
    "..%2f..%2f" + SENTINEL, "%2e%2e%2f%2e%2e%2f" + SENTINEL, "%2E%2E%2F" + SENTINEL,
    "..%5c..%5c" + SENTINEL, "%2f" + "tmp%2f" + SENTINEL, "%2fetc%2fpasswd", "..", "%2e%2e",
    "~%2f" + SENTINEL, "%252e%252e%252f" + SENTINEL, "%00" + SENTINEL,
    "hp2%2f..%2f..%2f" + SENTINEL,
]


def test_url_names_labels_and_versions_never_reach_the_file_system(
        start_server, model_copy, tmp_path, file_access_log):
    base = model_copy("saved_model_half_plus_two_cpu")
    secret = tmp_path / SENTINEL
    shutil.copytree(base, secret)  # a loadable model nobody configured
    srv = start_server([ModelConfig("hp2", str(base), version_labels={"stable": 123},
                                    version_policy=VersionPolicy.all())])
    srv.wait_until_available("hp2")
    models_before = srv.core.known_models()
    file_access_log.clear()
    replies = []
    for name in [*TRAVERSALS, str(secret).replace("/", "%2f"), SENTINEL]:
        replies.append(call(srv.rest_port, "POST", f"/v1/models/{name}:predict",
                            '{"instances": [1.0]}'))
        replies.append(call(srv.rest_port, "GET", f"/v1/models/{name}"))
        replies.append(call(srv.rest_port, "GET", f"/v1/models/{name}/metadata"))
        replies.append(call(srv.rest_port, "POST", f"/v1/models/hp2/labels/{name}:predict",
                            '{"instances": [1.0]}'))
        replies.append(call(srv.rest_port, "GET", f"/v1/models/{name}/versions/123"))
    for path in ("/v1/models/hp2/versions/..%2f123:predict", "/v1/models/hp2/versions/-1",
                 "/v1/models/hp2/versions/99999999999999999999", "/v1/models/../../etc/passwd",
                 "/v1/../../" + SENTINEL, "/" + str(secret)):
        replies.append(call(srv.rest_port, "GET", path))
        replies.append(call(srv.rest_port, "POST", path, '{"instances": [1.0]}'))
    statuses = {r.status for r in replies}
    assert statuses <= {400, 404}, statuses  # the normal "not found" / "malformed" answers
    for reply in replies:
        if reply.status != 404 or reply.headers["content-type"].startswith("application/json"):
            assert set(reply.json()) == {"error"}
    messages = " ".join(r.json()["error"] for r in replies
                        if r.headers["content-type"].startswith("application/json"))
    assert "Servable not found" in messages or "Could not find" in messages
    touched = [p for p in file_access_log if SENTINEL in p or ".." in p or "passwd" in p]
    assert touched == []
    srv.core.source.poll_once()
    assert any(p.startswith(str(base)) for p in file_access_log)  # the spy does see file access
    assert srv.core.known_models() == models_before
    # and the real model still answers
    assert call(srv.rest_port, "POST", "/v1/models/hp2/labels/stable:predict",
                '{"instances": [1.0]}').json() == {"predictions": [2.5]}


def test_only_saved_models_load_never_pickles(start_server, tmp_path, monkeypatch):
    loads = []
    monkeypatch.setattr(pickle, "load", lambda *a, **k: loads.append(a))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: loads.append(a))
    version = tmp_path / "pickled" / "1"
    version.mkdir(parents=True)
    (version / "model.pkl").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    srv = start_server([ModelConfig("pickled", str(tmp_path / "pickled"))],
                       incomplete_version_grace_seconds=0.2, version_settle_seconds=0.05)
    from nbserve.errors import ServingError, StatusCode

    with pytest.raises(ServingError) as info:
        srv.wait_until_available("pickled", timeout=60)
    assert info.value.code == StatusCode.NOT_FOUND
    entry = srv.status("pickled")["pickled"][0]
    assert entry["state"] == "END" and entry["status"]["error_code"] == "NOT_FOUND"
    assert "SavedModel" in entry["status"]["error_message"]
    assert loads == []
