"""TFLite servable: ``model.tflite`` served through TensorFlow's TFLite interpreter.

The second kind of servable (DESIGN.md "Kinds of servable"), the Python twin of TF Serving's
``TfLiteSession`` (``--prefer_tflite_model``). The only module of nbserve that uses the TFLite
interpreter (``tf.lite.Interpreter`` of the installed TensorFlow, imported lazily through
``saved_model._tf`` so the import lock and ``gc.freeze`` are shared).

Signatures follow TF Serving's TFLite rules (``nbserve.servables.tflite_signatures``).

Running: ``num_pools`` x ``num_interpreters_per_pool`` interpreters, each used by one request at a
time (an interpreter is not thread-safe): ``run`` takes a free one, blocking while all are busy
(at most ``timeout_ms`` when given), and puts it back. An input whose shape differs from the
interpreter's current one is resized (``resize_tensor_input`` + ``allocate_tensors``), as TF
Serving does for a new batch size. Requests are checked with ``predict_util`` so clients see the
same texts as for a SavedModel.
"""

from __future__ import annotations

import os
import queue
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from nbserve.errors import ServingError, StatusCode, as_serving_error
from nbserve.servables.predict_util import (
    as_feed,
    check_inputs,
    output_aliases,
    signature_not_found,
)
from nbserve.servables.signature import Signature
from nbserve.servables.signature_def import signature_def_map
from nbserve.servables.tflite_signatures import (
    DEFAULT_SIGNATURE,
    Binding,
    Described,
    describe,
    with_signature_defs_metadata,
)
from nbserve.servables.version_loader import VersionLoader

TFLITE_FILE = "model.tflite"
CPU_DEVICE = "/device:CPU:0"


def _tf() -> Any:
    from nbserve.servables.saved_model import _tf as import_tensorflow

    return import_tensorflow()


def has_tflite_model(export_dir: str) -> bool:
    """True when ``export_dir`` holds a ``model.tflite`` file."""
    return os.path.isfile(os.path.join(export_dir, TFLITE_FILE))


def with_tf_serving_signatures(model: bytes) -> bytes:
    """``model`` (a converter's output) with its one signature also stored as
    ``signature_defs_metadata``, the only place TF Serving's TFLite session looks, so
    ``tensorflow_model_server --prefer_tflite_model`` serves the same keys and aliases as nbserve.
    Unchanged when it has no signature table, several signatures, or one that is not the primary
    subgraph's."""
    interpreter = TfLiteLoader._interpreter(_tf(), model)
    described = describe(model, interpreter)
    if described.source != "signature_runners" or len(described.signatures) != 1:
        return model
    primary = {str(d["name"]) for d in
               [*interpreter.get_input_details(), *interpreter.get_output_details()]}
    (signature,) = described.signatures.values()
    names = {info.name for info in [*signature.inputs.values(), *signature.outputs.values()]}
    if not names <= primary:
        return model
    return with_signature_defs_metadata(model, described.signatures)


# --------------------------------------------------------------------------------------------
# Interpreters


class _Worker:
    """One interpreter and the input shapes it is allocated for. Used by one thread at a time."""

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        self.shapes: dict[int, tuple[int, ...]] = {
            int(d["index"]): tuple(int(s) for s in d["shape"])
            for d in interpreter.get_input_details()}
        self.runners: dict[str, Any] = {}

    def run_tensors(self, binding: Binding, feeds: Mapping[str, np.ndarray],
                    signature: Signature, fetch: Sequence[str]) -> dict[str, np.ndarray]:
        """Resize what changed, set the inputs, invoke, copy the outputs out."""
        interpreter = self.interpreter
        resized = False
        for alias, value in feeds.items():
            index = binding.inputs[alias]
            shape = tuple(int(d) for d in value.shape)
            if self.shapes.get(index) != shape:
                try:
                    interpreter.resize_tensor_input(index, list(shape), strict=False)
                except (ValueError, RuntimeError):
                    self.shapes.pop(index, None)
                    raise ServingError(
                        StatusCode.INTERNAL,
                        f"Failed to resize input tensor: {signature.inputs[alias].name} to shape "
                        f"{list(shape)}.") from None
                self.shapes[index] = shape
                resized = True
        if resized:
            try:
                interpreter.allocate_tensors()
            except (ValueError, RuntimeError):
                self.shapes.clear()  # re-learn the shapes on the next run
                raise ServingError(StatusCode.INTERNAL, "Failed to allocate tensors") from None
        for alias, value in feeds.items():
            interpreter.set_tensor(binding.inputs[alias], value)
        try:
            interpreter.invoke()
        except (ValueError, RuntimeError):
            raise ServingError(StatusCode.INTERNAL,
                               "Failed to invoke TfLite interpreter") from None
        return {alias: np.array(interpreter.get_tensor(binding.outputs[alias]))
                for alias in fetch}

    def run_runner(self, binding: Binding, feeds: Mapping[str, np.ndarray],
                   fetch: Sequence[str]) -> dict[str, np.ndarray]:
        key = binding.runner_key or DEFAULT_SIGNATURE
        runner = self.runners.get(key)
        if runner is None:
            runner = self.runners[key] = self.interpreter.get_signature_runner(key)
        try:
            results = runner(**feeds)
        except (ValueError, RuntimeError):
            raise ServingError(StatusCode.INTERNAL,
                               "Failed to invoke TfLite interpreter") from None
        return {alias: np.array(results[alias]) for alias in fetch}


class _Pool:
    """A fixed set of workers; ``take`` blocks until one is free (at most ``timeout`` s)."""

    def __init__(self, workers: Sequence[_Worker]) -> None:
        self._free: queue.Queue[_Worker] = queue.Queue()
        for worker in workers:
            self._free.put(worker)
        self.size = len(workers)

    @contextmanager
    def take(self, timeout: float | None) -> Iterator[_Worker]:
        try:
            worker = self._free.get(timeout=timeout)
        except queue.Empty:
            raise ServingError(StatusCode.DEADLINE_EXCEEDED,
                               "Timed out waiting for a free TFLite interpreter") from None
        try:
            yield worker
        finally:
            self._free.put(worker)


# --------------------------------------------------------------------------------------------
# Servable


class TfLiteServable:
    """One loaded ``model.tflite`` (implements ``nbserve.servables.signature.Servable``).

    Thread-safe: concurrent ``run`` calls each take their own interpreter from the pool.
    """

    kind = "tflite"

    def __init__(self, *, export_dir: str, model: bytes, described: Described,
                 workers: Sequence[_Worker], load_seconds: float) -> None:
        self._export_dir = export_dir
        self._model_bytes = len(model)
        self._signatures = described.signatures
        self._bindings = described.bindings
        self._source = described.source
        self._pool = _Pool(workers)
        self._load_seconds = load_seconds
        self._closed = False

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    @property
    def device(self) -> str:
        return CPU_DEVICE

    @property
    def export_dir(self) -> str:
        return self._export_dir

    @property
    def load_seconds(self) -> float:
        return self._load_seconds

    @property
    def num_interpreters(self) -> int:
        return self._pool.size

    @property
    def signature_source(self) -> str:
        """Where the signatures came from: ``metadata``, ``signature_runners`` or ``tensors``."""
        return self._source

    def signature_def_map(self) -> Any:
        return signature_def_map(self._signatures)

    def run(self, signature: Signature, inputs: Mapping[str, np.ndarray],
            output_filter: Sequence[str] | None = None,
            timeout_ms: int | None = None) -> dict[str, np.ndarray]:
        """Run ``signature`` (one of ``self.signatures.values()``): inputs and outputs keyed by
        alias. Request checks and texts as for a SavedModel (``predict_util``); each input's
        dtype must be its tensor's. ``timeout_ms`` > 0 bounds the wait for a free interpreter
        (DEADLINE_EXCEEDED). Raises only ServingError."""
        if self._closed:
            raise ServingError(StatusCode.FAILED_PRECONDITION,
                               f"TFLite model at {self._export_dir} has been unloaded")
        known = self._signatures.get(signature.key)
        if known is not signature and known != signature:  # not one of this version's own
            raise signature_not_found(signature.key)
        binding = self._bindings[signature.key]
        check_inputs(signature, inputs)
        fetch = output_aliases(signature, output_filter)
        feeds = {alias: as_feed(inputs[alias], signature.inputs[alias].dtype, index)
                 for index, alias in enumerate(binding.feed_order)}
        feeds = {alias: _tflite_array(value) for alias, value in feeds.items()}
        timeout = timeout_ms / 1000.0 if timeout_ms is not None and timeout_ms > 0 else None
        try:
            with self._pool.take(timeout) as worker:
                if binding.runner_key is not None:
                    return worker.run_runner(binding, feeds, fetch)
                return worker.run_tensors(binding, feeds, signature, fetch)
        except ServingError:
            raise
        except Exception as exc:  # noqa: BLE001 - interpreter errors become a status
            raise as_serving_error(exc) from None

    def close(self) -> None:
        """Drop the interpreters; ``run`` fails afterwards. Idempotent."""
        self._closed = True
        self._pool = _Pool(())

    def __repr__(self) -> str:
        return (f"TfLiteServable({self._export_dir!r}, interpreters={self._pool.size}, "
                f"signatures={sorted(self._signatures)})")


def _tflite_array(value: np.ndarray) -> np.ndarray:
    """Arrays as the interpreter takes them: contiguous; strings as a numpy bytes array."""
    if value.dtype == object:
        return np.array([bytes(v) for v in value.ravel()], dtype=object).reshape(value.shape)
    return np.ascontiguousarray(value)


# --------------------------------------------------------------------------------------------
# Loader


class TfLiteLoader(VersionLoader["TfLiteServable"]):
    """Loads ``model.tflite`` from one version folder (TF Serving's TFLite bundle path).

    Construction is cheap; ``load()`` reads the file, builds ``num_pools`` x
    ``num_interpreters_per_pool`` interpreters (at least one) and the signatures, then replays
    the warmup file like a SavedModel does. Same contract as ``SavedModelLoader``: ``servable()``
    is valid between ``load()`` and ``unload()``; ``load()`` raises only ServingError:
    NOT_FOUND (no ``model.tflite``), INVALID_ARGUMENT (not a TFLite flatbuffer, bad
    SignatureDefs), INTERNAL (the interpreter cannot be built).
    """

    def __init__(self, export_dir: str, *, num_pools: int = 1, num_interpreters_per_pool: int = 1,
                 enable_warmup: bool = True, warmup_iterations: int = 1) -> None:
        super().__init__(export_dir, enable_warmup=enable_warmup,
                         warmup_iterations=warmup_iterations)
        self._num_interpreters = max(1, int(num_pools)) * max(1, int(num_interpreters_per_pool))

    what = "TFLite model"

    @property
    def model_path(self) -> str:
        return os.path.join(self._export_dir, TFLITE_FILE)

    def _build(self) -> TfLiteServable:
        started = time.monotonic()
        try:
            model = self._read()
            tf = _tf()
            workers = [_Worker(self._interpreter(tf, model))
                       for _ in range(self._num_interpreters)]
            described = describe(model, workers[0].interpreter)
        except ServingError:
            raise
        except Exception as exc:
            raise as_serving_error(exc) from exc
        return TfLiteServable(export_dir=self._export_dir, model=model, described=described,
                              workers=workers, load_seconds=time.monotonic() - started)

    def _read(self) -> bytes:
        try:
            with open(self.model_path, "rb") as file:
                return file.read()
        except FileNotFoundError:
            raise ServingError(StatusCode.NOT_FOUND,
                               f"{self.model_path}; No such file or directory") from None
        except OSError as exc:
            raise ServingError(StatusCode.FAILED_PRECONDITION,
                               f"{self.model_path}; {exc.strerror}") from None

    @staticmethod
    def _interpreter(tf: Any, model: bytes) -> Any:
        try:
            with warnings.catch_warnings():  # "tf.lite.Interpreter is deprecated ... LiteRT"
                warnings.simplefilter("ignore", UserWarning)
                interpreter = tf.lite.Interpreter(model_content=model)
        except ValueError:
            raise ServingError(StatusCode.INVALID_ARGUMENT,
                               "Cannot build FlatBufferModel from buffer.") from None
        except RuntimeError:
            raise ServingError(StatusCode.INTERNAL,
                               "Cannot build Interpreter from buffer.") from None
        try:
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError):
            raise ServingError(StatusCode.INTERNAL, "Failed to allocate tensors") from None
        return interpreter

    def detail(self) -> Mapping[str, Any]:
        """For the AVAILABLE event: ``{"kind": "tflite", "device": ..., "load_seconds": ...,
        "interpreters": N}``; ``{"kind": "tflite"}`` before a load."""
        if self._servable is None:
            return {"kind": "tflite"}
        return {"kind": "tflite", "device": self._servable.device,
                "load_seconds": round(self._servable.load_seconds, 3),
                "interpreters": self._servable.num_interpreters}


__all__ = ["TFLITE_FILE", "TfLiteLoader", "TfLiteServable", "has_tflite_model"]
