"""AspiredVersionsManager driven by hand with step(): loads and unloads run inline."""

from __future__ import annotations

import threading

import pytest

from nbserve.core import HarnessState, ManagerState, ServableData, ServableId, ServableRequest
from nbserve.errors import ServingError, StatusCode
from nbserve.testing import FakeLoader, FakeServable

from .conftest import drain, item

M = ManagerState
LATEST = ServableRequest.latest("m")


def served_version(manager, request=LATEST) -> int:
    with manager.handle(request) as h:
        return h.id.version


def test_request_text():
    assert str(ServableRequest.latest("m")) == "Latest(m)"
    assert str(ServableRequest.specific("m", 3)) == "Specific(m, 3)"
    assert str(ServableRequest("m", 4)) == "Specific(m, 4)"
    assert str(ServableId("m", 2)) == "{name: m version: 2}"
    assert sorted([ServableId("b", 1), ServableId("a", 2), ServableId("a", 1)]) == [
        ServableId("a", 1), ServableId("a", 2), ServableId("b", 1)]


def test_initial_load(life):
    manager = life.manager()
    servable = FakeServable("one")
    loader = FakeLoader(servable)
    manager.set_aspired_versions("m", [item("m", 1, loader)])
    assert life.states("m", 1) == []  # applied at the next step, not in the callback
    assert manager.step() is True
    assert life.states("m", 1) == [M.START, M.LOADING, M.AVAILABLE]
    assert manager.available_versions("m") == [1]
    assert manager.list_available() == [ServableId("m", 1)]
    with manager.handle(LATEST) as h:
        assert h.id == ServableId("m", 1) and h.servable is servable
    with manager.handle(ServableRequest.specific("m", 1)) as h:
        assert h.servable.value == "one"
    assert manager.step() is False and loader.load_calls == 1


def test_handle_errors_exact_text(life):
    manager = life.manager()
    manager.set_aspired_versions("m", [item("m", 1)])
    drain(manager)
    for request, text in [
        (ServableRequest.latest("nope"), "Servable not found for request: Latest(nope)"),
        (ServableRequest.specific("m", 7), "Servable not found for request: Specific(m, 7)"),
        (ServableRequest.specific("nope", 1), "Servable not found for request: Specific(nope, 1)"),
    ]:
        with pytest.raises(ServingError) as err:
            manager.handle(request)
        assert err.value.code is StatusCode.NOT_FOUND and err.value.message == text


def test_availability_preserving_swap(life):
    manager = life.manager()
    v1, v2 = FakeLoader(FakeServable(1)), FakeLoader(FakeServable(2))
    manager.set_aspired_versions("m", [item("m", 1, v1)])
    drain(manager)
    manager.set_aspired_versions("m", [item("m", 2, v2)])
    assert manager.step() is True  # loads v2; v1 keeps serving
    assert manager.available_versions("m") == [2, 1]
    assert served_version(manager) == 2
    assert served_version(manager, ServableRequest.specific("m", 1)) == 1
    assert manager.step() is True  # now unloads v1
    assert manager.available_versions("m") == [2]
    assert v1.calls == ["load", "unload"] and v2.calls == ["load"]
    assert life.states("m", 1) == [M.START, M.LOADING, M.AVAILABLE, M.UNLOADING, M.END]
    order = [(e.id.version, e.state) for e in life.monitor.history("m")]
    assert order.index((2, M.AVAILABLE)) < order.index((1, M.UNLOADING))
    with pytest.raises(ServingError, match=r"^Servable not found for request: Specific\(m, 1\)$"):
        manager.handle(ServableRequest.specific("m", 1))
    drain(manager)
    assert manager.managed_versions("m") == [2]  # v1 forgotten by the manager ...
    assert life.latest("m", 1).state is M.END  # ... but its END stays in the monitor


def test_failed_replacement_leaves_old_version_serving(life):
    manager = life.manager(max_num_load_retries=0)
    error = ServingError(StatusCode.INVALID_ARGUMENT, "bad graph")
    v2 = FakeLoader(error=error)
    manager.set_aspired_versions("m", [item("m", 1)])
    drain(manager)
    manager.set_aspired_versions("m", [item("m", 2, v2)])
    drain(manager)
    assert life.states("m", 2) == [M.START, M.LOADING, M.END]
    assert life.latest("m", 2).error == error
    assert manager.available_versions("m") == [1] and served_version(manager) == 1
    for _ in range(3):
        assert manager.step() is False  # v2 stays in error while aspired: no reload
    assert v2.load_calls == 1


def test_retries_count_and_interval(life):
    manager = life.manager(max_num_load_retries=3, load_retry_interval_s=2.5)
    loader = FakeLoader(error=RuntimeError("flaky disk"))
    manager.set_aspired_versions("m", [item("m", 1, loader)])
    drain(manager)
    assert loader.load_calls == 1 + 3
    assert life.sleeps == [2.5, 2.5, 2.5]
    end = life.latest("m", 1)
    assert end.state is M.END and end.error == ServingError(StatusCode.UNKNOWN, "flaky disk")


def test_default_retry_policy_is_five_retries(life):
    manager = life.manager()
    loader = FakeLoader(fail_times=-1)
    manager.set_aspired_versions("m", [item("m", 1, loader)])
    drain(manager)
    assert loader.load_calls == 6 and life.sleeps == [60.0] * 5


def test_unaspiring_during_retries_cancels_them(life):
    manager = life.manager(max_num_load_retries=5)
    loader = FakeLoader(error=RuntimeError("bad"))
    managers = []

    def sleep(seconds: float) -> None:  # the source un-aspires the version while we wait
        managers[0].set_aspired_versions("m", [])

    manager = life.manager(max_num_load_retries=5, sleep=sleep)
    managers.append(manager)
    manager.set_aspired_versions("m", [item("m", 1, loader)])
    drain(manager)
    assert loader.load_calls == 1
    end = life.latest("m", 1)
    assert end.state is M.END
    assert end.error == ServingError(StatusCode.CANCELLED, "Loading of servable cancelled")
    assert manager.managed_versions("m") == []


def test_error_item_goes_straight_to_end(life):
    manager = life.manager()
    error = ServingError(StatusCode.INTERNAL, "No platform found for model")
    manager.set_aspired_versions("m", [ServableData.failed(ServableId("m", 1), error)])
    drain(manager)
    assert life.states("m", 1) == [M.START, M.END]
    assert life.latest("m", 1).error == error
    assert manager.managed_versions("m") == [1] and manager.available_versions("m") == []
    assert manager.snapshot("m")[0].state is HarnessState.ERROR


def test_error_version_reloads_only_after_leaving_the_aspired_list(life):
    manager = life.manager(max_num_load_retries=0)
    manager.set_aspired_versions("m", [item("m", 1, FakeLoader(fail_times=1))])
    drain(manager)
    assert life.latest("m", 1).state is M.END
    still_aspired = FakeLoader()
    manager.set_aspired_versions("m", [item("m", 1, still_aspired)])  # same list again
    drain(manager)
    assert still_aspired.load_calls == 0 and life.latest("m", 1).state is M.END
    manager.set_aspired_versions("m", [])
    drain(manager)
    assert manager.managed_versions("m") == []
    fixed = FakeLoader()
    manager.set_aspired_versions("m", [item("m", 1, fixed)])
    drain(manager)
    assert fixed.load_calls == 1 and manager.available_versions("m") == [1]
    assert life.states("m", 1) == [M.START, M.LOADING, M.END, M.START, M.LOADING, M.AVAILABLE]


def test_end_versions_kept_in_monitor_until_forgotten(life):
    manager = life.manager()
    manager.set_aspired_versions("m", [item("m", 1)])
    drain(manager)
    manager.set_aspired_versions("m", [])
    drain(manager)
    assert manager.available_versions("m") == [] and manager.managed_versions("m") == []
    assert life.monitor.states("m")[1].state is M.END
    life.monitor.forget_ended("m")
    assert life.monitor.states("m") == {}


def test_still_aspired_versions_are_never_unloaded(life):
    manager = life.manager()
    loaders = {v: FakeLoader() for v in (1, 2, 3)}
    manager.set_aspired_versions("m", [item("m", v, loaders[v]) for v in (1, 2, 3)])
    drain(manager)
    order = [e.id.version for e in life.monitor.history("m") if e.state is M.LOADING]
    assert order == [3, 2, 1]  # highest first
    manager.set_aspired_versions("m", [item("m", v) for v in (1, 2, 3)])
    manager.set_aspired_versions("m", [item("m", v) for v in (2, 3)])  # replaces the previous list
    drain(manager)
    assert manager.available_versions("m") == [3, 2]
    assert [ld.unload_calls for ld in loaders.values()] == [1, 0, 0]
    assert [ld.load_calls for ld in loaders.values()] == [1, 1, 1]


def test_new_version_unaspired_before_loading_ends_without_loading(life):
    manager = life.manager()
    v1 = FakeLoader()
    manager.set_aspired_versions("m", [item("m", 1, v1), item("m", 2)])
    manager.step()  # loads v2 only
    manager.set_aspired_versions("m", [item("m", 2)])
    drain(manager)
    assert v1.load_calls == 0
    assert life.states("m", 1) == [M.START, M.END] and life.latest("m", 1).error is None
    assert manager.managed_versions("m") == [2]


def test_reaspired_ready_version_is_kept(life):
    """v2 fails, the source goes back to [v1]: v1 never stops serving and is not reloaded."""
    manager = life.manager(max_num_load_retries=0)
    v1 = FakeLoader()
    manager.set_aspired_versions("m", [item("m", 1, v1)])
    drain(manager)
    manager.set_aspired_versions("m", [item("m", 2, FakeLoader(fail_times=-1))])
    drain(manager)
    assert manager.snapshot("m")[0].is_aspired is False
    manager.set_aspired_versions("m", [item("m", 1)])
    drain(manager)
    assert v1.calls == ["load"]
    assert life.states("m", 1) == [M.START, M.LOADING, M.AVAILABLE]
    assert manager.managed_versions("m") == [1] and manager.snapshot("m")[0].is_aspired


def test_resource_preserving_unloads_before_loading(life):
    manager = life.manager(policy="resource_preserving")
    journal: list = []
    manager.set_aspired_versions("m", [item("m", 1, FakeLoader(journal=journal, label=1))])
    drain(manager)
    manager.set_aspired_versions("m", [item("m", 2, FakeLoader(journal=journal, label=2))])
    assert manager.step() is True
    assert manager.available_versions("m") == []  # brief unavailability, never two in memory
    drain(manager)
    assert journal == [("load", 1), ("unload", 1), ("load", 2)]
    assert manager.available_versions("m") == [2]


def test_unknown_policy_is_rejected(life):
    with pytest.raises(ValueError, match="resource_preserving"):
        life.manager(policy="greedy")


def test_models_are_independent_and_unloads_go_first(life):
    manager = life.manager()
    manager.set_aspired_versions("a", [item("a", 1)])
    manager.set_aspired_versions("b", [item("b", 1)])
    drain(manager)
    assert manager.list_available() == [ServableId("a", 1), ServableId("b", 1)]
    manager.set_aspired_versions("a", [])
    manager.set_aspired_versions("b", [item("b", 1), item("b", 2)])
    manager.step()
    assert manager.list_available() == [ServableId("b", 1)]  # the unload of a/1 came first
    drain(manager)
    assert manager.list_available() == [ServableId("b", 1), ServableId("b", 2)]
    assert manager.managed_names() == ["b"]


def test_items_of_another_name_are_ignored(life):
    manager = life.manager()
    manager.set_aspired_versions("m", [item("other", 1), item("m", 2)])
    drain(manager)
    assert manager.list_available() == [ServableId("m", 2)]


def test_unload_waits_for_outstanding_handle(life):
    manager = life.manager()
    v1 = FakeLoader(FakeServable(1))
    manager.set_aspired_versions("m", [item("m", 1, v1)])
    drain(manager)
    handle = manager.handle(LATEST)
    manager.set_aspired_versions("m", [])
    stepper = threading.Thread(target=drain, args=(manager,))
    stepper.start()
    assert life.monitor.wait_for_state(ServableId("m", 1), M.UNLOADING, 5)
    with pytest.raises(ServingError):  # out of the serving map already ...
        manager.handle(LATEST)
    assert v1.unload_calls == 0 and not handle.servable.unloaded  # ... but not unloaded
    handle.release()
    handle.release()  # idempotent
    stepper.join(5)
    assert not stepper.is_alive()
    assert v1.unload_calls == 1 and life.latest("m", 1).state is M.END


def test_leaked_handle_is_released_when_collected(life):
    manager = life.manager()
    manager.set_aspired_versions("m", [item("m", 1)])
    drain(manager)
    handle = manager.handle(LATEST)
    gate = manager._serving["m"].by_version[1].gate
    assert gate.count == 1
    del handle
    assert gate.count == 0


def test_manager_is_an_aspired_versions_callback(life):
    manager = life.manager()
    manager("m", [item("m", 1)])
    drain(manager)
    assert manager.available_versions("m") == [1]


def test_version_dropped_and_restored_during_retries_keeps_retrying(life):
    managers = []

    def sleep(seconds: float) -> None:  # the source flaps while the load waits to retry
        managers[0].set_aspired_versions("m", [])
        managers[0].set_aspired_versions("m", [item("m", 1)])

    manager = life.manager(max_num_load_retries=3, sleep=sleep)
    managers.append(manager)
    loader = FakeLoader(fail_times=1)
    manager.set_aspired_versions("m", [item("m", 1, loader)])
    drain(manager)
    assert loader.load_calls == 2 and manager.available_versions("m") == [1]
    assert life.states("m", 1) == [M.START, M.LOADING, M.AVAILABLE]


def test_cancelled_version_aspired_again_gets_a_new_harness(life):
    managers = []
    manager = life.manager(max_num_load_retries=3,
                           sleep=lambda s: managers[0].set_aspired_versions("m", []))
    managers.append(manager)
    broken = FakeLoader(fail_times=-1)
    manager.set_aspired_versions("m", [item("m", 1, broken)])
    manager.step()
    assert life.latest("m", 1).error.code is StatusCode.CANCELLED
    fixed = FakeLoader()
    manager.set_aspired_versions("m", [item("m", 1, fixed)])  # replaces the pending empty list
    drain(manager)
    assert broken.load_calls == 1 and fixed.load_calls == 1
    assert life.states("m", 1) == [M.START, M.LOADING, M.END, M.START, M.LOADING, M.AVAILABLE]
