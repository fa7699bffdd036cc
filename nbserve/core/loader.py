"""The Loader protocol (``core/loader.h``): how the manager loads and unloads one servable version.

Contract (what the manager guarantees to a loader, and what it expects back):

* Construction is cheap: a source adapter builds one loader per aspired version, many of which are
  never loaded (superseded, un-aspired, duplicates of a version already managed).
* ``load()`` is expensive (reads files, builds graphs, warms up). It may raise ``ServingError``
  (its code and message reach clients through the version's status) or any other exception
  (reported as ``UNKNOWN`` with ``str(exc)``). A failed load may be retried on the same object.
* ``unload()`` releases what a successful ``load()`` acquired; it is called exactly once after
  each successful ``load()``, and only after every request holding the servable has finished.
* ``servable()`` returns the loaded object; valid only between a successful ``load()`` and
  ``unload()``. The manager calls it once, right after ``load()`` succeeds.
* ``load()``/``unload()`` are never called concurrently on one loader, but different loaders run
  concurrently on a pool of load threads (``num_load_threads > 0``).

Optional: a loader may define ``detail() -> Mapping[str, Any]`` (e.g. ``{"device": "GPU:0"}``);
the manager attaches it to the version's AVAILABLE event (``ServableState.detail``).

``LoaderFactory`` is the source adapter (``SourceAdapter<StoragePath, Loader>`` in TF Serving):
``factory(servable_id, version_path)`` builds the (cheap) loader of one version folder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from nbserve.core.ids import ServableId


@runtime_checkable
class Loader(Protocol):
    """Loads, serves and unloads one servable version. See the module docstring for the contract."""

    def load(self) -> None:
        """Load the servable (expensive). Raise to fail; the manager may call it again to retry."""
        ...

    def unload(self) -> None:
        """Release everything ``load()`` acquired. Called once per successful ``load()``."""
        ...

    def servable(self) -> Any:
        """The loaded object; valid only between a successful ``load()`` and ``unload()``."""
        ...


LoaderFactory = Callable[[ServableId, str], Loader]
"""``factory(servable_id, path)`` -> the Loader of the version folder ``path``; must be cheap."""
