"""REST API over real sockets against TF Serving's own test models (spec §1)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import threading
import time

import pytest

from nbserve.errors import ServingError
from nbserve.options import ModelConfig, VersionPolicy
from tests.transport.rest_client import call

pytestmark = pytest.mark.tfs_testdata


@pytest.fixture(scope="module", params=["h1", "aiohttp"])
def server(tfs_testdata, request):
    """One server per REST front end for the read-only tests: half_plus_two (as itself and as
    "default"), half_plus_three, the TF2 export, the two-version model (all versions, labels),
    counter."""
    from nbserve.options import ServerOptions
    from nbserve.server import Server

    models = (
        ModelConfig("half_plus_two", str(tfs_testdata / "saved_model_half_plus_two_cpu")),
        ModelConfig("default", str(tfs_testdata / "saved_model_half_plus_two_cpu")),
        ModelConfig("half_plus_three", str(tfs_testdata / "saved_model_half_plus_three")),
        ModelConfig("tf2", str(tfs_testdata / "saved_model_half_plus_two_tf2_cpu")),
        ModelConfig("two", str(tfs_testdata / "saved_model_half_plus_two_2_versions"),
                    version_policy=VersionPolicy.all(),
                    version_labels={"stable": 123, "canary": 124, "gone": 999}),
        ModelConfig("counter", str(tfs_testdata / "saved_model_counter")),
    )
    srv = Server(ServerOptions(models=models, rest_api_port=0, grpc_port=None,
                               max_num_load_retries=0, rest_front_end=request.param))
    srv.start()
    for m in models:
        srv.wait_until_available(m.name, timeout=60)
    srv.wait_until_available("two", 123, timeout=60)
    yield srv
    srv.stop()


def post(server, path, body, **kw):
    return call(server.rest_port, "POST", path, body, **kw)


def get(server, path, **kw):
    return call(server.rest_port, "GET", path, **kw)


def test_predict_row_format(server):
    reply = post(server, "/v1/models/half_plus_two:predict", '{"instances": [1.0, 2.0, 5.0]}')
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json() == {"predictions": [2.5, 3.0, 4.5]}
    assert b"3.0" in reply.body  # TF Serving's float format keeps the ".0"


def test_predict_columnar_and_named(server):
    assert post(server, "/v1/models/half_plus_two:predict",
                '{"inputs": {"x": [[1.0], [2.0]]}}').json() == {"outputs": [[2.5], [3.0]]}
    assert post(server, "/v1/models/half_plus_two:predict",
                '{"instances": [{"x": [1.0]}, {"x": [3.0]}]}').json() == {
        "predictions": [[2.5], [3.5]]}
    assert post(server, "/v1/models/half_plus_two:predict",
                '{"inputs": [1, 2]}').json() == {"outputs": [2.5, 3.0]}  # ints into a float input


def test_predict_versions_and_labels(server):
    assert post(server, "/v1/models/two/versions/123:predict",
                '{"instances": [2.0]}').json() == {"predictions": [3.0]}
    assert post(server, "/v1/models/two/labels/canary:predict",
                '{"instances": [2.0]}').json() == {"predictions": [3.0]}
    reply = post(server, "/v1/models/two/labels/nope:predict", '{"instances": [2.0]}')
    assert (reply.status, reply.json()) == (
        400, {"error": "Unrecognized servable version label: nope"})
    reply = post(server, "/v1/models/two/labels/gone:predict", '{"instances": [2.0]}')
    assert (reply.status, reply.json()) == (
        404, {"error": "Servable not found for request: Specific(two, 999)"})


def test_predict_other_models(server):
    assert post(server, "/v1/models/half_plus_three:predict",
                '{"instances": [1.0, 2.0]}').json() == {"predictions": [3.5, 4.0]}
    assert post(server, "/v1/models/tf2:predict",
                '{"instances": [[1.0], [2.0]]}').json() == {"predictions": [[2.5], [3.0]]}
    assert post(server, "/v1/models/counter:predict",
                '{"signature_name": "incr_counter_by", "inputs": {"delta": 0.0}}').status == 200


def test_classify_and_regress(server):
    reply = post(server, "/v1/models/half_plus_two:classify",
                 '{"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}')
    assert (reply.status, reply.json()) == (200, {"results": [[["", 3.0]]]})
    reply = post(server, "/v1/models/half_plus_two:regress",
                 '{"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}, {"x": 4.0}]}')
    assert (reply.status, reply.json()) == (200, {"results": [3.0, 4.0]})
    reply = post(server, "/v1/models/half_plus_three:regress",
                 '{"signature_name": "tensorflow/serving/regress", '
                 '"examples": [{"x": 1.0}, {"x": 2.0}]}')
    assert reply.json() == {"results": [3.5, 4.0]}
    reply = post(server, "/v1/models/half_plus_two:regress",
                 '{"signature_name": "regress_x2_to_y3", "context": {"x2": 4.0}, '
                 '"examples": [{"x": 1.0}]}')
    assert reply.status in (200, 400)  # x2 arrives through the context


def test_status_and_metadata_match_golden(server, tfs_testdata):
    reply = get(server, "/v1/models/default")
    assert reply.status == 200
    assert reply.json() == {"model_version_status": [{
        "version": "123", "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""}}]}
    assert get(server, "/v1/models/default/versions/123").json() == reply.json()
    golden = json.loads((tfs_testdata / "half_plus_two_model_metadata.json").read_text())
    reply = get(server, "/v1/models/default/metadata")
    assert reply.status == 200
    assert reply.json() == golden
    assert get(server, "/v1/models/default/versions/123/metadata").json() == golden
    golden2 = json.loads(
        (tfs_testdata / "saved_model_half_plus_two_2_versions_metadata.json").read_text())
    reply = get(server, "/v1/models/two/labels/stable/metadata").json()
    assert reply["metadata"] == golden2["metadata"]
    assert reply["model_spec"]["version"] == "123"


def test_status_of_all_versions_descending(server):
    entries = get(server, "/v1/models/two").json()["model_version_status"]
    assert [e["version"] for e in entries] == ["124", "123"]
    assert {e["state"] for e in entries} == {"AVAILABLE"}


@pytest.mark.parametrize("method,path,body,status,error", [
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", "/v1/models/default/versions/9", None, 404,
     "Could not find version 9 of model default"),
    ("GET", "/v1/models/nope/metadata", None, 404, "Servable not found for request: Latest(nope)"),
    ("GET", "/v1/models/default/versions/9/metadata", None, 404,
     "Servable not found for request: Specific(default, 9)"),
    ("GET", "/v1/models/default/labels/x/metadata", None, 400,
     "Unrecognized servable version label: x"),
    ("POST", "/v1/models/nope:predict", '{"instances": [1.0]}', 404,
     "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/nope:predict", "", 400, "JSON Parse error: The document is empty"),
    ("POST", "/v1/models/default:predict", '{"instances": [1.0], "inputs": [1.0]}', 400, None),
    ("POST", "/v1/models/default:predict", '{"foo": 1}', 400,
     "Missing 'inputs' or 'instances' key"),
    ("POST", "/v1/models/default:predict", '{"instances": ["a"]}', 400, None),
    # TF Serving's REST handler looks the signature up itself (gRPC: FAILED_PRECONDITION
    # 'Serving signature key "nope" not found.'), after the model and before the body's keys
    ("POST", "/v1/models/default:predict", '{"instances": [1.0], "signature_name": "nope"}', 400,
     'Serving signature name: "nope" not found in signature def'),
    ("POST", "/v1/models/default:predict", '{"foo": 1, "signature_name": "nope"}', 400,
     'Serving signature name: "nope" not found in signature def'),
    ("POST", "/v1/models/nope:predict", '{"foo": 1, "signature_name": "nope"}', 404,
     "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/default:classify", '{"signature_name": "nope", "examples": [{}]}', 400,
     "No signature was found with the name: nope"),
    ("POST", "/v1/models/default:regress", '{"signature_name": "nope", "examples": [{}]}', 400,
     "No signature was found with the name: nope"),
    ("POST", "/v1/models/default:predict", '{"instances": [[1.0], [1.0, 2.0]]}', 400, None),
    ("POST", "/v1/models/default/versions/18446744073709551615:predict", '{"instances": [1]}', 400,
     "Failed to convert version: 18446744073709551615 to numeric."),
    ("PUT", "/v1/models/default", None, 400, "Malformed request: PUT /v1/models/default"),
    ("GET", "/v1/foo", None, 400, "Malformed request: GET /v1/foo"),
    ("POST", "/v1/models/counter:predict",
     '{"signature_name": "get_counter", "instances": [1]}', 400,
     "Failed to get input map for signature: get_counter"),
])
def test_errors_in_tf_serving_words(server, method, path, body, status, error):
    reply = call(server.rest_port, method, path, body)
    assert reply.status == status, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    assert set(reply.json()) == {"error"}
    if error is not None:
        assert reply.json()["error"] == error


def test_server_keeps_serving_after_garbage(server):
    for body in (b"\xff\xfe", b"{" * 10000, b"[1, 2", b'{"instances": [NaN, Infinity]}'):
        assert post(server, "/v1/models/default:predict", body).status in (200, 400)
    assert post(server, "/v1/models/default:predict", '{"instances": [2.0]}').json() == {
        "predictions": [3.0]}


def test_nan_and_infinity_tokens(server):
    reply = post(server, "/v1/models/default:predict", '{"instances": [NaN, Infinity, -Infinity]}')
    assert reply.status == 200
    assert reply.body.replace(b" ", b"") == b'{"predictions":[NaN,Infinity,-Infinity]}'


def test_gzip_body_and_cors(server):
    body = gzip.compress(b'{"instances": [1.0]}')
    reply = post(server, "/v1/models/default:predict", body, headers={"Content-Encoding": "gzip"})
    assert reply.json() == {"predictions": [2.5]}
    reply = call(server.rest_port, "OPTIONS", "/v1/models/default:predict",
                 headers={"Origin": "http://example.test"})
    assert reply.status == 200 and reply.body == b""
    assert "access-control-allow-origin" not in reply.headers  # CORS is opt-in
    reply = call(server.rest_port, "OPTIONS", "/v1/models/default:predict")
    assert reply.status == 400


def test_non_v1_paths_and_extensions(server):
    reply = get(server, "/")
    assert reply.status == 404 and reply.headers["content-type"].startswith("text/html")
    assert get(server, "/healthz").status == 200
    assert get(server, "/readyz").json()["ready"] is True
    models = {m["name"]: m for m in get(server, "/v1/models").json()["models"]}
    assert {"half_plus_two", "default", "two", "counter"} <= set(models)
    assert models["two"]["model_version_status"][0]["version"] == "124"


def test_cors_headers_when_enabled(start_server, tfs_testdata):
    srv = start_server([ModelConfig("m", str(tfs_testdata / "saved_model_half_plus_two_cpu"))],
                       rest_api_enable_cors_support=True)
    srv.wait_until_available("m")
    reply = call(srv.rest_port, "POST", "/v1/models/m:predict", '{"instances": [1.0]}')
    assert reply.headers["access-control-allow-origin"] == "*"
    assert reply.headers["access-control-allow-methods"] == "POST, GET"
    reply = call(srv.rest_port, "GET", "/v1/models/nope")
    assert reply.status == 404 and reply.headers["access-control-allow-origin"] == "*"


def test_failed_load_shows_end_and_server_stays_up(start_server, tfs_testdata):
    srv = start_server([
        ModelConfig("bad", str(tfs_testdata / "bad_half_plus_two")),
        ModelConfig("good", str(tfs_testdata / "saved_model_half_plus_two_cpu")),
    ], incomplete_version_grace_seconds=0.2)
    srv.wait_until_available("good")
    with pytest.raises(ServingError):  # the load error: the version ended in END with it
        srv.wait_until_available("bad", timeout=30)
    entry = call(srv.rest_port, "GET", "/v1/models/bad").json()["model_version_status"][0]
    assert entry["state"] == "END"
    assert entry["status"]["error_code"] == "NOT_FOUND"
    assert entry["status"]["error_message"]
    reply = call(srv.rest_port, "POST", "/v1/models/good:predict", '{"instances": [2.0]}')
    assert reply.json() == {"predictions": [3.0]}


def test_version_swap_by_rename_loses_no_request(start_server, model_copy):
    base = model_copy("saved_model_half_plus_two_2_versions", versions=("00000123",))
    srv = start_server([ModelConfig("m", str(base))])
    srv.wait_until_available("m")
    failures, answered, stop = [], [0], threading.Event()

    def client():
        while not stop.is_set():
            reply = call(srv.rest_port, "POST", "/v1/models/m:predict", '{"instances": [2.0]}')
            if reply.status != 200 or reply.json() != {"predictions": [3.0]}:
                failures.append((reply.status, reply.body))
            answered[0] += 1

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    shutil.copytree(base / "00000123", base / ".tmp-upload")
    os.rename(base / ".tmp-upload", base / "00000124")
    srv.wait_until_available("m", 124, timeout=30)
    deadline = time.time() + 30
    while time.time() < deadline:
        states = {e["version"]: e["state"] for e in
                  call(srv.rest_port, "GET", "/v1/models/m").json()["model_version_status"]}
        if states == {"124": "AVAILABLE", "123": "END"}:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert states == {"124": "AVAILABLE", "123": "END"}
    assert failures == []
    assert answered[0] > 10
