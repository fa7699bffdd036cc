"""grpcio's own method handlers on the h2 front end: health, reflection, the profiler.

``grpc_h2`` serves TF Serving's unary API on its fast path. The rest of what the grpcio front end
registers is ready-made grpcio code: ``grpc.health.v1.Health`` (``Check`` and the streaming
``Watch``), server reflection (a bidirectional stream) and ``tensorflow.ProfilerService``
(``transport.profiler``). Those handlers run here unchanged, as grpcio's sync server would run
them, with three parts:

- ``HandlerRegistry``: a stand-in for the ``grpc.Server`` that ``add_*_to_server`` helpers and
  ``enable_server_reflection`` register with; ``lookup(path)`` finds the method handler;
- ``HandlerContext``: the part of ``grpc.ServicerContext`` such handlers use (``is_active``,
  ``add_callback``, ``abort``, ``set_code``, ``time_remaining``, ``invocation_metadata``...);
  ``end()`` marks the call over (finished, cancelled by the client, or the server stopping) and
  runs the callbacks, which is how a health ``Watch`` learns to stop;
- ``run_handler``: calls the handler with the request (or the iterator of the request stream,
  ``RequestStream``) on a thread of its own pool, and hands each serialized response and the
  final status to the connection's callbacks.

These calls are rare and may block for long (a ``Watch`` lasts as long as its client wants), so
they never use the predict pool: ``grpc_h2`` gives them a small pool of their own and refuses
calls beyond it with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import grpc

from nbserve.errors import StatusCode

log = logging.getLogger("nbserve.grpc")

__all__ = ["HandlerContext", "HandlerRegistry", "RequestStream", "run_handler"]


class _CallDetails(NamedTuple):  # grpc.HandlerCallDetails
    method: str
    invocation_metadata: tuple[Any, ...]


class _Metadatum(NamedTuple):
    key: str
    value: str


class HandlerRegistry:
    """Collects grpcio method handlers as a ``grpc.Server`` would (registration side only)."""

    def __init__(self) -> None:
        self._generic: list[Any] = []
        self._registered: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        for name, handler in handlers.items():
            self._registered[f"/{service}/{name}"] = handler

    def lookup(self, path: str) -> Any:
        """The ``grpc.RpcMethodHandler`` for ``path`` (``/package.Service/Method``), or None."""
        handler = self._registered.get(path)
        if handler is not None:
            return handler
        details = _CallDetails(path, ())
        for generic in self._generic:
            handler = generic.service(details)
            if handler is not None:
                return handler
        return None


class _Abort(Exception):
    """Raised by ``HandlerContext.abort`` to end the handler, as grpcio's own abort does."""


class HandlerContext:
    """The ``grpc.ServicerContext`` methods a sync grpcio handler uses. Thread-safe."""

    def __init__(self, metadata: list[tuple[str, str]], timeout: float | None,
                 peer: str = "") -> None:
        self._metadata = tuple(_Metadatum(k, v) for k, v in metadata if not k.startswith(":"))
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._peer = peer
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self._active = True
        self.status_code: StatusCode | None = None
        self.status_details = ""

    # -- what handlers call ----------------------------------------------------------------------
    def is_active(self) -> bool:
        return self._active

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def add_callback(self, callback: Callable[[], None]) -> bool:
        with self._lock:
            if not self._active:
                return False
            self._callbacks.append(callback)
            return True

    def cancel(self) -> None:
        self.end()

    def invocation_metadata(self) -> tuple[Any, ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.set_code(code)
        self.set_details(details)
        raise _Abort(details)

    def abort_with_status(self, status: Any) -> None:
        self.abort(status.code, status.details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.status_code = StatusCode(code.value[0])

    def set_details(self, details: str) -> None:
        self.status_details = details or ""

    def send_initial_metadata(self, metadata: Any) -> None:
        """Accepted and dropped: this front end sends no custom metadata."""

    def set_trailing_metadata(self, metadata: Any) -> None:
        """Accepted and dropped: this front end sends no custom metadata."""

    # -- the front end's side --------------------------------------------------------------------
    def end(self) -> None:
        """The call is over: ``is_active`` turns False and the callbacks run (once)."""
        with self._lock:
            if not self._active:
                return
            self._active = False
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # one handler's callback never stops the others
                log.exception("a gRPC call's callback failed")


class RequestStream:
    """The request messages of a client-streaming call, as the handler's iterator: the front end
    ``put``s each message (already parsed) and ``close``s at the end of the stream or when the
    call ends; the iterator then stops."""

    _END = object()

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def put(self, message: Any) -> None:
        self._queue.put(message)

    def close(self) -> None:
        self._queue.put(self._END)

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is self._END:
                self._queue.put(self._END)  # later readers stop too
                return
            yield item


def run_handler(handler: Any, request: Any, context: HandlerContext,
                send: Callable[[bytes], None],
                finish: Callable[[StatusCode, str], None]) -> None:
    """Run ``handler`` (a ``grpc.RpcMethodHandler``) on ``request`` (a message, or a
    ``RequestStream``); ``send`` each serialized response, then ``finish`` with the status.
    Blocks for the whole call; never raises."""
    serialize = handler.response_serializer or (lambda message: message)
    try:
        if handler.response_streaming:
            method = handler.stream_stream if handler.request_streaming else handler.unary_stream
            for response in method(request, context):
                if not context.is_active():
                    break
                send(serialize(response))
        else:
            method = handler.stream_unary if handler.request_streaming else handler.unary_unary
            response = method(request, context)
            if context.status_code in (None, StatusCode.OK) and response is not None:
                send(serialize(response))
    except _Abort:
        pass
    except Exception as exc:  # grpcio's words for a handler that raised
        log.exception("gRPC handler failed")
        context.status_code = StatusCode.UNKNOWN
        context.status_details = f"Exception calling application: {exc}"
    finally:
        context.end()
    finish(context.status_code or StatusCode.OK, context.status_details)
