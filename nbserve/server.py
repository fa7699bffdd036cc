"""Server: the synchronous, thread-safe facade used by notebooks, the CLI and tests.

(Longer than our ~500-line mark on purpose: it is the notebook layer's one door (DESIGN.md), so
every facade method is here, each a few lines delegating to the module that does the work:
``describe``, ``version_choice``, ``traffic``/``observed``, ``teaching``, ``hints``, ``snippets``,
``registry``, ``config_watch``, ``initial_load``.)

``Server(options).start()`` starts the lifecycle (manager + source threads), opens gRPC and then
REST at once on ``nbserve-io``, and returns while the versions are still LOADING;
``wait_until_available`` blocks until one is AVAILABLE. With ``open_ports_after_initial_load`` (the
CLI's default, TF Serving's order) it opens them only once every initial model is AVAILABLE or END.

The notebook facade (DESIGN.md): typed status (``models()``, ``signature()``, ``traffic()``,
``nbserve.status``), waits and state subscriptions (``wait_for``, ``subscribe``), version choices
through the lifecycle (``set_version_policy``, ``set_label``, ``load_version``, ``unload_version``),
client code built from the signature (``example_request``), ``predict`` with errors that teach,
``compare``. The notebook layer (magic, display, panel, lab API) uses nothing else.

Ports: ``None`` disables a transport, ``0`` picks a free port (the Python socket meaning; the CLI
maps TF Serving's ``--rest_api_port=0`` = "REST off" to ``None`` before it gets here). A port held
by another process is a ``ServerStartError`` that names the port and suggests port 0.
"""

from __future__ import annotations

import datetime
import errno
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from nbserve import describe, logs, registry, teaching
from nbserve.codec.python_predict import PythonPredictCodec
from nbserve.config_watch import ConfigWatcher
from nbserve.core.events import ManagerState, ServableState
from nbserve.core.load_timeout import with_load_timeout
from nbserve.core.loader import LoaderFactory
from nbserve.core.server_core import ServerCore
from nbserve.endpoints import Endpoints
from nbserve.errors import ServingError, StatusCode, not_found
from nbserve.interrupts import frames_freed_on_interrupt, interrupts_deferred
from nbserve.metrics import ServingMetrics
from nbserve.observed import ObservedService
from nbserve.options import ServerOptions, core_options
from nbserve.registry import running_servers, stop_all, stop_servers_on_ports  # noqa: F401
from nbserve.runtime import IoThread
from nbserve.servables.signature import Signature
from nbserve.service import ModelSpec
from nbserve.sources.filesystem import FileSystemStoragePathSource
from nbserve.status import (
    REPLACED,
    STOPPED,
    Comparison,
    ModelStatus,
    SignatureInfo,
    StateChange,
    VersionTraffic,
)
from nbserve.transport.admission import InflightLimit
from nbserve.transport.auth import exposure_warning, probes_open
from nbserve.version_choice import (
    PolicyChoice,
    after_load,
    after_unload,
    policy_for,
    versions_on_disk,
    with_label,
)

if TYPE_CHECKING:  # only --num_workers' workers have one (nbserve.cli sets it)
    from nbserve.shared_config import SharedConfig

log = logging.getLogger("nbserve.server")


def saved_model_loader_factory(options: ServerOptions) -> LoaderFactory:
    """The default source adapter: SavedModel or TFLite per version folder (see
    ``nbserve.servables.loaders``)."""
    from nbserve.servables.loaders import loader_factory

    return loader_factory(options)


def session_config(options: ServerOptions) -> Any:
    """The TF ``ConfigProto`` every version's session starts from (``servables.loaders``)."""
    from nbserve.servables.loaders import session_config as make_session_config

    return make_session_config(options)


def warn_if_exposed(options: ServerOptions) -> None:
    """Log a warning when ``options.host`` makes the models reachable from the network."""
    message = exposure_warning(options.host, options.auth_token)
    if message:
        log.warning(message)


class ServerStartError(RuntimeError):
    """The server could not start (a port is taken, a bad config): nothing is left running."""


def bind_socket(host: str, port: int, flag: str, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket; a clear error naming the port (and the flag) when it is taken.
    ``reuse_port`` (``ServerOptions.reuse_port``, ``--num_workers``): bind with SO_REUSEPORT, so
    the processes of one server share the port (the kernel spreads connections over them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServerStartError(
                f"Port {port} on {host} is already in use by another process; stop it, pick "
                f"another port, or pass {flag} 0 to let nbserve pick a free one.") from None
        raise ServerStartError(f"Cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


class Server(Endpoints):
    """One model server: lifecycle core, service, transports. Use ``start()``/``stop()`` or
    ``with Server(options) as srv:``."""

    def __init__(self, options: ServerOptions, *, loader_factory: LoaderFactory | None = None
                 ) -> None:
        self.options = options
        self.core = ServerCore(core_options(options), with_load_timeout(
            loader_factory or saved_model_loader_factory(options), options.load_timeout_seconds),
            source_factory=FileSystemStoragePathSource.from_options)
        from nbserve.batching import request_threads, scheduler_for

        self.batcher = scheduler_for(options, self.core)  # None unless options.enable_batching
        self.service = ObservedService(self.core,
                                       run_hook=self.batcher.run if self.batcher else None,
                                       hint=self._hint,
                                       submit_hook=self.batcher.submit if self.batcher else None)
        threads = options.rest_api_num_threads or 4 * (os.cpu_count() or 1)
        if self.batcher is not None and not options.rest_api_num_threads:
            # a batched request waits on its thread: fewer threads than a batch never fill it
            threads = max(threads, request_threads(options.batching, options.batching_per_model))
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="nbserve-predict")
        # --grpc_max_threads: gRPC's model work on a pool of its own; else on the shared one
        self._grpc_executor = ThreadPoolExecutor(
            options.grpc_max_threads, thread_name_prefix="nbserve-grpc"
        ) if options.grpc_max_threads > 0 else self._executor
        self._io = IoThread(event_loop=options.event_loop)
        self._runners: list[Any] = []
        self._open_connections: list[Any] = []  # rest_api.OpenConnections, one per runner
        self._grpc_servers: list[Any] = []
        self._fast_rest: list[Any] = []  # rest_h1.H1Server (rest_front_end "h1")
        self._lock = threading.Lock()
        self._state = "new"
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self.metrics = ServingMetrics()
        self.core.event_bus.subscribe(self.metrics.observe_state)
        self.config_error: ServingError | None = None  # the last config-file reload error
        # a worker of --num_workers (set by nbserve.cli): reloads reach every worker through it
        self.shared_config: SharedConfig | None = None
        self._stopping = threading.Event()
        self._config_watch: ConfigWatcher | None = None
        self._inflight = InflightLimit(options.max_inflight_requests)  # shared by REST and gRPC
        self._start_cancelled = False  # cancel_start(): a plain flag, safe from signal handlers
        self._grpc_socket: Any = None  # issue 14: unix_socket.SocketFile for --grpc_socket_path
        self.started_at = datetime.datetime.now()  # set again by start()
        self.source = options.model_config_file or ", ".join(m.base_path for m in options.models)
        self._replaced_by: Server | None = None
        self._listeners: tuple[Callable[[StateChange], None], ...] = ()
        self._listeners_lock = threading.Lock()
        self._loading: set[Any] = set()  # versions loading/unloading: native log lines captured
        self.core.event_bus.subscribe(self._capture_native_logs)

    # -- start / stop --------------------------------------------------------------------------
    def start(self) -> Server:
        """Open the ports and start the lifecycle; returns at once (versions still LOADING).
        TensorFlow's native log lines written meanwhile go to ``logs()`` in a notebook."""
        with logs.native_capture():
            return self._start()

    def _start(self) -> Server:
        with self._lock:
            if self._state != "new":
                raise ServerStartError(f"Server already {self._state}")
            self._state = "starting"
        self.started_at = datetime.datetime.now()
        warn_if_exposed(self.options)
        try:
            # issue 14: gRPC, then REST, as TF Serving (after the initial load on the CLI)
            if self.options.rest_api_port:  # a clear error now if taken
                bind_socket(self.options.host, self.options.rest_api_port,
                            "--rest_api_port", self.options.reuse_port).close()
            if self.options.grpc_port:
                bind_socket(self.options.host, self.options.grpc_port, "--port",
                            self.options.reuse_port).close()
            self._claim_grpc_socket()
            grpc_on = self.options.grpc_port is not None or self._grpc_socket is not None
            self._check_front_ends(grpc_on)
            self._io.start()
            if grpc_on:  # its protos import TensorFlow: before the
                import nbserve.transport.grpc_api  # noqa: F401  loads do (a racing import fails)
            self.core.start()
            if self.options.open_ports_after_initial_load:
                from nbserve.initial_load import wait_for_initial_models

                wait_for_initial_models(self.core, lambda: self._start_cancelled)
            with interrupts_deferred():  # a listener started on the loop is always recorded
                self._start_transports(grpc_on)
            self._start_config_watch()
            with interrupts_deferred():  # running and registered together: ``stop_all`` and a
                self._state = "running"  # replacing ``serve`` find every server that runs
                registry.register(self)
        except BaseException:
            with interrupts_deferred():
                self._shutdown(grace=0)
            raise
        try:  # the JupyterLab sidebar's record; discovery never breaks serving
            from nbserve import discovery

            discovery.register(self)
        except Exception:  # discovery never breaks serving
            log.debug("discovery record not written", exc_info=True)
        log.info("nbserve serving: REST %s, gRPC %s", self.rest_url or "off",
                 self.grpc_target or "off")
        return self

    def _check_front_ends(self, grpc_on: bool) -> None:
        """A ServerStartError for a front end name (of a transport that will start) that is not
        one of ``options.GRPC_FRONT_ENDS`` / ``REST_FRONT_ENDS``."""
        from nbserve.options import GRPC_FRONT_ENDS, REST_FRONT_ENDS

        for field, on, choices in (
                ("grpc_front_end", grpc_on, GRPC_FRONT_ENDS),
                ("rest_front_end", self.options.rest_api_port is not None, REST_FRONT_ENDS)):
            value = getattr(self.options, field)
            if on and value not in choices:
                raise ServerStartError(f"{field} must be one of {', '.join(choices)}, "
                                       f"not {value!r}")

    def _start_transports(self, grpc_on: bool) -> None:
        """gRPC, then REST, on the IO loop. Each start runs to its end once begun: a kernel
        interrupt in the middle would leave a listener on the loop that ``_shutdown`` never
        learns of (callers hold interrupts back)."""
        if grpc_on:
            self.grpc_port = self._io.call(self._start_grpc(self.options.grpc_port)) or None
        rest_sock = self._bind(self.options.rest_api_port, "--rest_api_port")
        if rest_sock is not None:
            self.rest_port = rest_sock.getsockname()[1]
            self._io.call(self._start_rest(rest_sock))

    def _bind(self, port: int | None, flag: str) -> socket.socket | None:
        if port is None:
            return None
        return bind_socket(self.options.host, port, flag, self.options.reuse_port)

    async def _start_rest(self, sock: socket.socket) -> None:
        from aiohttp import web

        from nbserve.transport.rest_api import OpenConnections, RestApi

        extra = {}
        path = self._prometheus_path()
        if path:
            extra[path] = lambda: (200, "text/plain", self.metrics.exposition())
        api = RestApi(self.service, self._executor,
                      timeout_ms=self.options.rest_api_timeout_in_ms,
                      enable_cors=self.options.rest_api_enable_cors_support,
                      max_request_bytes=self.options.max_request_bytes,
                      observer=lambda m, a, c, s: self.metrics.observe_request(m, a, c, s, "REST"),
                      extra_routes=extra, auth_token=self.options.auth_token,
                      open_probes=probes_open(self.options.host), limiter=self._inflight,
                      # a batched call waits for its batch: never on the IO thread
                      inline_threshold_us=0 if self.options.enable_batching
                      else self.options.rest_inline_threshold_us)
        runner = web.AppRunner(api.app, access_log=None, handle_signals=False,
                               shutdown_timeout=self.options.shutdown_grace_seconds)
        await runner.setup()
        assert runner.server is not None  # set by setup()
        self._open_connections.append(OpenConnections(runner.server))
        self._runners.append(runner)
        if self.options.rest_front_end == "aiohttp":
            await web.SockSite(runner, sock).start()
            return
        from nbserve.transport.rest_h1 import start_h1_server

        # issue 12: nbserve's HTTP/1.1 for the common /v1 requests, aiohttp's handler for the rest
        self._fast_rest.append(await start_h1_server(
            api, runner.server, sock, max_request_bytes=self.options.max_request_bytes,
            cors=self.options.rest_api_enable_cors_support))

    def _claim_grpc_socket(self) -> None:
        """``--grpc_socket_path`` (issue 14): a stale socket file is removed, a live one is a
        ServerStartError naming the path."""
        if not self.options.grpc_socket_path:
            return
        from nbserve.transport.unix_socket import SocketFile, SocketPathError, claim_socket_path

        try:
            self._grpc_socket = SocketFile(claim_socket_path(self.options.grpc_socket_path))
        except SocketPathError as exc:
            raise ServerStartError(str(exc)) from None

    async def _start_grpc(self, port: int | None) -> int:
        if self.options.grpc_front_end == "h2":
            return await self._start_h2_grpc(port)
        from nbserve.transport.grpc_api import start_grpc_server

        try:
            server, bound = await start_grpc_server(
                self.service, self._grpc_executor, self.options.host, port,
                max_message_bytes=self.options.grpc_max_message_bytes,
                reload=self.reload_config_proto, observer=self._grpc_observer,
                auth_token=self.options.auth_token, limiter=self._inflight,
                unix_socket=self._grpc_socket.path if self._grpc_socket else "",
                profiler=self.options.enable_profiler, reuse_port=self.options.reuse_port)
        except OSError as exc:
            if "unix:" in str(exc):
                raise ServerStartError(f"Cannot listen on --grpc_socket_path: {exc}") from None
            raise ServerStartError(
                f"Port {port} on {self.options.host} is already in use by another process; stop "
                "it, pick another port, or pass --port 0 to let nbserve pick a free one.") from None
        self._grpc_started(server)
        return int(bound)

    async def _start_h2_grpc(self, port: int | None) -> int:
        """``grpc_front_end="h2"`` (issue 12): nbserve's own HTTP/2 gRPC server on the IO loop."""
        from nbserve.transport.grpc_h2 import start_h2_grpc_server

        sock = self._bind(port, "--port")
        try:
            server = await start_h2_grpc_server(
                self.service, self._grpc_executor, sock, host=self.options.host,
                max_message_bytes=self.options.grpc_max_message_bytes,
                reload=self.reload_config_proto, observer=self._grpc_observer,
                auth_token=self.options.auth_token, limiter=self._inflight,
                unix_socket=self._grpc_socket.path if self._grpc_socket else "",
                open_health=probes_open(self.options.host), profiler=self.options.enable_profiler,
                # a batched call waits for its batch: never on the IO thread
                inline_threshold_us=0 if self.options.enable_batching
                else self.options.grpc_inline_threshold_us)
        except OSError as exc:
            if sock is not None:
                sock.close()
            raise ServerStartError(f"Cannot listen on --grpc_socket_path: {exc}") from None
        self._grpc_started(server)
        return int(sock.getsockname()[1]) if sock is not None else 0

    def _grpc_observer(self, model: str, api: str, code: Any, seconds: float) -> None:
        self.metrics.observe_request(model, api, code, seconds, "GRPC")

    def _grpc_started(self, server: Any) -> None:
        self._grpc_servers.append(server)
        if self._grpc_socket is not None:
            self._grpc_socket.bound()

    def _prometheus_path(self) -> str:
        if self.options.prometheus_path:
            return self.options.prometheus_path
        if self.options.monitoring_config_file:
            from nbserve.config_file import parse_monitoring_config

            path = self.options.monitoring_config_file
            with open(path) as f:
                enabled, prom_path = parse_monitoring_config(f.read(), source=path)
            return prom_path if enabled else ""
        return ""

    def _start_config_watch(self) -> None:
        poll = self.options.model_config_file_poll_wait_seconds
        if self.options.model_config_file and poll > 0:
            self._config_watch = ConfigWatcher(self.core, self.options.model_config_file, poll,
                                               self._set_config_error)
            self._config_watch.start()

    def _set_config_error(self, error: ServingError | None) -> None:
        self.config_error = error

    def reload_config_proto(self, config: Any) -> None:
        """``HandleReloadConfigRequest``: replace the model config with a ModelServerConfig proto;
        blocks until new models are AVAILABLE (or raises with their errors). A worker of
        ``--num_workers`` hands it to ``shared_config``: every worker applies it."""
        if self.shared_config is not None:
            self.shared_config.reload(config)
            return
        from nbserve.config_file import model_configs_from_proto

        self.core.reload_config(model_configs_from_proto(config), wait_timeout=300.0)

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (bounded by ``grace``, default
        ``options.shutdown_grace_seconds``), unload every version, free the ports, join the
        threads. Idempotent and safe from any thread but the IO loop's. A kernel interrupt
        meanwhile is raised once the server has stopped."""
        if grace is None:
            grace = self.options.shutdown_grace_seconds
        with self._lock:
            if self._state in ("stopped", "new"):
                self._state = "stopped"
                return
            self._state = "stopping"
        with interrupts_deferred():  # a stop interrupted halfway would keep ports and threads
            self._shutdown(grace)

    def _shutdown(self, grace: float) -> None:
        self._stopping.set()
        try:
            from nbserve import discovery

            discovery.unregister(self)
        except Exception:  # discovery never breaks stopping
            log.debug("discovery record not removed", exc_info=True)
        if self._grpc_socket is not None:  # issue 14: gRPC unlinks the path when it stops
            self._grpc_socket.before_stop()
        if self._config_watch is not None:
            self._config_watch.stop(5)
        if self._io.running:
            try:
                self._io.call(self._stop_transports(grace), timeout=grace + 10)
            except Exception:  # keep stopping the rest
                log.exception("stopping the transports failed")
            self._runners.clear()
            self._fast_rest.clear()
            self._grpc_servers.clear()
            self._io.stop()
        if self._grpc_socket is not None:  # issue 14: the socket file goes with the server
            self._grpc_socket.after_stop()
        if self.batcher is not None:
            self.batcher.close()  # runs the queued batches now, so no request waits a timeout out
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._grpc_executor.shutdown(wait=True, cancel_futures=True)  # the same one, or gRPC's
        self.core.stop()
        self._state = "stopped"
        registry.unregister(self)
        self._tell(StateChange("", None, STOPPED, None))

    async def _stop_transports(self, grace: float) -> None:
        """REST and gRPC together: both stop accepting at once, then in-flight requests get up
        to ``grace`` seconds to finish."""
        import asyncio

        for runner in self._runners:
            if hasattr(runner, "_shutdown_timeout"):  # aiohttp's AppRunner(shutdown_timeout=)
                runner._shutdown_timeout = grace
        results = await asyncio.gather(
            *(runner.cleanup() for runner in reversed(self._runners)),
            *(server.stop(grace) for server in [*self._fast_rest, *self._grpc_servers]),
            return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("stopping a transport failed: %r", result)
        for connections in self._open_connections:  # accepted as the listener closed
            await connections.abort()
        self._open_connections.clear()

    def __enter__(self) -> Server:
        return self.start() if self._state == "new" else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._state == "running"

    # -- endpoints -----------------------------------------------------------------------------
    # rest_url, grpc_target, auth_token: nbserve.endpoints.Endpoints
    @property
    def grpc_socket_path(self) -> str | None:
        """The absolute unix socket path gRPC also listens on (``grpc.insecure_channel(
        "unix:" + path)``), or None without ``grpc_socket_path``."""
        return self._grpc_socket.path if self._grpc_socket is not None else None

    def _hint(self, name: str) -> str | None:
        """Why ``name`` waits, when nbserve knows (``GET /v1/models`` and the sidebar show it)."""
        try:
            return describe.model_status(self.core, name).hint
        except (KeyError, OSError):
            return None

    def cancel_start(self) -> None:
        """Make a ``start()`` that still waits for the initial load (``open_ports_after_initial_
        load``) give up: it cleans up and raises ``initial_load.StartCancelled``. Only sets a
        flag, so a signal handler may call it at any moment."""
        self._start_cancelled = True

    def profile(self, logdir: str = "./logs", duration_ms: int = 2000) -> str:
        """Record this server's TensorFlow work for ``duration_ms`` (send it requests meanwhile:
        the call blocks) into ``logdir`` for TensorBoard's Profile tab; returns where the trace
        is and how to open it. ``%tfserve profile`` calls this on the kernel's newest server."""
        from nbserve.profiling import profile_command

        return profile_command(logdir, duration_ms)

    # -- wire view -----------------------------------------------------------------------------
    def status(self, name: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Model name -> its versions' status entries (version descending), as REST reports them,
        plus ``device`` / ``load_seconds`` where known. ``models()`` is the typed view."""
        if name:
            return {name: [describe.status_entry(self.core, s)
                           for s in self.core.version_states(name)]}
        result: dict[str, list[dict[str, Any]]] = {}
        for n in self.core.known_models():  # a configured model with no version yet: []
            states = self.core.monitor.states(n)
            result[n] = [describe.status_entry(self.core, states[v])
                         for v in sorted(states, reverse=True)]
        return result

    def logs(self, lines: int | None = None) -> list[str]:
        """The most recent ``nbserve`` log lines kept in this process's ring buffer (see
        ``nbserve.logs``), oldest first; empty until the buffer is installed."""
        return logs.recent_lines(lines)

    def __repr__(self) -> str:
        return (f"<nbserve.Server {self._state}: REST {self.rest_url or 'off'}, "
                f"gRPC {self.grpc_target or 'off'}>")

    # -- display: one live view (nbserve.display.server_view) ----------------------------------
    def _ipython_display_(self) -> None:
        """Show ``nbserve.display.server_view(self)``: the live view of this server."""
        from IPython.display import HTML, display

        view = _server_view()
        shown = view(self) if view is not None else HTML(  # type: ignore[no-untyped-call]
            self._snapshot_html())
        display(shown)  # type: ignore[no-untyped-call]

    def _repr_html_(self) -> str:
        """HTML for front ends that ask for it directly: the live view's HTML when it has
        one, else a snapshot that says so, with its time."""
        view = _server_view()
        if view is not None:
            shown = view(self)
            render = getattr(shown, "_repr_html_", None)
            if callable(render):
                return str(render())
        return self._snapshot_html()

    def _snapshot_html(self) -> str:
        from nbserve import display

        render = getattr(display, "render_server_html", None)
        try:
            status = self.status() if self._state != "new" else {}
        except ServingError:
            status = {}
        when = datetime.datetime.now().strftime("%H:%M:%S")
        body = render(server_snapshot(self, status)) if render else ""
        return f"<div><i>snapshot at {when}</i></div>{body}"

    # -- the notebook facade: status -----------------------------------------------------------
    def models(self) -> list[ModelStatus]:
        """Every model this server knows (configured ones, and removed ones that still report
        END versions), by name: versions, policy, labels and a ``hint`` when it waits for a
        known reason."""
        return describe.model_statuses(self.core)

    def model(self, name: str) -> ModelStatus:
        """One model's status; a teaching NOT_FOUND error for a model this server lacks."""
        self._check_model(name)
        return describe.model_status(self.core, name)

    def _check_model(self, name: str) -> None:
        if name not in self.core.models() and not self.core.monitor.states(name):
            raise teaching.unknown_model(
                not_found(f"Could not find any versions of model {name}"), name,
                sorted(self.core.models()))

    def _check_running(self) -> None:
        if self._state != "running":
            replaced = self._replaced_by
            raise teaching.stopped(self.source, repr(replaced) if replaced is not None else None)

    @property
    def replaced_by(self) -> Server | None:
        """The server that took this one's place (a re-run start cell), or None."""
        return self._replaced_by

    def wait_for(self, name: str, version: int | None = None, state: str = "AVAILABLE",
                 timeout: float = 60.0) -> int:
        """Block until ``name`` (or that ``version``) reaches ``state`` (TF Serving's name);
        return the version. With ``version=None``: any version, the highest one returned.

        Waiting for AVAILABLE raises the version's load error (ServingError) when it ends in
        END with an error first (an END without error, an unloaded version, is waited on: a
        ``load_version`` or a new policy may bring it back). Raises TimeoutError after
        ``timeout`` seconds, with the model's hint when nbserve knows why it waits (e.g. no
        numbered version folder). A model not (yet) in the
        config is waited for too (a config reload may bring it).
        """
        wanted = ManagerState[state.upper()]
        result: dict[str, Any] = {}
        if wanted == ManagerState.AVAILABLE:
            ready = self._available_predicate(name, version, result)
        else:
            def ready(monitor: Any) -> bool:
                states = monitor.states(name)
                hits = [v for v, s in states.items() if s.state == wanted
                        and (version is None or v == version)]
                if hits:
                    result["version"] = max(hits)
                return bool(hits)

        if not self.core.monitor.wait_until(ready, timeout):
            target = f"Model {name}{'' if version is None else f' version {version}'}"
            hint = describe.model_status(self.core, name).hint
            if name not in self.core.models():
                hint = f"this server serves {', '.join(sorted(self.core.models())) or 'no model'}"
            raise TimeoutError(f"{target} not {wanted.name} after {timeout} s"
                               + (f": {hint}" if hint else ""))
        if "error" in result:
            raise result["error"]
        return int(result["version"])

    def _available_predicate(self, name: str, version: int | None, result: dict[str, Any]
                             ) -> Callable[[Any], bool]:
        def ready(monitor: Any) -> bool:
            states = monitor.states(name)
            wanted = [states[version]] if version is not None and version in states else (
                list(states.values()) if version is None else [])
            for state in sorted(wanted, key=lambda s: -s.id.version):
                if state.state == ManagerState.AVAILABLE:
                    result["version"] = state.id.version
                    return True
            if version is not None and wanted and wanted[0].state == ManagerState.END and \
                    wanted[0].error is not None:  # an unloaded version may be loaded again
                result["error"] = wanted[0].error
                return True
            if version is None and states and not self.core.manager.available_versions(name):
                latest = states[max(states)]
                if latest.state == ManagerState.END and latest.error is not None and all(
                        s.state == ManagerState.END for s in states.values()):
                    result["error"] = latest.error
                    return True
            return False

        return ready

    def wait_until_available(self, name: str, version: int | None = None,
                             timeout: float = 60.0) -> int:
        """``wait_for(name, version, "AVAILABLE", timeout)``."""
        return self.wait_for(name, version, "AVAILABLE", timeout)

    def subscribe(self, callback: Callable[[StateChange], None]) -> Callable[[], None]:
        """Call ``callback(StateChange)`` on every version state event (on the lifecycle's
        threads: return quickly) and on server-level events (``STOPPED``, ``REPLACED``);
        returns the function that unsubscribes (idempotent)."""
        def on_event(event: ServableState) -> None:
            callback(describe.state_change(event))

        unsubscribe_events = self.core.event_bus.subscribe(on_event)
        with self._listeners_lock:
            self._listeners = (*self._listeners, callback)

        def unsubscribe() -> None:
            unsubscribe_events()
            with self._listeners_lock:
                self._listeners = tuple(c for c in self._listeners if c is not callback)

        return unsubscribe

    def _tell(self, change: StateChange) -> None:
        for callback in self._listeners:
            try:
                callback(change)
            except Exception:  # a faulty view must not break the server
                log.exception("StateChange subscriber %r failed on %s", callback, change)

    def _mark_replaced(self, new: Server) -> None:
        """Record that ``new`` took this (stopped) server's place and tell the subscribers."""
        self._replaced_by = new
        self._tell(StateChange("", None, REPLACED, None))

    def _capture_native_logs(self, event: ServableState) -> None:
        """EventBus subscriber: hold the native log capture open while a version loads or
        unloads (TensorFlow's C++ lines then go to ``logs()``, not to a cell)."""
        if event.state in (ManagerState.LOADING, ManagerState.UNLOADING):
            if event.id not in self._loading:
                self._loading.add(event.id)
                logs.native_capture().begin()
        elif event.state in (ManagerState.AVAILABLE, ManagerState.END):
            if event.id in self._loading:
                self._loading.discard(event.id)
                logs.native_capture().end()

    # -- the notebook facade: version choices --------------------------------------------------
    def set_version_policy(self, name: str, policy: PolicyChoice) -> None:
        """Serve ``"latest"`` (``"latest N"``), ``"all"``, or the listed versions of ``name``
        (a run-time override of its version policy; None restores the configured one). The
        manager loads and unloads versions itself; REST and gRPC status follow at once."""
        config = self._config(name)
        self.core.set_version_policy(name, policy_for(policy, config.version_policy))

    def load_version(self, name: str, version: int) -> None:
        """Serve ``version`` too (the versions served now, plus this one)."""
        config = self._config(name)
        on_disk = versions_on_disk(config.base_path)
        if int(version) not in on_disk:
            raise ValueError(f"Version {version} of {name} is not on disk (found: "
                             f"{', '.join(map(str, on_disk)) or 'none'} in {config.base_path})")
        self.core.set_version_policy(
            name, after_load(self.core.effective_policy(name), on_disk, version))

    def unload_version(self, name: str, version: int) -> None:
        """Stop serving ``version`` (the others stay); refuses the last one served."""
        config = self._config(name)
        on_disk = versions_on_disk(config.base_path)
        self.core.set_version_policy(
            name, after_unload(self.core.effective_policy(name), on_disk, version))

    def set_label(self, name: str, label: str, version: int | None) -> None:
        """Point version label ``label`` of ``name`` at ``version`` (None removes it), as a
        config reload does: moving a label to a version that is not AVAILABLE is TF Serving's
        FAILED_PRECONDITION. A watched config file, when it changes, sets labels again."""
        self._config(name)
        models = self.core.models()
        models[name] = with_label(models[name], label, version)
        self.core.reload_config(list(models.values()))

    def _config(self, name: str) -> Any:
        config = self.core.models().get(name)
        if config is None:
            raise teaching.unknown_model(
                not_found(f"Could not find any versions of model {name}"), name,
                sorted(self.core.models()))
        return config

    # -- the notebook facade: signatures and client code ---------------------------------------
    def signatures(self, name: str, version: int | None = None) -> dict[str, SignatureInfo]:
        """Every signature of the version serving ``name`` (or ``version``), by key."""
        return {key: describe.signature_info(sig)
                for key, sig in self._servable_signatures(name, version).items()}

    def signature(self, name: str, signature_name: str = "serving_default",
                  version: int | None = None) -> SignatureInfo:
        """One signature's inputs and outputs (dtype, shape) from the version serving ``name``
        (or ``version``); a teaching error for an unknown model or signature key."""
        signatures = self._servable_signatures(name, version)
        key = signature_name or "serving_default"
        if key not in signatures:
            raise teaching.PredictError(
                StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.',
                f"Model '{name}' has the signatures: {', '.join(sorted(signatures))}.")
        return describe.signature_info(signatures[key])

    def _servable_signatures(self, name: str, version: int | None) -> Mapping[str, Signature]:
        self._check_running()
        self._check_model(name)
        with frames_freed_on_interrupt():  # clears _signatures_of's frame, which held a handle
            return _signatures_of(self.core, name, version)

    def example_inputs(self, name: str, signature_name: str = "serving_default"
                       ) -> dict[str, Any]:
        """A valid example value per input of the signature (nested lists with a batch of
        one, bytes for strings): ``srv.predict(name, srv.example_inputs(name))`` runs."""
        from nbserve import snippets

        return snippets.example_inputs(self.signature(name, signature_name))

    def example_request(self, name: str, protocol: str = "rest", language: str = "curl",
                        signature_name: str = "serving_default", inputs: Any = None,
                        version: int | None = None, label: str | None = None) -> str:
        """Client code that runs as-is against this server: ``protocol`` ``"rest"`` (language
        ``"curl"`` or ``"python"``: requests) or ``"grpc"`` (``"python"``), for the
        signature's inputs (``inputs``: alias -> value, else ``example_inputs``), with the
        auth header when the server needs a token."""
        from nbserve import snippets

        return snippets.example_request(
            self.signature(name, signature_name, version), model=name, protocol=protocol,
            language=language, rest_url=self.rest_url, grpc_target=self.grpc_target,
            inputs=inputs, token=self.options.auth_token, version=version, label=label)

    # -- the notebook facade: inference --------------------------------------------------------
    def predict(self, name: str, inputs: Any, version: int | None = None,
                label: str | None = None, signature_name: str | None = None
                ) -> dict[str, np.ndarray]:
        """In-process predict through the same service as REST/gRPC.

        ``inputs`` is a mapping alias -> array-like, or one array-like for a single-input
        signature. Returns alias -> numpy array. Errors are ServingErrors with TF Serving's
        code and text; in the notebook they teach (``teaching.PredictError``: the signature's
        expectation next to what was sent, the models served, how to start a stopped server).
        """
        self._check_running()
        spec = ModelSpec(name, version, label, signature_name or "")
        with frames_freed_on_interrupt():  # an interrupt never leaves a handle held
            try:
                outputs: dict[str, np.ndarray] = self.service.predict(
                    spec, PythonPredictCodec(inputs))
                return outputs
            except ServingError as err:
                raise self._teach(err, spec, inputs) from None

    def _teach(self, err: ServingError, spec: ModelSpec, inputs: Any) -> ServingError:
        if isinstance(err, teaching.PredictError):
            return err
        if spec.name not in self.core.models():
            return teaching.unknown_model(err, spec.name, sorted(self.core.models()))
        try:
            with self.core.handle(spec.name, spec.version, spec.label) as handle:
                signature = handle.servable.signatures.get(spec.signature_key)
        except ServingError:  # nothing to serve that request: say what the model is doing
            return teaching.PredictError.wrap(err, self._waiting(spec))
        return teaching.explain_inputs(
            err, describe.signature_info(signature) if signature else None, inputs)

    def _waiting(self, spec: ModelSpec) -> str:
        model = describe.model_status(self.core, spec.name)
        states = ", ".join(f"{v.version} {v.state}" for v in model.versions) or "none yet"
        what = (f"version {spec.version}" if spec.version is not None else
                f"label '{spec.label}'" if spec.label is not None else "version")
        text = f"Model '{spec.name}' has no AVAILABLE {what} (versions: {states})."
        return f"{text} {model.hint}" if model.hint else text

    def traffic(self, name: str) -> tuple[VersionTraffic, ...]:
        """Predict / classify / regress traffic to ``name`` over the last minute, per version
        (highest first): every AVAILABLE version, and any other with requests in that time."""
        from nbserve.traffic import idle

        self._check_model(name)
        recorded = {t.version: t for t in self.service.traffic.snapshot(name)}
        for version in self.core.manager.available_versions(name):
            recorded.setdefault(version, idle(version))
        return tuple(recorded[v] for v in sorted(recorded, reverse=True))

    def compare(self, name: str, inputs: Any, versions: Sequence[int] | None = None,
                signature_name: str | None = None) -> Comparison:
        """Send the same ``inputs`` to two versions (default: the two highest AVAILABLE) and
        return both answers with the largest absolute difference per output: the check before
        moving a ``stable`` label."""
        self._check_model(name)
        if versions is None:
            available = self.core.manager.available_versions(name)
            if len(available) < 2:
                raise ValueError(f"Model {name} has {len(available)} AVAILABLE version(s); "
                                 "serve two to compare (srv.set_version_policy(name, 'all'))")
            versions = (available[1], available[0])
        a, b = (int(v) for v in versions)
        outputs = {v: self.predict(name, inputs, version=v, signature_name=signature_name)
                   for v in (a, b)}
        diffs = {alias: max_abs_diff(outputs[a][alias], outputs[b].get(alias))
                 for alias in outputs[a]}
        return Comparison((a, b), outputs, diffs)

    # -- this process's servers ----------------------------------------------------------------
    @staticmethod
    def running_servers() -> list[Server]:
        """The servers started in this process and not stopped yet, oldest first."""
        return registry.running_servers()

    @staticmethod
    def stop_all(grace: float = 1.0) -> int:
        """Stop every running server of this process; returns how many were stopped."""
        return registry.stop_all(grace)


def _signatures_of(core: ServerCore, name: str, version: int | None) -> dict[str, Signature]:
    """The signatures of the version serving ``name`` (or ``version``), read under a handle."""
    with core.handle(name, version) as handle:
        return dict(handle.servable.signatures)


def max_abs_diff(a: Any, b: Any) -> float:
    """The largest absolute difference of two answers: 0.0 when equal, ``inf`` when their
    shapes differ or non-numeric values differ."""
    if b is None:
        return float("inf")
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        return float("inf")
    if x.size == 0:
        return 0.0
    if x.dtype.kind in "biuf" and y.dtype.kind in "biuf":
        return float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
    return 0.0 if np.array_equal(x, y) else float("inf")


def _server_view() -> Callable[[Server], Any] | None:
    """``nbserve.display.server_view`` when the display provides it."""
    from nbserve import display

    view = getattr(display, "server_view", None)
    return view if callable(view) else None


def server_snapshot(server: Server, status: Mapping[str, Any] | None = None
                    ) -> dict[str, Any]:
    """A plain-dict picture of ``server`` for ``nbserve.display`` (pure renderers)."""
    return {"state": server._state, "rest_url": server.rest_url,
            "grpc_target": server.grpc_target, "device": server.options.device,
            "models": dict(status if status is not None else {})}
