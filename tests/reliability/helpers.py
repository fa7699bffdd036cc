"""Shared pieces for the reliability tests: a loader factory that routes chosen models to fake
loaders (``nbserve.testing.FakeServable`` blocks or fails on demand), fake model folders, and the
fuzz tests' settings."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck

from nbserve.testing import FakeLoader


def fake_model_dir(root: pathlib.Path, name: str, versions: tuple[int, ...] = (1,),
                   pb: bytes = b"") -> pathlib.Path:
    """``root/name/<v>/saved_model.pb`` (contents ``pb``) for each version; returns the base."""
    base = root / name
    for version in versions:
        (base / str(version)).mkdir(parents=True, exist_ok=True)
        (base / str(version) / "saved_model.pb").write_bytes(pb)
    return base


def routing_factory(fakes: Mapping[str, Callable[[Any, str], Any]], options: Any = None
                    ) -> Callable[[Any, str], Any]:
    """A loader factory: models named in ``fakes`` get ``fakes[name](id, path)``, the others the
    real SavedModelLoader."""
    from nbserve.options import ServerOptions
    from nbserve.server import saved_model_loader_factory

    real = saved_model_loader_factory(options or ServerOptions())

    def make(servable_id: Any, path: str) -> Any:
        fake = fakes.get(servable_id.name)
        return fake(servable_id, path) if fake is not None else real(servable_id, path)

    return make


def serving(servable: Any) -> Callable[[Any, str], FakeLoader]:
    """A ``fakes`` entry whose every version loads ``servable``."""
    return lambda servable_id, path: FakeLoader(servable, label=servable_id)


# Hypothesis settings of the fuzz tests: reproducible runs, no shrinking database, no deadline.
FUZZ: dict[str, Any] = dict(derandomize=True, deadline=None, database=None, print_blob=True,
                            suppress_health_check=list(HealthCheck))


def report(request: pytest.FixtureRequest, line: str) -> None:
    """Print ``line`` even under pytest's output capture (the figures go in the closing note)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(line)


class FakeServers:
    """Servers (REST and gRPC on free ports) over one TensorFlow-free model "m" under ``root``;
    a fixture yields ``start`` and calls ``stop_all`` at teardown."""

    def __init__(self, root: pathlib.Path) -> None:
        self._root = root
        self._servers: list[Any] = []

    def start(self, servable: Any = None, **overrides: Any) -> Any:
        """A started server whose model "m" is AVAILABLE, served by ``servable`` (default a
        ``FakeServable()``); ``overrides`` are ServerOptions fields."""
        from nbserve.options import ModelConfig, ServerOptions
        from nbserve.server import Server
        from nbserve.testing import FakeServable

        options: dict[str, Any] = dict(
            models=(ModelConfig("m", str(fake_model_dir(self._root, "m"))),),
            rest_api_port=0, grpc_port=0, max_num_load_retries=0)
        options.update(overrides)
        srv = Server(ServerOptions(**options), loader_factory=routing_factory(
            {"m": serving(servable or FakeServable())}))
        self._servers.append(srv)
        srv.start()
        srv.wait_until_available("m", timeout=30)
        return srv

    def stop_all(self, grace: float | None = None) -> None:
        for srv in self._servers:
            srv.stop(grace=grace)
