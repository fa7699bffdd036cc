"""%tfserve without a kernel (an InteractiveShell and a fake display), and the Server's notebook
API: status shape, _repr_html_, logs, the registry that makes a re-run start cell replace its
server."""

from __future__ import annotations

import logging
import socket

import pytest

pytest.importorskip("IPython")
tf = pytest.importorskip("tensorflow")

from IPython.core.error import UsageError  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

import nbserve  # noqa: E402
import nbserve.magic  # noqa: E402
from nbserve import logs  # noqa: E402
from nbserve.api import models_for_path  # noqa: E402
from nbserve.magic import TFServeMagics, parse_line, serve_kwargs  # noqa: E402
from nbserve.server import running_servers, stop_all  # noqa: E402
from tests.models import Affine  # noqa: E402
from tests.support import free_port  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``<root>/half`` (v1: 0.5x+2) and ``<root>/double`` (v1: 2x): a folder of two models."""
    root = tmp_path_factory.mktemp("models")
    for name, (a, b) in {"half": (0.5, 2.0), "double": (2.0, 0.0)}.items():
        module = Affine(a, b)
        nbserve.export(module, str(root / name), signatures=module.__call__)
    return root


@pytest.fixture(autouse=True)
def _restore_logging():
    """%tfserve takes nbserve's loggers off the root logger; give them back for other tests."""
    yield
    logs.uninstall()


class FakeHandle:
    def __init__(self):
        self.objects = []

    def update(self, obj):
        self.objects.append(obj)


@pytest.fixture
def magic():
    """(call, displayed): ``call(line)`` runs ``%tfserve line`` through an InteractiveShell."""
    shell = InteractiveShell.instance()
    displayed = []

    def display(obj, display_id=False):
        displayed.append(obj)
        return FakeHandle()

    magics = TFServeMagics(shell, display=display)
    shell.register_magics(magics)
    yield (lambda line: shell.run_line_magic("tfserve", line)), displayed
    stop_all()




# -- argument handling ----------------------------------------------------------------------------
def test_parse_defaults_and_ports():
    args = parse_line("start ./m")
    assert (args.action, args.path, args.port, args.rest_api_port, args.host, args.device) == (
        "start", "./m", 8500, 8501, "127.0.0.1", "auto")
    args = parse_line("start 'a dir/m' --name n --port 0 --rest_api_port off --host 0.0.0.0 "
                      "--device cpu --poll 0.5 --load_retries 0")
    kwargs = serve_kwargs(args)
    assert kwargs["path"] == "a dir/m" and kwargs["name"] == "n"
    assert kwargs["port"] == 0 and kwargs["rest_api_port"] is None  # 0 = free port, off = none
    assert kwargs["device"] == "cpu" and kwargs["file_system_poll_wait_seconds"] == 0.5
    assert kwargs["max_num_load_retries"] == 0
    assert "model_config_file" not in kwargs
    kwargs = serve_kwargs(parse_line("start --config models.config --poll 2"))
    assert kwargs["model_config_file"] == "models.config"
    assert kwargs["model_config_file_poll_wait_seconds"] == 2.0


@pytest.mark.parametrize("line, message", [
    ("", "give an action"),
    ("bogus", "invalid choice: 'bogus'"),
    ("start", "give a model PATH"),
    ("status ./m", "takes no PATH"),
    ("start ./m --device tpu", "invalid choice: 'tpu'"),
    ("start ./m --port x", "invalid port 'x'"),
    ("start ./m --port 70000", "out of range"),
    ("start ./m --poll 0", "--poll must be > 0"),
    ("start ./m --unknown 1", "unrecognized arguments"),
    ("start 'unclosed", "No closing quotation"),
])
def test_bad_lines_are_one_line_usage_errors(line, message):
    with pytest.raises(UsageError, match=message) as info:
        parse_line(line)
    assert "\n" not in str(info.value)


# -- dispatch ------------------------------------------------------------------------------------
def test_start_status_logs_stop(magic, models, capsys):
    call, displayed = magic
    srv = call(f"start {models / 'half'} --port 0 --rest_api_port 0")
    assert isinstance(srv, nbserve.Server) and srv.running
    assert srv.rest_port and srv.grpc_port and srv.rest_port != 8501
    assert len(displayed) == 1  # the live display
    assert srv.wait_until_available("half", timeout=60) == 1
    assert srv.predict("half", [2.0])["y"].tolist() == [3.0]

    view = call("status")
    text, page = repr(view), view._repr_html_()
    assert "half" in text and "AVAILABLE" in text and srv.rest_url in text
    assert srv.grpc_target in page and "<table>" in page

    panel = call("panel")
    assert panel.server is srv and "half" in panel.models
    panel.close()

    capsys.readouterr()
    call("logs -n 50")
    out = capsys.readouterr().out
    assert "nbserve serving" in out and srv.rest_url in out

    call("stop")
    assert "Stopped 1 nbserve server." in capsys.readouterr().out
    assert not srv.running and running_servers() == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.rest_port), timeout=2).close()
    call("stop")
    assert "No nbserve server was running." in capsys.readouterr().out
    assert repr(call("status")) == "No nbserve server is running in this kernel."


def test_rerunning_start_replaces_the_server_on_the_same_ports(magic, models):
    call, _ = magic
    grpc_port, rest_port = free_port(), free_port()
    line = f"start {models / 'half'} --port {grpc_port} --rest_api_port {rest_port}"
    first = call(line)
    second = call(line)
    assert not first.running and second.running
    assert (second.grpc_port, second.rest_port) == (grpc_port, rest_port)
    # another path on the same ports also replaces it (no "address already in use")
    third = call(f"start {models / 'double'} --port {grpc_port} --rest_api_port {rest_port}")
    assert not second.running and running_servers() == [third]
    assert third.wait_until_available("double", timeout=60) == 1


def test_same_cell_with_free_ports_replaces_its_earlier_server(magic, models):
    call, _ = magic
    first = call(f"start {models / 'half'} --port 0 --rest_api_port 0")
    second = call(f"start {models / 'half'} --port 0 --rest_api_port 0")
    assert not first.running and running_servers() == [second]


def test_a_port_held_by_another_process_is_a_clear_error(magic, models):
    call, _ = magic
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(UsageError, match=f"Port {port}.*--rest_api_port 0") as info:
            call(f"start {models / 'half'} --port 0 --rest_api_port {port}")
    assert "\n" not in str(info.value)
    assert running_servers() == []


def test_a_missing_path_is_a_clear_error(magic, tmp_path):
    call, _ = magic
    with pytest.raises(UsageError, match="does not exist"):
        call(f"start {tmp_path / 'nope'} --port 0 --rest_api_port 0")


def test_relative_path_and_folder_of_models(magic, models, monkeypatch):
    call, _ = magic
    monkeypatch.chdir(models)
    srv = call("start . --port 0 --rest_api_port off --device cpu")
    assert srv.rest_url is None and srv.grpc_target
    assert sorted(srv.core.models()) == ["double", "half"]
    assert srv.wait_until_available("double", timeout=60) == 1
    assert srv.predict("double", [4.0])["y"].tolist() == [8.0]
    entry = srv.status("double")["double"][0]
    assert entry["state"] == "AVAILABLE" and "CPU" in entry["device"]
    assert entry["load_seconds"] >= 0


def test_models_for_path(models, tmp_path):
    assert [(m.name, m.base_path) for m in models_for_path(str(models / "half"))] == [
        ("half", str(models / "half"))]
    assert [m.name for m in models_for_path(str(models / "half"), "renamed")] == ["renamed"]
    assert [m.name for m in models_for_path(str(models))] == ["double", "half"]
    with pytest.raises(ValueError, match="folder of models"):
        models_for_path(str(models), "x")
    (tmp_path / "empty").mkdir()
    assert [m.name for m in models_for_path(str(tmp_path / "empty"))] == ["empty"]
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError):
        models_for_path(str(tmp_path / "f"))


def test_config_file_path(magic, models, tmp_path):
    call, _ = magic
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "cfg" base_path: "%s" '
                      'model_platform: "tensorflow" } }' % (models / "double"))
    srv = call(f"start {config} --port 0 --rest_api_port 0")
    assert list(srv.core.models()) == ["cfg"]
    assert srv.wait_until_available("cfg", timeout=60) == 1


# -- Server API ----------------------------------------------------------------------------------
def test_server_status_shape_repr_html_and_logs(models):
    logs.install()
    with nbserve.serve(str(models / "half"), port=0, rest_api_port=0) as srv:
        srv.wait_until_available("half", timeout=60)
        status = srv.status()
        assert list(status) == ["half"]
        (entry,) = status["half"]
        assert entry["version"] == "1" and entry["state"] == "AVAILABLE"
        assert entry["status"] == {"error_code": "OK", "error_message": ""}
        assert entry["device"] and isinstance(entry["load_seconds"], float)
        page = srv._repr_html_()
        assert srv.rest_url in page and srv.grpc_target in page
        assert f"curl {srv.rest_url}/v1/models/half" in page and "PredictionServiceStub" in page
        assert "AVAILABLE" in page
        assert repr(srv).startswith("<nbserve.Server running: REST http://127.0.0.1:")
        assert any("nbserve serving" in line for line in srv.logs())
        assert srv in running_servers()
    assert srv not in running_servers()


def test_logs_stay_off_the_root_logger_and_tf_background_lines_are_diverted(capsys):
    handler = logs.install()
    assert logging.getLogger("nbserve").propagate is False
    logging.getLogger("nbserve.test").warning("a warning for the ring buffer")
    assert "a warning for the ring buffer" not in capsys.readouterr().err
    assert logs.recent_lines(1)[0].endswith("nbserve.test: a warning for the ring buffer")
    import threading

    tf_logger = logging.getLogger("tensorflow")
    t = threading.Thread(target=tf_logger.warning, args=("tf line from a load",),
                         name="nbserve-load_0")
    t.start()
    t.join()
    assert "tf line from a load" in logs.recent_lines(1)[0]
    assert handler.lines(0) == []


# -- issue 10 ------------------------------------------------------------------------------------
def test_help_prints_once_without_an_error(magic, capsys):
    call, _ = magic
    assert call("--help") is None
    out, err = capsys.readouterr()
    assert out.count("usage: %tfserve") == 1 and "UsageError" not in out + err
    assert call("start -h") is None
    assert capsys.readouterr().out.count("usage: %tfserve") == 1


def test_replacement_is_said_in_the_new_cell_and_told_to_the_old_view(magic, models, capsys):
    call, displayed = magic
    first = call(f"start {models / 'half'} --port 0 --rest_api_port 0")
    changes = []
    first.subscribe(changes.append)
    capsys.readouterr()
    second = call(f"start {models / 'half'} --port 0 --rest_api_port 0")  # the same cell again
    out = capsys.readouterr().out
    assert out.strip() == (f"Replaced the server started from {models / 'half'} at "
                           f"{first.started_at:%H:%M:%S}: REST :{first.rest_port}, gRPC "
                           f":{first.grpc_port} (stopped)")
    assert not first.running and first.replaced_by is second and second.running
    assert [c.state for c in changes if c.server_level] == ["STOPPED", "REPLACED"]
    assert len(displayed) == 2  # one live view per start cell
    # another cell on the same ports replaces it too, and says so
    third = call(f"start {models / 'double'} --port {second.grpc_port} "
                 f"--rest_api_port {second.rest_port}")
    assert "Replaced the server started from" in capsys.readouterr().out
    assert second.replaced_by is third


def test_magic_uses_only_the_public_api():
    import ast
    import pathlib

    allowed = {"nbserve", "nbserve.server", "nbserve.status", "nbserve.errors", "nbserve.logs",
               "nbserve.snippets", "nbserve.vocabulary", "nbserve.discovery", "nbserve.display",
               "nbserve.widgets"}
    tree = ast.parse(pathlib.Path(nbserve.magic.__file__).read_text())
    used = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
            and n.module.startswith("nbserve")}
    used |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
             if a.name.startswith("nbserve")}
    assert used <= allowed, used - allowed
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
             and n.module == "nbserve.server" for a in n.names}
    assert names <= {"Server"}
