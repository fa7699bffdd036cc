"""Transport-neutral description of a servable's SignatureDefs, and the Servable protocol.

Codecs decode requests against a ``Signature`` (alias -> dtype) and the service runs it through a
``Servable``; neither needs TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from nbserve.servables.dtypes import DT_ENUM, DT_TO_NUMPY

__all__ = ["DT_ENUM", "DT_TO_NUMPY", "Servable", "Signature", "TensorInfo"]

@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature: graph tensor name, dtype name, shape.

    ``shape`` is None for unknown rank; -1 marks an unknown dimension.
    """

    name: str
    dtype: str
    shape: tuple[int, ...] | None = None

    @property
    def numpy_dtype(self) -> Any:
        return DT_TO_NUMPY.get(self.dtype)


@dataclass(frozen=True)
class Signature:
    """One SignatureDef: its key, ``method_name`` and alias -> TensorInfo maps."""

    key: str
    method_name: str = "tensorflow/serving/predict"
    inputs: Mapping[str, TensorInfo] = field(default_factory=dict)
    outputs: Mapping[str, TensorInfo] = field(default_factory=dict)


@runtime_checkable
class Servable(Protocol):
    """A loaded model version. Thread-safe: ``run`` is called from many threads at once."""

    @property
    def signatures(self) -> Mapping[str, Signature]:
        """Every signature by key (``serving_default``, ...)."""

    @property
    def device(self) -> str:
        """Where this version runs, e.g. ``/device:CPU:0``."""

    def run(self, signature: Signature, inputs: Mapping[str, np.ndarray],
            output_filter: Sequence[str] | None = None,
            timeout_ms: int | None = None) -> dict[str, np.ndarray]:
        """Run ``signature`` (one of ``self.signatures.values()``, already looked up by the
        caller); inputs and outputs keyed by alias. Raises ServingError."""

    def signature_def_map(self) -> Any:
        """The SignatureDefs as a ``tensorflow.serving.SignatureDefMap`` proto (for metadata)."""
