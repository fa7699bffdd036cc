"""Aspired-version policies (``core/aspired_version_policy.h`` and its two implementations).

A policy is a pure function: given an immutable snapshot of every managed version of one servable
(id, aspired or not, harness state) it returns at most one action, to load or to unload one
version. The manager asks it once per servable per step and executes unloads before loads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from nbserve.core.harness import HarnessState
from nbserve.core.ids import ServableId


@dataclass(frozen=True)
class AspiredVersionInfo:
    """One managed version as the policy sees it."""

    id: ServableId
    is_aspired: bool
    state: HarnessState


@dataclass(frozen=True)
class Action:
    kind: Literal["load", "unload"]
    id: ServableId


AspiredVersionPolicy = Callable[[Sequence[AspiredVersionInfo]], "Action | None"]


def _highest_new_aspired(versions: Sequence[AspiredVersionInfo]) -> Action | None:
    new = [v.id for v in versions if v.is_aspired and v.state is HarnessState.NEW]
    return Action("load", max(new, key=lambda i: i.version)) if new else None


def availability_preserving(versions: Sequence[AspiredVersionInfo]) -> Action | None:
    """Never leave the servable without a ready version while a replacement is coming.

    Unload the lowest-numbered un-aspired ready version, but only if there is no aspired version at
    all, or some aspired version is ready, or more than one un-aspired version is ready. Otherwise
    load the highest-numbered aspired version still new.
    """
    has_aspired = any(v.is_aspired for v in versions)
    has_aspired_ready = any(v.is_aspired and v.state is HarnessState.READY for v in versions)
    unaspired_ready = [v.id for v in versions
                       if not v.is_aspired and v.state is HarnessState.READY]
    if unaspired_ready and (not has_aspired or has_aspired_ready or len(unaspired_ready) > 1):
        return Action("unload", min(unaspired_ready, key=lambda i: i.version))
    return _highest_new_aspired(versions)


def resource_preserving(versions: Sequence[AspiredVersionInfo]) -> Action | None:
    """Never hold two versions in memory: unload first, load only once the old ones are gone.

    Unload an un-aspired ready version (the lowest first); while any un-aspired version is not
    finished (disabled or error), do nothing; then load the highest-numbered new aspired version.
    """
    unaspired_ready = [v.id for v in versions
                       if not v.is_aspired and v.state is HarnessState.READY]
    if unaspired_ready:
        return Action("unload", min(unaspired_ready, key=lambda i: i.version))
    if any(not v.is_aspired and not v.state.finished for v in versions):
        return None
    return _highest_new_aspired(versions)


POLICIES: Mapping[str, AspiredVersionPolicy] = {
    "availability_preserving": availability_preserving,
    "resource_preserving": resource_preserving,
}
