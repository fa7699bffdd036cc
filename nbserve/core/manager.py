"""AspiredVersionsManager: aspired versions in, loaded versions out.

TF Serving's ``core/aspired_versions_manager.h``.

Sources call ``set_aspired_versions`` (the ``AspiredVersionsCallback``) with the complete list of
versions that should be loaded for one servable name. Each ``step()``:

1. forgets un-aspired versions that are finished (disabled / error) or were never loaded (new);
2. applies the pending aspired lists (each replaces the previous one for its name);
3. asks the version policy for at most one action per servable name;
4. performs one action, unloads before loads: inline when ``num_load_threads == 0``, otherwise on
   a pool of load threads (and one unload thread), returning without waiting.

``start()`` runs ``step()`` on a background thread (``nbserve-manager``) every ``interval_s``, at
once when new aspired versions arrive or a load/unload finishes, and back to back while steps
have work. ``handle(request)`` serves requests from an immutable serving map swapped atomically,
so it never waits for the manager.

Semantics (TF Serving's): a version whose source item is an error is published START -> END(error)
and never loaded; a version that ended in error is not reloaded while it stays aspired (it must
leave the aspired list and come back); un-aspiring a version cancels its load retries; a version
still aspired is never unloaded.

nbserve differences (clients only see things happen sooner):

* retries are cancelled as soon as a list without the version arrives, not at the next step
  (which an inline load may be blocking); a later list that brings it back resumes them, and a
  version whose load was cancelled gets a new harness when it is aspired again (a cancelled load
  is not a model error);
* a ready version re-aspired before it was unloaded is simply kept (TF Serving postpones the
  request until the unload has finished, then loads it again);
* a new version un-aspired before it was loaded publishes END (TF Serving leaves it at START).

Thread-safety: every public method may be called from any thread. ``_step_lock`` serializes steps
(and ``stop``); ``_lock`` guards the managed versions and serving-map swaps; ``_pending_lock`` the
pending lists; ``_lock`` and ``_pending_lock`` are never held together. Events are published with
no manager lock held other than ``_step_lock``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from nbserve.core.events import EventBus
from nbserve.core.handle import ServableHandle
from nbserve.core.harness import HarnessState, LoaderHarness
from nbserve.core.ids import ServableId, ServableRequest
from nbserve.core.policy import POLICIES, Action, AspiredVersionInfo, AspiredVersionPolicy
from nbserve.core.source import ServableData
from nbserve.errors import ServingError, StatusCode

log = logging.getLogger(__name__)


@dataclass
class _Managed:
    """A managed version: its harness and whether the source still aspires it (under ``_lock``)."""

    harness: LoaderHarness
    aspired: bool


@dataclass(frozen=True)
class _Serving:
    """The available versions of one servable name: highest first, and by number. Immutable."""

    latest_first: tuple[LoaderHarness, ...]
    by_version: Mapping[int, LoaderHarness]

    @staticmethod
    def of(harnesses: Iterable[LoaderHarness]) -> _Serving | None:
        ordered = tuple(sorted(harnesses, key=lambda h: h.id.version, reverse=True))
        if not ordered:
            return None
        return _Serving(ordered, {h.id.version: h for h in ordered})


class AspiredVersionsManager:
    """Loads aspired versions according to a version policy and hands out servable handles.

    Args (defaults are TF Serving's):
      event_bus: receives every version's ``ServableState`` events.
      policy: ``"availability_preserving"`` (default), ``"resource_preserving"``, or a callable
        ``(Sequence[AspiredVersionInfo]) -> Action | None``.
      max_num_load_retries: failed loads are retried this many times (5: six attempts in all).
      load_retry_interval_s: wait between attempts (60 s); cut short when retries are cancelled.
      num_load_threads: 0 runs loads and unloads inline in ``step()``; N > 0 runs loads on N
        threads and unloads on one more.
      sleep: replaces the wait between retries (tests); ``None``/``time.sleep`` mean the default
        cancellable wait.
      clock: monotonic seconds, for load durations. wall_clock: event timestamps.
    """

    def __init__(self, event_bus: EventBus, *,
                 policy: str | AspiredVersionPolicy = "availability_preserving",
                 max_num_load_retries: int = 5, load_retry_interval_s: float = 60.0,
                 num_load_threads: int = 0,
                 sleep: Callable[[float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        if isinstance(policy, str):
            if policy not in POLICIES:
                raise ValueError(f"Unknown aspired version policy {policy!r}; "
                                 f"expected one of {sorted(POLICIES)}")
            policy = POLICIES[policy]
        self._policy: AspiredVersionPolicy = policy
        self._bus = event_bus
        self._max_num_load_retries = max_num_load_retries
        self._load_retry_interval_s = load_retry_interval_s
        self._sleep = None if sleep is time.sleep else sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._num_load_threads = max(0, int(num_load_threads))

        self._step_lock = threading.Lock()
        self._lock = threading.RLock()
        self._pending_lock = threading.Lock()
        self._lifecycle_lock = threading.Lock()
        self._managed: dict[str, dict[int, _Managed]] = {}
        self._pending: dict[str, list[ServableData]] = {}
        self._serving: Mapping[str, _Serving] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._interval_s = 0.1
        self._stopping = False
        self._stopped = False

        self._load_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._unload_pool: concurrent.futures.ThreadPoolExecutor | None = None
        if self._num_load_threads:
            self._load_pool = concurrent.futures.ThreadPoolExecutor(
                self._num_load_threads, thread_name_prefix="nbserve-load")
            self._unload_pool = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="nbserve-unload")
        self._inflight: set[concurrent.futures.Future[None]] = set()

    # -- the aspired-versions callback ----------------------------------------------------------

    def set_aspired_versions(self, name: str, versions: Iterable[ServableData]) -> None:
        """Replace the aspired list of ``name`` (applied at the next step, which is woken at once).

        Versions absent from the list have their load retries cancelled right away (and resumed
        if a later list brings them back before the cancel took effect). Thread-safe.
        """
        versions = list(versions)
        if self._stopping:
            log.warning("Ignoring aspired versions of %s: the manager is stopped", name)
            return
        with self._pending_lock:
            self._pending[name] = versions
        wanted = {d.id.version for d in versions}
        with self._lock:
            for version, managed in self._managed.get(name, {}).items():
                if version in wanted:
                    if managed.aspired:  # the list that dropped it has not been applied yet
                        managed.harness.resume_load_retries()
                else:
                    managed.harness.cancel_load_retries()
        self._wake.set()

    __call__ = set_aspired_versions  # a manager is itself an AspiredVersionsCallback

    # -- one iteration --------------------------------------------------------------------------

    def step(self) -> bool:
        """One manager iteration (see the module docstring). True if it did anything."""
        with self._step_lock:
            if self._stopping:
                return False
            did = self._forget_finished()
            did = self._apply_pending() or did
            action = self._next_action()
            if action is not None:
                self._perform(action)
                did = True
            return did

    def _forget_finished(self) -> bool:
        never_loaded: list[LoaderHarness] = []
        forgot = False
        with self._lock:
            for name in list(self._managed):
                versions = self._managed[name]
                for version in list(versions):
                    managed = versions[version]
                    state = managed.harness.state
                    if not managed.aspired and (state is HarnessState.NEW or state.finished):
                        del versions[version]
                        forgot = True
                        if state is HarnessState.NEW:
                            never_loaded.append(managed.harness)
                if not versions:
                    del self._managed[name]
        for harness in never_loaded:
            harness.discard()
        return forgot

    def _apply_pending(self) -> bool:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return False
        postponed: dict[str, list[ServableData]] = {}
        added: list[tuple[LoaderHarness, ServingError | None]] = []
        with self._lock:
            for name, data in pending.items():
                if self._has_reaspired_in_transition(name, data):
                    postponed[name] = data
                else:
                    added.extend(self._process_aspired(name, data))
        if postponed:
            with self._pending_lock:
                for name, data in postponed.items():
                    self._pending.setdefault(name, data)  # a newer list wins
        for harness, error in added:
            harness.announce()
            if error is not None:
                harness.fail(error)
        return len(postponed) < len(pending)

    def _has_reaspired_in_transition(self, name: str, data: list[ServableData]) -> bool:
        """True if a version in ``data`` is un-aspired and still loading or unloading (wait)."""
        versions = self._managed.get(name, {})
        for item in data:
            managed = versions.get(item.id.version)
            if (managed is not None and not managed.aspired
                    and managed.harness.state is not HarnessState.READY):
                return True
        return False

    def _process_aspired(self, name: str, data: list[ServableData]
                         ) -> list[tuple[LoaderHarness, ServingError | None]]:
        """Apply one aspired list (under ``_lock``); returns the new harnesses to announce."""
        wanted: dict[int, ServableData] = {}
        for item in data:
            if item.id.name != name:
                log.warning("Ignoring %s in the aspired versions of %s", item.id, name)
            elif item.id.version in wanted:
                log.warning("Ignoring duplicate aspired version %s", item.id)
            else:
                wanted[item.id.version] = item
        versions = self._managed.setdefault(name, {})
        for version, managed in versions.items():
            if version not in wanted:
                if managed.aspired:
                    log.info("Version no longer aspired: %s", managed.harness.id)
                managed.aspired = False
                managed.harness.cancel_load_retries()
            elif not managed.aspired:  # ready: keep it rather than unload and reload it
                managed.aspired = True
        added: list[tuple[LoaderHarness, ServingError | None]] = []
        for version, item in sorted(wanted.items()):
            current = versions.get(version)
            if current is not None and not current.harness.load_cancelled:
                continue  # already managed and aspired: the new loader is not needed
            error = item.error
            if error is None and item.loader is None:
                error = ServingError(StatusCode.INTERNAL, f"No loader for servable {item.id}")
            harness = self._new_harness(item)
            versions[version] = _Managed(harness, aspired=True)
            added.append((harness, error))
        if not versions:
            del self._managed[name]
        return added

    def _new_harness(self, item: ServableData) -> LoaderHarness:
        return LoaderHarness(item.id, item.loader, self._bus.publish,
                             max_num_load_retries=self._max_num_load_retries,
                             load_retry_interval_s=self._load_retry_interval_s,
                             sleep=self._sleep, clock=self._clock, wall_clock=self._wall_clock)

    def _next_action(self) -> Action | None:
        with self._lock:
            snapshots = [
                [AspiredVersionInfo(m.harness.id, m.aspired, m.harness.state)
                 for _, m in sorted(versions.items())]
                for versions in self._managed.values()]
        actions = [a for a in map(self._policy, snapshots) if a is not None]
        for action in actions:
            if action.kind == "unload":
                return action
        return actions[0] if actions else None

    def _perform(self, action: Action) -> None:
        with self._lock:
            harness = self._managed[action.id.name][action.id.version].harness
        if action.kind == "unload":
            harness.unload_requested()
            self._run(self._unload_pool, self._unload_harness, harness)
        else:
            harness.load_requested()
            harness.load_approved()
            self._run(self._load_pool, self._load_harness, harness)

    def _run(self, pool: concurrent.futures.ThreadPoolExecutor | None,
             fn: Callable[[LoaderHarness], None], harness: LoaderHarness) -> None:
        if pool is None:
            fn(harness)
            return
        future = pool.submit(fn, harness)
        with self._lock:
            self._inflight.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: concurrent.futures.Future[None]) -> None:
        with self._lock:
            self._inflight.discard(future)

    def _load_harness(self, harness: LoaderHarness) -> None:
        try:
            harness.load(self._add_to_serving)
        except Exception:
            log.exception("Loading %s failed unexpectedly", harness.id)
        finally:
            self._wake.set()

    def _unload_harness(self, harness: LoaderHarness, quiesce_timeout: float | None = None) -> None:
        try:
            harness.unload(self._remove_from_serving, quiesce_timeout)
        except Exception:
            log.exception("Unloading %s failed unexpectedly", harness.id)
        finally:
            self._wake.set()

    # -- the serving map ------------------------------------------------------------------------

    def _add_to_serving(self, harness: LoaderHarness) -> None:
        self._swap_serving(harness, add=True)

    def _remove_from_serving(self, harness: LoaderHarness) -> None:
        self._swap_serving(harness, add=False)

    def _swap_serving(self, harness: LoaderHarness, *, add: bool) -> None:
        name = harness.id.name
        with self._lock:
            current = self._serving.get(name)
            others = [h for h in (current.latest_first if current else ())
                      if h.id.version != harness.id.version]
            entry = _Serving.of([*others, harness] if add else others)
            serving = dict(self._serving)
            if entry is None:
                serving.pop(name, None)
            else:
                serving[name] = entry
            self._serving = serving

    def handle(self, request: ServableRequest) -> ServableHandle:
        """A handle on the requested available version; release it when the request is done.

        ``Latest`` is the highest AVAILABLE version. Raises NOT_FOUND
        ``Servable not found for request: Latest(m)`` / ``Specific(m, v)``. Lock-free except for
        the version's handle counter; safe from any thread.
        """
        while True:
            serving = self._serving
            entry = serving.get(request.name)
            if entry is not None:
                if request.version is None:
                    candidates: Iterable[LoaderHarness] = entry.latest_first
                else:
                    found = entry.by_version.get(request.version)
                    candidates = (found,) if found is not None else ()
                for harness in candidates:
                    handle = harness.gate.acquire(harness.id, harness.servable)
                    if handle is not None:
                        return handle
                if self._serving is not serving:
                    continue  # it is being unloaded; the map has changed since: look again
            raise ServingError(StatusCode.NOT_FOUND, f"Servable not found for request: {request}")

    def list_available(self) -> list[ServableId]:
        """Every AVAILABLE version, sorted by (name, version)."""
        serving = self._serving
        return sorted(h.id for entry in serving.values() for h in entry.latest_first)

    def available_versions(self, name: str) -> list[int]:
        """AVAILABLE versions of ``name``, highest first."""
        entry = self._serving.get(name)
        return [h.id.version for h in entry.latest_first] if entry else []

    def managed_versions(self, name: str) -> list[int]:
        """Every version of ``name`` the manager currently manages (any state), highest first."""
        with self._lock:
            return sorted(self._managed.get(name, {}), reverse=True)

    def managed_names(self) -> list[str]:
        with self._lock:
            return sorted(self._managed)

    def snapshot(self, name: str) -> list[AspiredVersionInfo]:
        """What the policy sees for ``name``: (id, aspired, harness state), lowest version first."""
        with self._lock:
            return [AspiredVersionInfo(m.harness.id, m.aspired, m.harness.state)
                    for _, m in sorted(self._managed.get(name, {}).items())]

    # -- background loop ------------------------------------------------------------------------

    def start(self, interval_s: float = 0.1) -> None:
        """Run ``step()`` on the ``nbserve-manager`` thread. Idempotent; not after ``stop()``."""
        with self._lifecycle_lock:
            if self._stopping:
                raise RuntimeError("AspiredVersionsManager cannot be restarted after stop()")
            if self._thread is not None:
                return
            self._interval_s = interval_s
            self._thread = threading.Thread(target=self._loop, name="nbserve-manager",
                                            daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopping

    def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                did = self.step()
            except Exception:
                log.exception("Manager step failed")
                did = False
            if not did and not self._stopping:
                self._wake.wait(self._interval_s)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the loop, unload every loaded version (UNLOADING, END), join threads. Idempotent.

        Load retries are cancelled; loads in flight are waited for. Each unload waits for
        outstanding handles until ``timeout`` (overall) has passed, then unloads anyway. New
        versions never loaded are published END. Later aspired lists are ignored.
        """
        with self._lifecycle_lock:
            if self._stopping:
                return
            self._stopping = True
        deadline = time.monotonic() + timeout

        def remaining() -> float:
            return max(0.0, deadline - time.monotonic())

        with self._lock:
            for versions in self._managed.values():
                for managed in versions.values():
                    managed.harness.cancel_load_retries()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(remaining())
            if self._thread.is_alive():
                log.warning("The manager thread did not stop within %.1f s", timeout)
        with self._lock:
            inflight = list(self._inflight)
        if inflight:
            concurrent.futures.wait(inflight, remaining())
        if self._step_lock.acquire(timeout=remaining()):
            try:
                self._unload_all(remaining)
            finally:
                self._step_lock.release()
        else:
            log.warning("Could not unload servables: the manager is busy after %.1f s", timeout)
        for pool in (self._load_pool, self._unload_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self._stopped = True

    def _unload_all(self, remaining: Callable[[], float]) -> None:
        with self._lock:
            harnesses = [m.harness for versions in self._managed.values()
                         for m in versions.values()]
        for harness in harnesses:
            if harness.state is HarnessState.READY:
                harness.unload_requested()
                self._unload_harness(harness, quiesce_timeout=remaining())
            elif harness.state is HarnessState.NEW:
                harness.discard()
            elif not harness.state.finished:
                log.warning("Servable %s is still %s at shutdown", harness.id,
                            harness.state.value)
