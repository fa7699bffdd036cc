"""Ref-counted servable handles and the gate that lets an unload wait for them ("quiescing").

Every request takes one ``ServableHandle`` for as long as it uses a servable and releases it at
the end (``with manager.handle(request) as h: ...``). A version's ``HandleGate`` counts the handles
outstanding; to unload, the manager first removes the version from the serving map, then closes
the gate (no new handle can be taken) and waits until the count drops to zero.

Hot path: taking and releasing a handle costs one lock round-trip each, nothing more.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from nbserve.core.ids import ServableId


class HandleGate:
    """Counts outstanding handles of one version; ``close()`` stops new ones. Thread-safe.

    Invariant: once ``close()`` has returned, ``acquire`` fails, so after ``wait_quiesced``
    returns True no handle of this version exists.

    Safe against asynchronous exceptions (a kernel interrupt lands between any two Python calls
    of the main thread): the count and the handle's link to the gate change together, under the
    lock's C-level ``with`` and with no Python call in between, so an interrupt leaves either
    both or neither changed; a handle it leaves unreleased is released when it is collected.
    """

    __slots__ = ("_closed", "_cond", "_count", "_lock")

    def __init__(self) -> None:
        # RLock: a leaked handle's __del__ may run (from GC) on a thread already inside the gate.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._count = 0
        self._closed = False

    def acquire(self, id: ServableId, servable: Any) -> ServableHandle | None:
        """A new counted handle on ``servable``, or None once closed."""
        handle = ServableHandle(id, servable, None)
        with self._lock:
            if self._closed:
                return None
            self._count += 1
            handle._gate = self
        return handle

    def _release_handle(self, handle: ServableHandle) -> None:
        with self._lock:
            if handle._gate is not self:
                return  # released already (by its owner, or by __del__ on another thread)
            handle._gate = None
            self._count -= 1
            last = self._count == 0 and self._closed
        if last:  # after the count: an interrupt here delays the waiter, never fools it
            with self._cond:
                self._cond.notify_all()

    def close(self) -> None:
        """Refuse new handles from now on (existing ones stay valid until released)."""
        with self._lock:
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def count(self) -> int:
        """Handles outstanding right now."""
        return self._count

    def wait_quiesced(self, timeout: float | None = None) -> bool:
        """Wait until closed and no handle is outstanding; False on timeout (None: forever,
        checking again every second, so a notification an interrupt cut short only delays)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not (self._closed and self._count == 0):
                left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True


class ServableHandle:
    """One reference to a loaded servable, valid until ``release()`` (or the end of ``with``).

    While any handle of a version is outstanding, the manager will not unload it. Hold a handle for
    one request only. ``release()`` is idempotent; a handle that is garbage-collected unreleased is
    released then. Not meant to be shared between threads.
    """

    __slots__ = ("_gate", "id", "servable")

    def __init__(self, id: ServableId, servable: Any, gate: HandleGate | None) -> None:
        """A handle counted by ``gate`` (``HandleGate.acquire`` makes them)."""
        self.id = id
        self.servable = servable
        self._gate: HandleGate | None = gate

    def release(self) -> None:
        gate = getattr(self, "_gate", None)  # unset: interrupted in __init__, never counted
        if gate is not None:
            gate._release_handle(self)

    @property
    def released(self) -> bool:
        return self._gate is None

    def __enter__(self) -> ServableHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"ServableHandle({self.id}{', released' if self._gate is None else ''})"
