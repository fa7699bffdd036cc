"""The transport-neutral use cases: predict, classify, regress, multi-inference, metadata, status.

Written once; REST, gRPC and in-process Python calls all go through these functions, so the three
cannot drift apart. A transport only decodes its wire format into the arguments here and encodes
the results back; every error is a ServingError carrying TF Serving's code and text.

Predict takes a *codec* (``PredictCodec``: ``nbserve.codec.json_predict.JsonPredictCodec`` for a
REST body, ``nbserve.codec.proto_predict.ProtoPredictCodec`` for a gRPC PredictRequest,
``nbserve.codec.python_predict.PythonPredictCodec`` for ``Server.predict``): the service resolves
the servable and its signature once and hands the signature to the codec, which decodes the inputs
against it and encodes the outputs; the codec keeps its wire format's error order and texts.

A ServableHandle is held only for the duration of one call (the version cannot unload under it).

With batching on, ``start_predict`` is ``predict`` for an event loop: it decodes, queues the inputs
on the batcher (``SubmitHook``) and returns; the encoded answer is handed to a callback from the
batch thread, so a transport answers batched requests without a thread blocked per request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from nbserve.core.events import ServableState
from nbserve.core.ids import ServableId
from nbserve.core.server_core import ServerCore
from nbserve.errors import ServingError, StatusCode, as_serving_error, invalid_argument
from nbserve.servables.signature import Servable, Signature

DEFAULT_SIGNATURE = "serving_default"

R_co = TypeVar("R_co", covariant=True)

RunHook = Callable[
    [ServableId, Servable, Signature, Mapping[str, np.ndarray], Sequence[str] | None, int | None],
    dict[str, np.ndarray]]
"""``(servable_id, servable, signature, inputs, output_filter, timeout_ms) -> outputs``: what
runs a signature instead of ``servable.run`` (the batcher, ``BatchScheduler.run``)."""

Outcome = Callable[[Any, ServingError | None], None]
"""``(result, None)`` or ``(None, error)``: how a queued call ends (called once)."""

SubmitHook = Callable[
    [ServableId, Servable, Signature, Mapping[str, np.ndarray], Sequence[str] | None, int | None,
     Callable[[dict[str, np.ndarray] | None, ServingError | None], None]],
    None]
"""``RunHook`` without waiting (``BatchScheduler.submit``): the last argument receives the
outputs or the error, once, from the thread that ran them; raises ServingError for a call refused
before it is queued."""


class PredictCodec(Protocol[R_co]):
    """One Predict request in one wire format, and its response (see the module doc).

    The service calls, in this order and each at most once: ``signature_not_found`` (only when the
    servable has no signature of the requested key; the service raises what it returns), then
    ``decode``, then ``encode``. ``decode`` and ``encode`` raise ServingError in TF Serving's
    words. A codec object serves one request; it is not shared between threads.
    """

    @property
    def output_filter(self) -> Sequence[str] | None:
        """The output aliases asked for, in order; None: every output."""
        ...

    def signature_not_found(self, key: str) -> ServingError:
        """The error for a servable without signature ``key`` (its wire format's text)."""
        ...

    def decode(self, signature: Signature) -> Mapping[str, np.ndarray]:
        """The request's inputs (alias -> array) decoded against ``signature``."""
        ...

    def encode(self, servable_id: ServableId, signature: Signature,
               outputs: dict[str, np.ndarray]) -> R_co:
        """The response for ``outputs`` of ``signature`` run on ``servable_id``."""
        ...


@dataclass(frozen=True)
class ModelSpec:
    """What a request names: a model, optionally a version or a label, and a signature."""

    name: str
    version: int | None = None
    label: str | None = None
    signature_name: str = ""

    def check(self) -> None:
        if not self.name:
            raise invalid_argument("ModelSpec has no name specified.")

    @property
    def signature_key(self) -> str:
        return self.signature_name or DEFAULT_SIGNATURE


@dataclass(frozen=True)
class ClassifyResult:
    id: ServableId
    signature_key: str
    classes: np.ndarray | None
    scores: np.ndarray | None


@dataclass(frozen=True)
class RegressResult:
    id: ServableId
    signature_key: str
    values: np.ndarray


@dataclass(frozen=True)
class MetadataResult:
    id: ServableId
    signature_def_map: Any


class ServingService:
    """The use cases over one ServerCore. Thread-safe; called from the predict pool, and
    ``start_predict`` from a transport's IO loop."""

    def __init__(self, core: ServerCore, run_hook: RunHook | None = None,
                 hint: Callable[[str], str | None] | None = None,
                 submit_hook: SubmitHook | None = None) -> None:
        self.core = core
        self._run_hook = run_hook  # the batcher, when batching is on
        self._hint = hint  # model name -> why it waits (the facade's diagnosis), for models()
        self._submit_hook = submit_hook  # the batcher's non-blocking side

    @property
    def queues_predict(self) -> bool:
        """True when ``start_predict`` can queue a predict without blocking (batching on)."""
        return self._submit_hook is not None

    # -- inference ----------------------------------------------------------------------------
    def predict(self, spec: ModelSpec, codec: PredictCodec[R_co],
                timeout_ms: int | None = None) -> R_co:
        """Resolve the servable, look its signature up (once), let ``codec`` decode the inputs
        against it, run it (through the batcher when batching is on), let ``codec`` encode the
        outputs. The handle is released before encoding. Raises ServingError."""
        spec.check()
        with self.core.handle(spec.name, spec.version, spec.label) as handle:
            servable: Servable = handle.servable
            key = spec.signature_key
            signature = servable.signatures.get(key)
            if signature is None:
                raise codec.signature_not_found(key)
            inputs = codec.decode(signature)
            if self._run_hook is not None:
                outputs = self._run_hook(handle.id, servable, signature, inputs,
                                         codec.output_filter, timeout_ms)
            else:
                outputs = servable.run(signature, inputs, output_filter=codec.output_filter,
                                       timeout_ms=timeout_ms)
            servable_id = handle.id
        return codec.encode(servable_id, signature, outputs)

    def start_predict(self, spec: ModelSpec, codec: PredictCodec[R_co], done: Outcome,
                      timeout_ms: int | None = None) -> None:
        """``predict`` without waiting for the model (only when ``queues_predict``): resolve,
        decode and queue on the calling thread, then return. ``done(response, None)`` or
        ``done(None, error)`` is called once, from the batch thread, with what ``predict`` would
        have returned or raised; the handle is held until the batch has run. Raises ServingError
        for a request refused before it is queued (unknown model, bad inputs, queue full)."""
        assert self._submit_hook is not None, "start_predict needs batching (queues_predict)"
        spec.check()
        handle = self.core.handle(spec.name, spec.version, spec.label)
        try:
            servable: Servable = handle.servable
            signature = servable.signatures.get(spec.signature_key)
            if signature is None:
                raise codec.signature_not_found(spec.signature_key)
            inputs = codec.decode(signature)

            def ran(outputs: dict[str, np.ndarray] | None, error: ServingError | None) -> None:
                handle.release()
                if error is not None:
                    done(None, error)
                    return
                try:
                    response = codec.encode(handle.id, signature, outputs or {})
                except Exception as exc:  # noqa: BLE001 - answered, as predict would raise it
                    done(None, as_serving_error(exc))
                    return
                done(response, None)

            self._submit_hook(handle.id, servable, signature, inputs, codec.output_filter,
                              timeout_ms, ran)
        except BaseException:
            handle.release()
            raise

    def classify(self, spec: ModelSpec, examples: Sequence[bytes]) -> ClassifyResult:
        from nbserve.servables.inference import run_classify

        spec.check()
        with self.core.handle(spec.name, spec.version, spec.label) as handle:
            classes, scores = run_classify(handle.servable, spec.signature_key, list(examples))
            return ClassifyResult(handle.id, spec.signature_key, classes, scores)

    def regress(self, spec: ModelSpec, examples: Sequence[bytes]) -> RegressResult:
        from nbserve.servables.inference import run_regress

        spec.check()
        with self.core.handle(spec.name, spec.version, spec.label) as handle:
            values = run_regress(handle.servable, spec.signature_key, list(examples))
            return RegressResult(handle.id, spec.signature_key, values)

    def multi_inference(self, specs_and_methods: Sequence[tuple[ModelSpec, str]],
                        examples: Sequence[bytes]) -> tuple[ServableId, list[Any]]:
        """Several classify/regress signatures of one model over one input (§2.2)."""
        from nbserve.servables.inference import run_multi_inference

        if not specs_and_methods:
            raise invalid_argument("MultiInferenceRequest must contain at least one task.")
        first = specs_and_methods[0][0]
        for spec, _ in specs_and_methods:
            if not spec.name:
                raise invalid_argument("Found ModelSpec with an empty model name.")
            if spec.name != first.name:
                raise invalid_argument(
                    "All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        with self.core.handle(first.name, first.version, first.label) as handle:
            tasks = [(spec.signature_key, method) for spec, method in specs_and_methods]
            return handle.id, run_multi_inference(handle.servable, tasks, list(examples))

    # -- metadata and status ------------------------------------------------------------------
    def metadata(self, spec: ModelSpec) -> MetadataResult:
        spec.check()
        with self.core.handle(spec.name, spec.version, spec.label) as handle:
            return MetadataResult(handle.id, handle.servable.signature_def_map())

    def status(self, name: str, version: int | None = None) -> list[ServableState]:
        if not name:
            raise invalid_argument("ModelSpec has no name specified.")
        return self.core.version_states(name, version)

    def models(self) -> list[dict[str, Any]]:
        """nbserve extension: every known model with its versions' states (``GET /v1/models``),
        and a ``hint`` when the model waits for a known reason (a SavedModel saved straight into
        the base path, an empty folder...)."""
        out = []
        for name in self.core.known_models():
            states = self.core.monitor.states(name)
            entry: dict[str, Any] = {
                "name": name,
                "model_version_status": [_with_kind(state_entry(states[v]), states[v])
                                         for v in sorted(states, reverse=True)],
            }
            hint = self._hint(name) if self._hint is not None else None
            if hint:
                entry["hint"] = hint
            out.append(entry)
        return out

    def ready(self) -> tuple[bool, list[str]]:
        """True when every configured model has an AVAILABLE version; else the ones that don't."""
        waiting = [name for name in self.core.models()
                   if not self.core.manager.available_versions(name)]
        return not waiting, waiting


def state_entry(state: ServableState) -> dict[str, Any]:
    """One ModelVersionStatus as a plain dict (shared by REST JSON and the Python API)."""
    from nbserve.codec.json_status import version_status_dict

    err = state.error
    return version_status_dict(state.id.version, state.state.name,
                               err.code if err else StatusCode.OK, err.message if err else "")


def _with_kind(entry: dict[str, Any], state: ServableState) -> dict[str, Any]:
    """``entry`` plus ``kind`` (``saved_model``/``tflite``) when the loader's detail says it."""
    kind = (state.detail or {}).get("kind")
    return {**entry, "kind": kind} if kind else entry
