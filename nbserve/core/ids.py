"""Servable identities and requests (``core/servable_id.h``, ``core/manager.h``'s ServableRequest).

A *servable* is one version of one model; ``ServableId`` names it. A ``ServableRequest`` is what a
client asks the manager for: the latest available version of a model, or a specific one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class ServableId:
    """One version of one servable. Ordered by (name, version); hashable.

    ``str()`` is TF Serving's ``DebugString`` (``{name: m version: 1}``), used in log lines.
    """

    name: str
    version: int

    def __str__(self) -> str:
        return f"{{name: {self.name} version: {self.version}}}"


@dataclass(frozen=True)
class ServableRequest:
    """A request for a servable: ``version=None`` means the latest (highest) available version.

    ``str()`` is TF Serving's text, ``Latest(m)`` or ``Specific(m, 3)``, which appears verbatim in
    ``Servable not found for request: ...`` errors.
    """

    name: str
    version: int | None = None

    @staticmethod
    def latest(name: str) -> ServableRequest:
        return ServableRequest(name, None)

    @staticmethod
    def specific(name: str, version: int) -> ServableRequest:
        return ServableRequest(name, int(version))

    @property
    def is_latest(self) -> bool:
        return self.version is None

    def __str__(self) -> str:
        if self.version is None:
            return f"Latest({self.name})"
        return f"Specific({self.name}, {self.version})"
