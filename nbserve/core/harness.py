"""One version's lifecycle: the LoaderHarness state machine (``core/loader_harness.h``).

Internal states (TF Serving's names)::

    new -> load-requested -> load-approved -> loading -> ready -> unload-requested
        -> quiescing -> quiesced -> unloading -> disabled          (+ error, from anywhere)

The harness owns the version's ``Loader``, runs ``load()`` with retries, captures errors, counts
outstanding handles (``gate``) and publishes the version's ``ServableState`` events. Published
states are monotonic: a version never goes back (a lower or repeated state is dropped and logged).

Threading: the manager drives one harness from one thread at a time (its step thread, or the
load/unload thread it hands the work to); ``state``/``error``/``cancel_load_retries`` may be called
from any thread. Loader methods are never called concurrently.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from nbserve.core.events import ManagerState, ServableState
from nbserve.core.handle import HandleGate
from nbserve.core.ids import ServableId
from nbserve.core.loader import Loader
from nbserve.errors import ServingError, StatusCode

log = logging.getLogger(__name__)

CANCELLED_MESSAGE = "Loading of servable cancelled"


class HarnessState(enum.Enum):
    """Internal harness states; values are TF Serving's ``StateDebugString``."""

    NEW = "new"
    LOAD_REQUESTED = "load-requested"
    LOAD_APPROVED = "load-approved"
    LOADING = "loading"
    READY = "ready"
    UNLOAD_REQUESTED = "unload-requested"
    QUIESCING = "quiescing"
    QUIESCED = "quiesced"
    UNLOADING = "unloading"
    DISABLED = "disabled"
    ERROR = "error"

    @property
    def finished(self) -> bool:
        """Disabled or error: nothing more will happen to this harness."""
        return self in (HarnessState.DISABLED, HarnessState.ERROR)


def capture_error(exc: BaseException) -> ServingError:
    """A loader's exception as a ServingError: ServingErrors keep their code; others are UNKNOWN."""
    if isinstance(exc, ServingError):
        return exc
    return ServingError(StatusCode.UNKNOWN, str(exc) or type(exc).__name__)


def _noop(harness: LoaderHarness) -> None:
    return None


class LoaderHarness:
    """The state machine of one managed version. See the module docstring.

    ``publish`` receives every ``ServableState`` of this version (normally ``EventBus.publish``).
    ``max_num_load_retries`` failed loads are retried (so at most 1 + retries attempts), waiting
    ``load_retry_interval_s`` between attempts. ``sleep`` replaces that wait (tests); by default
    the wait ends early when ``cancel_load_retries()`` is called. ``clock`` (monotonic seconds)
    measures load time; ``wall_clock`` stamps events.
    """

    def __init__(self, id: ServableId, loader: Loader | None,
                 publish: Callable[[ServableState], None], *,
                 max_num_load_retries: int = 5, load_retry_interval_s: float = 60.0,
                 sleep: Callable[[float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 quiesce_warning_s: float = 10.0) -> None:
        self.id = id
        self.loader = loader
        self.gate = HandleGate()
        self.servable: Any = None  # set while the version is in the serving map
        self.load_attempts = 0
        self._publish = publish
        self._max_retries = max(0, int(max_num_load_retries))
        self._retry_interval_s = max(0.0, float(load_retry_interval_s))
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._quiesce_warning_s = quiesce_warning_s
        self._lock = threading.Lock()
        self._publish_lock = threading.RLock()
        self._state = HarnessState.NEW
        self._error: ServingError | None = None
        self._published: ManagerState | None = None
        self._cancel = threading.Event()

    # -- observation (any thread) ---------------------------------------------------------------

    @property
    def state(self) -> HarnessState:
        return self._state

    @property
    def error(self) -> ServingError | None:
        """The version's health: None unless something failed."""
        return self._error

    @property
    def published(self) -> ManagerState | None:
        """The last state published for this version."""
        return self._published

    @property
    def load_retries_cancelled(self) -> bool:
        return self._cancel.is_set()

    def __repr__(self) -> str:
        return f"LoaderHarness({self.id}, {self._state.value})"

    # -- transitions ----------------------------------------------------------------------------

    def announce(self) -> None:
        """Publish START: the version is now managed and waits for the policy."""
        self._emit(ManagerState.START)

    def fail(self, error: ServingError) -> None:
        """Put the version in error (e.g. its source item was an error): state error, END(error).

        Only for a version that was never loaded (new); a loaded version ends through ``unload``.
        """
        self._transition(HarnessState.NEW, HarnessState.ERROR, error)
        self._emit(ManagerState.END, error)

    def discard(self) -> None:
        """Drop a version that was never loaded (un-aspired while new, or at shutdown): END, OK."""
        self._transition(HarnessState.NEW, HarnessState.DISABLED)
        self._emit(ManagerState.END)

    def load_requested(self) -> None:
        self._transition(HarnessState.NEW, HarnessState.LOAD_REQUESTED)

    def load_approved(self) -> None:
        self._transition(HarnessState.LOAD_REQUESTED, HarnessState.LOAD_APPROVED)

    def cancel_load_retries(self) -> None:
        """Stop retrying (the version is no longer aspired). Any thread; idempotent.

        A load not yet started is skipped; a failed load is not retried; a load that succeeds
        after this call is unloaded at once. All three end in END with CANCELLED
        ``Loading of servable cancelled``. No effect once the version is ready.
        """
        self._cancel.set()

    def resume_load_retries(self) -> None:
        """Undo ``cancel_load_retries`` (the version is aspired again) unless already acted on."""
        self._cancel.clear()

    @property
    def load_cancelled(self) -> bool:
        """True if the version ended because its load was cancelled."""
        error = self._error
        return self._state.finished and error is not None and error.code is StatusCode.CANCELLED

    def load(self, on_loaded: Callable[[LoaderHarness], None] = _noop) -> bool:
        """Load with retries (load-approved -> loading -> ready | error). Returns True if ready.

        Publishes LOADING first. On success calls ``on_loaded(self)`` (the manager puts the version
        in its serving map), then publishes AVAILABLE, then enters ready. On failure the version
        ends in error with END(last error).
        """
        self._transition(HarnessState.LOAD_APPROVED, HarnessState.LOADING)
        self._emit(ManagerState.LOADING)
        started = self._clock()
        loader = self.loader
        if loader is None:  # a source item without a loader: nothing to load, an INTERNAL error
            return self._end_load(HarnessState.ERROR, ServingError(
                StatusCode.INTERNAL, f"No loader for servable {self.id}"))
        error = self._load_with_retries(loader)
        if error is None and self._cancel.is_set():
            self._unload_loader()
            return self._end_load(HarnessState.DISABLED, ServingError(StatusCode.CANCELLED,
                                                                      CANCELLED_MESSAGE))
        if error is not None:
            return self._end_load(HarnessState.ERROR, error)
        try:
            self.servable = loader.servable()
            detail = self._load_detail()
            on_loaded(self)
        except Exception as exc:
            log.exception("Servable %s loaded but could not be served", self.id)
            self.servable = None
            self._unload_loader()
            return self._end_load(HarnessState.ERROR, capture_error(exc))
        self._emit(ManagerState.AVAILABLE, load_seconds=self._clock() - started, detail=detail)
        self._transition(HarnessState.LOADING, HarnessState.READY)
        log.info("Successfully loaded servable version %s", self.id)
        return True

    def unload_requested(self) -> None:
        self._transition(HarnessState.READY, HarnessState.UNLOAD_REQUESTED)

    def unload(self, on_quiescing: Callable[[LoaderHarness], None] = _noop,
               quiesce_timeout: float | None = None) -> None:
        """Unload (unload-requested -> quiescing -> quiesced -> unloading -> disabled).

        Publishes UNLOADING, calls ``on_quiescing(self)`` (the manager removes the version from its
        serving map), closes the handle gate and waits for outstanding handles: forever when
        ``quiesce_timeout`` is None (warning every ``quiesce_warning_s``), else at most that long
        before unloading anyway. Then ``Loader.unload()`` and END (with the error if unload raised).
        """
        self._transition(HarnessState.UNLOAD_REQUESTED, HarnessState.QUIESCING)
        self._emit(ManagerState.UNLOADING)
        try:
            on_quiescing(self)
        finally:
            self.gate.close()
        self._wait_quiesced(quiesce_timeout)
        self._transition(HarnessState.QUIESCING, HarnessState.QUIESCED)
        self._transition(HarnessState.QUIESCED, HarnessState.UNLOADING)
        error = self._unload_loader()
        self.servable = None
        with self._lock:
            self._state = HarnessState.DISABLED
            if error is not None:
                self._error = error
        log.info("Done unloading servable version %s", self.id)
        self._emit(ManagerState.END, error)

    # -- internals ------------------------------------------------------------------------------

    def _transition(self, from_state: HarnessState, to_state: HarnessState,
                    error: ServingError | None = None) -> None:
        with self._lock:
            if self._state is not from_state:
                raise ServingError(
                    StatusCode.INTERNAL,
                    f"Illegal request to transition from state {self._state.value} to "
                    f"{to_state.value}")
            self._state = to_state
            if error is not None:
                self._error = error

    def _emit(self, state: ManagerState, error: ServingError | None = None, *,
              load_seconds: float | None = None, detail: Any = None) -> None:
        with self._publish_lock:
            if self._published is not None and state <= self._published:
                log.error("Dropped non-monotonic state %s after %s for %s", state.name,
                          self._published.name, self.id)
                return
            self._published = state
            self._publish(ServableState(self.id, state, error, self._wall_clock(),
                                        load_seconds=load_seconds, detail=detail))

    def _load_with_retries(self, loader: Loader) -> ServingError | None:
        """Run ``Loader.load`` up to 1 + max retries times; the last error, or None on success."""
        error: ServingError | None = None
        attempts = 0
        while True:
            if self._cancel.is_set():
                log.info("Load cancelled for servable %s", self.id)
                return ServingError(StatusCode.CANCELLED, CANCELLED_MESSAGE)
            if attempts > 0:
                self._wait_before_retry()
                if self._cancel.is_set():
                    log.info("Retrying of Loading servable: %s was cancelled.", self.id)
                    return ServingError(StatusCode.CANCELLED, CANCELLED_MESSAGE)
                log.info("Retrying of Loading servable: %s retry: %d", self.id, attempts)
            attempts += 1
            self.load_attempts = attempts
            try:
                loader.load()
                return None
            except Exception as exc:  # noqa: BLE001 - any loader failure becomes the status
                error = capture_error(exc)
                log.error("Loading servable: %s failed: %s", self.id, error.with_prefix())
            if attempts > self._max_retries:
                if self._max_retries:
                    log.info("Retrying of Loading servable: %s exhausted max_num_retries: %d",
                             self.id, self._max_retries)
                return error

    def _wait_before_retry(self) -> None:
        if self._sleep is None:
            self._cancel.wait(self._retry_interval_s)
        else:
            self._sleep(self._retry_interval_s)

    def _end_load(self, state: HarnessState, error: ServingError) -> bool:
        with self._lock:
            self._state = state
            self._error = error
        self._emit(ManagerState.END, error)
        return False

    def _unload_loader(self) -> ServingError | None:
        if self.loader is None:  # never loaded (see load()): nothing to release
            return None
        try:
            self.loader.unload()
            return None
        except Exception as exc:
            log.exception("Unloading servable %s failed", self.id)
            return capture_error(exc)

    def _load_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"load_attempts": self.load_attempts}
        extra = getattr(self.loader, "detail", None)
        if callable(extra):
            try:
                detail.update(extra() or {})
            except Exception:
                log.exception("Loader.detail() failed for %s", self.id)
        return detail

    def _wait_quiesced(self, timeout: float | None) -> None:
        if timeout is not None:
            if not self.gate.wait_quiesced(timeout):
                log.warning("Unloading servable %s with %d handle(s) still outstanding", self.id,
                            self.gate.count)
            return
        while not self.gate.wait_quiesced(self._quiesce_warning_s):
            log.warning("Waiting for %d handle(s) of servable %s to be released before unloading",
                        self.gate.count, self.id)
