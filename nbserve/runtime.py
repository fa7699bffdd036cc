"""IoThread: one asyncio loop in one daemon thread for both transports.

The loop is embedded, never owned by the caller's thread: a Jupyter kernel already runs its own
loop on the main thread, so nbserve's sockets live on ``nbserve-io``. Everything else talks to the
loop through ``call`` (thread-safe, bounded by a timeout). Signals are not touched here.

The loop is uvloop's where it is installed (``event_loop="auto"``, the default; measured in
bench/RESULTS.md), else asyncio's; ``event_loop="asyncio"`` forces asyncio's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """A new loop of ``kind``: "auto" (uvloop when importable, else asyncio), "uvloop" (an
    ImportError when it is missing) or "asyncio". Raises ValueError for anything else."""
    if kind not in EVENT_LOOPS:
        raise ValueError(f"event_loop must be one of {', '.join(EVENT_LOOPS)}, not {kind!r}")
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class IoThread:
    """Start once, ``call`` coroutines from any thread, ``stop`` once (idempotent)."""

    def __init__(self, name: str = "nbserve-io", event_loop: str = "auto") -> None:
        # The loop is made by start(): one made here would leak its self-pipe sockets
        # (ResourceWarning) whenever a server is built but never started.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kind = event_loop
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = threading.Event()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop; exists once ``start()`` has been called."""
        if self._loop is None:
            raise RuntimeError("IoThread.start() has not been called")
        return self._loop

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self._close_stray_transports()
        self.loop.close()

    def _close_stray_transports(self) -> None:
        """Close connections the loop still holds once the servers are gone.

        A client that connects while a listener is closing can be accepted after aiohttp has
        taken its list of connections to shut down; closing the loop would leave that socket
        open until garbage collection (a ResourceWarning, a leaked fd in a long kernel).
        Selector loops keep their transports in ``_transports`` (CPython's, not public API).
        """
        transports = list(getattr(self.loop, "_transports", {}).values())
        for transport in transports:  # abort, even when closing: no flush can happen now
            transport.abort()
        if transports:
            self.loop.run_until_complete(asyncio.sleep(0))

    def start(self) -> None:
        self._loop = new_event_loop(self._kind)
        self._thread.start()
        self._started.wait(10)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run ``coro`` on the loop and wait for its result (never call from the loop itself)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)

