"""TimeoutLoader: a Loader wrapper that bounds ``load()`` (nbserve's ``load_timeout_seconds``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from nbserve.core.ids import ServableId
from nbserve.core.loader import Loader, LoaderFactory
from nbserve.errors import ServingError, StatusCode

log = logging.getLogger("nbserve.core")


class TimeoutLoader:
    """nbserve: a Loader wrapper bounding ``load()`` by ``timeout_s`` (``load_timeout_seconds``).

    The inner load runs on its own daemon thread; when it has not finished in time, ``load()``
    raises DEADLINE_EXCEEDED (the version ends in END with that error, or is retried as any failed
    load). A Python thread cannot be killed: a hung load keeps its thread, and a load that
    finishes after being given up is unloaded at once. A retry while the earlier attempt is still
    running waits for that attempt again instead of starting a second one, so the inner loader
    never sees concurrent calls. ``unload``/``servable``/``detail`` pass through.
    """

    def __init__(self, inner: Loader, timeout_s: float, label: object = None) -> None:
        self.inner = inner
        self.timeout_s = timeout_s
        self.label = label
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._running = False
        self._abandoned = False
        self._result: BaseException | None = None

    def load(self) -> None:
        with self._lock:
            self._abandoned = False
            if not self._running:
                self._running = True
                self._finished.clear()
                threading.Thread(target=self._load_inner, name="nbserve-load-timeout",
                                 daemon=True).start()
        self._finished.wait(self.timeout_s)
        with self._lock:
            if not self._finished.is_set():
                self._abandoned = True
                raise ServingError(
                    StatusCode.DEADLINE_EXCEEDED,
                    f"Loading servable {self.label} did not finish within {self.timeout_s:g} s "
                    "(load_timeout_seconds)")
            error, self._result = self._result, None
        if error is not None:
            raise error

    def _load_inner(self) -> None:
        try:
            self.inner.load()
            error = None
        except BaseException as exc:  # noqa: BLE001 - handed over: load()'s caller re-raises it
            error = exc
        with self._lock:
            self._running = False
            if self._abandoned:  # nobody waits for this attempt any more
                if error is None:
                    log.warning("Load of %s finished after its timeout; unloading it", self.label)
                    try:
                        self.inner.unload()
                    except Exception:  # a late unload's failure only gets logged: nobody waits
                        log.exception("Unloading the late load of %s failed", self.label)
                error = None
            self._result = error
            self._finished.set()

    def unload(self) -> None:
        self.inner.unload()

    def servable(self) -> Any:
        return self.inner.servable()

    def detail(self) -> Mapping[str, Any]:
        detail = getattr(self.inner, "detail", None)
        return detail() if callable(detail) else {}


def with_load_timeout(factory: LoaderFactory, timeout_s: float) -> LoaderFactory:
    """``factory`` whose loaders give up after ``timeout_s`` (no wrapping when it is <= 0)."""
    if timeout_s <= 0:
        return factory

    def make(servable_id: ServableId, path: str) -> Loader:
        return TimeoutLoader(factory(servable_id, path), timeout_s, servable_id)

    return make
