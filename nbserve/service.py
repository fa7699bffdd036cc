"""The transport-neutral use cases: predict, classify, regress, multi-inference, metadata, status.

Written once; REST, gRPC and in-process Python calls all go through these functions, so the three
cannot drift apart. A transport only decodes its wire format into the arguments here and encodes
the results back; every error is a ServingError carrying TF Serving's code and text.

A ServableHandle is held only for the duration of one call (the version cannot unload under it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from nbserve.core.events import ServableState
from nbserve.core.ids import ServableId
from nbserve.core.server_core import ServerCore
from nbserve.errors import ServingError, StatusCode, invalid_argument
from nbserve.servables.predict_util import find_signature
from nbserve.servables.signature import Servable, Signature

DEFAULT_SIGNATURE = "serving_default"

InputDecoder = Callable[[Signature], Mapping[str, np.ndarray]]


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
class PredictResult:
    id: ServableId
    signature_key: str
    outputs: dict[str, np.ndarray]
    signature: Signature


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
    """The use cases over one ServerCore. Thread-safe; called from the predict pool."""

    def __init__(self, core: ServerCore, run_hook: Callable[..., dict] | None = None) -> None:
        self.core = core
        self._run_hook = run_hook  # the batcher, when batching is on

    # -- inference ----------------------------------------------------------------------------
    def predict(self, spec: ModelSpec, decode_inputs: InputDecoder,
                output_filter: Sequence[str] | None = None,
                timeout_ms: int | None = None) -> PredictResult:
        """Resolve the servable, find the signature, decode the inputs against it, run it."""
        spec.check()
        with self.core.handle(spec.name, spec.version, spec.label) as handle:
            servable: Servable = handle.servable
            signature = find_signature(servable.signatures, spec.signature_key)
            inputs = decode_inputs(signature)
            outputs = self._run(servable, signature, inputs, output_filter, timeout_ms)
            return PredictResult(handle.id, signature.key, outputs, signature)

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

    def _run(self, servable: Servable, signature: Signature, inputs: Mapping[str, np.ndarray],
             output_filter: Sequence[str] | None, timeout_ms: int | None) -> dict[str, np.ndarray]:
        if self._run_hook is not None:
            return self._run_hook(servable, signature, inputs, output_filter, timeout_ms)
        return servable.run(signature, inputs, output_filter=output_filter, timeout_ms=timeout_ms)

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
        """nbserve extension: every known model with its versions' states (``GET /v1/models``)."""
        out = []
        for name in self.core.known_models():
            states = self.core.monitor.states(name)
            out.append({
                "name": name,
                "model_version_status": [_with_kind(state_entry(states[v]), states[v])
                                         for v in sorted(states, reverse=True)],
            })
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
