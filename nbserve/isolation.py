"""An isolated server: the model server runs in a child process, driven through the facade.

(A little over our ~500-line mark: both ends of the one parent/child channel live here, so the
message shapes are defined and read in one place.)

``nbserve.serve(..., isolate=True)`` and ``%tfserve start PATH --isolate`` return an
``IsolatedServer``. It offers the ``Server`` API of the kernel side (``models``, ``status``,
``wait_for``, ``subscribe``, ``predict``, ``signature``, ``stop`` ...): each call is forwarded to a
real ``nbserve.server.Server`` in a child Python process over a private socket pair, and its
result (or its ServingError, same code and text) comes back. Whatever kills the child (out of
memory, a crashing op, ``kill -9``) leaves the kernel and its variables alive: the parent sees the
channel close, records how the child ended (``death``: exit code or signal, its last log lines),
fails pending calls with UNAVAILABLE, tells subscribers (``StateChange`` state ``DIED``), and
``restart()`` starts a new child on the same ports.

Contracts:
- The child never outlives the kernel: it runs in its own session (a kernel interrupt, SIGINT to
  the kernel's process group, does not reach it) and stops itself when the channel reaches EOF,
  which the OS guarantees when the kernel process ends for any reason, SIGKILL included.
- ``start()`` raises the child's start error (``ServerStartError`` or ``ServingError``, the same
  one-line text as in-process) and leaves nothing running; interrupted, it kills the child.
- Calls are thread-safe and may overlap (the child serves each on a pool thread).
- Costs (bench/isolation.py): a child's start-up (a fresh Python importing TensorFlow) and a
  round trip per in-process call (pickled numpy arrays over a local socket). REST and gRPC
  clients talk to the child's ports directly and pay nothing extra.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing.connection import Connection
from typing import Any

from nbserve import registry
from nbserve.endpoints import Endpoints
from nbserve.errors import ServingError, StatusCode
from nbserve.options import ServerOptions

log = logging.getLogger("nbserve.isolation")

START_TIMEOUT_SECONDS = 180.0
LAST_LINES = 20
_KERNEL_ID_ENV = "NBSERVE_KERNEL_ID"
# The child imports this module by name (not as __main__), so pickled classes resolve alike.
_CHILD_ENTRY = ("import sys; from nbserve.isolation import child_main; "
                "sys.exit(child_main(int(sys.argv[1])))")


@dataclasses.dataclass(frozen=True)
class ChildExit:
    """How an isolated server's child process ended."""

    returncode: int | None
    description: str  # "killed by signal 9 (SIGKILL)", "exited with code 3"
    last_lines: tuple[str, ...]

    def __str__(self) -> str:
        tail = "\n".join(self.last_lines[-5:])
        return f"the isolated server's process {self.description}" + (
            f"; its last log lines:\n{tail}" if tail else "")


def describe_returncode(code: int | None) -> str:
    """``Popen.returncode`` in words."""
    if code is None:
        return "is still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by signal {-code} ({name})"
    return f"exited with code {code}"


# -- errors across the channel ----------------------------------------------------------------

def _pack_error(exc: BaseException) -> tuple[str, Any, str]:
    if isinstance(exc, ServingError):
        return ("serving", int(exc.code), exc.message)
    kind = type(exc).__name__
    return ("other", kind, str(exc) or kind)


def _unpack_error(packed: tuple[str, Any, str]) -> BaseException:
    kind, code, message = packed
    if kind == "serving":
        return ServingError(StatusCode(code), message)
    builtin = {"KeyError": KeyError, "ValueError": ValueError, "TypeError": TypeError,
               "TimeoutError": TimeoutError, "FileNotFoundError": FileNotFoundError,
               "NotADirectoryError": NotADirectoryError, "AttributeError": AttributeError}
    if code == "ServerStartError":
        from nbserve.server import ServerStartError

        return ServerStartError(message)
    return builtin.get(code, RuntimeError)(message)


# -- the parent (kernel) side -----------------------------------------------------------------

class IsolatedServer(Endpoints):
    """A model server in a child process with the kernel-side ``Server`` API (see module doc).

    Attributes and methods that are not defined here are forwarded to the child's ``Server``
    (a method becomes a remote call; a plain attribute is read remotely).
    """

    isolated = True

    def __init__(self, options: ServerOptions, *,
                 start_timeout: float = START_TIMEOUT_SECONDS) -> None:
        self.options = options
        self.start_timeout = start_timeout
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self.death: ChildExit | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._log_path: str | None = None
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future[Any]] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._subscribers: list[Callable[[Any], None]] = []
        self._state = "new"
        self._reader: threading.Thread | None = None
        self.source = options.model_config_file or ", ".join(m.base_path for m in options.models)
        self.started_at = datetime.datetime.now()
        self._replaced_by: Any = None

    # -- lifetime --------------------------------------------------------------------------
    def start(self) -> IsolatedServer:
        """Start the child and wait until its ports are open; raise its start error."""
        if self._state not in ("new", "died", "stopped"):
            raise RuntimeError(f"isolated server already {self._state}")
        parent_sock, child_sock = socket.socketpair()
        fd, self._log_path = tempfile.mkstemp(prefix="nbserve-isolated-", suffix=".log")
        env = dict(os.environ)
        kernel_id = _kernel_id()
        if kernel_id:
            env[_KERNEL_ID_ENV] = kernel_id
        self._state = "starting"
        self.death = None
        self.started_at = datetime.datetime.now()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD_ENTRY, str(child_sock.fileno())],
                pass_fds=[child_sock.fileno()], stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                start_new_session=True, env=env, close_fds=True)
        finally:
            os.close(fd)
            child_sock.close()
        self._conn = Connection(parent_sock.detach())
        try:
            self._conn.send(("start", self.options))
            self._await_ready()
        except BaseException:
            self._kill()
            self._state = "stopped"
            raise
        self._state = "running"
        self._reader = threading.Thread(target=self._read_loop, name="nbserve-isolation",
                                        daemon=True)
        self._reader.start()
        registry.register(self)  # type: ignore[arg-type]  # the kernel's registry, duck-typed
        return self

    def _await_ready(self) -> None:
        assert self._conn is not None
        deadline = time.monotonic() + self.start_timeout
        while not self._conn.poll(0.1):
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"The isolated server's process {self._describe_exit()} "
                                   f"before it started: {self._tail_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"The isolated server did not start in {self.start_timeout} s")
        try:
            message = self._conn.recv()
        except (EOFError, OSError):
            self._wait_exit(5.0)
            raise RuntimeError(f"The isolated server's process {self._describe_exit()} before "
                               f"it started: {self._tail_text()}") from None
        if message[0] == "failed":
            self._wait_exit(10.0)
            raise _unpack_error(message[1])
        info = message[1]
        self.rest_port, self.grpc_port = info["rest_port"], info["grpc_port"]

    def stop(self, grace: float | None = None) -> None:
        """Stop the child's server (in-flight requests get ``grace`` s) and end the child.
        Idempotent; a dead child is just cleaned up."""
        if self._state in ("new", "stopped"):
            self._state = "stopped"
            return
        grace = self.options.shutdown_grace_seconds if grace is None else grace
        was_running = self._state == "running"
        self._state = "stopping"
        if was_running:
            try:
                with self._send_lock:
                    assert self._conn is not None
                    self._conn.send(("stop", grace))
            except (OSError, ValueError):
                pass
            self._wait_exit(grace + 15.0)
        self._kill()
        self._state = "stopped"
        registry.unregister(self)  # type: ignore[arg-type]
        if was_running:
            self._publish(_state_change("", None, "STOPPED", None))

    def restart(self) -> IsolatedServer:
        """Stop what is left of the child and start a new one on the same ports."""
        self.stop(1.0)
        grpc = self.grpc_port if self.options.grpc_port is not None else None
        rest = self.rest_port if self.options.rest_api_port is not None else None
        self.options = dataclasses.replace(self.options, grpc_port=grpc, rest_api_port=rest)
        self._state = "new"
        return self.start()

    def _wait_exit(self, timeout: float) -> None:
        if self._proc is None:
            return
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        if self._conn is not None:
            self._conn.close()
        self._fail_pending(ServingError(StatusCode.UNAVAILABLE, "The isolated server stopped"))

    @property
    def running(self) -> bool:
        return self._state == "running"

    @property
    def replaced_by(self) -> Any:
        """The server that replaced this one (a re-run start cell), or None."""
        return self._replaced_by

    def _mark_replaced(self, new: Any) -> None:
        self._replaced_by = new
        self._publish(_state_change("", None, "REPLACED", None))

    @property
    def pid(self) -> int | None:
        """The child's process id (None before start)."""
        return self._proc.pid if self._proc is not None else None

    # -- the channel -----------------------------------------------------------------------
    def _read_loop(self) -> None:
        conn = self._conn
        assert conn is not None
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "reply":
                _, call_id, ok, value = message
                with self._pending_lock:
                    future = self._pending.pop(call_id, None)
                if future is not None and not future.done():
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(_unpack_error(value))
            elif kind == "event":
                self._publish(message[1])
        if self._state in ("running", "starting"):
            self._on_death()

    def _on_death(self) -> None:
        self._wait_exit(5.0)
        code = self._proc.returncode if self._proc is not None else None
        self.death = ChildExit(code, describe_returncode(code), tuple(self._tail()))
        self._state = "died"
        log.error("The isolated server died: %s", self.death)
        self._fail_pending(self._died_error())
        self._publish(_state_change("", None, "DIED", str(self.death)))

    def _died_error(self) -> ServingError:
        return ServingError(StatusCode.UNAVAILABLE,
                            f"The isolated server is not running: {self.death}. "
                            "Call .restart() to start it again on the same ports.")

    def _fail_pending(self, error: BaseException) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Run ``Server.<method>(*args, **kwargs)`` in the child; its result or its error."""
        if self._state != "running" or self._conn is None:
            if self._state == "died":
                raise self._died_error()
            raise ServingError(StatusCode.UNAVAILABLE,
                               f"The isolated server is {self._state}; start it with "
                               "%tfserve start ... --isolate or .restart()")
        call_id = next(self._ids)
        future: Future[Any] = Future()
        with self._pending_lock:
            self._pending[call_id] = future
        try:
            with self._send_lock:
                self._conn.send(("call", call_id, method, args, kwargs))
        except (OSError, ValueError):
            with self._pending_lock:
                self._pending.pop(call_id, None)
            raise self._died_error() if self.death else ServingError(
                StatusCode.UNAVAILABLE, "The isolated server's channel is closed") from None
        try:
            return future.result(timeout)
        except FutureTimeout:
            raise TimeoutError(f"{method} got no answer from the isolated server in "
                               f"{timeout} s") from None
        finally:
            with self._pending_lock:
                self._pending.pop(call_id, None)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        kind, value = self.call("__describe__", name)
        if kind == "method":
            def remote(*args: Any, **kwargs: Any) -> Any:
                return self.call(name, *args, **kwargs)

            remote.__name__ = name
            return remote
        return value

    # -- the facade pieces kept on this side -----------------------------------------------
    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every state event of the child's models (and a
        ``DIED`` event if the child dies); returns the function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _publish(self, event: Any) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("an isolated-server subscriber failed")

    def logs(self, lines: int | None = None) -> list[str]:
        """The child's recent nbserve log lines (from its log file once it has died)."""
        if self._state == "running":
            result: list[str] = self.call("logs", lines)
            return result
        tail = self._tail(lines or 1000)
        return tail

    def _tail(self, count: int = LAST_LINES) -> list[str]:
        if not self._log_path:
            return []
        try:
            with open(self._log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line.strip()][-count:]

    def _tail_text(self) -> str:
        return " | ".join(self._tail(5)) or "(no output)"

    def _describe_exit(self) -> str:
        return describe_returncode(self._proc.returncode if self._proc else None)

    def __repr__(self) -> str:
        where = f"pid {self.pid}" if self.pid else "no process"
        return (f"<nbserve.IsolatedServer {self._state} ({where}): REST {self.rest_url or 'off'}, "
                f"gRPC {self.grpc_target or 'off'}>")

    def __enter__(self) -> IsolatedServer:
        return self.start() if self._state == "new" else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _state_change(model: str, version: int | None, state: str, error: str | None) -> Any:
    from nbserve.status import StateChange

    return StateChange(model, version, state, error)


def _kernel_id() -> str | None:
    try:
        from nbserve.discovery import _kernel_id as kernel_id
    except ImportError:  # pragma: no cover
        return None
    return kernel_id()


# -- the child side -----------------------------------------------------------------------------

def child_main(fd: int) -> int:
    """The child process: start a Server from the options the parent sends, then serve calls
    until the parent says stop or the channel closes (the parent died)."""
    from concurrent.futures import ThreadPoolExecutor

    conn = Connection(fd)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from nbserve import logs

    logs.install(propagate=True)  # the ring buffer for logs() and the log file for a post-mortem
    try:
        _, options = conn.recv()
        from nbserve.server import Server

        server = Server(options).start()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, then exit
        conn.send(("failed", _pack_error(exc)))
        return 1
    send_lock = threading.Lock()

    def send(message: Any) -> None:
        try:
            with send_lock:
                conn.send(message)
        except (OSError, ValueError):
            pass  # the parent is gone; the read loop ends on EOF

    _forward_events(server, send)
    send(("ready", {"rest_port": server.rest_port, "grpc_port": server.grpc_port,
                    "pid": os.getpid()}))
    pool = ThreadPoolExecutor(16, thread_name_prefix="nbserve-isolation")
    grace = 1.0
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            log.warning("The kernel went away: stopping the isolated server")
            break
        if message[0] == "stop":
            grace = float(message[1])
            break
        if message[0] == "call":
            pool.submit(_serve_call, server, message, send)
    server.stop(grace)
    pool.shutdown(wait=False, cancel_futures=True)
    return 0


def _forward_events(server: Any, send: Callable[[Any], None]) -> None:
    """Every ``StateChange`` of the child's server goes to the parent as it happens."""
    server.subscribe(lambda event: send(("event", event)))


def _serve_call(server: Any, message: tuple[Any, ...], send: Callable[[Any], None]) -> None:
    _, call_id, method, args, kwargs = message
    try:
        if method == "__describe__":
            value = getattr(server, args[0])
            result: Any = ("method", None) if callable(value) else ("value", value)
        else:
            if method.startswith("_"):
                raise AttributeError(f"{method} is not part of the Server API")
            result = getattr(server, method)(*args, **kwargs)
        send(("reply", call_id, True, result))
    except BaseException as exc:  # noqa: BLE001 - every error goes back to the caller
        send(("reply", call_id, False, _pack_error(exc)))

