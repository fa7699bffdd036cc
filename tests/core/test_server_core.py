"""ServerCore with FakeLoaders (no TensorFlow): config, labels, reload, status, policy override."""

from __future__ import annotations

import os
import time

import pytest

from nbserve.core.events import ManagerState
from nbserve.core.ids import ServableId
from nbserve.core.server_core import ServerCore
from nbserve.core.source import ServableData
from nbserve.errors import ServingError, StatusCode
from nbserve.options import (
    FileSystemSourceOptions,
    ManagerOptions,
    ModelConfig,
    ServerCoreOptions,
    ServerOptions,
    VersionPolicy,
    core_options,
)
from nbserve.sources.filesystem import FileSystemStoragePathSource
from nbserve.testing import FakeLoader, FakeServable


def make_versions(base, *versions):
    for v in versions:
        path = base / str(v)
        path.mkdir(parents=True)
        (path / "saved_model.pb").write_bytes(b"x")
        past = time.time() - 60
        os.utime(path / "saved_model.pb", (past, past))
        os.utime(path, (past, past))


@pytest.fixture
def core_factory():
    cores = []

    def make(models, fail=(), **opts):
        def factory(sid, path):
            if sid.version in fail:
                return FakeLoader(error=ServingError(StatusCode.NOT_FOUND, f"broken {sid.version}"))
            return FakeLoader(FakeServable(value=sid.version, id=sid))

        options = ServerOptions(models=tuple(models), max_num_load_retries=0,
                                file_system_poll_wait_seconds=0.1, **opts)
        core = ServerCore(core_options(options), factory,
                          source_factory=FileSystemStoragePathSource.from_options)
        cores.append(core)
        core.start()
        return core

    yield make
    for core in cores:
        core.stop()


def wait_available(core, name, version, timeout=10):
    assert core.monitor.wait_until(
        lambda m: (s := m.states(name).get(version)) is not None and s.state in (
            ManagerState.AVAILABLE, ManagerState.END), timeout)
    return core.monitor.states(name)[version]


def test_serves_latest_and_labels(core_factory, tmp_path):
    make_versions(tmp_path, 1, 2)
    core = core_factory([ModelConfig("m", str(tmp_path), version_policy=VersionPolicy.all(),
                                     version_labels={"stable": 1, "canary": 2, "later": 3})])
    wait_available(core, "m", 1)
    wait_available(core, "m", 2)
    with core.handle("m") as h:
        assert h.servable.value == 2
    with core.handle("m", label="stable") as h:
        assert h.servable.value == 1
    with pytest.raises(ServingError) as info:
        core.handle("m", label="nope")
    assert (info.value.code, info.value.message) == (
        StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: nope")
    with pytest.raises(ServingError) as info:
        core.handle("m", label="later")  # a label may point at a version not loaded (yet)
    assert info.value.message == "Servable not found for request: Specific(m, 3)"


def test_status_texts(core_factory, tmp_path):
    make_versions(tmp_path, 7)
    core = core_factory([ModelConfig("m", str(tmp_path))])
    wait_available(core, "m", 7)
    assert [s.id.version for s in core.version_states("m")] == [7]
    with pytest.raises(ServingError, match=r"^Could not find any versions of model x$"):
        core.version_states("x")
    with pytest.raises(ServingError, match=r"^Could not find version 8 of model m$"):
        core.version_states("m", 8)


def test_failed_version_is_end_with_error_and_old_keeps_serving(core_factory, tmp_path):
    make_versions(tmp_path, 1)
    core = core_factory([ModelConfig("m", str(tmp_path))], fail=(2,))
    wait_available(core, "m", 1)
    make_versions(tmp_path, 2)
    state = wait_available(core, "m", 2)
    assert state.state == ManagerState.END and state.error.message == "broken 2"
    with core.handle("m") as h:
        assert h.servable.value == 1


def test_reload_drops_and_adds_models(core_factory, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_versions(a, 1)
    make_versions(b, 1)
    core = core_factory([ModelConfig("a", str(a))])
    wait_available(core, "a", 1)
    core.reload_config([ModelConfig("b", str(b))], wait_timeout=10)
    with core.handle("b") as h:
        assert h.servable.value == 1
    assert core.monitor.wait_until(
        lambda m: m.states("a")[1].state == ManagerState.END, 10)
    assert core.known_models() == ["a", "b"]  # removed models stay reported (END)


@pytest.mark.parametrize("models,message", [
    ([ModelConfig("m", "/x"), ModelConfig("m", "/y")],
     "Illegal to list model m multiple times in config list"),
    ([ModelConfig("m", "/x", model_platform="onnx")], "Model m requests unsupported platform onnx"),
    ([ModelConfig("m", "/x", model_platform="")],
     "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
     "ModelServerConfig::model_platform, model name is m"),
])
def test_invalid_config_is_rejected_and_running_config_stays(core_factory, tmp_path, models,
                                                             message):
    make_versions(tmp_path, 1)
    core = core_factory([ModelConfig("keep", str(tmp_path))])
    with pytest.raises(ServingError) as info:
        core.reload_config(models)
    assert info.value.message == message
    assert list(core.models()) == ["keep"]


def test_moving_a_label_needs_an_available_target(core_factory, tmp_path):
    make_versions(tmp_path, 1)
    core = core_factory([ModelConfig("m", str(tmp_path), version_labels={"stable": 1})])
    wait_available(core, "m", 1)
    with pytest.raises(ServingError) as info:
        core.reload_config([ModelConfig("m", str(tmp_path), version_labels={"stable": 5})])
    assert info.value.code == StatusCode.FAILED_PRECONDITION
    assert info.value.message == ("Request to assign label to version 5 of model m, which is not "
                                  "currently available for inference")


def test_reload_reports_models_that_fail(core_factory, tmp_path):
    make_versions(tmp_path, 4)
    core = core_factory([], fail=(4,))
    with pytest.raises(ServingError) as info:
        core.reload_config([ModelConfig("bad", str(tmp_path))], wait_timeout=10)
    assert info.value.code == StatusCode.UNKNOWN
    assert info.value.message.startswith(
        "1 model(s) did not become available: {{id: bad version: 4")


def test_policy_override_serves_an_older_version(core_factory, tmp_path):
    make_versions(tmp_path, 1, 2)
    core = core_factory([ModelConfig("m", str(tmp_path))])
    wait_available(core, "m", 2)
    core.set_version_policy("m", VersionPolicy.specific(1))
    wait_available(core, "m", 1)
    assert core.monitor.wait_until(lambda m: m.states("m")[2].state == ManagerState.END, 10)
    with core.handle("m") as h:
        assert h.servable.value == 1
    core.set_version_policy("m", None)
    assert core.monitor.wait_until(
        lambda m: 2 in core.manager.available_versions("m"), 10)


def test_core_options_is_the_one_translation_of_server_options():
    flat = ServerOptions(
        models=(ModelConfig("m", "/models/m"),), host="0.0.0.0", auth_token="secret",
        aspired_version_policy="resource_preserving", max_num_load_retries=2,
        load_retry_interval_micros=1_500_000, num_load_threads=0, manager_interval_seconds=0.5,
        file_system_poll_wait_seconds=7, version_settle_seconds=0.2,
        incomplete_version_grace_seconds=9, allow_version_labels_for_unavailable_models=False)
    assert core_options(flat) == ServerCoreOptions(
        models=(ModelConfig("m", "/models/m"),),
        manager=ManagerOptions("resource_preserving", max_num_load_retries=2,
                               load_retry_interval_seconds=1.5, num_load_threads=4,
                               manager_interval_seconds=0.5),
        source=FileSystemSourceOptions(poll_wait_seconds=7, settle_seconds=0.2,
                                       incomplete_grace_seconds=9),
        allow_version_labels_for_unavailable_models=False)
    assert core_options(flat.replace(load_retry_interval_micros=-1,
                                     num_load_threads=3)).manager.load_retry_interval_seconds == 0
    assert core_options(flat.replace(num_load_threads=3)).manager.num_load_threads == 3


class ListSource:
    """A model source that emits one version per configured model (no file system)."""

    def __init__(self, loader_factory, options):
        self.loader_factory, self.options = loader_factory, options
        self.callback = None
        self.started = self.stopped = False

    def set_aspired_versions_callback(self, callback):
        self.callback = callback

    def update_config(self, models):
        for model in models:
            sid = ServableId(model.name, 7)
            self.callback(model.name, [ServableData(sid, self.loader_factory(sid, "/nowhere"))])

    def start(self):
        self.started = True

    def stop(self, timeout=5.0):
        self.stopped = True


def test_server_core_drives_the_injected_source():
    made = []

    def source_factory(loader_factory, options):
        made.append(ListSource(loader_factory, options))
        return made[-1]

    options = ServerCoreOptions(models=(ModelConfig("m", "/abs/m"),),
                                source=FileSystemSourceOptions(poll_wait_seconds=3))
    core = ServerCore(options, lambda sid, path: FakeLoader(FakeServable(value=path, id=sid)),
                      source_factory=source_factory)
    (source,) = made
    assert source.options.poll_wait_seconds == 3
    core.start()
    try:
        assert source.started
        assert wait_available(core, "m", 7).state == ManagerState.AVAILABLE
        with core.handle("m") as handle:
            assert (handle.servable.value, handle.servable.id) == ("/nowhere", ServableId("m", 7))
    finally:
        core.stop()
    assert source.stopped
