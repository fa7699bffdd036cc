"""ServerCore: model configs -> a source -> loaders -> manager; labels; reload.

The one object the service layer talks to. It owns the EventBus, the StateMonitor and the
AspiredVersionsManager, and the model source it builds with the injected ``source_factory``
(the file-system source in production, as TF Serving's ``ServerCore`` builds its
``FileSystemStoragePathSource``; the core itself imports no source). It resolves a model spec
(name + version | label) into a ServableRequest (spec §4.1, §5).

It takes ``ServerCoreOptions`` (``nbserve.options.core_options`` builds them from the flat
``ServerOptions``): no ports, hosts or tokens reach the lifecycle.

Thread-safety: every public method may be called from any thread. ``handle()`` is the hot path.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from nbserve.core.events import EventBus, ManagerState, ServableState, StateMonitor
from nbserve.core.handle import ServableHandle
from nbserve.core.ids import ServableRequest
from nbserve.core.loader import LoaderFactory
from nbserve.core.manager import AspiredVersionsManager
from nbserve.core.source import AspiredVersionsCallback
from nbserve.errors import ServingError, StatusCode, invalid_argument, not_found
from nbserve.options import FileSystemSourceOptions, ModelConfig, ServerCoreOptions, VersionPolicy

log = logging.getLogger("nbserve.core")


class ModelSource(Protocol):
    """The source ServerCore drives: it watches the configured models' base paths and emits their
    aspired versions (with loaders from the loader factory) through the callback."""

    def set_aspired_versions_callback(self, callback: AspiredVersionsCallback) -> None: ...

    def update_config(self, models: Sequence[ModelConfig]) -> None:
        """Watch exactly these models (their policies applied); dropped ones get an empty list."""
        ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...


SourceFactory = Callable[[LoaderFactory, FileSystemSourceOptions], ModelSource]
"""``source_factory(loader_factory, source_options)`` -> the (not yet started) model source."""


def validate_model_configs(models: Sequence[ModelConfig],
                           previous: Mapping[str, ModelConfig] | None = None) -> None:
    """TF Serving's config checks (§4.1) that do not need the file: names, platforms, paths."""
    seen: set[str] = set()
    for model in models:
        if model.name in seen:
            raise invalid_argument(
                f"Illegal to list model {model.name} multiple times in config list")
        seen.add(model.name)
        if not model.model_platform:
            raise invalid_argument(
                "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                f"ModelServerConfig::model_platform, model name is {model.name}")
        if model.model_platform != "tensorflow":
            raise invalid_argument(
                f"Model {model.name} requests unsupported platform {model.model_platform}")
        if not os.path.isabs(model.base_path):
            raise invalid_argument(f"Expected model {model.name} to have an absolute path or URI; "
                                   f"got base_path()={model.base_path}")
        old = (previous or {}).get(model.name)
        if old is not None and old.model_platform != model.model_platform:
            raise invalid_argument(
                f"Illegal to change a model's platform. For model {model.name} platform was "
                f"{old.model_platform} and new platform requested is {model.model_platform}")


class ServerCore:
    """Lifecycle of every configured model; see module docstring."""

    def __init__(self, options: ServerCoreOptions, loader_factory: LoaderFactory, *,
                 source_factory: SourceFactory) -> None:
        self.options = options
        self.event_bus = EventBus()
        self.monitor = StateMonitor(self.event_bus)
        manager = options.manager
        self.manager = AspiredVersionsManager(
            self.event_bus, policy=manager.aspired_version_policy,
            max_num_load_retries=manager.max_num_load_retries,
            load_retry_interval_s=manager.load_retry_interval_seconds,
            num_load_threads=manager.num_load_threads)
        self.source = source_factory(loader_factory, options.source)
        self.source.set_aspired_versions_callback(self.manager.set_aspired_versions)
        self._lock = threading.RLock()
        self._models: dict[str, ModelConfig] = {}
        self._policy_overrides: dict[str, VersionPolicy] = {}
        self._started = False

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, models: Sequence[ModelConfig] | None = None) -> None:
        """Start the manager and source threads and apply the initial config (non-blocking)."""
        self.manager.start(self.options.manager.manager_interval_seconds)
        self.reload_config(self.options.models if models is None else models)
        self.source.start()
        self._started = True

    def stop(self, timeout: float = 30.0) -> None:
        """Stop discovery, unload every version (END), join threads. Idempotent."""
        self.source.stop()
        self.manager.stop(timeout=timeout)
        self._started = False

    # -- configuration ------------------------------------------------------------------------
    def models(self) -> dict[str, ModelConfig]:
        """The current config by model name (policy overrides not applied)."""
        with self._lock:
            return dict(self._models)

    def reload_config(self, models: Iterable[ModelConfig], *, wait_timeout: float | None = None
                      ) -> None:
        """Replace the config (§4.1): models not in it unload, new ones load, labels apply first.

        Raises ServingError and keeps the running config when the new one is invalid. With
        ``wait_timeout`` it blocks until every *new* model has a version AVAILABLE or END and
        raises UNKNOWN ``<n> model(s) did not become available: ...`` if one ended in error.
        """
        new_names = self.apply_config(models)
        if wait_timeout is not None and new_names:
            self.wait_for_models(new_names, wait_timeout)

    def apply_config(self, models: Iterable[ModelConfig]) -> list[str]:
        """``reload_config`` without the wait: the names of the models the new config adds.
        Raises ServingError and keeps the running config when the new one is invalid."""
        models = [m.replace(base_path=os.path.abspath(m.base_path)) if not
                  os.path.isabs(m.base_path) else m for m in models]
        with self._lock:
            validate_model_configs(models, self._models)
            for model in models:
                self._check_labels(model)
            new_names = [m.name for m in models if m.name not in self._models]
            self._models = {m.name: m for m in models}
            for name in list(self._policy_overrides):
                if name not in self._models:
                    del self._policy_overrides[name]
            self._push_to_source()
        return new_names

    def set_version_policy(self, name: str, policy: VersionPolicy | None) -> None:
        """Override a model's version policy at run time (the notebook's version picker);
        ``None`` restores the configured one."""
        with self._lock:
            if name not in self._models:
                raise not_found(f"Could not find any versions of model {name}")
            if policy is None:
                self._policy_overrides.pop(name, None)
            else:
                self._policy_overrides[name] = policy
            self._push_to_source()

    def effective_policy(self, name: str) -> VersionPolicy:
        with self._lock:
            return self._policy_overrides.get(name) or self._models[name].version_policy

    def _push_to_source(self) -> None:
        self.source.update_config([
            m.replace(version_policy=self._policy_overrides.get(m.name, m.version_policy))
            for m in self._models.values()])

    def _check_labels(self, model: ModelConfig) -> None:
        old = self._models.get(model.name)
        old_labels = dict(old.version_labels) if old else {}
        for label, version in model.version_labels.items():
            moved = label in old_labels and old_labels[label] != version
            if (moved or not self.options.allow_version_labels_for_unavailable_models) and \
                    version not in self.manager.available_versions(model.name):
                raise ServingError(
                    StatusCode.FAILED_PRECONDITION,
                    f"Request to assign label to version {version} of model {model.name}, "
                    "which is not currently available for inference")

    def wait_for_models(self, names: Sequence[str], timeout: float) -> None:
        """Block until each of ``names`` has a version AVAILABLE or END (``timeout`` s at most);
        raises UNKNOWN ``<n> model(s) did not become available: ...`` if one ended in error."""
        def settled(monitor: StateMonitor) -> bool:
            return all(any(s.state in (ManagerState.AVAILABLE, ManagerState.END)
                           for s in monitor.states(n).values()) for n in names)

        self.monitor.wait_until(settled, timeout)
        failed = [(s.id, s.error) for n in names for s in self.monitor.states(n).values()
                  if s.state == ManagerState.END and s.error is not None]
        if failed:
            detail = "".join(f"{{id: {sid.name} version: {sid.version} due to error: "
                             f"{error.with_prefix()}}}, " for sid, error in failed)
            raise ServingError(StatusCode.UNKNOWN,
                               f"{len(failed)} model(s) did not become available: {{{detail}}}")

    # -- requests ------------------------------------------------------------------------------
    def resolve(self, name: str, version: int | None = None, label: str | None = None
                ) -> ServableRequest:
        """Name + version or label -> ServableRequest (labels from the config)."""
        if label is not None:
            with self._lock:
                model = self._models.get(name)
                labels = model.version_labels if model else {}
                if label not in labels:
                    raise invalid_argument(f"Unrecognized servable version label: {label}")
                return ServableRequest.specific(name, labels[label])
        if version is not None:
            return ServableRequest.specific(name, version)
        return ServableRequest.latest(name)

    def handle(self, name: str, version: int | None = None, label: str | None = None
               ) -> ServableHandle:
        """A ref-counted handle on the version to serve; hold it for one request only."""
        return self.manager.handle(self.resolve(name, version, label))

    def labels(self, name: str) -> dict[str, int]:
        with self._lock:
            model = self._models.get(name)
            return dict(model.version_labels) if model else {}

    def version_states(self, name: str, version: int | None = None) -> list[ServableState]:
        """States of every version ever managed for ``name``, version descending (§1.4)."""
        states = self.monitor.states(name)
        if not states:
            raise not_found(f"Could not find any versions of model {name}")
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {name}")
            return [states[version]]
        return [states[v] for v in sorted(states, reverse=True)]

    def known_models(self) -> list[str]:
        """Configured models plus any the monitor still reports (removed ones show END)."""
        with self._lock:
            names = set(self._models)
        names.update(self.monitor.all_states())
        return sorted(names)
