"""The notebook facade's typed view of a server: what ``Server.models()``, ``Server.signature()``,
``Server.traffic()``, ``Server.compare()`` and ``Server.subscribe()`` return.

Frozen dataclasses of plain values (no live references to the server), so a view may keep them,
compare them and render them from any thread. State names are TF Serving's
(``ModelVersionStatus.State``: START, LOADING, AVAILABLE, UNLOADING, END); dtypes are TensorFlow's
DataType names (``DT_FLOAT``). Importing this module loads neither numpy nor TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "REPLACED",
    "STATES",
    "STOPPED",
    "Comparison",
    "ModelStatus",
    "SignatureInfo",
    "StateChange",
    "TensorSpec",
    "VersionStatus",
    "VersionTraffic",
]

STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")
REPLACED = "REPLACED"  # StateChange.state of a server-level event: another server took its place
STOPPED = "STOPPED"  # StateChange.state of a server-level event: the server stopped


@dataclass(frozen=True)
class VersionStatus:
    """One version of a model as the manager publishes it.

    ``state`` is TF Serving's state name; ``error`` TF Serving's error message when the version
    failed (END with an error), else None; ``device`` where it runs (``/device:CPU:0``) and
    ``load_seconds`` how long its load took, when known; ``kind`` the kind of servable
    (``"saved_model"``, ``"tflite"``) when known.
    """

    version: int
    state: str
    device: str | None = None
    load_seconds: float | None = None
    error: str | None = None
    kind: str | None = None

    @property
    def available(self) -> bool:
        return self.state == "AVAILABLE"

    @property
    def failed(self) -> bool:
        """END with an error (the load failed, or the version could not be read)."""
        return self.state == "END" and self.error is not None


@dataclass(frozen=True)
class ModelStatus:
    """One served model: its versions (highest first), its version policy in TF Serving's words
    (``"latest 1"``, ``"all"``, ``"specific 1,2"``: the one in force, a picked override
    included), its version labels, and ``hint``: why it has nothing to serve, when nbserve knows
    the cause (e.g. a SavedModel saved straight into the base path), else None."""

    name: str
    base_path: str
    versions: tuple[VersionStatus, ...] = ()
    policy: str = "latest 1"
    labels: Mapping[str, int] = field(default_factory=dict)
    hint: str | None = None

    def version(self, number: int) -> VersionStatus | None:
        """The status of version ``number``, or None when the manager never saw it."""
        return next((v for v in self.versions if v.version == number), None)

    @property
    def serving(self) -> int | None:
        """The version that answers requests naming no version or label (the highest
        AVAILABLE), or None."""
        return max((v.version for v in self.versions if v.available), default=None)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature: its alias, TensorFlow dtype name and shape (-1 an
    unknown dimension; None an unknown rank)."""

    alias: str
    dtype: str
    shape: tuple[int, ...] | None = None

    def describe(self) -> str:
        """``float32 shape (-1, 4)``: TensorFlow's dtype name and the shape, for messages."""
        dtype = self.dtype[3:].lower() if self.dtype.startswith("DT_") else self.dtype
        dtype = {"float": "float32", "double": "float64", "half": "float16"}.get(dtype, dtype)
        if self.shape is None:
            return f"{dtype} of any shape"
        return f"{dtype} shape {format_shape(self.shape)}"


@dataclass(frozen=True)
class SignatureInfo:
    """A SignatureDef: its key, method name, and inputs / outputs by alias (in the model's
    order)."""

    key: str
    method_name: str
    inputs: Mapping[str, TensorSpec] = field(default_factory=dict)
    outputs: Mapping[str, TensorSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class VersionTraffic:
    """Predict traffic to one version over the last minute: requests and errors, the median
    and 99th percentile latency of the successful ones (None without any), and the requests per
    second for each of the last 60 seconds, oldest first (the last entry is the current,
    partial second)."""

    version: int
    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    per_second: tuple[int, ...]


@dataclass(frozen=True)
class Comparison:
    """The same request answered by two versions: ``outputs[version][alias]`` and, per output
    alias, the largest absolute difference between the two versions' answers (``inf`` when
    their shapes differ or an answer is not numeric and differs)."""

    versions: tuple[int, int]
    outputs: Mapping[int, Mapping[str, np.ndarray]]
    max_abs_diff: Mapping[str, float]

    @property
    def largest_diff(self) -> float:
        """The largest difference over every output (0.0 when there is none)."""
        return max(self.max_abs_diff.values(), default=0.0)


@dataclass(frozen=True)
class StateChange:
    """What ``Server.subscribe`` callbacks receive.

    A version event: ``model``, ``version``, the new ``state`` (TF Serving's name) and ``error``.
    A server-level event: ``model == ""``, ``version is None`` and ``state`` ``"STOPPED"`` (the
    server stopped) or ``"REPLACED"`` (another server took its place: ``Server.replaced_by``).
    """

    model: str
    version: int | None
    state: str
    error: str | None = None

    @property
    def server_level(self) -> bool:
        return self.version is None


def format_shape(shape: tuple[int, ...] | Any) -> str:
    """``(-1, 4)`` / ``(3,)`` / ``()``: a shape as Python writes a tuple."""
    dims = tuple(int(d) for d in shape)
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"
