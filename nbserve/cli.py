"""``nbserve-server`` / ``python -m nbserve``: TF Serving's flags -> ServerOptions -> Server.

Flags use TF Serving's names and meanings (spec §3), written ``--flag=value`` or ``--flag value``;
booleans also accept a bare ``--flag``. A TF Serving flag nbserve does not implement yet is accepted
with a warning that names it; an unknown flag is an error (exit 2). Differences, on purpose:
``--host`` (default 127.0.0.1) chooses the bind address; relative base paths are resolved; a model
that fails to load leaves the server up (END with its error). As TF Serving, gRPC and then REST open
once every initial model is AVAILABLE or END; ``--open_ports_before_load`` opens them at once. This
is the only module that installs signal handlers; a SIGINT/SIGTERM during the initial load stops
the server before any port opens.

``--num_workers=N`` (N > 1) runs N worker processes sharing the ports (``nbserve.workers``): this
process then supervises them and serves nothing; each worker is this same program, started with
the parent's options (``WorkerRole``), and runs ``serve_forever`` as a one-process server does.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbserve.errors import ServingError
from nbserve.options import GRPC_FRONT_ENDS, REST_FRONT_ENDS, ModelConfig, ServerOptions
from nbserve.runtime import EVENT_LOOPS

if TYPE_CHECKING:
    from nbserve.workers import WorkerRole

log = logging.getLogger("nbserve.cli")

VERSION = "0.1.0"


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "t", "y"):
        return True
    if lowered in ("0", "false", "no", "f", "n"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return parse


@dataclass(frozen=True)
class Flag:
    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    implemented: bool = True


IMPLEMENTED: tuple[Flag, ...] = (
    Flag("port", int, 8500, "gRPC port (0 disables gRPC over TCP)"),
    Flag("grpc_socket_path", str, "", "also serve gRPC on the unix socket at this path (a file "
         "already there is replaced, with a warning if a server listens on it; removed on "
         "shutdown)"),
    Flag("rest_api_port", int, 8501, "REST port (0 disables REST); nbserve defaults to 8501"),
    Flag("host", str, "127.0.0.1", "nbserve: address to bind (TF Serving binds all interfaces)"),
    Flag("model_name", str, "default", "model name in single-model mode"),
    Flag("model_base_path", str, "", "folder of numeric version folders (relative is resolved)"),
    Flag("model_config_file", str, "", "ModelServerConfig text proto (overrides the two above)"),
    Flag("model_config_file_poll_wait_seconds", float, 0.0, "re-read the config file every N s"),
    Flag("file_system_poll_wait_seconds", float, 1.0, "version discovery poll period"),
    Flag("max_num_load_retries", int, 5, "retries after a failed load"),
    Flag("load_retry_interval_micros", int, 60_000_000, "wait between load retries"),
    Flag("num_load_threads", int, 0, "load thread pool (0: loads run one at a time)"),
    Flag("rest_api_enable_cors_support", _bool, False, "add CORS headers to /v1 responses"),
    Flag("rest_api_timeout_in_ms", int, 30_000, "per-request model-run timeout for REST"),
    Flag("rest_api_num_threads", int, 0, "predict pool threads (0: 4 x CPUs)"),
    Flag("grpc_max_threads", int, 0, "gRPC calls get a pool of their own with this many threads "
         "(0: nbserve shares the predict pool of --rest_api_num_threads between REST and gRPC)"),
    Flag("saved_model_tags", str, "serve", "comma-separated MetaGraph tags to load"),
    Flag("device", str, "auto", "nbserve: cpu, gpu or auto (GPU when TensorFlow sees one)"),
    Flag("per_process_gpu_memory_fraction", float, 0.0, "GPU memory fraction (0: grow as needed)"),
    Flag("tensorflow_inter_op_parallelism", int, -1,
         "TF inter-op threads; nbserve's -1 runs ops on the request's thread (TF Serving: 0)"),
    Flag("tensorflow_intra_op_parallelism", int, 0, "TF intra-op threads (0: TensorFlow's choice)"),
    Flag("allow_version_labels_for_unavailable_models", _bool, True,
         "labels may point at versions not loaded yet (nbserve default true)"),
    Flag("monitoring_config_file", str, "", "MonitoringConfig text proto (Prometheus)"),
    Flag("enable_batching", _bool, False, "batch concurrent predict requests (nbserve.batching)"),
    Flag("batching_parameters_file", str, "", "BatchingParameters text proto (needs "
         "--enable_batching)"),
    Flag("enable_model_warmup", _bool, True,
         "replay assets.extra/tf_serving_warmup_requests before a version is AVAILABLE"),
    Flag("num_request_iterations_for_warmup", int, 0, "times each warmup record runs (0: once)"),
    Flag("version", _bool, False, "print the version and exit"),
    Flag("auth_token", str, None, "nbserve: require 'Authorization: Bearer <token>' (REST) / "
         "'authorization' metadata (gRPC); 'auto' generates one; default $NBSERVE_AUTH_TOKEN, "
         "else 'auto' under JupyterHub, else none"),
    Flag("rest_api_max_request_bytes", int, 100 * 1024 * 1024,
         "nbserve: largest REST request body, after decompression (413 beyond)"),
    Flag("grpc_max_message_bytes", int, 2**31 - 1,
         "nbserve: largest gRPC message (RESOURCE_EXHAUSTED beyond)"),
    Flag("max_inflight_requests", int, 1024,
         "nbserve: concurrent requests beyond this get UNAVAILABLE/503 (0: no limit)"),
    Flag("load_timeout_seconds", float, 0.0,
         "nbserve: a model load running longer ends with DEADLINE_EXCEEDED (0: no limit)"),
    Flag("shutdown_grace_seconds", float, 5.0,
         "nbserve: on SIGTERM/SIGINT, how long in-flight requests may still finish"),
    Flag("rest_inline_threshold_us", float, 1000.0,
         "nbserve: REST calls to a model that recently took less run on the IO thread (0: never)"),
    Flag("rest_front_end", _one_of(REST_FRONT_ENDS), "h1",
         "nbserve: REST's server: h1 (nbserve's own HTTP/1.1 for the common /v1 requests, "
         "aiohttp for the rest) or aiohttp (aiohttp for every request)"),
    Flag("grpc_front_end", _one_of(GRPC_FRONT_ENDS), "h2",
         "nbserve: gRPC's server: h2 (nbserve's own HTTP/2 on the IO loop, ~3x the calls per "
         "second) or grpcio (grpcio's sync server on the predict pool)"),
    Flag("grpc_inline_threshold_us", float, 1000.0,
         "nbserve: gRPC calls to a model that recently took less run on the IO thread (0: never;"
         " --grpc_front_end=h2)"),
    Flag("event_loop", _one_of(EVENT_LOOPS), "auto",
         "nbserve: the IO loop: auto (uvloop where installed), uvloop or asyncio"),
    # issue 14: TFLite
    Flag("prefer_tflite_model", _bool, False,
         "serve model.tflite from a version folder when present (else its SavedModel)"),
    Flag("num_tflite_pools", int, 1, "TFLite interpreter pools (nbserve default 1)"),
    Flag("num_tflite_interpreters_per_pool", int, 1,
         "TFLite interpreters per pool (pools x this = concurrent TFLite runs)"),
    Flag("enable_profiler", _bool, True, "serve tensorflow.ProfilerService on the gRPC port "
         "(TensorBoard's Capture profile, tf.profiler.experimental.client.trace)"),
    Flag("open_ports_before_load", _bool, False, "nbserve: open gRPC and REST at once instead "
         "of once every initial model is AVAILABLE or END"),
    # issue 12: worker processes
    Flag("num_workers", int, 1, "nbserve: serving processes sharing the REST and gRPC ports "
         "(SO_REUSEPORT, Linux), each loading every model; 1: one process"),
)
NOT_IMPLEMENTED = tuple(Flag(name, str, None, "TF Serving flag not implemented by nbserve yet",
                             False) for name in (
    "enable_per_model_batching_parameters", "num_unload_threads", "flush_filesystem_caches",
    "tensorflow_session_parallelism", "tensorflow_session_config_file", "platform_config_file",
    "use_alts_credentials", "ssl_config_file", "grpc_channel_arguments",
    "enable_grpc_healthcheck_service", "enable_signature_method_name_check",
    "enable_serialization_as_tensor_content", "remove_unused_fields_from_bundle_metagraph",
    "thread_pool_factory_config_file", "mixed_precision", "xla_cpu_compilation_enabled",
    "xla_gpu_compilation_enabled", "skip_initialize_tpu"))
FLAGS: tuple[Flag, ...] = (*IMPLEMENTED, *NOT_IMPLEMENTED)

FLAGS_BY_NAME = {flag.name: flag for flag in FLAGS}


class UsageError(Exception):
    """A command line nbserve cannot run: unknown flag, bad value."""


def parse_flags(argv: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """TF Serving-style flags -> (values for every known flag, warnings)."""
    values = {flag.name: flag.default for flag in FLAGS}
    warnings: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            raise UsageError(f"unknown argument: {arg}")
        name, eq, value = arg.lstrip("-").partition("=")
        name = name.replace("-", "_")
        flag = FLAGS_BY_NAME.get(name)
        if flag is None:
            raise UsageError(f"unknown flag: --{name} (see nbserve-server --help)")
        if not eq:
            if flag.parse is _bool and (i >= len(args) or args[i].startswith("-")
                                        or args[i].lower() not in ("true", "false", "1", "0")):
                value = "true"
            elif i < len(args):
                value, i = args[i], i + 1
            else:
                raise UsageError(f"flag --{name} needs a value")
        if not flag.implemented:
            warnings.append(f"flag --{name} is a TF Serving flag that nbserve does not implement "
                            f"yet; ignored")
            continue
        try:
            values[name] = flag.parse(value)
        except ValueError as exc:
            raise UsageError(f"invalid value for --{name}: {value!r} ({exc})") from None
    return values, warnings


def options_from_flags(values: dict[str, Any]) -> ServerOptions:
    """Flag values -> ServerOptions; applies TF Serving's start-up checks (ServingError)."""
    from nbserve import config_file
    from nbserve.transport.auth import resolve_token

    if values["device"] not in ("cpu", "gpu", "auto"):
        raise UsageError(f"invalid value for --device: {values['device']!r} (cpu, gpu or auto)")
    if values["model_config_file"]:
        models = config_file.load_model_server_config(values["model_config_file"]) or ()
    elif values["model_base_path"]:
        models = (ModelConfig(values["model_name"], os.path.abspath(values["model_base_path"])),)
    else:
        raise UsageError("Both server_options.model_base_path and server_options.model_config_file "
                         "are empty!")
    rest_port = values["rest_api_port"] or None
    grpc_port = values["port"] or None
    if rest_port is not None and rest_port == grpc_port:
        log.error("--rest_api_port cannot be the same as --port; REST is disabled")
        rest_port = None
    batching = _batching_options(values)
    return ServerOptions(
        models=tuple(models),
        model_config_file=os.path.abspath(values["model_config_file"])
        if values["model_config_file"] else "",
        model_config_file_poll_wait_seconds=values["model_config_file_poll_wait_seconds"],
        host=values["host"], grpc_port=grpc_port, rest_api_port=rest_port,
        rest_api_timeout_in_ms=values["rest_api_timeout_in_ms"],
        rest_api_enable_cors_support=values["rest_api_enable_cors_support"],
        rest_api_num_threads=values["rest_api_num_threads"],
        grpc_max_threads=values["grpc_max_threads"],
        monitoring_config_file=os.path.abspath(values["monitoring_config_file"])
        if values["monitoring_config_file"] else "",
        file_system_poll_wait_seconds=values["file_system_poll_wait_seconds"],
        max_num_load_retries=values["max_num_load_retries"],
        load_retry_interval_micros=values["load_retry_interval_micros"],
        num_load_threads=values["num_load_threads"],
        saved_model_tags=tuple(t for t in values["saved_model_tags"].split(",") if t),
        device=values["device"],
        per_process_gpu_memory_fraction=values["per_process_gpu_memory_fraction"],
        tensorflow_inter_op_parallelism=values["tensorflow_inter_op_parallelism"],
        tensorflow_intra_op_parallelism=values["tensorflow_intra_op_parallelism"],
        enable_batching=values["enable_batching"], batching=batching,
        enable_model_warmup=values["enable_model_warmup"],
        num_request_iterations_for_warmup=values["num_request_iterations_for_warmup"],
        allow_version_labels_for_unavailable_models=values[
            "allow_version_labels_for_unavailable_models"],
        auth_token=resolve_token(values["auth_token"]),
        max_request_bytes=values["rest_api_max_request_bytes"],
        grpc_max_message_bytes=values["grpc_max_message_bytes"],
        max_inflight_requests=values["max_inflight_requests"],
        load_timeout_seconds=values["load_timeout_seconds"],
        shutdown_grace_seconds=values["shutdown_grace_seconds"],
        rest_inline_threshold_us=values["rest_inline_threshold_us"],
        rest_front_end=values["rest_front_end"],
        event_loop=values["event_loop"],
        grpc_front_end=values["grpc_front_end"],
        grpc_inline_threshold_us=values["grpc_inline_threshold_us"],
        prefer_tflite_model=values["prefer_tflite_model"],  # issue 14: TFLite
        num_tflite_pools=values["num_tflite_pools"],
        num_tflite_interpreters_per_pool=values["num_tflite_interpreters_per_pool"],
        grpc_socket_path=os.path.abspath(values["grpc_socket_path"])
        if values["grpc_socket_path"] else "",
        enable_profiler=values["enable_profiler"],
        open_ports_after_initial_load=not values["open_ports_before_load"],
    )


def _batching_options(values: dict[str, Any]) -> Any:
    """``--enable_batching`` / ``--batching_parameters_file`` -> BatchingOptions or None, with TF
    Serving's start-up check (a parameters file without ``--enable_batching`` is an error)."""
    from nbserve import config_file
    from nbserve.errors import invalid_argument

    path = values["batching_parameters_file"]
    if not values["enable_batching"]:
        if path:
            raise invalid_argument("server_options.batching_parameters_file is set without "
                                   "setting server_options.enable_batching to true.")
        return None
    return config_file.load_batching_parameters(path) if path else None


def usage() -> str:
    lines = ["usage: nbserve-server [--flag=value ...]", "", "Flags (TF Serving's names):"]
    for flag in FLAGS:
        if flag.implemented:
            lines.append(f"  --{flag.name:<44} {flag.help} (default: {flag.default})")
    lines.append("")
    lines.append("Also accepted with a warning (not implemented yet): " + ", ".join(
        f"--{f.name}" for f in FLAGS if not f.implemented))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from nbserve.workers import WorkerRole, log_format

    role = WorkerRole.from_env()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=log_format(role))
    if role is not None:  # a worker of `--num_workers=N`: the parent parsed the flags
        return serve_forever(*role.options(), role=role)
    if any(a in ("-h", "--help", "-help", "--helpfull") for a in argv):
        print(usage())
        return 0
    try:
        values, warnings = parse_flags(argv)
        for warning in warnings:
            log.warning(warning)
        if values["version"]:
            print(f"nbserve ModelServer: {VERSION}")
            return 0
        options = options_from_flags(values)
        num_workers = values["num_workers"]
        _check_workers(num_workers, options)
    except UsageError as exc:
        print(f"nbserve-server: {exc}\n\n{usage()}", file=sys.stderr)
        return 2
    except ServingError as exc:
        print(f"Failed to start server. Error: {exc.with_prefix()}", file=sys.stderr)
        return 1
    if num_workers > 1:
        return supervise(options, num_workers)
    return serve_forever(options)


def _check_workers(num_workers: int, options: ServerOptions) -> None:
    from nbserve.workers import check_supported

    problem = check_supported(num_workers, options)
    if problem:
        raise UsageError(problem)


def supervise(options: ServerOptions, num_workers: int) -> int:
    """``--num_workers`` > 1: run the workers until SIGINT/SIGTERM, drain them; the exit code
    (``nbserve.workers.Supervisor``: 0 after a clean drain)."""
    from nbserve.workers import Supervisor

    signalled: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        signalled.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    return Supervisor(options, num_workers).run(lambda: bool(signalled))


def serve_forever(options: ServerOptions, generation: int = 0, role: WorkerRole | None = None
                  ) -> int:
    """Start, serve until SIGINT/SIGTERM, stop gracefully; the exit code.

    The signal handler only sets flags (``signalled`` here, ``Server.cancel_start()`` there):
    it never raises into whatever the main thread is doing, so a signal at any moment of the
    start-up leaves no lock held and no half-started server. A signal during the initial load
    stops before any port opens (exit 0). As a worker (``role``), it shares its metrics, tells
    the parent when its ports are open instead of printing the ready lines (the parent prints
    them once), shares config reloads with the other workers (its models are those of reload
    ``generation``, 0: the command line's), and also stops when the parent is gone."""
    from nbserve.server import Server

    server = Server(options)  # Server.start() warns when the bind is not loopback
    writer = role.share_metrics(server.metrics) if role is not None else None
    if role is not None:
        server.shared_config = role.share_config(server.core, generation)
    try:
        return _serve(server, options, role)
    finally:
        if server.shared_config is not None:
            server.shared_config.close()
        if writer is not None:
            writer.close()
        if role is not None:
            role.remove_directory_if_orphaned()


def _serve(server: Any, options: ServerOptions, role: WorkerRole | None) -> int:
    from nbserve.initial_load import StartCancelled
    from nbserve.server import ServerStartError

    signalled: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        signalled.append(signum)
        server.cancel_start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        server.start()
    except StartCancelled:
        log.info("Stopped before the ports opened")
        return 0
    except (ServerStartError, ServingError) as exc:
        print(f"Failed to start server. Error: {exc}", file=sys.stderr)
        return 1
    if role is not None:  # the parent prints the ready lines once
        server.shared_config.start()
        role.ready(server.rest_port, server.grpc_port)
    else:
        _log_ready(server)
    while not signalled:
        if role is not None and role.orphaned():
            log.warning("The parent process is gone: stopping")
            break
        time.sleep(0.2)
    log.info("Shutting down: in-flight requests get up to %g s", options.shutdown_grace_seconds)
    server.stop()
    return 0


def _log_ready(server: Any) -> None:
    if server.rest_url:
        log.info("Exporting HTTP/REST API at:%s ...", server.rest_url)
    if server.grpc_target:
        log.info("Running gRPC ModelServer at %s ...", server.grpc_target)
    if server.grpc_socket_path:
        log.info("Running gRPC ModelServer at unix:%s ...", server.grpc_socket_path)
