"""Model config files (polling, bad files), labels from the config, Prometheus metrics."""

from __future__ import annotations

import time

import pytest

from nbserve.config_file import model_server_config_to_text
from nbserve.options import ModelConfig, VersionPolicy
from tests.transport.rest_client import call

pytestmark = pytest.mark.tfs_testdata


def config_models(tfs_testdata, with_three=True):
    models = [
        ModelConfig("half_plus_two", str(tfs_testdata / "saved_model_half_plus_two_cpu")),
        ModelConfig("two", str(tfs_testdata / "saved_model_half_plus_two_2_versions"),
                    version_policy=VersionPolicy.specific(123, 124),
                    version_labels={"stable": 123, "canary": 124}),
    ]
    if with_three:
        models.append(ModelConfig("half_plus_three",
                                  str(tfs_testdata / "saved_model_half_plus_three")))
    return models


def test_config_file_poll_drops_a_model_without_failing_others(start_server, tfs_testdata,
                                                               tmp_path):
    from nbserve.config_file import load_model_server_config

    path = tmp_path / "models.config"
    path.write_text(model_server_config_to_text(config_models(tfs_testdata)))
    srv = start_server(load_model_server_config(path), model_config_file=str(path),
                       model_config_file_poll_wait_seconds=0.5)
    for name in ("half_plus_two", "two", "half_plus_three"):
        srv.wait_until_available(name)
    srv.wait_until_available("two", 123)
    srv.wait_until_available("two", 124)
    assert call(srv.rest_port, "POST", "/v1/models/two/labels/stable:predict",
                '{"instances": [2.0]}').json() == {"predictions": [3.0]}
    path.write_text(model_server_config_to_text(config_models(tfs_testdata, with_three=False)))
    failures = 0
    deadline = time.time() + 20
    dropped = False
    while time.time() < deadline and not dropped:
        for name in ("half_plus_two", "two"):
            reply = call(srv.rest_port, "POST", f"/v1/models/{name}:predict",
                         '{"instances": [2.0]}')
            failures += reply.status != 200
        states = call(srv.rest_port, "GET", "/v1/models/half_plus_three").json()
        dropped = states["model_version_status"][0]["state"] == "END"
    assert dropped
    assert failures == 0
    reply = call(srv.rest_port, "POST", "/v1/models/half_plus_three:predict",
                 '{"instances": [2.0]}')
    assert reply.status == 404
    # a garbage config on reload: reported, and the running config stays
    path.write_text("model_config_list { config { name: ")
    deadline = time.time() + 10
    while srv.config_error is None and time.time() < deadline:
        time.sleep(0.1)
    assert srv.config_error is not None and str(path) in srv.config_error.message
    assert call(srv.rest_port, "POST", "/v1/models/half_plus_two:predict",
                '{"instances": [2.0]}').status == 200


def test_prometheus_counts_rest_predict(start_server, tfs_testdata, tmp_path):
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text(
        'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }')
    srv = start_server(config_models(tfs_testdata)[:1], monitoring_config_file=str(monitoring))
    srv.wait_until_available("half_plus_two")
    for _ in range(3):
        assert call(srv.rest_port, "POST", "/v1/models/half_plus_two:predict",
                    '{"instances": [1.0]}').status == 200
    call(srv.rest_port, "POST", "/v1/models/nope:predict", '{"instances": [1.0]}')
    reply = call(srv.rest_port, "GET", "/monitoring/prometheus/metrics")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    text = reply.body.decode()
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert ':tensorflow:serving:request_count{model_name="half_plus_two",status="OK"} 3' in text
    assert ':tensorflow:serving:request_count{model_name="nope",status="NOT_FOUND"} 1' in text
    assert ':tensorflow:serving:request_latency_bucket{' in text
    assert (':tensorflow:serving:model_version_state{model_name="half_plus_two",version="123"} 30'
            in text)
    reply = call(srv.rest_port, "GET", "/monitoring/prometheus/metrics?x=1")
    assert reply.status == 400
    assert reply.body == (b"Unexpected path: /monitoring/prometheus/metrics?x=1. "
                          b"Should be /monitoring/prometheus/metrics")


def test_cli_rejects_a_bad_config_file(tfs_testdata):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "nbserve",
                           f"--model_config_file={tfs_testdata / 'bad_model_config.txt'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "bad_model_config.txt" in proc.stderr
    assert "line 1" in proc.stderr
