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
from typing import Any

from nbserve import logs
from nbserve.service import ModelSpec, ServingService
from nbserve.traffic import TrafficRecorder


class ObservedService(ServingService):
    """A ``ServingService`` that records traffic and keeps native log lines off the cells."""

    def __init__(self, *args: Any, traffic: TrafficRecorder | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.traffic = traffic or TrafficRecorder()

    def predict(self, spec: ModelSpec, *args: Any, **kwargs: Any) -> Any:
        return self._observed(ServingService.predict, spec, args, kwargs)

    def classify(self, spec: ModelSpec, *args: Any, **kwargs: Any) -> Any:
        return self._observed(ServingService.classify, spec, args, kwargs)

    def regress(self, spec: ModelSpec, *args: Any, **kwargs: Any) -> Any:
        return self._observed(ServingService.regress, spec, args, kwargs)

    def _observed(self, call: Any, spec: ModelSpec, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> Any:
        capture = logs.native_capture()
        started = time.perf_counter()
        capture.begin()
        try:
            result = call(self, spec, *args, **kwargs)
        except BaseException:
            capture.end()
            version = self._named_version(spec)
            if version is not None:
                self.traffic.record(spec.name, version, time.perf_counter() - started, False)
            raise
        capture.end()
        self.traffic.record(spec.name, result.id.version, time.perf_counter() - started, True)
        return result

    def _named_version(self, spec: ModelSpec) -> int | None:
        """The version a failed request was for: the one it named, its label's, or the latest
        AVAILABLE; None for a model this server does not serve."""
        if spec.version is not None:
            return spec.version
        if spec.label is not None:
            return self.core.labels(spec.name).get(spec.label)
        available = self.core.manager.available_versions(spec.name)
        return max(available) if available else None
