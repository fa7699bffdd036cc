"""Ref-counted servable handles and the gate that lets an unload wait for them ("quiescing").

Every request takes one ``ServableHandle`` for as long as it uses a servable and releases it at
the end (``with manager.handle(request) as h: ...``). A version's ``HandleGate`` counts the handles
outstanding; to unload, the manager first removes the version from the serving map, then closes
the gate (no new handle can be taken) and waits until the count drops to zero.

Hot path: taking and releasing a handle costs one lock round-trip each, nothing more.
"""

from __future__ import annotations

import threading
from typing import Any

from nbserve.core.ids import ServableId


class HandleGate:
    """Counts outstanding handles of one version; ``close()`` stops new ones. Thread-safe.

    Invariant: once ``close()`` has returned, ``try_acquire`` fails, so after ``wait_quiesced``
    returns True no handle of this version exists.
    """

    __slots__ = ("_closed", "_cond", "_count")

    def __init__(self) -> None:
        # RLock: a leaked handle's __del__ may run (from GC) on a thread already inside the gate.
        self._cond = threading.Condition(threading.RLock())
        self._count = 0
        self._closed = False

    def try_acquire(self) -> bool:
        with self._cond:
            if self._closed:
                return False
            self._count += 1
            return True

    def release(self) -> None:
        with self._cond:
            self._count -= 1
            if self._count == 0 and self._closed:
                self._cond.notify_all()

    def close(self) -> None:
        """Refuse new handles from now on (existing ones stay valid until released)."""
        with self._cond:
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def count(self) -> int:
        """Handles outstanding right now."""
        return self._count

    def wait_quiesced(self, timeout: float | None = None) -> bool:
        """Wait until closed and no handle is outstanding; False on timeout (None: forever)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._closed and self._count == 0, timeout)


class ServableHandle:
    """One reference to a loaded servable, valid until ``release()`` (or the end of ``with``).

    While any handle of a version is outstanding, the manager will not unload it. Hold a handle for
    one request only. ``release()`` is idempotent; a handle that is garbage-collected unreleased is
    released then. Not meant to be shared between threads.
    """

    __slots__ = ("_gate", "id", "servable")

    def __init__(self, id: ServableId, servable: Any, gate: HandleGate) -> None:
        self.id = id
        self.servable = servable
        self._gate: HandleGate | None = gate

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.release()

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
