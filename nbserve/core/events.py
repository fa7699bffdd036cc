"""Published servable states, the event bus and the state monitor.

(``core/servable_state.h``, ``util/event_bus.h``, ``core/servable_state_monitor.h``.)

Every version the manager manages publishes a monotonic sequence of ``ServableState`` events:
START -> LOADING -> AVAILABLE -> UNLOADING -> END, where any prefix may be cut short by END (a load
failure, a cancelled load, a source error). The ``StateMonitor`` keeps the latest state of every
version ever seen (END included, as TF Serving does) and answers status queries and waits.
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from nbserve.core.ids import ServableId
from nbserve.errors import ServingError

log = logging.getLogger(__name__)


class ManagerState(enum.IntEnum):
    """Published states; the numbers and names are ``ModelVersionStatus.State``'s."""

    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass(frozen=True)
class ServableState:
    """One published state of one version.

    ``error`` is the version's health: None (OK) unless something failed (source, loader, manager).
    ``timestamp`` is wall-clock seconds (``time.time()``). ``load_seconds`` is set on AVAILABLE: how
    long the successful load took, retries included. ``detail`` carries optional extra facts for
    UIs (e.g. ``load_attempts``, or what the loader's ``detail()`` returned, such as the device).
    """

    id: ServableId
    state: ManagerState
    error: ServingError | None = None
    timestamp: float = 0.0
    load_seconds: float | None = None
    detail: Mapping[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


Subscriber = Callable[[ServableState], None]


class EventBus:
    """Synchronous publish/subscribe of ``ServableState`` events.

    ``publish`` calls every subscriber on the publisher's thread, in subscription order, before it
    returns. A subscriber that raises is logged and does not affect the others or the publisher.
    Subscribers must be quick and must not block on the manager's progress (they run on load
    threads). Thread-safe: subscribe/unsubscribe/publish may be called from any thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: tuple[Subscriber, ...] = ()

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Add ``fn``; returns a function that removes it (idempotent)."""
        with self._lock:
            self._subscribers = (*self._subscribers, fn)

        def unsubscribe() -> None:
            with self._lock:
                subs = list(self._subscribers)
                if fn in subs:
                    subs.remove(fn)
                    self._subscribers = tuple(subs)

        return unsubscribe

    def publish(self, event: ServableState) -> None:
        for fn in self._subscribers:  # an immutable snapshot: no lock on the publish path
            try:
                fn(event)
            except Exception:
                log.exception("ServableState subscriber %r failed on %s", fn, event)


class StateMonitor:
    """Latest published state per version, plus a bounded history; supports blocking waits.

    Keeps END versions forever (TF Serving compatibility: a failed or unloaded version still shows
    in model status); ``forget_ended`` is the nbserve extension that drops them. Thread-safe.
    Predicates given to ``wait_until`` run under the monitor's lock: they may call the monitor's
    methods but must not block.
    """

    def __init__(self, bus: EventBus, *, max_history: int = 10_000) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._states: dict[str, dict[int, ServableState]] = {}
        self._history: collections.deque[ServableState] = collections.deque(maxlen=max_history)
        self._unsubscribe = bus.subscribe(self._on_event)

    def close(self) -> None:
        """Stop observing the bus (the recorded states stay readable)."""
        self._unsubscribe()

    def _on_event(self, event: ServableState) -> None:
        with self._cond:
            self._states.setdefault(event.id.name, {})[event.id.version] = event
            self._history.append(event)
            self._cond.notify_all()

    def states(self, name: str) -> dict[int, ServableState]:
        """Latest state per version of ``name`` (a copy; empty if never seen)."""
        with self._cond:
            return dict(self._states.get(name, {}))

    def all_states(self) -> dict[str, dict[int, ServableState]]:
        with self._cond:
            return {name: dict(versions) for name, versions in self._states.items()}

    def state(self, id: ServableId) -> ServableState | None:
        with self._cond:
            return self._states.get(id.name, {}).get(id.version)

    def history(self, name: str | None = None) -> list[ServableState]:
        """Events in publication order (oldest first, bounded), optionally of one servable name."""
        with self._cond:
            if name is None:
                return list(self._history)
            return [e for e in self._history if e.id.name == name]

    def forget_ended(self, name: str | None = None) -> None:
        """Drop the END entries of ``name`` (of every name when None). nbserve extension."""
        with self._cond:
            names = [name] if name is not None else list(self._states)
            for n in names:
                versions = self._states.get(n)
                if versions is None:
                    continue
                for v in [v for v, s in versions.items() if s.state == ManagerState.END]:
                    del versions[v]
                if not versions:
                    del self._states[n]

    def wait_until(self, predicate: Callable[[StateMonitor], bool], timeout: float | None) -> bool:
        """Block until ``predicate(self)`` is true (re-checked after every event); False on timeout.

        ``timeout=None`` waits forever.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                if deadline is None:
                    self._cond.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def wait_for_state(self, id: ServableId,
                       states: ManagerState | Collection[ManagerState],
                       timeout: float | None) -> ServableState | None:
        """Wait until the latest state of ``id`` is one of ``states``; return it (None: timeout)."""
        wanted = {states} if isinstance(states, ManagerState) else set(states)
        found: list[ServableState] = []

        def reached(monitor: StateMonitor) -> bool:
            current = monitor.state(id)
            if current is not None and current.state in wanted:
                found.append(current)
                return True
            return False

        return found[-1] if self.wait_until(reached, timeout) else None
