"""Shared fixtures for the lifecycle tests: an event bus, a state monitor and helpers."""

from __future__ import annotations

import pytest

from nbserve.core import (
    AspiredVersionsManager,
    EventBus,
    ManagerState,
    ServableData,
    ServableId,
    StateMonitor,
)
from nbserve.testing import FakeLoader


class Lifecycle:
    """A bus + monitor pair, and a manager factory that records sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.bus = EventBus()
        self.monitor = StateMonitor(self.bus)
        self.sleeps: list[float] = []
        self.managers: list[AspiredVersionsManager] = []

    def manager(self, **kwargs) -> AspiredVersionsManager:
        kwargs.setdefault("sleep", self.sleeps.append)
        manager = AspiredVersionsManager(self.bus, **kwargs)
        self.managers.append(manager)
        return manager

    def states(self, name: str, version: int) -> list[ManagerState]:
        """The published states of one version, in order."""
        return [e.state for e in self.monitor.history(name) if e.id.version == version]

    def latest(self, name: str, version: int):
        return self.monitor.states(name).get(version)


def item(name: str, version: int, loader: FakeLoader | None = None) -> ServableData:
    return ServableData(ServableId(name, version), loader if loader is not None else FakeLoader())


def drain(manager: AspiredVersionsManager, max_steps: int = 100) -> int:
    """Step until a step does nothing; returns the number of productive steps."""
    for n in range(max_steps):
        if not manager.step():
            return n
    raise AssertionError(f"manager still busy after {max_steps} steps")


@pytest.fixture
def life():
    lc = Lifecycle()
    yield lc
    for manager in lc.managers:
        manager.stop(timeout=5)
