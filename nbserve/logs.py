"""A ring buffer of nbserve's recent log lines, for ``%tfserve logs`` and ``Server.logs()``.

In a notebook, log records written by background threads (loads, the file-system poll, request
handlers) would otherwise land on the kernel's stderr and show up in whatever cell happens to be
running. ``install()`` attaches a ``RingBufferHandler`` to the ``nbserve`` logger and (by default)
stops it from propagating to the root logger, so the lines are kept here and shown on request.

TensorFlow's own Python logger (``tensorflow``) logs INFO lines such as "Restoring parameters
from ..." while nbserve loads a version on its background threads; ``install`` adds a filter to that
logger that diverts records emitted on nbserve's threads (named ``nbserve-*``) into the ring buffer
too, while the user's own TensorFlow logging in a cell is untouched.

TensorFlow's C++ runtime writes to file descriptor 2 directly; in a Jupyter kernel ``install``
also turns on ``native_capture()``, which nbserve's server holds open around its own work (start,
loads, unloads, requests) so those lines land in the buffer too (``[native] ...``).

Thread-safe: records may be emitted from any thread; ``recent_lines`` may be called from any
thread. ``install`` is idempotent.
"""

from __future__ import annotations

import collections
import logging
import threading

DEFAULT_CAPACITY = 1000
LOGGER_NAME = "nbserve"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_install_lock = threading.Lock()
_handler: RingBufferHandler | None = None


class RingBufferHandler(logging.Handler):
    """Keeps the last ``capacity`` formatted records (oldest dropped first)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._lines: collections.deque[str] = collections.deque(maxlen=capacity)
        self.setFormatter(logging.Formatter(_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._lines.append(line)

    def lines(self, count: int | None = None) -> list[str]:
        """The last ``count`` lines (all when None), oldest first."""
        with self.lock:  # type: ignore[union-attr]
            lines = list(self._lines)
        return lines if count is None else lines[-count:] if count > 0 else []

    def clear(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._lines.clear()

    def add_line(self, line: str) -> None:
        """Keep an already formatted line (e.g. a native TensorFlow log line)."""
        with self.lock:  # type: ignore[union-attr]
            self._lines.append(line)


class _DivertBackgroundRecords(logging.Filter):
    """A logger filter: records logged on an ``nbserve-*`` thread go to the ring buffer only."""

    def __init__(self, handler: RingBufferHandler) -> None:
        super().__init__()
        self.handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        if record.threadName and record.threadName.startswith("nbserve"):
            if record.levelno >= self.handler.level:
                self.handler.handle(record)
            return False
        return True


_FOREIGN_LOGGERS = ("tensorflow", "absl")
_divert: _DivertBackgroundRecords | None = None


def install(capacity: int = DEFAULT_CAPACITY, level: int = logging.INFO,
            propagate: bool = False, capture_native: bool | None = None) -> RingBufferHandler:
    """Attach the process's ring buffer to the ``nbserve`` logger (once) and return it.

    ``level`` becomes the ``nbserve`` logger's level if it has none; ``propagate=False`` keeps
    nbserve's records off the root logger's handlers (the notebook's stderr).
    ``capture_native`` turns on ``native_capture()`` (TensorFlow's C++ lines written while the
    server works go to the buffer); None: on in a Jupyter kernel only.
    """
    global _handler, _divert
    with _install_lock:
        logger = logging.getLogger(LOGGER_NAME)
        if _handler is None:  # native_capture() may have made the buffer already
            _handler = RingBufferHandler(capacity)
        if _divert is None:
            _divert = _DivertBackgroundRecords(_handler)
        for name in _FOREIGN_LOGGERS:
            foreign = logging.getLogger(name)
            if _divert not in foreign.filters:
                foreign.addFilter(_divert)
        if _handler not in logger.handlers:
            logger.addHandler(_handler)
        if logger.level == logging.NOTSET:
            logger.setLevel(level)
        logger.propagate = propagate
        handler = _handler
    if capture_native if capture_native is not None else in_kernel():
        native_capture().enable()
    return handler


def uninstall() -> None:
    """Detach the ring buffer and let ``nbserve`` records propagate again (the lines are kept)."""
    with _install_lock:
        logger = logging.getLogger(LOGGER_NAME)
        if _handler is not None and _handler in logger.handlers:
            logger.removeHandler(_handler)
        if _divert is not None:
            for name in _FOREIGN_LOGGERS:
                logging.getLogger(name).removeFilter(_divert)
        logger.propagate = True


def recent_lines(count: int | None = None) -> list[str]:
    """The buffer's last ``count`` lines, oldest first; empty when it was never installed."""
    handler = _handler
    return handler.lines(count) if handler is not None else []


# -- TensorFlow's native (C++) log lines ----------------------------------------------------------
class NativeStderrCapture:
    """Diverts file descriptor 2 into the ring buffer while server-side work runs.

    TensorFlow's C++ runtime writes its log lines (``I0000 ... mlir_graph_optimization_pass.cc``,
    ``local_rendezvous.cc``...) straight to fd 2, which a Jupyter kernel forwards to whichever
    cell runs, whatever thread wrote them. While at least one ``begin()`` is open (a load, an
    unload, a request, a server start), fd 2 points at a pipe whose lines go to the ring buffer;
    when the last one ends, fd 2 is restored, so TensorFlow output caused by the user's own cells
    stays theirs. (Native output a user's cell writes while the server is busy lands in the
    buffer too: fd 2 is per process.)

    Enabled only in a Jupyter kernel (``install()`` decides); elsewhere ``begin``/``end`` are
    no-ops. Thread-safe; ``begin``/``end`` cost a lock and, at the edges, two ``dup2`` calls.
    """

    def __init__(self, handler: RingBufferHandler) -> None:
        self._handler = handler
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: int | None = None
        self._pipe_w: int | None = None
        self.enabled = False

    def enable(self) -> None:
        """Start the pipe and its reader thread (idempotent)."""
        with self._lock:
            if self.enabled:
                return
            import os

            read_fd, self._pipe_w = os.pipe()
            thread = threading.Thread(target=self._read, args=(read_fd,), daemon=True,
                                      name="nbserve-native-log")
            thread.start()
            self.enabled = True

    def begin(self) -> None:
        if not self.enabled:
            return
        import os

        with self._lock:
            self._depth += 1
            if self._depth == 1 and self._pipe_w is not None:
                try:
                    self._saved = os.dup(2)
                    os.dup2(self._pipe_w, 2)
                except OSError:
                    self._saved = None

    def end(self) -> None:
        if not self.enabled:
            return
        import os

        with self._lock:
            self._depth = max(0, self._depth - 1)
            if self._depth == 0 and self._saved is not None:
                try:
                    os.dup2(self._saved, 2)
                    os.close(self._saved)
                except OSError:
                    pass
                self._saved = None

    def __enter__(self) -> NativeStderrCapture:
        self.begin()
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()

    def _read(self, read_fd: int) -> None:
        import os

        pending = b""
        while True:
            try:
                chunk = os.read(read_fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                text = raw.decode("utf-8", "replace").rstrip()
                if text:
                    self._handler.add_line(f"[native] {text}")


_native: NativeStderrCapture | None = None


def native_capture() -> NativeStderrCapture:
    """The process's fd-2 capture (see ``NativeStderrCapture``); a no-op until a Jupyter kernel
    calls ``install()``. Use as ``with logs.native_capture(): ...``."""
    global _native
    with _install_lock:
        if _native is None:
            global _handler
            if _handler is None:
                _handler = RingBufferHandler(DEFAULT_CAPACITY)
            _native = NativeStderrCapture(_handler)
        return _native


def in_kernel() -> bool:
    """True when this process is a running Jupyter (ipykernel) kernel."""
    import sys

    if "ipykernel" not in sys.modules:
        return False
    try:
        from ipykernel.kernelapp import IPKernelApp

        return bool(IPKernelApp.initialized())
    except Exception:  # noqa: BLE001 - any doubt: not a kernel
        return False
