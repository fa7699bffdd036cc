"""Version transition policies as tables (TF Serving's aspired_version_policy tests, in spirit)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbserve.core.harness import HarnessState
from nbserve.core.ids import ServableId
from nbserve.core.policy import (
    POLICIES,
    Action,
    AspiredVersionInfo,
    availability_preserving,
    resource_preserving,
)

S = HarnessState
A, U = True, False  # aspired / un-aspired


def snap(*rows: tuple[int, bool, HarnessState]) -> list[AspiredVersionInfo]:
    return [AspiredVersionInfo(ServableId("m", v), aspired, state) for v, aspired, state in rows]


def load(v: int) -> Action:
    return Action("load", ServableId("m", v))


def unload(v: int) -> Action:
    return Action("unload", ServableId("m", v))


AVAILABILITY = [
    ("nothing managed", [], None),
    ("first version", [(1, A, S.NEW)], load(1)),
    ("highest new first", [(1, A, S.NEW), (2, A, S.NEW), (3, A, S.NEW)], load(3)),
    ("next new while another loads", [(1, A, S.NEW), (2, A, S.LOADING)], load(1)),
    ("new version next to a ready one", [(1, A, S.READY), (2, A, S.NEW)], load(2)),
    ("keep the last serving version", [(1, U, S.READY), (2, A, S.NEW)], load(2)),
    ("replacement still loading", [(1, U, S.READY), (2, A, S.LOADING)], None),
    ("replacement load approved", [(1, U, S.READY), (2, A, S.LOAD_APPROVED)], None),
    ("replacement ready: unload old", [(1, U, S.READY), (2, A, S.READY)], unload(1)),
    ("replacement failed: old keeps serving", [(1, U, S.READY), (2, A, S.ERROR)], None),
    ("no aspired version at all", [(1, U, S.READY)], unload(1)),
    ("no aspired: lowest first", [(2, U, S.READY), (1, U, S.READY)], unload(1)),
    ("two un-aspired ready", [(1, U, S.READY), (2, U, S.READY), (3, A, S.NEW)], unload(1)),
    ("two un-aspired ready, one loading",
     [(1, U, S.READY), (2, U, S.READY), (3, A, S.LOADING)], unload(1)),
    ("unload before load", [(1, U, S.READY), (2, A, S.READY), (3, A, S.NEW)], unload(1)),
    ("error is not reloaded", [(1, A, S.ERROR)], None),
    ("disabled aspired is not reloaded", [(1, A, S.DISABLED)], None),
    ("all aspired ready", [(1, A, S.READY), (2, A, S.READY)], None),
    ("old one already unloading", [(1, U, S.QUIESCING), (2, A, S.READY)], None),
    ("un-aspired new is ignored", [(1, U, S.NEW), (2, A, S.NEW)], load(2)),
    ("un-aspired new only", [(1, U, S.NEW)], None),
]

RESOURCE = [
    ("nothing managed", [], None),
    ("first version", [(1, A, S.NEW)], load(1)),
    ("highest new first", [(1, A, S.NEW), (2, A, S.NEW)], load(2)),
    ("unload old before loading new", [(1, U, S.READY), (2, A, S.NEW)], unload(1)),
    ("unload even if replacement failed", [(1, U, S.READY), (2, A, S.ERROR)], unload(1)),
    ("lowest un-aspired first", [(2, U, S.READY), (1, U, S.READY), (3, A, S.NEW)], unload(1)),
    ("wait while quiescing", [(1, U, S.QUIESCING), (2, A, S.NEW)], None),
    ("wait while unloading", [(1, U, S.UNLOADING), (2, A, S.NEW)], None),
    ("wait while un-aspired loads", [(1, U, S.LOADING), (2, A, S.NEW)], None),
    ("wait for un-aspired new", [(1, U, S.NEW), (2, A, S.NEW)], None),
    ("old disabled: load", [(1, U, S.DISABLED), (2, A, S.NEW)], load(2)),
    ("old in error: load", [(1, U, S.ERROR), (2, A, S.NEW)], load(2)),
    ("aspired ready does not block", [(1, A, S.READY), (2, A, S.NEW)], load(2)),
    ("error is not reloaded", [(1, A, S.ERROR)], None),
]


@pytest.mark.parametrize("rows,expected", [c[1:] for c in AVAILABILITY],
                         ids=[c[0] for c in AVAILABILITY])
def test_availability_preserving(rows, expected):
    assert availability_preserving(snap(*rows)) == expected


@pytest.mark.parametrize("rows,expected", [c[1:] for c in RESOURCE], ids=[c[0] for c in RESOURCE])
def test_resource_preserving(rows, expected):
    assert resource_preserving(snap(*rows)) == expected


def test_policies_registry():
    assert POLICIES == {"availability_preserving": availability_preserving,
                        "resource_preserving": resource_preserving}


snapshots = st.dictionaries(st.integers(1, 8), st.tuples(st.booleans(), st.sampled_from(S)),
                            max_size=6).map(
    lambda d: snap(*[(v, a, s) for v, (a, s) in d.items()]))


@pytest.mark.parametrize("policy", [availability_preserving, resource_preserving])
@given(versions=snapshots)
def test_policy_invariants(policy, versions):
    """Never unload an aspired version; only load the highest new aspired one."""
    action = policy(versions)
    if action is None:
        return
    target = next(v for v in versions if v.id == action.id)
    if action.kind == "unload":
        assert not target.is_aspired and target.state is S.READY
    else:
        new_aspired = [v.id.version for v in versions if v.is_aspired and v.state is S.NEW]
        assert target.is_aspired and target.id.version == max(new_aspired)


@given(versions=snapshots)
def test_availability_never_drops_last_ready_for_unready_replacement(versions):
    action = availability_preserving(versions)
    if action is not None and action.kind == "unload":
        ready_after = [v for v in versions if v.state is S.READY and v.id != action.id]
        aspired = [v for v in versions if v.is_aspired]
        assert ready_after or not aspired
