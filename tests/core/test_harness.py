"""LoaderHarness: the state machine, retries, cancellation, error capture, quiescing."""

from __future__ import annotations

import threading

import pytest

from nbserve.core.events import EventBus, ManagerState, StateMonitor
from nbserve.core.harness import CANCELLED_MESSAGE, HarnessState, LoaderHarness, capture_error
from nbserve.core.ids import ServableId
from nbserve.errors import ServingError, StatusCode
from nbserve.testing import FakeLoader, FakeServable

ID = ServableId("m", 1)
M = ManagerState


class Rig:
    def __init__(self, loader: FakeLoader, **kwargs) -> None:
        self.bus = EventBus()
        self.monitor = StateMonitor(self.bus)
        self.sleeps: list[float] = []
        kwargs.setdefault("sleep", self.sleeps.append)
        self.loader = loader
        self.harness = LoaderHarness(ID, loader, self.bus.publish, **kwargs)

    @property
    def published(self) -> list[ManagerState]:
        return [e.state for e in self.monitor.history()]

    @property
    def last(self):
        return self.monitor.state(ID)

    def load(self, on_loaded=lambda h: None) -> bool:
        self.harness.announce()
        self.harness.load_requested()
        self.harness.load_approved()
        return self.harness.load(on_loaded)


def test_load_and_unload_walk_every_state():
    servable = FakeServable("v1")
    rig = Rig(FakeLoader(servable))
    h = rig.harness
    seen: list[HarnessState] = [h.state]
    assert rig.load(on_loaded=lambda hh: seen.append(hh.state)) is True
    assert seen == [HarnessState.NEW, HarnessState.LOADING]  # in the map before READY
    assert h.state is HarnessState.READY and h.servable is servable
    h.unload_requested()
    assert h.state is HarnessState.UNLOAD_REQUESTED
    h.unload(on_quiescing=lambda hh: seen.append(hh.state))
    assert seen[-1] is HarnessState.QUIESCING
    assert h.state is HarnessState.DISABLED and h.servable is None and h.error is None
    assert rig.published == [M.START, M.LOADING, M.AVAILABLE, M.UNLOADING, M.END]
    assert rig.loader.calls == ["load", "unload"] and rig.loader.violations == []


def test_available_event_carries_load_time_and_detail():
    ticks = iter([10.0, 12.5])
    rig = Rig(FakeLoader(fail_times=1), clock=lambda: next(ticks), max_num_load_retries=1)
    rig.load()
    available = next(e for e in rig.monitor.history() if e.state is M.AVAILABLE)
    assert available.load_seconds == 2.5
    assert available.detail == {"load_attempts": 2}


def test_loader_detail_is_attached():
    loader = FakeLoader()
    loader.detail = lambda: {"device": "/device:CPU:0"}
    rig = Rig(loader)
    rig.load()
    assert rig.last.detail == {"load_attempts": 1, "device": "/device:CPU:0"}


def test_illegal_transition_is_internal_error_in_tf_words():
    rig = Rig(FakeLoader())
    with pytest.raises(ServingError) as err:
        rig.harness.load_approved()
    assert err.value.code is StatusCode.INTERNAL
    assert err.value.message == "Illegal request to transition from state new to load-approved"
    with pytest.raises(ServingError):
        rig.harness.unload_requested()


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_failed_load_is_retried_then_ends_in_error(retries):
    error = ServingError(StatusCode.NOT_FOUND, "no saved_model.pb")
    rig = Rig(FakeLoader(error=error), max_num_load_retries=retries, load_retry_interval_s=7.0)
    assert rig.load() is False
    assert rig.loader.load_calls == 1 + retries
    assert rig.sleeps == [7.0] * retries
    assert rig.harness.state is HarnessState.ERROR and rig.harness.error == error
    assert rig.published == [M.START, M.LOADING, M.END]
    assert rig.last.error == error


def test_load_succeeds_after_transient_failures():
    rig = Rig(FakeLoader(fail_times=2), max_num_load_retries=5)
    assert rig.load() is True
    assert rig.loader.load_calls == 3 and len(rig.sleeps) == 2
    assert rig.harness.error is None and rig.last.state is M.AVAILABLE


@pytest.mark.parametrize("exc,expected", [
    (RuntimeError("disk on fire"), ServingError(StatusCode.UNKNOWN, "disk on fire")),
    (ValueError(), ServingError(StatusCode.UNKNOWN, "ValueError")),
    (ServingError(StatusCode.DATA_LOSS, "corrupt"), ServingError(StatusCode.DATA_LOSS, "corrupt")),
])
def test_error_capture(exc, expected):
    assert capture_error(exc) == expected
    rig = Rig(FakeLoader(error=exc), max_num_load_retries=0)
    rig.load()
    assert rig.last.error == expected


def test_cancel_between_retries_ends_with_cancelled():
    harness: list[LoaderHarness] = []
    rig = Rig(FakeLoader(error=RuntimeError("bad")), max_num_load_retries=5,
              sleep=lambda s: harness[0].cancel_load_retries())  # un-aspired while waiting
    harness.append(rig.harness)
    assert rig.load() is False
    assert rig.loader.load_calls == 1
    assert rig.harness.error == ServingError(StatusCode.CANCELLED, CANCELLED_MESSAGE)
    assert rig.last.state is M.END and rig.last.error.message == "Loading of servable cancelled"


def test_default_retry_wait_is_cut_short_by_cancel():
    """No injected sleep: a 1-hour retry interval ends as soon as retries are cancelled."""
    loader = FakeLoader(error=RuntimeError("bad"))
    rig = Rig(loader, sleep=None, max_num_load_retries=5, load_retry_interval_s=3600.0)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (rig.load(), done.set()))
    thread.start()
    assert loader.load_started.wait(5)
    rig.harness.cancel_load_retries()
    assert done.wait(10), "cancel did not interrupt the retry wait"
    assert loader.load_calls == 1 and rig.last.error.code is StatusCode.CANCELLED


def test_cancel_before_load_skips_the_loader():
    rig = Rig(FakeLoader())
    rig.harness.cancel_load_retries()
    assert rig.load() is False
    assert rig.loader.load_calls == 0
    assert rig.harness.state is HarnessState.ERROR
    assert rig.last.error == ServingError(StatusCode.CANCELLED, CANCELLED_MESSAGE)


def test_cancel_during_successful_load_unloads_at_once():
    gate = threading.Event()
    rig = Rig(FakeLoader(block=gate))
    thread = threading.Thread(target=rig.load)
    thread.start()
    assert rig.loader.load_started.wait(5)
    rig.harness.cancel_load_retries()
    gate.set()
    thread.join(5)
    assert rig.loader.calls == ["load", "unload"] and rig.loader.violations == []
    assert rig.harness.state is HarnessState.DISABLED
    assert rig.published == [M.START, M.LOADING, M.END]
    assert rig.last.error.code is StatusCode.CANCELLED


def test_servable_failure_fails_the_version_and_unloads():
    loader = FakeLoader()
    loader.servable = lambda: (_ for _ in ()).throw(RuntimeError("no signatures"))
    rig = Rig(loader)
    assert rig.load() is False
    assert loader.unload_calls == 1
    assert rig.last.error == ServingError(StatusCode.UNKNOWN, "no signatures")


def test_fail_and_discard_publish_end():
    rig = Rig(FakeLoader())
    rig.harness.announce()
    rig.harness.fail(ServingError(StatusCode.INTERNAL, "No platform found for model"))
    assert rig.published == [M.START, M.END] and rig.harness.state is HarnessState.ERROR
    other = Rig(FakeLoader())
    other.harness.announce()
    other.harness.discard()
    assert other.published == [M.START, M.END] and other.last.error is None
    assert other.loader.load_calls == 0


def test_published_states_never_go_back():
    rig = Rig(FakeLoader())
    rig.harness.announce()
    rig.harness.announce()
    assert rig.published == [M.START]
    rig.load()
    rig.harness._emit(M.LOADING)  # a late, out-of-order event is dropped
    assert rig.published == [M.START, M.LOADING, M.AVAILABLE]


def test_unload_waits_for_outstanding_handles():
    rig = Rig(FakeLoader())
    rig.load()
    h = rig.harness
    handle = h.gate.acquire(ID, h.servable)
    assert handle is not None
    h.unload_requested()
    thread = threading.Thread(target=h.unload)
    thread.start()
    assert rig.monitor.wait_for_state(ID, M.UNLOADING, 5)
    assert h.gate.closed and h.gate.acquire(ID, h.servable) is None
    assert rig.loader.unload_calls == 0 and h.state is HarnessState.QUIESCING
    handle.release()
    thread.join(5)
    assert rig.loader.unload_calls == 1 and rig.last.state is M.END


def test_unload_with_quiesce_timeout_proceeds():
    rig = Rig(FakeLoader())
    rig.load()
    handle = rig.harness.gate.acquire(ID, rig.harness.servable)
    assert handle is not None
    rig.harness.unload_requested()
    rig.harness.unload(quiesce_timeout=0.01)
    assert rig.loader.unload_calls == 1 and rig.last.state is M.END


def test_failing_unload_is_reported_on_end():
    loader = FakeLoader()
    loader.unload = lambda: (_ for _ in ()).throw(RuntimeError("leak"))
    rig = Rig(loader)
    rig.load()
    rig.harness.unload_requested()
    rig.harness.unload()
    assert rig.harness.state is HarnessState.DISABLED
    assert rig.last.state is M.END and rig.last.error == ServingError(StatusCode.UNKNOWN, "leak")


def test_a_harness_without_a_loader_ends_in_internal_error_and_unloads_nothing():
    bus = EventBus()
    monitor = StateMonitor(bus)
    harness = LoaderHarness(ID, None, bus.publish)
    harness.announce()
    harness.load_requested()
    harness.load_approved()
    assert harness.load() is False
    assert harness.state is HarnessState.ERROR and harness.servable is None
    assert harness.error == ServingError(StatusCode.INTERNAL, "No loader for servable "
                                         "{name: m version: 1}")
    assert [e.state for e in monitor.history()] == [M.START, M.LOADING, M.END]
    assert harness._unload_loader() is None  # nothing loaded, nothing to release
