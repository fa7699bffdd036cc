"""Worker processes: ``nbserve-server --num_workers=N`` (issue 12), N servers sharing the ports.

One process serves from one GIL; a CPU-bound REST/gRPC workload on a multi-core host goes
further with N processes, each the whole server (Source -> Manager -> servables, on the same
model folders and config), bound to the same REST and gRPC ports with SO_REUSEPORT so the kernel
spreads the connections over them (Linux only: elsewhere SO_REUSEPORT does not balance).

The parent (``Supervisor``) serves nothing. It
- checks every port is free (a plain bind, so another program, or another nbserve whose workers
  also use SO_REUSEPORT, is refused with the usual "Port N ... is already in use" error), then
  keeps holding it (bound, never listening, SO_REUSEPORT set) until it exits, so only its own
  workers can join the port; a port 0 (``ServerOptions``: a free one) is chosen here, once;
- writes the workers' ``ServerOptions`` (``reuse_port=True``; the auth token resolved once, so
  ``--auth_token=auto`` gives every worker the same one; ``tensorflow_intra_op_parallelism`` 0
  becomes CPUs / N so N workers do not each size TensorFlow's pool for every core) to a private
  directory (0700, created by ``tempfile.mkdtemp`` and removed on exit) and starts the workers
  (``python -m nbserve`` with ``NBSERVE_WORKER_DIR``/``NBSERVE_WORKER_INDEX`` set);
- prints the ready lines once, when every worker has opened its ports;
- on SIGTERM/SIGINT forwards SIGTERM to every worker, waits up to the grace plus
  ``DRAIN_MARGIN_SECONDS`` (unloading, joins), then kills what is left; exit 0 when every worker
  drained cleanly, else 1;
- a worker that exits before every worker was ready fails the start (the others are stopped; the
  exit code is the worker's, its error already on stderr). One that dies later is reported on
  stderr and restarted (it serves again once its models load; the others keep serving), unless it
  already died ``MAX_RESTARTS`` times within ``RESTART_WINDOW_SECONDS``: then the whole server
  drains and exits 1 (a crash loop is a bug to see, not to hide).

A worker (``WorkerRole``, run by ``nbserve.cli``) writes its metrics snapshot to the directory
every ``metrics.SNAPSHOT_INTERVAL_SECONDS`` and merges the others' into its exposition
(``ServingMetrics.share``); it shares config reloads with the others through the directory
(``nbserve.shared_config``: a reload any worker receives applies to all, and a restarted worker
starts from the latest one); it writes a ready file when its ports are open; it stops gracefully
when the parent disappears. Only worker 0 writes a discovery record to the Jupyter runtime
directory (the others' go to the private directory), so the lab sidebar lists the server once.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from nbserve.core.server_core import ServerCore
from nbserve.errors import ServingError
from nbserve.metrics import SNAPSHOT_INTERVAL_SECONDS, ServingMetrics
from nbserve.options import ServerOptions
from nbserve.shared_config import SharedConfig, latest_models, write_atomically

log = logging.getLogger("nbserve.workers")

DIR_ENV = "NBSERVE_WORKER_DIR"  # the private directory; set only in a worker's environment
INDEX_ENV = "NBSERVE_WORKER_INDEX"  # 0 .. N-1
PARENT_ENV = "NBSERVE_WORKER_PARENT"  # the supervisor's pid
COUNT_ENV = "NBSERVE_WORKER_COUNT"  # N
OPTIONS_FILE = "options.pickle"
MAX_RESTARTS = 3  # deaths of one worker within RESTART_WINDOW_SECONDS before giving up
RESTART_WINDOW_SECONDS = 60.0
DRAIN_MARGIN_SECONDS = 15.0  # beyond the grace: unloading and joins, before SIGKILL
POLL_SECONDS = 0.1  # the supervisor's loop: signals, deaths, ready files


def check_supported(num_workers: int, options: ServerOptions) -> str | None:
    """Why ``num_workers`` workers cannot serve ``options`` (a flag error), or None."""
    if num_workers < 1:
        return f"invalid value for --num_workers: {num_workers} (must be at least 1)"
    if num_workers == 1:
        return None
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        return "--num_workers > 1 needs Linux (SO_REUSEPORT spreads connections over workers)"
    if options.grpc_socket_path:
        return ("--grpc_socket_path cannot be shared by several workers (SO_REUSEPORT does not "
                "apply to unix sockets); use --port, or --num_workers=1")
    if options.rest_api_port is None and options.grpc_port is None:
        return "--num_workers > 1 needs --rest_api_port or --port"
    return None


def worker_options(options: ServerOptions, num_workers: int) -> ServerOptions:
    """What each of ``num_workers`` workers runs: ``reuse_port`` on, and TensorFlow's intra-op
    pool (when left to TensorFlow, 0) sized CPUs / N, at least 1."""
    intra = options.tensorflow_intra_op_parallelism
    if intra == 0:
        intra = max(1, (os.cpu_count() or 1) // num_workers)
    return options.replace(reuse_port=True, tensorflow_intra_op_parallelism=intra)


class PortGuard:
    """Holds a server's TCP ports for its workers: each is bound once without SO_REUSEPORT
    (refused if anyone holds it), then SO_REUSEPORT is set and the socket stays bound, never
    listening (it gets no connections), until ``close``."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._sockets: list[socket.socket] = []

    def hold(self, port: int, flag: str) -> int:
        """Hold ``port`` (0: a free one); returns the port. Raises ``ServerStartError``."""
        from nbserve.server import ServerStartError

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise ServerStartError(
                    f"Port {port} on {self.host} is already in use by another process; stop it, "
                    f"pick another port, or pass {flag} 0 to let nbserve pick a free one."
                ) from None
            raise ServerStartError(f"Cannot listen on {self.host}:{port}: {exc.strerror}"
                                   ) from None
        self._sockets.append(sock)
        return int(sock.getsockname()[1])

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    ready: bool = False


class Supervisor:
    """The parent of N workers (see the module docstring). ``run`` once; not thread-safe."""

    def __init__(self, options: ServerOptions, num_workers: int, *,
                 max_restarts: int = MAX_RESTARTS,
                 restart_window_seconds: float = RESTART_WINDOW_SECONDS) -> None:
        if num_workers < 2:
            raise ValueError("a Supervisor runs 2 or more workers")
        self.options = options
        self.num_workers = num_workers
        self.max_restarts = max_restarts
        self.restart_window_seconds = restart_window_seconds
        self.directory = ""
        self._workers: list[_Worker] = []
        self._deaths: dict[int, list[float]] = {}
        self._guard = PortGuard(options.host)

    def run(self, stop_requested: Callable[[], bool]) -> int:
        """Start the workers, supervise them until ``stop_requested()`` (polled; a signal
        handler sets it) or a start-up failure or a crash loop, drain them; the exit code:
        0 after a clean drain (or a stop before the ports opened), 1 otherwise."""
        from nbserve.server import ServerStartError

        try:
            options = self._prepare()
        except (ServerStartError, ServingError, OSError) as exc:
            print(f"Failed to start server. Error: {exc}", file=sys.stderr)
            self._cleanup()
            return 1
        try:
            for index in range(self.num_workers):
                self._workers.append(self._spawn(index))
            code = self._supervise(options, stop_requested)
            drained = self._drain()
            return code if code else (0 if drained else 1)
        finally:
            self._cleanup()

    # -- start ---------------------------------------------------------------------------------
    def _prepare(self) -> ServerOptions:
        self.directory = tempfile.mkdtemp(prefix="nbserve-workers-")  # 0700
        options = worker_options(self.options, self.num_workers)
        if options.grpc_port is not None:
            options = options.replace(grpc_port=self._guard.hold(options.grpc_port, "--port"))
        if options.rest_api_port is not None:
            options = options.replace(
                rest_api_port=self._guard.hold(options.rest_api_port, "--rest_api_port"))
        path = os.path.join(self.directory, OPTIONS_FILE)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            pickle.dump(options, f)
        return options

    def _spawn(self, index: int) -> _Worker:
        env = dict(os.environ, **{DIR_ENV: self.directory, INDEX_ENV: str(index),
                                  PARENT_ENV: str(os.getpid()),
                                  COUNT_ENV: str(self.num_workers)})
        if index:  # one discovery record per server: worker 0's
            env["JUPYTER_RUNTIME_DIR"] = os.path.join(self.directory, "runtime")
        try:
            os.remove(_ready_path(self.directory, index))
        except FileNotFoundError:
            pass
        proc = subprocess.Popen([sys.executable, "-m", "nbserve"], env=env,
                                stdin=subprocess.DEVNULL)
        log.info("Worker %d started (pid %d)", index, proc.pid)
        return _Worker(index, proc)

    # -- supervise -----------------------------------------------------------------------------
    def _supervise(self, options: ServerOptions, stop_requested: Callable[[], bool]) -> int:
        """Until a stop: 0 for a requested stop, else the exit code to end with."""
        announced = False
        while not stop_requested():
            for worker in self._workers:
                if not worker.ready and _read_ready(self.directory, worker):
                    worker.ready = True
                    if announced:
                        log.info("Worker %d (pid %d) is serving again", worker.index,
                                 worker.proc.pid)
                code = worker.proc.poll()
                if code is None:
                    continue
                if not announced:  # a start-up failure (its error is on stderr already)
                    if code == 0:  # it was stopped before its ports opened: stop everything
                        log.info("Worker %d stopped before the ports opened", worker.index)
                        return 0
                    log.error("Worker %d (pid %d) failed to start (%s); stopping the server",
                              worker.index, worker.proc.pid, _describe_exit(code))
                    return code if code > 0 else 1
                if stop_requested():  # a Ctrl-C reached the workers too: no restart
                    return 0
                if not self._restart(worker, code):
                    return 1
            if not announced and all(w.ready for w in self._workers):
                announced = True
                self._announce(options)
            time.sleep(POLL_SECONDS)
        return 0

    def _restart(self, worker: _Worker, code: int) -> bool:
        """Replace a worker that died after the start; False when it is crash-looping."""
        now = time.monotonic()
        deaths = [t for t in self._deaths.get(worker.index, [])
                  if now - t < self.restart_window_seconds]
        deaths.append(now)
        self._deaths[worker.index] = deaths
        what = f"Worker {worker.index} (pid {worker.proc.pid}) exited unexpectedly " \
               f"({_describe_exit(code)})"
        if len(deaths) > self.max_restarts:
            log.error("%s; it died %d times within %g s: stopping the server", what,
                      len(deaths), self.restart_window_seconds)
            return False
        log.error("%s; restarting it (%d of %d restarts within %g s)", what, len(deaths),
                  self.max_restarts, self.restart_window_seconds)
        self._workers[self._workers.index(worker)] = self._spawn(worker.index)
        return True

    def _announce(self, options: ServerOptions) -> None:
        from nbserve.endpoints import grpc_target, rest_url

        pids = ", ".join(str(w.proc.pid) for w in self._workers)
        log.info("%d workers serving (pids %s)", self.num_workers, pids)
        if options.rest_api_port:
            log.info("Exporting HTTP/REST API at:%s ...",
                     rest_url(options.host, options.rest_api_port))
        if options.grpc_port:
            log.info("Running gRPC ModelServer at %s ...",
                     grpc_target(options.host, options.grpc_port))

    # -- stop ----------------------------------------------------------------------------------
    def _drain(self) -> bool:
        """SIGTERM every worker, wait up to the grace + margin, SIGKILL the rest; True when
        every worker exited 0."""
        running = [w for w in self._workers if w.proc.poll() is None]
        log.info("Shutting down %d workers: in-flight requests get up to %g s", len(running),
                 self.options.shutdown_grace_seconds)
        for worker in running:
            _signal(worker.proc, signal.SIGTERM)
        deadline = time.monotonic() + self.options.shutdown_grace_seconds + DRAIN_MARGIN_SECONDS
        clean = True
        for worker in running:
            try:
                code = worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("Worker %d (pid %d) did not stop in time; killing it", worker.index,
                          worker.proc.pid)
                _signal(worker.proc, signal.SIGKILL)
                worker.proc.wait()
                clean = False
                continue
            if code not in (0, -signal.SIGTERM):  # -SIGTERM: stopped before its handlers
                log.error("Worker %d (pid %d) stopped with %s", worker.index, worker.proc.pid,
                          _describe_exit(code))
                clean = False
        return clean

    def _cleanup(self) -> None:
        for worker in self._workers:  # only after a failure in run() itself
            if worker.proc.poll() is None:
                _signal(worker.proc, signal.SIGKILL)
                worker.proc.wait()
        self._guard.close()
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def _signal(proc: subprocess.Popen[bytes], signum: int) -> None:
    try:
        proc.send_signal(signum)
    except ProcessLookupError:
        pass


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _ready_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"ready-{index}.json")


def _read_ready(directory: str, worker: _Worker) -> bool:
    try:
        with open(_ready_path(directory, worker.index)) as f:
            return bool(json.load(f)["pid"] == worker.proc.pid)
    except (OSError, ValueError, KeyError, TypeError):
        return False


# -- the worker's side (run by nbserve.cli) -------------------------------------------------------
@dataclass(frozen=True)
class WorkerRole:
    """This process is worker ``index`` of the ``count`` of a ``Supervisor`` whose private
    folder is ``directory``."""

    index: int
    directory: str
    parent_pid: int
    count: int = 1

    @staticmethod
    def from_env() -> WorkerRole | None:
        """The role the parent gave this process (its environment), or None."""
        directory = os.environ.get(DIR_ENV)
        if not directory:
            return None
        return WorkerRole(int(os.environ.get(INDEX_ENV, "0")), directory,
                          int(os.environ.get(PARENT_ENV, "0")) or os.getppid(),
                          int(os.environ.get(COUNT_ENV, "1")))

    def options(self) -> tuple[ServerOptions, int]:
        """The options the parent wrote for its workers, with the models of the latest config
        reload when a worker received one (``nbserve.shared_config``: a restarted worker
        serves what the others serve), and that reload's generation (0: none)."""
        with open(os.path.join(self.directory, OPTIONS_FILE), "rb") as f:
            options = pickle.load(f)
        if not isinstance(options, ServerOptions):
            raise TypeError(f"{OPTIONS_FILE} holds {type(options).__name__}")
        reloaded = latest_models(self.directory)
        if reloaded is None:
            return options, 0
        return options.replace(models=reloaded[1]), reloaded[0]

    def share_config(self, core: ServerCore, generation: int) -> SharedConfig:
        """Config reloads for every worker, this one serving ``generation`` (from
        ``options``): what ``HandleReloadConfigRequest`` calls here; ``start`` it once this
        worker serves, ``close`` it when it stops."""
        return SharedConfig(core, self.directory, self.index, self.count, generation=generation)

    def orphaned(self) -> bool:
        """True when the parent is gone (this worker should stop)."""
        return os.getppid() != self.parent_pid

    def remove_directory_if_orphaned(self) -> None:
        """After this worker stopped: remove the private folder when the parent is gone (it
        was SIGKILLed and cannot); every orphaned worker tries, the first one wins."""
        if self.orphaned():
            shutil.rmtree(self.directory, ignore_errors=True)

    def ready(self, rest_port: int | None, grpc_port: int | None) -> None:
        """Tell the parent this worker's ports are open."""
        write_atomically(_ready_path(self.directory, self.index), json.dumps(
            {"pid": os.getpid(), "rest_port": rest_port, "grpc_port": grpc_port}).encode())

    def share_metrics(self, metrics: ServingMetrics) -> MetricsWriter:
        """Merge the other workers' metrics into ``metrics`` and start writing its snapshot."""
        metrics.share(self.directory)
        return MetricsWriter(metrics, self.directory)


class MetricsWriter:
    """A daemon thread writing ``metrics``' snapshot every ``interval`` seconds; ``close``
    stops it and writes a last one (the counts of a drained worker stay in the total)."""

    def __init__(self, metrics: ServingMetrics, directory: str,
                 interval: float = SNAPSHOT_INTERVAL_SECONDS) -> None:
        self._metrics = metrics
        self._directory = directory
        self._interval = interval
        self._stop = threading.Event()
        self._write()
        self._thread = threading.Thread(target=self._run, name="nbserve-metrics-writer",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._write()

    def _write(self) -> None:
        try:
            self._metrics.write_snapshot(self._directory)
        except OSError as exc:  # the folder went away with the parent: nothing to share
            log.debug("metrics snapshot not written: %s", exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._write()


def log_format(role: WorkerRole | None) -> str:
    """The CLI's log line format; a worker's lines name it."""
    worker = f" [worker {role.index}]" if role is not None else ""
    return f"%(asctime)s %(levelname).1s %(name)s]{worker} %(message)s"
