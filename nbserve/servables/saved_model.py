"""TensorFlow SavedModel servable: loader and servable for the first kind of servable.

(A little over our ~500-line mark: the TF1 session loader and the callable cache it builds are
one concept; request validation lives in ``predict_util``, signatures in ``signature``.)

TensorFlow is imported lazily, on the first ``SavedModelLoader.load()``, so importing this module
(or constructing a loader) is cheap and ``import nbserve`` never pulls TensorFlow in.

Loading uses TensorFlow's TF1 session loader (``tf.compat.v1.saved_model.loader.load`` into its
own ``tf.Graph`` + ``tf.compat.v1.Session``), the Python twin of TF Serving's
``LoadSavedModel``: it handles TF1 and TF2 exports alike, runs the init/main op and restores the
variables, and keeps the MetaGraphDef whose SignatureDefs drive predict/classify/regress and the
metadata endpoint.

Running a signature goes through a ``Session`` *callable* (``CallableOptions``), cached per
(signature key, input aliases, sorted output aliases), at most ``MAX_CACHED_PLANS`` per servable.
Like TF Serving's C++ session, and unlike ``Session.run``, a callable does not check fed shapes
against the placeholders (TF Serving does not check SignatureDef shapes either), and it is ~4x
cheaper per call than ``Session.run`` (~35 us vs ~140 us on half_plus_two). Callables are
thread-safe; the cache is guarded by a lock. A callable's RunOptions are fixed when it is made
(~5 ms), so a run with a timeout uses one more callable per power-of-two deadline bucket. A
TensorFlow deadline costs ~70 us per run, so it is applied only to signatures whose runs take
``TIMED_RUN_MIN_SECONDS`` (1 ms) or more on average (a cost under 7 %); the transports answer
the client at the exact deadline either way.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nbserve.errors import ServingError, StatusCode, as_serving_error
from nbserve.servables.devices import DeviceRequest, device_index, device_kind
from nbserve.servables.dtypes import dt_name
from nbserve.servables.predict_util import (
    as_feed,
    check_inputs,
    output_aliases,
    signature_not_found,
)
from nbserve.servables.signature import Signature, TensorInfo
from nbserve.servables.version_loader import VersionLoader

_tf_module: Any = None
TIMED_RUN_MIN_SECONDS = 1e-3  # below this mean run time, RunOptions deadlines are not applied


_tf_import_lock = threading.Lock()


def _tf() -> Any:
    """The ``tensorflow`` module, imported on first use. One thread imports it at a time: two
    load threads importing TensorFlow at once can leave it half-initialised.

    Right after the import, ``gc.freeze()`` moves the ~300k objects TensorFlow's import created
    (modules, functions, protos: alive for the whole process) out of the cyclic collector's
    reach. Without it every full collection walks them (~120 ms), about every hundred REST
    requests with nested JSON bodies: measured, 2.4x the throughput and p99 142 ms -> 13 ms on
    a small CNN (bench/RESULTS.md). Reference counting still frees those objects as usual."""
    global _tf_module
    if _tf_module is None:
        with _tf_import_lock:
            if _tf_module is None:
                import tensorflow

                quiet_tensorflow_logger()
                gc.freeze()  # see below
                _tf_module = tensorflow
    return _tf_module


def quiet_tensorflow_logger() -> None:
    """Keep TF's INFO chatter ("Restoring parameters from ...") out of notebook cells: the
    ``tensorflow`` Python logger is raised to WARNING unless the user set a level already."""
    import logging

    logger = logging.getLogger("tensorflow")
    if logger.level in (logging.NOTSET, logging.INFO, logging.DEBUG):
        logger.setLevel(logging.WARNING)


# --------------------------------------------------------------------------------------------
# Error texts (TensorFlow's C++ loader, which TF Serving uses; the Python loader words them
# differently, so they are reproduced here as libtensorflow_framework 2.21 spells them).

def missing_saved_model_message(export_dir: str) -> str:
    """``tensorflow/cc/saved_model/reader.cc`` (NOT_FOUND)."""
    return ("Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
            f"{export_dir}. Check that the directory exists and that you have the right "
            "permissions for accessing it.")


def missing_tags_message(tags: Sequence[str]) -> str:
    """``tensorflow/cc/saved_model/reader.cc`` (NOT_FOUND)."""
    return ("Could not find meta graph def matching supplied tags: { " + " ".join(tags)
            + " }. To inspect available tag-sets in the SavedModel, please use the SavedModel "
            "CLI: `saved_model_cli`")


def _status_code(code: int) -> StatusCode:
    try:
        return StatusCode(int(code))
    except ValueError:
        return StatusCode.UNKNOWN


def _tf_error(exc: BaseException) -> ServingError:
    """A TensorFlow ``OpError`` as a ServingError with TF's code and message."""
    return ServingError(_status_code(getattr(exc, "error_code", StatusCode.UNKNOWN)),
                        getattr(exc, "message", str(exc)))


def _load_error(exc: BaseException, export_dir: str, tags: Sequence[str]) -> ServingError:
    """Any exception raised while loading, in TF Serving's words where we know them."""
    if isinstance(exc, ServingError):
        return exc
    if isinstance(exc, _tf().errors.OpError):
        return _tf_error(exc)
    text = str(exc)
    if isinstance(exc, RuntimeError) and "could not be found in SavedModel" in text:
        return ServingError(StatusCode.NOT_FOUND, missing_tags_message(tags))
    if isinstance(exc, OSError) and "SavedModel file does not exist" in text:
        return ServingError(StatusCode.NOT_FOUND, missing_saved_model_message(export_dir))
    if isinstance(exc, OSError) and "Cannot parse file" in text:
        return ServingError(StatusCode.DATA_LOSS, text)
    return as_serving_error(exc)


@contextlib.contextmanager
def _quiet_deprecations() -> Iterator[None]:
    """Silence TF's "use tf.saved_model.load instead" deprecation log for the TF1 loader."""
    try:
        from tensorflow.python.util import deprecation

        with deprecation.silence():
            yield
    except ImportError:  # pragma: no cover - private module moved
        yield


# --------------------------------------------------------------------------------------------
# Loader

class SavedModelLoader(VersionLoader["SavedModelServable"]):
    """Loads one SavedModel version directory (TF Serving's ``SavedModelBundle`` loader).

    Construction is cheap (no TensorFlow work, not even the import). ``load()`` is expensive;
    ``servable()`` is valid between a successful ``load()`` and ``unload()``. ``load`` and
    ``unload`` are never called concurrently on one loader (the manager's contract); each
    successful ``load`` is paired with one ``unload``.

    Args:
        export_dir: the version directory holding ``saved_model.pb`` (or ``.pbtxt``).
        tags: the MetaGraphDef tag-set to load (``--saved_model_tags``), default ``("serve",)``.
        device: ``auto`` (GPU 0 if TensorFlow sees a GPU, else CPU 0), ``cpu``, ``gpu``, or an
            explicit ``cpu:N`` / ``gpu:N`` (see ``nbserve.servables.devices``). The graph is
            imported with ``clear_devices=True`` under ``tf.device(<device>)`` and soft
            placement, so ops without a kernel there (string parsing, ...) fall back to CPU and
            a graph exported pinned to ``/gpu:0`` still loads on a CPU-only machine.
        session_config: an optional ``tf.compat.v1.ConfigProto`` to start from;
            ``allow_soft_placement`` is always forced on.
        gpu_memory_fraction: > 0 sets ``gpu_options.per_process_gpu_memory_fraction``; otherwise
            ``gpu_options.allow_growth`` is set (unless ``session_config`` fixed a fraction), so a
            model never grabs all GPU memory. TensorFlow applies the GPU allocator options of the
            *first* session that touches a GPU to the whole process.
        enable_warmup: replay ``assets.extra/tf_serving_warmup_requests`` at the end of ``load()``
            (``nbserve.servables.warmup``); a failing warmup fails the load.
        warmup_iterations: times each warmup record runs (``--num_request_iterations_for_warmup``;
            values below 1 mean 1).

    Raises:
        ServingError(INVALID_ARGUMENT) from the constructor for a malformed ``device``.
        ``load()`` raises only ServingError: NOT_FOUND (no SavedModel / no such tag-set, in
        TensorFlow's C++ words), FAILED_PRECONDITION (GPU requested, none visible), or the
        TensorFlow error's own code and message.
    """

    def __init__(self, export_dir: str, *, tags: Sequence[str] = ("serve",),
                 device: str = "auto", session_config: Any = None,
                 gpu_memory_fraction: float = 0.0, enable_warmup: bool = True,
                 warmup_iterations: int = 1) -> None:
        super().__init__(export_dir, enable_warmup=enable_warmup,
                         warmup_iterations=warmup_iterations)
        self._tags = tuple(tags)
        self._device_request = DeviceRequest.parse(device)
        self._session_config = session_config
        self._gpu_memory_fraction = float(gpu_memory_fraction)

    @property
    def tags(self) -> tuple[str, ...]:
        return self._tags

    what = "SavedModel"

    def _build(self) -> SavedModelServable:
        """Import the graph, create the session, restore variables, run the init op."""
        started = time.monotonic()
        try:
            tf = _tf()
            device = self._resolve_device(tf)
            self._check_export_dir(tf)
            graph = tf.Graph()
            session = tf.compat.v1.Session(graph=graph, config=self._make_config(tf, device))
            try:
                with graph.as_default(), tf.device(device), _quiet_deprecations():
                    meta_graph_def = tf.compat.v1.saved_model.loader.load(
                        session, list(self._tags), self._export_dir, clear_devices=True)
            except BaseException:
                session.close()
                raise
        except Exception as exc:  # every failure becomes a ServingError
            raise _load_error(exc, self._export_dir, self._tags) from exc
        return SavedModelServable(
            export_dir=self._export_dir, device=device, session=session, graph=graph,
            meta_graph_def=meta_graph_def, load_seconds=time.monotonic() - started)

    def detail(self) -> Mapping[str, Any]:
        """For the AVAILABLE event: ``{"device": "/device:CPU:0", "load_seconds": ...}``."""
        if self._servable is None:
            return {}
        return {"device": self._servable.device,
                "load_seconds": round(self._servable.load_seconds, 3)}

    def _resolve_device(self, tf: Any) -> str:
        request = self._device_request
        num_gpus = 0
        if request.kind != "cpu":  # listing GPUs initialises CUDA; skip it when CPU is asked
            num_gpus = len(tf.config.list_physical_devices("GPU"))
        return request.resolve(num_gpus, tf.__version__)

    def _check_export_dir(self, tf: Any) -> None:
        candidates = ("saved_model.pb", "saved_model.pbtxt")
        if not any(tf.io.gfile.exists(os.path.join(self._export_dir, name))
                   for name in candidates):
            raise ServingError(StatusCode.NOT_FOUND,
                               missing_saved_model_message(self._export_dir))

    def _make_config(self, tf: Any, device: str) -> Any:
        config = tf.compat.v1.ConfigProto()
        if self._session_config is not None:
            config.CopyFrom(self._session_config)
        config.allow_soft_placement = True
        if device_kind(device) == "CPU":
            config.device_count["GPU"] = 0
            wanted_cpus = device_index(device) + 1
            if wanted_cpus > config.device_count.get("CPU", 1):
                config.device_count["CPU"] = wanted_cpus
        if self._gpu_memory_fraction > 0:
            config.gpu_options.per_process_gpu_memory_fraction = self._gpu_memory_fraction
        elif config.gpu_options.per_process_gpu_memory_fraction == 0:
            config.gpu_options.allow_growth = True
        return config


# --------------------------------------------------------------------------------------------
# Servable

def _tensor_info(proto: Any) -> TensorInfo:
    shape: tuple[int, ...] | None = None
    if proto.HasField("tensor_shape") and not proto.tensor_shape.unknown_rank:
        shape = tuple(int(dim.size) for dim in proto.tensor_shape.dim)
    return TensorInfo(name=proto.name, dtype=dt_name(proto.dtype) or f"DT_{proto.dtype}",
                      shape=shape)


def signature_from_proto(key: str, proto: Any) -> Signature:
    """A ``Signature`` from a SignatureDef proto; aliases in sorted order."""
    return Signature(
        key=key,
        method_name=proto.method_name,
        inputs={alias: _tensor_info(proto.inputs[alias]) for alias in sorted(proto.inputs)},
        outputs={alias: _tensor_info(proto.outputs[alias]) for alias in sorted(proto.outputs)},
    )


MAX_CACHED_PLANS = 256
"""Callables kept per servable; keys are (signature, input aliases, sorted output aliases)."""


def _signature_def_map(meta_graph_def: Any) -> Any:
    """The MetaGraphDef's signature_def map as a ``tensorflow.serving.SignatureDefMap``."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    result = get_model_metadata_pb2.SignatureDefMap()
    for key in meta_graph_def.signature_def:
        result.signature_def[key].MergeFromString(
            meta_graph_def.signature_def[key].SerializeToString())
    return result


@dataclass
class _Plan:
    """A prepared run of one signature with one set of inputs and outputs.

    Feeds are ordered by tensor name, which is the order TensorFlow's DirectSession numbers its
    args (``Expects arg[i] ...``).
    """

    feed_aliases: tuple[str, ...]
    feed_names: tuple[str, ...]
    feed_dtypes: tuple[str, ...]
    output_aliases: tuple[str, ...]
    output_index: tuple[int, ...]
    fetch_names: tuple[str, ...]
    callable: Any
    timed: dict[int, Any] = field(default_factory=dict)  # deadline bucket (ms) -> callable
    mean_seconds: float = 0.0  # moving average of untimed runs (decides whether to time them)


class SavedModelServable:
    """One loaded SavedModel version (implements ``nbserve.servables.signature.Servable``).

    Thread-safe: ``run`` may be called from many threads at once. ``close`` (called by the
    loader's ``unload``) must not race with ``run``; the manager guarantees that by quiescing.
    """

    def __init__(self, *, export_dir: str, device: str, session: Any, graph: Any,
                 meta_graph_def: Any, load_seconds: float) -> None:
        self._export_dir = export_dir
        self._device = device
        self._session = session
        self._graph = graph
        self._load_seconds = load_seconds
        # Copy the SignatureDefs out so the MetaGraphDef (and its GraphDef) can be freed.
        self._metadata = _signature_def_map(meta_graph_def)
        self._signatures = {key: signature_from_proto(key, self._metadata.signature_def[key])
                            for key in self._metadata.signature_def}
        self._plans: dict[tuple[str, tuple[str, ...], tuple[str, ...]], _Plan] = {}
        self._lock = threading.Lock()
        self._closed = False

    # ---- description -----------------------------------------------------------------------

    @property
    def signatures(self) -> Mapping[str, Signature]:
        """Every SignatureDef by key, ``__saved_model_init_op`` included for TF2 exports."""
        return self._signatures

    @property
    def device(self) -> str:
        """``/device:CPU:0``, ``/device:GPU:0``, ..."""
        return self._device

    @property
    def export_dir(self) -> str:
        return self._export_dir

    @property
    def load_seconds(self) -> float:
        return self._load_seconds

    def signature_def_map(self) -> Any:
        """A fresh ``tensorflow.serving.SignatureDefMap`` copied from the MetaGraphDef."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        copy = get_model_metadata_pb2.SignatureDefMap()
        copy.CopyFrom(self._metadata)
        return copy

    # ---- running ---------------------------------------------------------------------------

    def run(self, signature: Signature, inputs: Mapping[str, np.ndarray],
            output_filter: Sequence[str] | None = None,
            timeout_ms: int | None = None) -> dict[str, np.ndarray]:
        """Run ``signature`` (one of ``self.signatures.values()``: the caller looked it up):
        inputs and outputs keyed by alias (TF Serving's ``RunPredict``).

        Shapes are not checked (TF Serving does not). Each input's dtype must equal its graph
        tensor's dtype (string tensors take numpy object arrays of bytes; ``str`` and ``S``/``U``
        arrays are accepted too), else INVALID_ARGUMENT
        ``Expects arg[<i>] to be <dtype> but <dtype> is provided`` as TensorFlow words it.
        With no ``output_filter`` every output is fetched. ``timeout_ms`` > 0 becomes
        ``RunOptions.timeout_in_ms`` (DEADLINE_EXCEEDED when it expires); None or <= 0 means no
        timeout. Raises only ServingError.
        """
        if self._closed:
            raise ServingError(StatusCode.FAILED_PRECONDITION,
                               f"SavedModel at {self._export_dir} has been unloaded")
        known = self._signatures.get(signature.key)
        if known is not signature and known != signature:  # not one of this version's own
            raise signature_not_found(signature.key)
        check_inputs(signature, inputs)
        fetch_aliases = output_aliases(signature, output_filter)
        plan = self._plan(signature, tuple(sorted(inputs)), tuple(sorted(fetch_aliases)))
        try:
            feeds = [as_feed(inputs[alias], expected, index)
                     for index, (alias, expected)
                     in enumerate(zip(plan.feed_aliases, plan.feed_dtypes, strict=True))]
            if timeout_ms is not None and timeout_ms > 0 and \
                    plan.mean_seconds >= TIMED_RUN_MIN_SECONDS:
                fetched = self._timed_callable(plan, int(timeout_ms))(*feeds)
            else:
                started = time.perf_counter()
                fetched = plan.callable(*feeds)
                plan.mean_seconds += (time.perf_counter() - started - plan.mean_seconds) * 0.1
        except ServingError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure becomes a ServingError
            raise self._run_error(exc) from None
        by_alias = dict(zip(plan.output_aliases, plan.output_index, strict=True))
        return {alias: np.asarray(fetched[by_alias[alias]]) for alias in fetch_aliases}

    def _plan(self, signature: Signature, input_aliases: tuple[str, ...],
              output_aliases: tuple[str, ...]) -> _Plan:
        key = (signature.key, input_aliases, output_aliases)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        with self._lock:
            plan = self._plans.get(key)
            if plan is None:
                plan = self._make_plan(signature, input_aliases, output_aliases)
                if len(self._plans) >= MAX_CACHED_PLANS:  # drop the oldest; in-flight runs
                    self._plans.pop(next(iter(self._plans)))  # keep their own reference
                self._plans[key] = plan
            return plan

    def _make_plan(self, signature: Signature, input_aliases: tuple[str, ...],
                   output_aliases: tuple[str, ...]) -> _Plan:
        from tensorflow.core.protobuf import config_pb2

        feed_aliases = tuple(sorted(input_aliases, key=lambda a: (signature.inputs[a].name, a)))
        feed_names = tuple(signature.inputs[alias].name for alias in feed_aliases)
        fetch_names: list[str] = []
        output_index: list[int] = []
        for alias in output_aliases:
            name = signature.outputs[alias].name
            if name not in fetch_names:
                fetch_names.append(name)
            output_index.append(fetch_names.index(name))
        try:
            options = config_pb2.CallableOptions(feed=list(feed_names), fetch=fetch_names)
            run = self._session._make_callable_from_options(options)
            feed_dtypes = tuple(
                dt_name(self._graph.get_tensor_by_name(name).dtype.base_dtype.as_datatype_enum)
                or "DT_INVALID" for name in feed_names)
        except Exception as exc:  # noqa: BLE001 - any failure becomes a ServingError
            raise self._run_error(exc) from None
        return _Plan(feed_aliases=feed_aliases, feed_names=feed_names, feed_dtypes=feed_dtypes,
                     output_aliases=output_aliases, output_index=tuple(output_index),
                     fetch_names=tuple(fetch_names), callable=run)

    def _timed_callable(self, plan: _Plan, timeout_ms: int) -> Any:
        """A callable whose ``RunOptions.timeout_in_ms`` is ``timeout_ms`` rounded up to a power
        of two (at most twice as late), so a handful of callables, made once (~5 ms each), serve
        every deadline at the callable's speed; the transports still answer at the exact deadline.
        """
        bucket = 1 << max(0, (timeout_ms - 1).bit_length())
        run = plan.timed.get(bucket)
        if run is None:
            from tensorflow.core.protobuf import config_pb2

            with self._lock:
                run = plan.timed.get(bucket)
                if run is None:
                    options = config_pb2.CallableOptions(
                        feed=list(plan.feed_names), fetch=list(plan.fetch_names),
                        run_options=config_pb2.RunOptions(timeout_in_ms=bucket))
                    run = self._session._make_callable_from_options(options)
                    plan.timed[bucket] = run
        return run

    def _run_error(self, exc: BaseException) -> ServingError:
        if isinstance(exc, ServingError):
            return exc
        if isinstance(exc, _tf().errors.OpError):
            return _tf_error(exc)
        if isinstance(exc, (TypeError, ValueError, KeyError)):
            return ServingError(StatusCode.INVALID_ARGUMENT, str(exc))
        if self._closed:
            return ServingError(StatusCode.FAILED_PRECONDITION,
                                f"SavedModel at {self._export_dir} has been unloaded")
        return as_serving_error(exc)

    # ---- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Release callables and close the session. Idempotent; ``run`` fails afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._plans.clear()
        self._session.close()
        self._session = None
        self._graph = None

    def __repr__(self) -> str:
        return (f"SavedModelServable({self._export_dir!r}, device={self._device!r}, "
                f"signatures={sorted(self._signatures)})")
