"""Transport-neutral description of a servable's SignatureDefs, and the Servable protocol.

Codecs decode requests against a ``Signature`` (alias -> dtype) and the service runs it through a
``Servable``; neither needs TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

# TensorFlow DataType enum names -> numpy dtypes (types.proto). Object dtype holds bytes.
DT_TO_NUMPY: Mapping[str, Any] = {
    "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64,
    "DT_INT32": np.int32,
    "DT_UINT8": np.uint8,
    "DT_INT16": np.int16,
    "DT_INT8": np.int8,
    "DT_STRING": np.object_,
    "DT_INT64": np.int64,
    "DT_BOOL": np.bool_,
    "DT_UINT16": np.uint16,
    "DT_HALF": np.float16,
    "DT_UINT32": np.uint32,
    "DT_UINT64": np.uint64,
}

# DataType enum numbers (tensorflow/core/framework/types.proto).
DT_ENUM: Mapping[str, int] = {
    "DT_INVALID": 0, "DT_FLOAT": 1, "DT_DOUBLE": 2, "DT_INT32": 3, "DT_UINT8": 4, "DT_INT16": 5,
    "DT_INT8": 6, "DT_STRING": 7, "DT_COMPLEX64": 8, "DT_INT64": 9, "DT_BOOL": 10, "DT_QINT8": 11,
    "DT_QUINT8": 12, "DT_QINT32": 13, "DT_BFLOAT16": 14, "DT_QINT16": 15, "DT_QUINT16": 16,
    "DT_UINT16": 17, "DT_COMPLEX128": 18, "DT_HALF": 19, "DT_RESOURCE": 20, "DT_VARIANT": 21,
    "DT_UINT32": 22, "DT_UINT64": 23,
}


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
