"""Sources and the aspired-versions callback (``core/source.h``, ``core/servable_data.h``).

A ``Source`` tells its target (normally the ``AspiredVersionsManager``) which versions of a
servable should be loaded. Each call of the callback carries the *complete* list of aspired versions
for one servable name and replaces the previous list; an empty list un-aspires every version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from nbserve.core.ids import ServableId
from nbserve.core.loader import Loader
from nbserve.errors import ServingError


@dataclass(frozen=True)
class ServableData:
    """One aspired version: either a loader to load it or the error that prevented making one.

    An item with ``error`` set reaches the manager as a version in error: it is published
    START -> END(error) and never loaded. Exactly one of ``loader`` / ``error`` should be set.
    """

    id: ServableId
    loader: Loader | None = None
    error: ServingError | None = None

    @staticmethod
    def of(id: ServableId, loader: Loader) -> ServableData:
        return ServableData(id, loader=loader)

    @staticmethod
    def failed(id: ServableId, error: ServingError) -> ServableData:
        return ServableData(id, error=error)

    @property
    def ok(self) -> bool:
        return self.error is None


AspiredVersionsCallback = Callable[[str, "list[ServableData]"], None]
"""``callback(servable_name, versions)``: the complete aspired list for ``servable_name``.

Thread-safe on the manager's side; a source may call it from any thread, at any time.
"""


class Source(Protocol):
    """Emits aspired versions through a callback set once, before the source starts emitting."""

    def set_aspired_versions_callback(self, callback: AspiredVersionsCallback) -> None:
        ...
