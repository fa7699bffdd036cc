"""The ``%tfserve`` line magic (``%load_ext nbserve``), written against nbserve's public API.

::

    srv = %tfserve start PATH [--name NAME] [--port P] [--rest_api_port R] [--host H]
                              [--device cpu|gpu|auto] [--poll SECONDS] [--config FILE]
                              [--tflite]
    %tfserve status      # HTML table in a notebook, plain text elsewhere
    %tfserve logs [-n N] # the recent nbserve log lines (kept in a ring buffer, not on stderr)
    %tfserve stop        # stop this kernel's servers, free their ports
    %tfserve panel       # the widget panel (nbserve.widgets.ServerPanel) for this kernel's server
    %tfserve profile [--duration_ms MS] [--logdir DIR]  # profile live traffic for TensorBoard

Defaults: gRPC on 8500 and REST on 8501, on 127.0.0.1. ``--port 0`` / ``--rest_api_port 0``
pick free ports: the Python socket meaning, unlike ``tensorflow_model_server`` / ``nbserve``'s CLI
where ``--rest_api_port=0`` turns REST off (here ``--rest_api_port off`` does that). ``--poll`` is
the file-system poll interval (and the config file's re-read interval with ``--config``).
A failed load is retried ``--load_retries`` times (default 1) one second apart, so a broken export
shows END with its error within seconds (TF Serving's CLI default: 5 retries a minute apart).

Re-running a start cell replaces this kernel's earlier server(s) on the same ports, and the one
that the same PATH/config started, and says so in the new cell ("Replaced the server started from
./export at 19:18:31: REST :36579, gRPC :39007 (stopped)"); the old server's live view says it
was replaced and by which server. Bad arguments and start failures are a one-line
``UsageError``, never a traceback, and never take the kernel down; ``--help`` prints the help once.

Written only against the public API: ``nbserve``, ``nbserve.server.Server``, ``nbserve.logs``,
``nbserve.display``, ``nbserve.widgets``.
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Callable
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from nbserve import logs

_ACTIONS = ("start", "stop", "status", "logs", "panel", "profile")


class _HelpShown(Exception):
    """``-h``/``--help``: argparse printed the help; nothing else to do."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would print usage and SystemExit
        raise UsageError(f"%tfserve: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:  # -h/--help
        if status == 0 and not message:
            raise _HelpShown()
        raise UsageError(f"%tfserve: {message or 'exit'}".strip())


def _port(text: str) -> int | None:
    if text.lower() in ("off", "none"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid port {text!r} (a number, 0 = free, or off)") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} out of range 0..65535")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("--poll must be > 0 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="%tfserve", add_help=True,
                     description="Serve TensorFlow SavedModels from this kernel.")
    parser.add_argument("action", choices=_ACTIONS)
    parser.add_argument("path", nargs="?", help="model base path, folder of models, or config")
    parser.add_argument("--name", help="model name (default: the folder's name)")
    parser.add_argument("--port", type=_port, default=8500, help="gRPC port (0: free, off)")
    parser.add_argument("--rest_api_port", "--rest-api-port", type=_port, default=8501,
                        help="REST port (0: a free port, off: no REST)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--device", choices=("cpu", "gpu", "auto"), default="auto")
    parser.add_argument("--isolate", action="store_true",
                        help="run the server in a child process (a crash there spares the kernel)")
    parser.add_argument("--auth_token", default=None,
                        help="bearer token clients must send ('auto' generates one; '' none)")
    parser.add_argument("--poll", type=_seconds, default=None,
                        help="file-system poll interval in seconds (default 1)")
    parser.add_argument("--config", help="a ModelServerConfig text file")
    parser.add_argument("--load_retries", type=int, default=1,
                        help="retries of a failed load, 1 s apart (default 1)")
    parser.add_argument("--tflite", action="store_true",  # issue 14: TFLite
                        help="serve model.tflite where a version folder has one")
    parser.add_argument("-n", "--lines", type=int, default=50, help="logs: how many lines")
    parser.add_argument("--grpc_socket_path", default="",
                        help="also serve gRPC on this unix socket (issue 14)")
    parser.add_argument("--duration_ms", type=int, default=2000, help="profile: how long")
    parser.add_argument("--logdir", default="./logs", help="profile: TensorBoard log folder")
    return parser


def parse_line(line: str) -> argparse.Namespace | None:
    """Parse a ``%tfserve`` line; UsageError (one line) on anything wrong; None after
    ``--help`` (argparse printed the help)."""
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"%tfserve: {exc}") from None
    if not argv:
        raise UsageError(f"%tfserve: give an action: {', '.join(_ACTIONS)}")
    try:
        args = build_parser().parse_args(argv)
    except _HelpShown:
        return None
    if args.action == "start" and not (args.path or args.config):
        raise UsageError("%tfserve start: give a model PATH (or --config FILE)")
    if args.action != "start" and args.path:
        raise UsageError(f"%tfserve {args.action}: takes no PATH")
    return args


def serve_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``nbserve.serve`` keyword arguments for a parsed ``start`` line."""
    kwargs: dict[str, Any] = {"path": args.path, "name": args.name, "port": args.port,
                              "rest_api_port": args.rest_api_port, "host": args.host,
                              "device": args.device, "isolate": args.isolate,
                              "auth_token": args.auth_token,
                              "max_num_load_retries": max(args.load_retries, 0),
                              "load_retry_interval_micros": 1_000_000}
    if args.grpc_socket_path:
        kwargs["grpc_socket_path"] = args.grpc_socket_path
    if args.config:
        kwargs["model_config_file"] = args.config
        if args.poll:
            kwargs["model_config_file_poll_wait_seconds"] = args.poll
    if args.poll:
        kwargs["file_system_poll_wait_seconds"] = args.poll
    if args.tflite:
        kwargs["prefer_tflite_model"] = True
    return kwargs


def _start_key(args: argparse.Namespace) -> tuple[str, str]:
    """What identifies "the same start cell": its resolved PATH and config file."""
    return _full(args.path), _full(args.config)


def _full(path: str | None) -> str:
    return os.path.abspath(os.path.expanduser(path)) if path else ""


@magics_class
class TFServeMagics(Magics):
    """``%tfserve``. Keeps the live displays and which start line started which server."""

    def __init__(self, shell: Any = None, *, display: Callable[..., Any] | None = None) -> None:
        super().__init__(shell)
        self._display = display  # None: IPython.display.display (tests inject a fake)
        self._started: dict[tuple[str, str], Any] = {}  # start key -> Server
        self._live: list[Any] = []

    @line_magic
    def tfserve(self, line: str) -> Any:
        """Serve TensorFlow SavedModels from this kernel: ``%tfserve start PATH``,
        ``%tfserve status``, ``%tfserve logs``, ``%tfserve stop`` (see ``nbserve.magic``)."""
        args = parse_line(line)
        if args is None:  # --help
            return None
        return getattr(self, f"_{args.action}")(args)

    # -- actions -------------------------------------------------------------------------------
    def _start(self, args: argparse.Namespace) -> Any:
        import nbserve

        logs.install()
        key = _start_key(args)
        earlier = self._started.pop(key, None)
        try:  # re-running the same cell replaces its server (any ports); serve() says so
            server = nbserve.serve(**serve_kwargs(args),
                                   replace=[earlier] if earlier is not None else [])
        except Exception as exc:  # noqa: BLE001 - a one-line error, the kernel lives on
            raise UsageError(f"%tfserve start: {_one_line(exc)}") from None
        self._started[key] = server
        try:
            self._live.append(self._show_live(server))
        except Exception:  # noqa: BLE001 - no display (e.g. plain Python): serving goes on
            pass
        return server

    def _show_live(self, server: Any) -> Any:
        """Display the server's live view (``nbserve.display.server_view``) once."""
        from nbserve import display

        shown = display.server_view(server)
        if self._display is not None:
            self._display(shown)
        else:
            from IPython.display import display as ipython_display

            ipython_display(shown)  # type: ignore[no-untyped-call]
        return shown

    def _stop(self, args: argparse.Namespace) -> None:
        from nbserve.server import Server

        count = Server.stop_all()
        self._started.clear()
        live, self._live = self._live, []
        for view in live:  # a view that follows its server shows "stopped" by itself
            for method in ("refresh", "close"):
                call = getattr(view, method, None)
                if callable(call):
                    call()
        print(f"Stopped {count} nbserve server{'s' if count != 1 else ''}." if count
              else "No nbserve server was running.")

    def _status(self, args: argparse.Namespace) -> Any:
        from nbserve.display import status_view
        from nbserve.server import Server

        return status_view(Server.running_servers(), display=self._display)

    def _panel(self, args: argparse.Namespace) -> Any:
        """The widget panel for the kernel's newest server (a launcher when none runs)."""
        from nbserve.widgets import ServerPanel

        return ServerPanel()

    def _profile(self, args: argparse.Namespace) -> None:
        from nbserve.server import Server

        if args.duration_ms <= 0:
            raise UsageError("%tfserve profile: duration_ms must be greater than zero")
        servers = Server.running_servers()
        if not servers:
            raise UsageError("%tfserve profile: no server is running; start one with "
                             "%tfserve start PATH")
        try:
            print(servers[-1].profile(args.logdir, args.duration_ms))
        except Exception as exc:  # noqa: BLE001 - a one-line error, the kernel lives on
            raise UsageError(f"%tfserve profile: {_one_line(exc)}") from None

    def _logs(self, args: argparse.Namespace) -> None:
        logs.install()
        lines = logs.recent_lines(max(args.lines, 0))
        print("\n".join(lines) if lines else "(no nbserve log lines yet)")


def _one_line(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(message).split())


def load(ipython: Any) -> None:
    """``%load_ext nbserve``: register ``%tfserve`` and keep nbserve's logs off the cells."""
    logs.install()
    ipython.register_magics(TFServeMagics(ipython))


def unload(ipython: Any) -> None:
    """``%unload_ext nbserve``: stop this kernel's servers."""
    from nbserve.server import Server

    Server.stop_all()
