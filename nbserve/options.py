"""Frozen option records shared by every layer: server, model, version policy, batching.

Defaults are TF Serving's (``tensorflow_serving/model_servers/server.h``) unless a comment says
otherwise; nbserve's own additions are marked "nbserve".

``ServerOptions`` is the flat record the CLI, ``nbserve.serve`` and tests fill in (one field per
TF Serving flag). Each component takes only its own record (``ManagerOptions``,
``FileSystemSourceOptions``, ``ServerCoreOptions``), as TF Serving gives ``ServerCore`` its
``ServerCore::Options``; ``core_options()`` is the one place that builds them from
``ServerOptions``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

PolicyKind = Literal["latest", "all", "specific"]
AspiredVersionPolicyName = Literal["availability_preserving", "resource_preserving"]


GRPC_FRONT_ENDS = ("grpcio", "h2")  # ServerOptions.grpc_front_end (issue 12)
REST_FRONT_ENDS = ("h1", "aiohttp")  # ServerOptions.rest_front_end (issue 12)


@dataclass(frozen=True)
class VersionPolicy:
    """Which numeric versions found on disk are aspired (``model_version_policy``).

    ``latest`` keeps the ``num_versions`` highest (0 behaves as 1), ``all`` every one,
    ``specific`` the listed ones that exist.
    """

    kind: PolicyKind = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    @staticmethod
    def latest(num_versions: int = 1) -> VersionPolicy:
        return VersionPolicy("latest", num_versions=num_versions)

    @staticmethod
    def all() -> VersionPolicy:
        return VersionPolicy("all")

    @staticmethod
    def specific(*versions: int) -> VersionPolicy:
        return VersionPolicy("specific", versions=tuple(sorted({int(v) for v in versions})))

    def select(self, on_disk: Iterable[int]) -> list[int]:
        """The aspired versions among ``on_disk``, highest first. Pure."""
        found = sorted(set(on_disk), reverse=True)
        if self.kind == "all":
            return found
        if self.kind == "specific":
            wanted = set(self.versions)
            return [v for v in found if v in wanted]
        return found[: max(1, self.num_versions)]

    def describe(self) -> str:
        if self.kind == "latest":
            return f"latest {max(1, self.num_versions)}"
        if self.kind == "specific":
            return "specific " + ",".join(str(v) for v in self.versions)
        return "all"


@dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's BatchingParameters (``--batching_parameters_file``)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 0  # 0: number of CPUs
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    thread_pool_name: str = "model_server_batch_threads"  # names the shared batch threads
    enable_large_batch_splitting: bool = False  # split a task to fill batches
    max_execution_batch_size: int | None = None  # with splitting; None: max_batch_size


@dataclass(frozen=True)
class ModelConfig:
    """One entry of ``model_config_list`` (TF Serving's ``config/model_server_config.proto``)."""

    name: str
    base_path: str
    model_platform: str = "tensorflow"
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    version_labels: Mapping[str, int] = field(default_factory=dict)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ServerOptions:
    """Everything a Server needs; the CLI, ``nbserve.serve`` and tests all build one of these."""

    models: tuple[ModelConfig, ...] = ()
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: float = 0.0
    host: str = "127.0.0.1"  # nbserve: TF Serving binds all interfaces
    grpc_port: int | None = 8500  # None: gRPC off; 0: a free port
    rest_api_port: int | None = 8501  # None: REST off; 0: a free port (the CLI maps 0 to None)
    rest_api_timeout_in_ms: int = 30_000
    rest_api_enable_cors_support: bool = False
    rest_api_num_threads: int = 0  # 0: 4 x CPUs, as TF Serving
    # gRPC calls' own pool of this many threads; 0: they share the predict pool with REST (the
    # pool of rest_api_num_threads), nbserve's default (TF Serving's: 4 x CPUs of its own)
    grpc_max_threads: int = 0
    file_system_poll_wait_seconds: float = 1.0
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    num_load_threads: int = 0  # 0: nbserve uses 4 load threads, so a slow load never blocks others
    aspired_version_policy: AspiredVersionPolicyName = "availability_preserving"
    saved_model_tags: tuple[str, ...] = ("serve",)
    device: Literal["auto", "cpu", "gpu"] = "auto"  # nbserve
    per_process_gpu_memory_fraction: float = 0.0
    # TF session threads. nbserve's inter-op default -1 runs a request's ops on the thread that
    # serves it (no hand-off to TF's inter-op pool: ~33 -> ~5 us a run on half_plus_two); TF
    # Serving's 0 lets TensorFlow size that pool. Intra-op (within one op) 0: TensorFlow's choice.
    tensorflow_inter_op_parallelism: int = -1
    tensorflow_intra_op_parallelism: int = 0
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0  # times each warmup record runs (0: once)
    enable_batching: bool = False
    batching: BatchingOptions | None = None  # None: BatchingOptions() when batching is on
    batching_per_model: Mapping[str, BatchingOptions] = field(default_factory=dict)  # nbserve
    monitoring_config_file: str = ""
    prometheus_path: str = ""  # serve Prometheus metrics on the REST port at this path ("" = off)
    allow_version_labels_for_unavailable_models: bool = True  # nbserve: TF Serving's is false
    version_settle_seconds: float = 0.3  # nbserve: a version dir must be quiet this long
    incomplete_version_grace_seconds: float = 3.0  # nbserve: ... or this long, no saved_model.pb
    max_request_bytes: int = 100 * 1024 * 1024
    grpc_max_message_bytes: int = 2**31 - 1
    manager_interval_seconds: float = 0.1
    # nbserve reliability and security (README "Reliability and security"):
    load_timeout_seconds: float = 0.0  # a load running longer ends with DEADLINE_EXCEEDED; 0: none
    max_inflight_requests: int = 1024  # more concurrent requests -> UNAVAILABLE (503); 0: no limit
    shutdown_grace_seconds: float = 5.0  # stop(): how long in-flight requests may still finish
    # issue 12: a REST inference call whose model recently took less than this runs on the IO
    # thread, without the predict pool's thread hops (nbserve.transport.inline); 0: never
    rest_inline_threshold_us: float = 1000.0
    # issue 12: REST's server: "h1" (nbserve's own HTTP/1.1 for the common /v1 requests, aiohttp
    # for the rest, nbserve.transport.rest_h1) or "aiohttp" (aiohttp for every request)
    rest_front_end: str = "h1"
    # issue 12: gRPC's server: "h2" (nbserve's own HTTP/2 front end on the IO loop,
    # nbserve.transport.grpc_h2: ~3x the calls/s) or "grpcio" (a sync grpc.server on the pool)
    grpc_front_end: str = "h2"
    grpc_inline_threshold_us: float = 1000.0  # front end h2: as rest_inline_threshold_us, for gRPC
    event_loop: str = "auto"  # the IO loop: "auto" (uvloop where installed), "uvloop", "asyncio"
    auth_token: str = field(default="", repr=False)  # "": no auth; else Bearer token required
    # issue 14: TFLite (model.tflite in a version folder; nbserve.servables.tflite)
    prefer_tflite_model: bool = False  # serve model.tflite instead of the SavedModel when present
    num_tflite_pools: int = 1  # nbserve: TF Serving's default is the number of CPUs
    num_tflite_interpreters_per_pool: int = 1  # interpreters = pools x interpreters per pool
    # issue 14: gRPC also on unix:<path> ("" = off); the TF profiler service on the gRPC port;
    # open gRPC then REST only once every initial model is AVAILABLE or END (the CLI's default,
    # as TF Serving; the notebook opens at once)
    grpc_socket_path: str = ""
    enable_profiler: bool = True
    open_ports_after_initial_load: bool = False
    # issue 12: bind REST and gRPC with SO_REUSEPORT, so the N processes of ``nbserve-server
    # --num_workers=N`` (``nbserve.workers``) share both ports; set in each worker, never by users
    reuse_port: bool = False

    def replace(self, **changes: Any) -> ServerOptions:
        return dataclasses.replace(self, **changes)


# -- per-component options (built from ServerOptions by core_options() only) ---------------------
@dataclass(frozen=True)
class ManagerOptions:
    """The ``AspiredVersionsManager``'s options (``AspiredVersionsManager::Options``)."""

    aspired_version_policy: AspiredVersionPolicyName = "availability_preserving"
    max_num_load_retries: int = 5
    load_retry_interval_seconds: float = 60.0
    num_load_threads: int = 4  # nbserve: loads never block each other (TF Serving: 0, inline)
    manager_interval_seconds: float = 0.1  # nbserve: how often the manager thread steps


@dataclass(frozen=True)
class FileSystemSourceOptions:
    """The ``FileSystemStoragePathSource``'s options (``FileSystemStoragePathSourceConfig``)."""

    poll_wait_seconds: float = 1.0
    settle_seconds: float = 0.3  # nbserve: a version folder must be quiet this long
    incomplete_grace_seconds: float = 3.0  # nbserve: ... or this long without saved_model.pb


@dataclass(frozen=True)
class ServerCoreOptions:
    """``ServerCore``'s options (``ServerCore::Options``): no ports, hosts or tokens."""

    models: tuple[ModelConfig, ...] = ()
    manager: ManagerOptions = field(default_factory=ManagerOptions)
    source: FileSystemSourceOptions = field(default_factory=FileSystemSourceOptions)
    allow_version_labels_for_unavailable_models: bool = True  # nbserve: TF Serving's is false

    def replace(self, **changes: Any) -> ServerCoreOptions:
        return dataclasses.replace(self, **changes)


def core_options(options: ServerOptions) -> ServerCoreOptions:
    """The lifecycle core's options taken from the flat ``ServerOptions``; the only translation.

    ``load_retry_interval_micros`` < 0 counts as 0; ``num_load_threads`` 0 becomes nbserve's 4 (a
    slow load never holds up the others, and never the IO loop).
    """
    return ServerCoreOptions(
        models=tuple(options.models),
        manager=ManagerOptions(
            aspired_version_policy=options.aspired_version_policy,
            max_num_load_retries=options.max_num_load_retries,
            load_retry_interval_seconds=max(0.0, options.load_retry_interval_micros / 1e6),
            num_load_threads=options.num_load_threads or 4,
            manager_interval_seconds=options.manager_interval_seconds),
        source=FileSystemSourceOptions(
            poll_wait_seconds=options.file_system_poll_wait_seconds,
            settle_seconds=options.version_settle_seconds,
            incomplete_grace_seconds=options.incomplete_version_grace_seconds),
        allow_version_labels_for_unavailable_models=(
            options.allow_version_labels_for_unavailable_models))
