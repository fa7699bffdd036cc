"""``nbserve.shared_config``: a config reload received by one worker applies to every worker.

Two ServerCores with FakeLoaders stand for two workers sharing one private folder, as the
workers of ``nbserve-server --num_workers=2`` do (``tests/test_workers.py`` runs the real
processes)."""

from __future__ import annotations

import threading

import pytest
from tensorflow_serving.config import model_server_config_pb2

from nbserve.core.events import ManagerState
from nbserve.core.server_core import ServerCore
from nbserve.errors import ServingError, StatusCode
from nbserve.options import ModelConfig, ServerOptions, core_options
from nbserve.shared_config import SharedConfig, latest_models, read_published
from nbserve.sources.filesystem import FileSystemStoragePathSource
from nbserve.testing import FakeLoader, FakeServable
from tests.core.test_server_core import make_versions


def config(*names: str, base) -> model_server_config_pb2.ModelServerConfig:
    proto = model_server_config_pb2.ModelServerConfig()
    for name in names:
        entry = proto.model_config_list.config.add()
        entry.name, entry.base_path, entry.model_platform = name, str(base / name), "tensorflow"
    return proto


@pytest.fixture
def workers(tmp_path):
    """make(index, count=2, broken=(), generation=0) -> (core, SharedConfig); ``broken``
    models fail to load on that worker."""
    for name in ("a", "b", "c"):
        make_versions(tmp_path / "models" / name, 1)
    shared = tmp_path / "shared"
    shared.mkdir()
    made: list[tuple[ServerCore, SharedConfig]] = []

    def make(index: int, count: int = 2, broken: tuple[str, ...] = (), generation: int = 0,
             wait_timeout: float = 30.0, models: tuple[ModelConfig, ...] | None = None):
        def factory(sid, path):
            if sid.name in broken:
                return FakeLoader(error=ServingError(StatusCode.NOT_FOUND, f"broken {sid.name}"))
            return FakeLoader(FakeServable(value=sid.version, id=sid))

        if models is None:
            models = (ModelConfig("a", str(tmp_path / "models" / "a")),)
        options = ServerOptions(models=models, max_num_load_retries=0,
                                file_system_poll_wait_seconds=0.1)
        core = ServerCore(core_options(options), factory,
                          source_factory=FileSystemStoragePathSource.from_options)
        core.start()
        peer = SharedConfig(core, str(shared), index, count, generation=generation,
                            wait_timeout=wait_timeout)
        made.append((core, peer))
        return core, peer

    make.models = tmp_path / "models"  # type: ignore[attr-defined]
    make.shared = str(shared)  # type: ignore[attr-defined]
    yield make
    for core, peer in made:
        peer.close()
        core.stop()


def available(core: ServerCore, name: str) -> bool:
    return any(s.state == ManagerState.AVAILABLE for s in core.monitor.states(name).values())


def test_the_answer_waits_until_every_worker_serves_the_new_config(workers):
    (core0, peer0), (core1, peer1) = workers(0), workers(1)
    peer0.start()
    peer1.start()
    peer0.reload(config("a", "b", base=workers.models))
    assert available(core0, "b") and available(core1, "b")  # no wait: the answer did
    assert set(core1.models()) == {"a", "b"}
    assert read_published(workers.shared)[0] == 1
    peer1.reload(config("c", base=workers.models))  # from the other worker, generation 2
    assert set(core0.models()) == set(core1.models()) == {"c"} and available(core0, "c")


def test_an_invalid_config_is_refused_and_published_to_nobody(workers):
    (core0, peer0), (core1, peer1) = workers(0), workers(1)
    peer1.start()
    bad = config("a", base=workers.models)
    bad.model_config_list.config[0].base_path = "relative"
    with pytest.raises(ServingError) as raised:
        peer0.reload(bad)
    assert raised.value.code == StatusCode.INVALID_ARGUMENT
    assert read_published(workers.shared) is None
    assert set(core0.models()) == set(core1.models()) == {"a"}


def test_a_worker_that_cannot_load_the_model_makes_the_answer_its_error(workers):
    (_, peer0), (core1, peer1) = workers(0), workers(1, broken=("b",))
    peer1.start()
    with pytest.raises(ServingError) as raised:
        peer0.reload(config("a", "b", base=workers.models))
    assert raised.value.code == StatusCode.UNKNOWN
    assert raised.value.message.startswith("worker 1: 1 model(s) did not become available")
    assert "broken b" in raised.value.message and set(core1.models()) == {"a", "b"}


def test_a_worker_that_does_not_answer_in_time_is_named_then_catches_up(workers):
    (_, peer0), (core1, peer1) = workers(0, wait_timeout=0.5), workers(1)
    with pytest.raises(ServingError) as raised:  # worker 1 is not following yet
        peer0.reload(config("b", base=workers.models))
    assert raised.value.code == StatusCode.DEADLINE_EXCEEDED
    assert raised.value.message.startswith("worker(s) 1 did not apply the config within 0.5 s")
    peer1.catch_up()
    assert set(core1.models()) == {"b"} and available(core1, "b")


def test_a_worker_started_later_serves_the_latest_published_config(workers):
    (_, peer0), (_, peer1) = workers(0), workers(1)
    peer1.start()
    peer0.reload(config("b", base=workers.models))
    generation, models = latest_models(workers.shared)
    assert generation == 1 and [m.name for m in models] == ["b"]
    core, late = workers(1, generation=generation, models=models)  # a restarted worker 1
    late.start()
    late.catch_up()  # nothing newer: nothing applied again
    assert set(core.models()) == {"b"}


def test_concurrent_reloads_on_two_workers_end_on_the_same_config(workers):
    (core0, peer0), (core1, peer1) = workers(0), workers(1)
    peer0.start()
    peer1.start()
    errors: list[Exception] = []

    def reload(peer: SharedConfig, *names: str) -> None:
        try:
            peer.reload(config(*names, base=workers.models))
        except ServingError as exc:  # pragma: no cover - the assertion below shows it
            errors.append(exc)

    for _ in range(5):
        threads = [threading.Thread(target=reload, args=(peer0, "b")),
                   threading.Thread(target=reload, args=(peer1, "c"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        # each answer waited for the other worker to reach its generation: both are on the last
        assert set(core0.models()) == set(core1.models()) and len(core0.models()) == 1
    assert not errors


def test_an_acknowledgement_never_goes_back_to_an_older_generation(workers):
    """A slow load of an older config that finishes after a newer reload was acknowledged must
    not make the worker look behind: a reload waiting for the newer one would wait in vain."""
    import json
    import os

    (_, peer0), _ = workers(0), workers(1)
    path = os.path.join(workers.shared, "model-config-applied-0.json")
    peer0._acknowledge(5, None)
    peer0._acknowledge(4, "late")
    with open(path) as f:
        assert json.load(f)["generation"] == 5


def test_the_receiving_worker_failing_to_load_answers_its_own_error(workers):
    (_, peer0), (core1, peer1) = workers(0, broken=("b",)), workers(1)
    peer1.start()
    with pytest.raises(ServingError) as raised:
        peer0.reload(config("a", "b", base=workers.models))
    assert raised.value.code == StatusCode.UNKNOWN
    assert raised.value.message.startswith("1 model(s) did not become available")
    assert "broken b" in raised.value.message
    # published all the same, as a one-process reload keeps the new config: worker 1 serves it
    assert read_published(workers.shared)[0] == 1
    peer1.catch_up()
    assert set(core1.models()) == {"a", "b"}
