"""Server: the synchronous, thread-safe facade used by notebooks, the CLI and tests.

``Server(options).start()`` starts the lifecycle (manager + source threads), opens gRPC and then
REST at once on ``nbserve-io``, and returns while the versions are still LOADING;
``wait_until_available`` blocks until one is AVAILABLE. With ``open_ports_after_initial_load`` (the
CLI's default, TF Serving's order) it opens them only once every initial model is AVAILABLE or END.

Ports: ``None`` disables a transport, ``0`` picks a free port (the Python socket meaning; the CLI
maps TF Serving's ``--rest_api_port=0`` = "REST off" to ``None`` before it gets here). A port held
by another process is a ``ServerStartError`` that names the port and suggests port 0.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Mapping

import numpy as np

from nbserve.codec.python_predict import PythonPredictCodec
from nbserve.core.events import ManagerState
from nbserve.core.load_timeout import with_load_timeout
from nbserve.core.loader import LoaderFactory
from nbserve.core.server_core import ServerCore
from nbserve.errors import ServingError, StatusCode
from nbserve.metrics import ServingMetrics
from nbserve.options import ServerOptions, core_options
from nbserve.runtime import IoThread
from nbserve.service import ModelSpec, ServingService, state_entry
from nbserve.sources.filesystem import FileSystemStoragePathSource
from nbserve.transport.admission import InflightLimit
from nbserve.transport.auth import exposure_warning, probes_open

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


def bind_socket(host: str, port: int, flag: str) -> socket.socket:
    """A listening TCP socket; a clear error naming the port (and the flag) when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


class Server:
    """One model server: lifecycle core, service, transports. Use ``start()``/``stop()`` or
    ``with Server(options) as srv:``."""

    def __init__(self, options: ServerOptions, *, loader_factory: LoaderFactory | None = None
                 ) -> None:
        self.options = options
        self.core = ServerCore(core_options(options), with_load_timeout(
            loader_factory or saved_model_loader_factory(options), options.load_timeout_seconds),
            source_factory=FileSystemStoragePathSource.from_options)
        from nbserve.batching import scheduler_for

        self.batcher = scheduler_for(options, self.core)  # None unless options.enable_batching
        self.service = ServingService(self.core, run_hook=self.batcher.run if self.batcher else None)
        threads = options.rest_api_num_threads or 4 * (os.cpu_count() or 1)
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="nbserve-predict")
        self._io = IoThread()
        self._runners: list[Any] = []
        self._grpc_servers: list[Any] = []
        self._lock = threading.Lock()
        self._state = "new"
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self.metrics = ServingMetrics()
        self.core.event_bus.subscribe(self.metrics.observe_state)
        self.config_error: ServingError | None = None  # the last config-file reload error
        self._stopping = threading.Event()
        self._config_thread: threading.Thread | None = None
        self._inflight = InflightLimit(options.max_inflight_requests)  # shared by REST and gRPC
        self._grpc_socket: Any = None  # issue 14: unix_socket.SocketFile for --grpc_socket_path

    # -- start / stop --------------------------------------------------------------------------
    def start(self) -> "Server":
        with self._lock:
            if self._state != "new":
                raise ServerStartError(f"Server already {self._state}")
            self._state = "starting"
        warn_if_exposed(self.options)
        try:
            # issue 14: gRPC, then REST, as TF Serving (after the initial load on the CLI)
            if self.options.rest_api_port:
                self._bind(self.options.rest_api_port, "--rest_api_port").close()  # free now?
            if self.options.grpc_port:
                self._bind(self.options.grpc_port, "--port").close()  # a clear error if taken
            self._claim_grpc_socket()
            grpc_on = self.options.grpc_port is not None or self._grpc_socket is not None
            self._io.start()
            if grpc_on:  # its protos import TensorFlow: before the
                import nbserve.transport.grpc_api  # noqa: F401  loads do (a racing import fails)
            self.core.start()
            if self.options.open_ports_after_initial_load:
                from nbserve.initial_load import wait_for_initial_models

                wait_for_initial_models(self.core)
            if grpc_on:
                self.grpc_port = self._io.call(self._start_grpc(self.options.grpc_port)) or None
            rest_sock = self._bind(self.options.rest_api_port, "--rest_api_port")
            if rest_sock is not None:
                self.rest_port = rest_sock.getsockname()[1]
                self._io.call(self._start_rest(rest_sock))
            self._start_config_watch()
        except BaseException:
            self._shutdown(grace=0)
            raise
        self._state = "running"
        _register(self)
        try:  # the JupyterLab sidebar's record; discovery never breaks serving
            from nbserve import discovery

            discovery.register(self)
        except Exception:  # noqa: BLE001
            log.debug("discovery record not written", exc_info=True)
        log.info("nbserve serving: REST %s, gRPC %s", self.rest_url or "off",
                 self.grpc_target or "off")
        return self

    def _bind(self, port: int | None, flag: str) -> socket.socket | None:
        if port is None:
            return None
        return bind_socket(self.options.host, port, flag)

    async def _start_rest(self, sock: socket.socket) -> None:
        from aiohttp import web

        from nbserve.transport.rest_api import RestApi

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
                      open_probes=probes_open(self.options.host), limiter=self._inflight)
        runner = web.AppRunner(api.app, access_log=None, handle_signals=False,
                               shutdown_timeout=self.options.shutdown_grace_seconds)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runners.append(runner)

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
        from nbserve.transport.grpc_api import start_grpc_server

        try:
            server, bound = await start_grpc_server(
                self.service, self._executor, self.options.host, port,
                max_message_bytes=self.options.grpc_max_message_bytes,
                reload=self.reload_config_proto,
                observer=lambda m, a, c, s: self.metrics.observe_request(m, a, c, s, "GRPC"),
                auth_token=self.options.auth_token, limiter=self._inflight,
                unix_socket=self._grpc_socket.path if self._grpc_socket else "",
                profiler=self.options.enable_profiler)
        except OSError as exc:
            if "unix:" in str(exc):
                raise ServerStartError(f"Cannot listen on --grpc_socket_path: {exc}") from None
            raise ServerStartError(
                f"Port {port} on {self.options.host} is already in use by another process; stop "
                "it, pick another port, or pass --port 0 to let nbserve pick a free one.") from None
        self._grpc_servers.append(server)
        if self._grpc_socket is not None:
            self._grpc_socket.bound()
        return int(bound)

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
            self._config_thread = threading.Thread(target=self._watch_config_file, args=(poll,),
                                                   name="nbserve-config", daemon=True)
            self._config_thread.start()

    def _watch_config_file(self, poll: float) -> None:
        """Re-read the model config file every ``poll`` s; a bad file is reported in
        ``config_error`` and the log, and the running config stays in force."""
        from nbserve.config_file import load_model_server_config

        path = self.options.model_config_file
        while not self._stopping.wait(poll):
            try:
                models = tuple(load_model_server_config(path) or ())
                current = tuple(self.core.models().values())
                if models != current:
                    self.core.reload_config(models)
                    log.info("Reloaded model config from %s: %s", path, [m.name for m in models])
                self.config_error = None
            except ServingError as err:
                if err != self.config_error:
                    log.error("Model config %s not applied; the running config stays: %s",
                              path, err.message)
                self.config_error = err
            except Exception:
                log.exception("Reading model config %s failed", path)

    def reload_config_proto(self, config: Any) -> None:
        """``HandleReloadConfigRequest``: replace the model config with a ModelServerConfig proto;
        blocks until new models are AVAILABLE (or raises with their errors)."""
        from nbserve.config_file import model_configs_from_proto

        self.core.reload_config(model_configs_from_proto(config), wait_timeout=300.0)

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (bounded by ``grace``, default
        ``options.shutdown_grace_seconds``), unload every version, free the ports, join the
        threads. Idempotent and safe from any thread but the IO loop's."""
        if grace is None:
            grace = self.options.shutdown_grace_seconds
        with self._lock:
            if self._state in ("stopped", "new"):
                self._state = "stopped"
                return
            self._state = "stopping"
        self._shutdown(grace)

    def _shutdown(self, grace: float) -> None:
        self._stopping.set()
        try:
            from nbserve import discovery

            discovery.unregister(self)
        except Exception:  # noqa: BLE001
            log.debug("discovery record not removed", exc_info=True)
        if self._config_thread is not None:
            self._config_thread.join(5)
        if self._grpc_socket is not None:  # issue 14: gRPC unlinks the path when it stops
            self._grpc_socket.before_stop()
        if self._io.running:
            try:
                self._io.call(self._stop_transports(grace), timeout=grace + 10)
            except Exception:
                log.exception("stopping the transports failed")
            self._runners.clear()
            self._grpc_servers.clear()
            self._io.stop()
        if self._grpc_socket is not None:  # issue 14: the socket file goes with the server
            self._grpc_socket.after_stop()
        if self.batcher is not None:
            self.batcher.close()  # runs the queued batches now, so no request waits a timeout out
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.core.stop()
        self._state = "stopped"
        _unregister(self)

    async def _stop_transports(self, grace: float) -> None:
        """REST and gRPC together: both stop accepting at once, then in-flight requests get up
        to ``grace`` seconds to finish."""
        import asyncio

        for runner in self._runners:
            if hasattr(runner, "_shutdown_timeout"):  # aiohttp's AppRunner(shutdown_timeout=)
                runner._shutdown_timeout = grace
        results = await asyncio.gather(
            *(runner.cleanup() for runner in reversed(self._runners)),
            *(server.stop(grace) for server in self._grpc_servers), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("stopping a transport failed: %r", result)

    def __enter__(self) -> "Server":
        return self.start() if self._state == "new" else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._state == "running"

    # -- endpoints -----------------------------------------------------------------------------
    def _url_host(self) -> str:
        host = self.options.host
        if host in ("0.0.0.0", "::", ""):
            return "localhost"
        return f"[{host}]" if ":" in host else host

    @property
    def rest_url(self) -> str | None:
        """``http://host:port`` of the REST API, or None when REST is off."""
        return f"http://{self._url_host()}:{self.rest_port}" if self.rest_port else None

    @property
    def auth_token(self) -> str:
        """The bearer token REST and gRPC clients must send ("" when auth is off)."""
        return self.options.auth_token

    @property
    def grpc_target(self) -> str | None:
        """``host:port`` for ``grpc.insecure_channel``, or None when gRPC is off."""
        return f"{self._url_host()}:{self.grpc_port}" if self.grpc_port else None

    @property
    def grpc_socket_path(self) -> str | None:
        """The absolute unix socket path gRPC also listens on (``grpc.insecure_channel(
        "unix:" + path)``), or None without ``grpc_socket_path``."""
        return self._grpc_socket.path if self._grpc_socket is not None else None

    # -- Python API ----------------------------------------------------------------------------
    def status(self, name: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Model name -> its versions' status entries (version descending), as REST reports them,
        plus ``device`` where known."""
        if name:
            return {name: [self._status_entry(s) for s in self.core.version_states(name)]}
        result: dict[str, list[dict[str, Any]]] = {}
        for n in self.core.known_models():  # a configured model with no version yet: []
            states = self.core.monitor.states(n)
            result[n] = [self._status_entry(states[v]) for v in sorted(states, reverse=True)]
        return result

    def _status_entry(self, state: Any) -> dict[str, Any]:
        """``state_entry`` plus ``device`` / ``load_seconds`` from the version's AVAILABLE event
        (the loader's ``detail()``), when known."""
        entry = state_entry(state)
        detail = dict(state.detail or {})
        if "device" not in detail:
            for event in reversed(self.core.monitor.history(state.id.name)):
                if event.id == state.id and event.detail and "device" in event.detail:
                    detail = {**event.detail, **detail}
                    break
        if detail.get("device"):
            entry["device"] = detail["device"]
        if detail.get("kind"):  # issue 14: saved_model or tflite
            entry["kind"] = detail["kind"]
        seconds = detail.get("load_seconds", state.load_seconds)
        if seconds is not None:
            entry["load_seconds"] = seconds
        return entry

    def logs(self, lines: int | None = None) -> list[str]:
        """The most recent ``nbserve`` log lines kept in this process's ring buffer (see
        ``nbserve.logs``), oldest first; empty until the buffer is installed."""
        from nbserve.logs import recent_lines

        return recent_lines(lines)

    def __repr__(self) -> str:
        return (f"<nbserve.Server {self._state}: REST {self.rest_url or 'off'}, "
                f"gRPC {self.grpc_target or 'off'}>")

    def _repr_html_(self) -> str:
        """Endpoints, the status table and ready-to-paste curl / Python snippets."""
        from nbserve.display import render_server_html

        try:
            status = self.status() if self._state != "new" else {}
        except ServingError:
            status = {}
        return render_server_html(server_snapshot(self, status))

    def wait_until_available(self, name: str, version: int | None = None,
                             timeout: float = 60.0) -> int:
        """Block until ``name`` (or that version) is AVAILABLE; return the version.

        Raises ServingError with the version's load error if it ends in END first, and
        TimeoutError after ``timeout`` seconds.
        """
        result: dict[str, Any] = {}

        def ready(monitor) -> bool:
            states = monitor.states(name)
            wanted = [states[version]] if version is not None and version in states else (
                list(states.values()) if version is None else [])
            for state in sorted(wanted, key=lambda s: -s.id.version):
                if state.state == ManagerState.AVAILABLE:
                    result["version"] = state.id.version
                    return True
            if version is not None and wanted and wanted[0].state == ManagerState.END:
                result["error"] = wanted[0].error or ServingError(
                    StatusCode.NOT_FOUND, f"Version {version} of model {name} was unloaded")
                return True
            if version is None and states and not self.core.manager.available_versions(name):
                latest = states[max(states)]
                if latest.state == ManagerState.END and latest.error is not None and all(
                        s.state == ManagerState.END for s in states.values()):
                    result["error"] = latest.error
                    return True
            return False

        if not self.core.monitor.wait_until(ready, timeout):
            raise TimeoutError(f"Model {name}{'' if version is None else f' version {version}'} "
                               f"not AVAILABLE after {timeout} s")
        if "error" in result:
            raise result["error"]
        return result["version"]

    def predict(self, name: str, inputs: Any, version: int | None = None,
                label: str | None = None, signature_name: str | None = None
                ) -> dict[str, np.ndarray]:
        """In-process predict through the same service as REST/gRPC.

        ``inputs`` is a mapping alias -> array-like, or one array-like for a single-input
        signature. Returns alias -> numpy array.
        """
        spec = ModelSpec(name, version, label, signature_name or "")
        return self.service.predict(spec, PythonPredictCodec(inputs))


def server_snapshot(server: "Server", status: Mapping[str, Any] | None = None
                    ) -> dict[str, Any]:
    """A plain-dict picture of ``server`` for ``nbserve.display`` (pure renderers)."""
    return {"state": server._state, "rest_url": server.rest_url,
            "grpc_target": server.grpc_target, "device": server.options.device,
            "models": dict(status if status is not None else {})}


# -- the process's running servers (a notebook kernel's registry) ---------------------------------
_registry_lock = threading.Lock()
_running: list[Server] = []
_atexit_registered = False


def _register(server: Server) -> None:
    global _atexit_registered
    with _registry_lock:
        _running.append(server)
        if not _atexit_registered:
            atexit.register(stop_all)  # kernel shutdown / restart frees the ports
            _atexit_registered = True


def _unregister(server: Server) -> None:
    with _registry_lock:
        if server in _running:
            _running.remove(server)


def running_servers() -> list[Server]:
    """The servers started in this process and not stopped yet, oldest first."""
    with _registry_lock:
        return list(_running)


def stop_all(grace: float = 1.0) -> int:
    """Stop every running server of this process; returns how many were stopped."""
    servers = running_servers()
    for server in servers:
        try:
            server.stop(grace)
        except Exception:  # noqa: BLE001 - keep stopping the others
            log.exception("stopping %r failed", server)
    return len(servers)


def stop_servers_on_ports(ports: "Iterable[int | None]", grace: float = 1.0) -> list[Server]:
    """Stop this process's running servers that hold any of the (non-zero) ``ports``, so that a
    re-run notebook cell can bind them again; returns the stopped servers."""
    wanted = {p for p in ports if p}
    stopped = [s for s in running_servers() if wanted & {s.rest_port, s.grpc_port}]
    for server in stopped:
        server.stop(grace)
    return stopped
