"""Shared pieces for the reliability tests: a TensorFlow-free servable that can block or fail,
a loader factory that routes chosen models to fake loaders, fake model folders."""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from nbserve.servables.signature import Signature, TensorInfo
from nbserve.testing import FakeLoader

SIGNATURE = Signature("serving_default", inputs={"x": TensorInfo("x:0", "DT_FLOAT", (-1,))},
                      outputs={"y": TensorInfo("y:0", "DT_FLOAT", (-1,))})


class HalfPlusTwo:
    """A Servable computing y = x / 2 + 2 without TensorFlow.

    ``gate``: each run waits for it (a request stays in flight until the test sets it);
    ``entered`` counts runs that started (tests wait on it instead of sleeping);
    ``error``: every run raises it (a servable that fails on every call).
    """

    def __init__(self, *, gate: threading.Event | None = None,
                 error: BaseException | None = None) -> None:
        self.gate = gate
        self.error = error
        self.entered = threading.Semaphore(0)
        self.calls = 0

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return {"serving_default": SIGNATURE}

    @property
    def device(self) -> str:
        return "/device:CPU:0"

    def run(self, signature: Signature, inputs: Mapping[str, np.ndarray],
            output_filter: Any = None, timeout_ms: int | None = None) -> dict[str, np.ndarray]:
        self.calls += 1
        self.entered.release()
        if self.gate is not None:
            self.gate.wait(60)
        if self.error is not None:
            raise self.error
        x = np.asarray(inputs["x"], dtype=np.float32)
        return {"y": x / 2 + 2}

    def signature_def_map(self) -> Any:
        from tensorflow_serving.apis import get_model_metadata_pb2

        return get_model_metadata_pb2.SignatureDefMap()


def fake_model_dir(root: pathlib.Path, name: str, versions: tuple[int, ...] = (1,),
                   pb: bytes = b"") -> pathlib.Path:
    """``root/name/<v>/saved_model.pb`` (contents ``pb``) for each version; returns the base."""
    base = root / name
    for version in versions:
        (base / str(version)).mkdir(parents=True, exist_ok=True)
        (base / str(version) / "saved_model.pb").write_bytes(pb)
    return base


def routing_factory(fakes: Mapping[str, Callable[[Any, str], Any]], options: Any = None
                    ) -> Callable[[Any, str], Any]:
    """A loader factory: models named in ``fakes`` get ``fakes[name](id, path)``, the others the
    real SavedModelLoader."""
    from nbserve.options import ServerOptions
    from nbserve.server import saved_model_loader_factory

    real = saved_model_loader_factory(options or ServerOptions())

    def make(servable_id: Any, path: str) -> Any:
        fake = fakes.get(servable_id.name)
        return fake(servable_id, path) if fake is not None else real(servable_id, path)

    return make


def serving(servable: Any) -> Callable[[Any, str], FakeLoader]:
    """A ``fakes`` entry whose every version loads ``servable``."""
    return lambda servable_id, path: FakeLoader(servable, label=servable_id)
