"""ServingService.predict: one handle, one signature lookup, then the codec (decode -> run ->
encode); the batcher gets the handle's ServableId. A stub core and a counting servable: no TF."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from nbserve.codec.python_predict import PythonPredictCodec
from nbserve.core.ids import ServableId
from nbserve.errors import ServingError, StatusCode
from nbserve.servables.signature import Signature, TensorInfo
from nbserve.service import ModelSpec, ServingService

SIG = Signature("serving_default", inputs={"x": TensorInfo("x:0", "DT_FLOAT")},
                outputs={"y": TensorInfo("y:0", "DT_FLOAT")})


class CountingSignatures(dict[str, Signature]):
    """A signature map that counts lookups."""

    lookups = 0

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.lookups += 1
        return super().get(key, default)

    def __getitem__(self, key: str) -> Signature:
        self.lookups += 1
        return super().__getitem__(key)


class Servable:
    def __init__(self) -> None:
        self.signatures = CountingSignatures(serving_default=SIG)
        self.device = "/device:CPU:0"
        self.runs: list[tuple[Signature, Sequence[str] | None, int | None]] = []

    def run(self, signature: Signature, inputs: Mapping[str, np.ndarray],
            output_filter: Sequence[str] | None = None,
            timeout_ms: int | None = None) -> dict[str, np.ndarray]:
        self.runs.append((signature, output_filter, timeout_ms))
        return {"y": np.asarray(inputs["x"]) * 2}

    def signature_def_map(self) -> Any:
        return None


class Handle:
    """A ``ServableHandle``: ``release()`` or the end of ``with`` lets it go."""

    def __init__(self, servable: Servable) -> None:
        self.id = ServableId("m", 3)
        self.servable = servable
        self.released = False

    def release(self) -> None:
        self.released = True

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class Core:
    """``ServerCore.handle`` for one model ``m`` at version 3."""

    def __init__(self) -> None:
        self.servable = Servable()
        self.handles: list[Handle] = []

    def handle(self, name: str, version: int | None = None,
               label: str | None = None) -> Handle:
        if name != "m":
            raise ServingError(StatusCode.NOT_FOUND, f"Servable not found for request: "
                                                     f"Latest({name})")
        handle = Handle(self.servable)
        self.handles.append(handle)
        return handle


class RecordingCodec:
    """A PredictCodec that records the order of the service's calls."""

    output_filter = ("y",)

    def __init__(self, core: Core) -> None:
        self.core = core
        self.calls: list[str] = []

    def signature_not_found(self, key: str) -> ServingError:
        self.calls.append("signature_not_found")
        return ServingError(StatusCode.INVALID_ARGUMENT, f"no {key}")

    def decode(self, signature: Signature) -> dict[str, np.ndarray]:
        assert signature is SIG
        self.calls.append("decode")
        return {"x": np.array([1.0, 2.0], np.float32)}

    def encode(self, servable_id: ServableId, signature: Signature,
               outputs: dict[str, np.ndarray]) -> tuple[ServableId, list[float]]:
        assert signature is SIG
        assert self.core.handles[-1].released  # the handle is not held while encoding
        self.calls.append("encode")
        return servable_id, outputs["y"].tolist()


def test_predict_looks_the_signature_up_once_and_runs_the_codec_in_order():
    core = Core()
    service = ServingService(core)  # type: ignore[arg-type]
    codec = RecordingCodec(core)
    assert service.predict(ModelSpec("m"), codec, timeout_ms=50) == (ServableId("m", 3),
                                                                      [2.0, 4.0])
    assert codec.calls == ["decode", "encode"]
    assert core.servable.signatures.lookups == 1
    assert core.servable.runs == [(SIG, ("y",), 50)]


def test_unknown_signature_is_the_codecs_error_and_nothing_is_decoded():
    core = Core()
    codec = RecordingCodec(core)
    with pytest.raises(ServingError) as err:
        ServingService(core).predict(ModelSpec("m", signature_name="nope"), codec)  # type: ignore[arg-type]
    assert err.value.message == "no nope"
    assert codec.calls == ["signature_not_found"]
    assert core.handles[-1].released


def test_the_model_is_resolved_before_the_signature():
    codec = RecordingCodec(Core())
    with pytest.raises(ServingError) as err:
        ServingService(Core()).predict(ModelSpec("x", signature_name="nope"), codec)  # type: ignore[arg-type]
    assert err.value.code == StatusCode.NOT_FOUND and codec.calls == []
    with pytest.raises(ServingError) as err:
        ServingService(Core()).predict(ModelSpec(""), codec)  # type: ignore[arg-type]
    assert err.value.message == "ModelSpec has no name specified."


def test_the_batcher_receives_the_handles_servable_id():
    core = Core()
    seen: list[tuple[Any, ...]] = []

    def hook(servable_id: ServableId, servable: Any, signature: Signature,
             inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] | None,
             timeout_ms: int | None) -> dict[str, np.ndarray]:
        seen.append((servable_id, signature, output_filter, timeout_ms))
        return servable.run(signature, inputs, output_filter, timeout_ms)

    service = ServingService(core, run_hook=hook)  # type: ignore[arg-type]
    out = service.predict(ModelSpec("m"), PythonPredictCodec([3.0]))
    assert out["y"].tolist() == [6.0] and out["y"].dtype == np.float32
    assert seen == [(ServableId("m", 3), SIG, None, None)]


def test_python_codec_errors_read_as_grpc():
    core = Core()
    with pytest.raises(ServingError) as err:
        ServingService(core).predict(ModelSpec("m", signature_name="nope"),  # type: ignore[arg-type]
                                     PythonPredictCodec({"x": [1.0]}))
    assert err.value == ServingError(StatusCode.FAILED_PRECONDITION,
                                     'Serving signature key "nope" not found.')
    two = Signature("s", inputs={"a": TensorInfo("a:0", "DT_FLOAT"),
                                 "b": TensorInfo("b:0", "DT_FLOAT")})
    with pytest.raises(ServingError) as err:
        PythonPredictCodec([1.0]).decode(two)
    assert err.value.message.startswith("inputs is a plain value/list, but expecting an object")


class Queue:
    """A ``SubmitHook`` that keeps what it is given until ``run_all``."""

    def __init__(self) -> None:
        self.queued: list[tuple[Any, ...]] = []

    def __call__(self, servable_id: ServableId, servable: Any, signature: Signature,
                 inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] | None,
                 timeout_ms: int | None, done: Callable[..., None]) -> None:
        self.queued.append((servable, signature, inputs, output_filter, timeout_ms, done))

    def run_all(self, error: ServingError | None = None) -> None:
        for servable, signature, inputs, output_filter, timeout_ms, done in self.queued:
            if error is not None:
                done(None, error)
            else:
                done(servable.run(signature, inputs, output_filter, timeout_ms), None)
        self.queued.clear()


def test_start_predict_holds_the_handle_until_the_batch_has_run():
    core = Core()
    queue = Queue()
    service = ServingService(core, submit_hook=queue)  # type: ignore[arg-type]
    assert service.queues_predict and not ServingService(core).queues_predict  # type: ignore[arg-type]
    codec = RecordingCodec(core)
    outcomes: list[Any] = []
    service.start_predict(ModelSpec("m"), codec, lambda *outcome: outcomes.append(outcome),
                          timeout_ms=70)
    assert outcomes == [] and codec.calls == ["decode"]  # queued: nothing answered yet
    assert not core.handles[-1].released  # the version cannot unload under a queued request
    assert queue.queued[0][3:5] == (("y",), 70)
    queue.run_all()
    assert outcomes == [((ServableId("m", 3), [2.0, 4.0]), None)]  # what predict returns
    assert codec.calls == ["decode", "encode"] and core.handles[-1].released

    codec = RecordingCodec(core)
    service.start_predict(ModelSpec("m"), codec, lambda *outcome: outcomes.append(outcome))
    failed = ServingError(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    queue.run_all(failed)
    assert outcomes[-1] == (None, failed) and codec.calls == ["decode"]
    assert core.handles[-1].released


def test_start_predict_raises_what_is_refused_before_it_is_queued():
    core = Core()
    queue = Queue()
    service = ServingService(core, submit_hook=queue)  # type: ignore[arg-type]
    outcomes: list[Any] = []
    with pytest.raises(ServingError) as err:
        service.start_predict(ModelSpec("x"), RecordingCodec(core), outcomes.append)
    assert err.value.code == StatusCode.NOT_FOUND
    codec = RecordingCodec(core)
    with pytest.raises(ServingError, match="no nope"):
        service.start_predict(ModelSpec("m", signature_name="nope"), codec, outcomes.append)
    assert core.handles[-1].released and codec.calls == ["signature_not_found"]

    def full(*args: Any) -> None:
        raise ServingError(StatusCode.UNAVAILABLE, "full")

    with pytest.raises(ServingError, match="full"):
        ServingService(core, submit_hook=full).start_predict(  # type: ignore[arg-type]
            ModelSpec("m"), RecordingCodec(core), outcomes.append)
    assert core.handles[-1].released and outcomes == [] and queue.queued == []
