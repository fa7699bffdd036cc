"""``nbserve-server`` as a black box: a subprocess on free ports, TF Serving's flags."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from nbserve.cli import UsageError, options_from_flags, parse_flags
from nbserve.options import ServerOptions
from tests.support import free_port
from tests.transport.rest_client import call


def test_flag_syntax_and_defaults(tmp_path):
    values, warnings = parse_flags(["--model_name=m", "--model_base_path", str(tmp_path),
                                    "--rest_api_enable_cors_support", "--port=0",
                                    "--rest_api_port", "0", "--grpc_channel_arguments=a=1",
                                    "--grpc_socket_path=/tmp/x.sock", "--grpc_max_threads=3"])
    assert values["model_name"] == "m" and values["rest_api_enable_cors_support"] is True
    assert warnings == ["flag --grpc_channel_arguments is a TF Serving flag that nbserve does "
                        "not implement yet; ignored"]
    options = options_from_flags(values)
    assert options.rest_api_port is None and options.grpc_port is None  # 0 = off, as TF Serving
    assert options.grpc_socket_path == "/tmp/x.sock"
    assert options.grpc_max_threads == 3 and options.rest_api_num_threads == 0
    assert ServerOptions().grpc_max_threads == 0  # by default gRPC shares the predict pool
    assert options.enable_profiler is True  # TF Serving's default
    assert options.open_ports_after_initial_load is True  # TF Serving's order on the command line
    assert options.models[0].base_path == str(tmp_path)
    assert options.host == "127.0.0.1"


def test_relative_base_path_is_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    values, _ = parse_flags(["--model_base_path=./export"])
    assert options_from_flags(values).models[0].base_path == str(tmp_path / "export")


@pytest.mark.parametrize("argv,message", [
    (["--no_such_flag=1"], "unknown flag: --no_such_flag"),
    (["positional"], "unknown argument: positional"),
    (["--port=abc"], "invalid value for --port"),
    (["--model_name"], "flag --model_name needs a value"),
])
def test_bad_flags(argv, message):
    with pytest.raises(UsageError, match=message):
        parse_flags(argv)


def test_missing_model_is_an_error():
    values, _ = parse_flags([])
    with pytest.raises(UsageError, match=r"model_base_path and server_options\.model_config_file"):
        options_from_flags(values)


def run_cli(*args, **kw):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([sys.executable, "-m", "nbserve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def test_unknown_flag_exits_2():
    proc = run_cli("--bogus=1")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "unknown flag: --bogus" in err


@pytest.mark.tfs_testdata
def test_serves_half_plus_two_and_stops_on_sigterm(tfs_testdata):
    port, grpc_port = free_port(), free_port()
    # gRPC on too, and no load retries: the first load must succeed while gRPC starts (a racing
    # first import of TensorFlow from two threads once broke it)
    proc = run_cli("--model_name=half_plus_two",
                   f"--model_base_path={tfs_testdata / 'saved_model_half_plus_two_cpu'}",
                   f"--rest_api_port={port}", f"--port={grpc_port}", "--max_num_load_retries=0")
    try:
        deadline = time.time() + 90
        reply = None
        while time.time() < deadline:
            try:
                reply = call(port, "POST", "/v1/models/half_plus_two:predict",
                             '{"instances": [1.0, 2.0, 5.0]}')
                if reply.status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert reply is not None and reply.status == 200, reply and reply.body
        assert reply.json() == {"predictions": [2.5, 3.0, 4.5]}
        status = call(port, "GET", "/v1/models/half_plus_two").json()["model_version_status"]
        assert status == [{"version": "123", "state": "AVAILABLE",
                           "status": {"error_code": "OK", "error_message": ""}}]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_port_in_use_is_a_clear_error(tmp_path):
    (tmp_path / "1").mkdir()
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        proc = run_cli(f"--model_base_path={tmp_path}", f"--rest_api_port={port}", "--port=0")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"Port {port} on 127.0.0.1 is already in use" in err
    assert "--rest_api_port 0" in err


def test_tensorflow_thread_flags_reach_the_session_config(tmp_path):
    from nbserve.server import session_config

    values, warnings = parse_flags([f"--model_base_path={tmp_path}",
                                    "--tensorflow_inter_op_parallelism=0",
                                    "--tensorflow_intra_op_parallelism=2"])
    assert warnings == []
    config = session_config(options_from_flags(values))
    assert (config.inter_op_parallelism_threads, config.intra_op_parallelism_threads) == (0, 2)
    default = session_config(options_from_flags(parse_flags([f"--model_base_path={tmp_path}"])[0]))
    assert default.inter_op_parallelism_threads == -1  # nbserve: ops run on the request's thread
