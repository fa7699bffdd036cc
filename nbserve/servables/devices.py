"""Which device a SavedModel version runs on: parse the user's choice, resolve it against what
TensorFlow sees. Pure (no TensorFlow import); ``saved_model`` passes in the GPU count.

Accepted spellings (case-insensitive): ``auto``, ``cpu``, ``gpu``, ``cpu:N``, ``gpu:N``,
``/cpu:N``, ``/gpu:N``, ``/device:CPU:N``, ``/device:GPU:N``.

* ``auto`` -> ``/device:GPU:0`` when TensorFlow sees a GPU, else ``/device:CPU:0``.
* ``gpu[:N]`` -> ``/device:GPU:N``; FAILED_PRECONDITION at load when TensorFlow sees no GPU N.
* ``cpu[:N]`` -> ``/device:CPU:N``; N > 0 needs N + 1 logical CPU devices in the session
  (``saved_model`` asks for them with ``ConfigProto.device_count``), which is how placement is
  tested on machines without a GPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from nbserve.errors import ServingError, StatusCode

DeviceKind = Literal["auto", "cpu", "gpu"]

_SPEC = re.compile(r"^(?:/(?:device:)?)?(auto|cpu|gpu)(?::(\d+))?$", re.IGNORECASE)


@dataclass(frozen=True)
class DeviceRequest:
    """A parsed device choice. ``index`` is 0 for ``auto``."""

    kind: DeviceKind = "auto"
    index: int = 0

    @staticmethod
    def parse(spec: str) -> DeviceRequest:
        """Parse a device string; raises ServingError(INVALID_ARGUMENT) for anything else."""
        match = _SPEC.match(str(spec).strip())
        if match is None or (match.group(1).lower() == "auto" and match.group(2) is not None):
            raise ServingError(
                StatusCode.INVALID_ARGUMENT,
                f"Invalid device: {spec!r}; expected 'auto', 'cpu', 'gpu', 'cpu:N' or 'gpu:N'")
        kind = match.group(1).lower()
        return DeviceRequest(kind, int(match.group(2) or 0))  # type: ignore[arg-type]

    def resolve(self, num_gpus: int, tf_version: str = "") -> str:
        """The canonical device name (``/device:CPU:0``, ``/device:GPU:0``, ...).

        Raises ServingError(FAILED_PRECONDITION) when a GPU is requested that TensorFlow does
        not see.
        """
        if self.kind == "auto":
            return "/device:GPU:0" if num_gpus > 0 else "/device:CPU:0"
        if self.kind == "cpu":
            return f"/device:CPU:{self.index}"
        name = f"/device:GPU:{self.index}"
        version = f" {tf_version}" if tf_version else ""
        if num_gpus == 0:
            raise ServingError(
                StatusCode.FAILED_PRECONDITION,
                f"Device {name} was requested but there is no GPU visible to TensorFlow{version} "
                "(tf.config.list_physical_devices('GPU') is empty); use device 'cpu' or 'auto'.")
        if self.index >= num_gpus:
            raise ServingError(
                StatusCode.FAILED_PRECONDITION,
                f"Device {name} was requested but only {num_gpus} GPU(s) are visible to "
                f"TensorFlow{version}.")
        return name


def device_kind(device_name: str) -> str:
    """``CPU`` or ``GPU`` from a canonical name such as ``/device:GPU:0``."""
    return device_name.split(":")[-2].upper()


def device_index(device_name: str) -> int:
    return int(device_name.rsplit(":", 1)[-1])
