"""The Server's ServingService with the notebook's observers around each inference call.

``ObservedService`` is the ``ServingService`` every transport (REST, gRPC, ``Server.predict``)
calls. Around predict / classify / regress it

- counts the request for ``Server.traffic`` (``TrafficRecorder``): the version that answered,
  or for a failed request the version it named (its label's, else the latest AVAILABLE one);
- holds ``logs.native_capture()`` open, so TensorFlow's C++ log lines written while serving
  (``local_rendezvous.cc`` on a bad request, the first run's MLIR line) go to ``%tfserve logs``
  and not into a notebook cell.

Nothing on the wire changes: results and ServingErrors pass through untouched. The arguments
after the model spec are passed on as given, so the service's own signature may evolve.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from nbserve import logs
from nbserve.core.ids import ServableId
from nbserve.service import ModelSpec, ServingService
from nbserve.traffic import TrafficRecorder


class ObservedService(ServingService):
    """A ``ServingService`` that records traffic and keeps native log lines off the cells."""

    def __init__(self, *args: Any, traffic: TrafficRecorder | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.traffic = traffic or TrafficRecorder()
        self._capture = logs.native_capture()

    def predict(self, spec: ModelSpec, codec: Any, *args: Any, **kwargs: Any) -> Any:
        witness = _Witness(codec)
        return self._observed(ServingService.predict, spec, (witness, *args), kwargs,
                              lambda result: witness.servable_id)

    def start_predict(self, spec: ModelSpec, codec: Any, done: Any,
                      timeout_ms: int | None = None) -> None:
        """``ServingService.start_predict``, observed like ``predict``: the traffic is recorded
        and the native capture closed when ``done`` is called (on the batch thread)."""
        witness = _Witness(codec)
        capture = self._capture
        started = time.perf_counter()

        def observed(result: Any, error: Any) -> None:
            capture.end()
            if error is not None or witness.servable_id is not None:
                self._record(spec, None if error is not None else witness.servable_id, started)
            done(result, error)

        capture.begin()
        try:
            ServingService.start_predict(self, spec, witness, observed, timeout_ms)
        except BaseException:
            capture.end()
            self._record(spec, None, started)
            raise

    def classify(self, spec: ModelSpec, *args: Any, **kwargs: Any) -> Any:
        return self._observed(ServingService.classify, spec, args, kwargs, _result_id)

    def regress(self, spec: ModelSpec, *args: Any, **kwargs: Any) -> Any:
        return self._observed(ServingService.regress, spec, args, kwargs, _result_id)

    def _observed(self, call: Any, spec: ModelSpec, args: tuple[Any, ...],
                  kwargs: dict[str, Any], answered_by: Callable[[Any], ServableId | None]) -> Any:
        capture = self._capture
        started = time.perf_counter()
        capture.begin()
        try:
            result = call(self, spec, *args, **kwargs)
        except BaseException:
            capture.end()
            self._record(spec, None, started)
            raise
        capture.end()
        servable_id = answered_by(result)
        if servable_id is not None:
            self._record(spec, servable_id, started)
        return result

    def _record(self, spec: ModelSpec, answered_by: ServableId | None, started: float) -> None:
        """Count one request: answered by ``answered_by``, or (None) failed, for the version it
        named."""
        seconds = time.perf_counter() - started
        if answered_by is not None:
            self.traffic.record(spec.name, answered_by.version, seconds, True)
            return
        version = self._named_version(spec)
        if version is not None:
            self.traffic.record(spec.name, version, seconds, False)

    def _named_version(self, spec: ModelSpec) -> int | None:
        """The version a failed request was for: the one it named, its label's, or the latest
        AVAILABLE; None for a model this server does not serve."""
        if spec.version is not None:
            return spec.version
        if spec.label is not None:
            return self.core.labels(spec.name).get(spec.label)
        available = self.core.manager.available_versions(spec.name)
        return max(available) if available else None


def _result_id(result: Any) -> ServableId | None:
    """The version a classify / regress result came from."""
    servable_id: ServableId | None = getattr(result, "id", None)
    return servable_id


class _Witness:
    """A predict codec passed through, remembering which version's outputs it encoded (the
    service encodes once, after releasing the handle; REST and gRPC codecs return bytes or
    protos that do not carry it)."""

    __slots__ = ("_codec", "servable_id")

    def __init__(self, codec: Any) -> None:
        self._codec = codec
        self.servable_id: ServableId | None = None

    @property
    def output_filter(self) -> Any:
        return self._codec.output_filter

    def signature_not_found(self, key: str) -> Any:
        return self._codec.signature_not_found(key)

    def decode(self, signature: Any) -> Any:
        return self._codec.decode(signature)

    def encode(self, servable_id: ServableId, signature: Any, outputs: Any) -> Any:
        self.servable_id = servable_id
        return self._codec.encode(servable_id, signature, outputs)
