"""TensorFlow's profiler in this process, and ``%tfserve profile`` (issue 14).

A ``Capture`` is one TensorFlow profiler session: it records the TF work of every thread of this
process (the requests being served) from its start until ``collect()``, which returns the trace as
a serialized ``XSpace``. ``save_xspace`` writes it where TensorBoard's Profile tab looks:
``<logdir>/plugins/profile/<run>/<host>.xplane.pb``. The gRPC ``tensorflow.ProfilerService``
(``nbserve.transport.profiler``) and the notebook command both use them.

TensorFlow allows one profiler session per process at a time; a second is refused with
``INTERNAL: Another profiling session active.`` (TF Serving's profiler service says the same).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

from nbserve.errors import ServingError, StatusCode

PROFILE_PLUGIN_DIR = os.path.join("plugins", "profile")
XPLANE_SUFFIX = ".xplane.pb"
TASK_ENVIRONMENT_PLANE = "Task Environment"  # holds no trace events; ignored by "is it empty"
# TensorFlow's own defaults for a remote capture: TF ops on the host, device activity, no Python.
DEFAULT_TRACERS: Mapping[str, int] = {"host_tracer_level": 2, "device_tracer_level": 1,
                                      "python_tracer_level": 0}


class Capture:
    """One running TensorFlow profiler session of this process.

    Starts at construction (ServingError INTERNAL when another session is active); ``collect()``
    stops it and returns the serialized XSpace. Call ``collect()`` exactly once, even when the
    result is not wanted, or the session stays active and blocks the next capture.
    """

    def __init__(self, tracers: Mapping[str, int] | None = None) -> None:
        from tensorflow.python.profiler.internal import (
            _pywrap_profiler,
        )

        self._dir = tempfile.mkdtemp(prefix="nbserve-profile-")
        self._session: Any = _pywrap_profiler.ProfilerSession()
        try:
            self._session.start(self._dir, dict(DEFAULT_TRACERS if tracers is None else tracers))
        except Exception as exc:  # noqa: BLE001 - any TensorFlow status error: one message
            shutil.rmtree(self._dir, ignore_errors=True)
            raise ServingError(StatusCode.INTERNAL,
                               str(getattr(exc, "message", "") or exc)) from None

    def collect(self) -> bytes:
        """Stop the session; the serialized XSpace (``b""`` when TensorFlow wrote none)."""
        try:
            self._session.export_to_tb()  # writes <dir>/plugins/profile/<run>/<host>.xplane.pb
            found = glob.glob(os.path.join(self._dir, PROFILE_PLUGIN_DIR, "*", "*" + XPLANE_SUFFIX))
            if not found:
                return b""
            with open(found[0], "rb") as f:
                return f.read()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


def is_empty(xspace: bytes) -> bool:
    """True when the XSpace holds no trace event (TSL's ``IsEmpty``: the task-environment plane
    does not count). A client told "empty" retries the capture."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace.FromString(xspace)
    return not any(line.events for plane in space.planes
                   if plane.name != TASK_ENVIRONMENT_PLANE for line in plane.lines)


def save_xspace(repository_root: str, run: str, host: str, xspace: bytes) -> str:
    """Write ``<repository_root>/<run>/<host>.xplane.pb`` (``:`` in ``host`` becomes ``_``, as
    TSL's ``SaveXSpace``); return its path."""
    folder = os.path.join(repository_root, run)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, (host + XPLANE_SUFFIX).replace(":", "_"))
    with open(path, "wb") as f:
        f.write(xspace)
    return path


def run_name(now: float | None = None) -> str:
    """A profile run's folder name, as TensorFlow's client makes it: ``2026_12_01_20_15_07``."""
    return time.strftime("%Y_%m_%d_%H_%M_%S", time.localtime(now))


def trace(logdir: str, duration_ms: int, *,
          sleep: Callable[[float], None] = time.sleep) -> tuple[str, bool]:
    """Profile this process for ``duration_ms`` and save the trace under ``logdir`` for
    TensorBoard; returns (the .xplane.pb path, whether it holds any trace event)."""
    if duration_ms <= 0:
        raise ValueError("duration_ms must be greater than zero.")
    capture = Capture()
    try:
        sleep(duration_ms / 1000.0)
    finally:
        xspace = capture.collect()
    path = save_xspace(os.path.join(logdir, PROFILE_PLUGIN_DIR), run_name(), socket.gethostname(),
                       xspace)
    return path, not is_empty(xspace)


def profile_report(logdir: str, duration_ms: int, path: str, has_events: bool) -> str:
    """What ``%tfserve profile`` prints: where the trace is and how to open it."""
    lines = [f"Profiled this kernel's TensorFlow work for {duration_ms} ms: {path}"]
    if not has_events:
        lines.append("No TensorFlow activity was recorded: send requests to the server while "
                     "the profile runs.")
    lines += ["Open it in TensorBoard's Profile tab:", "    %load_ext tensorboard",
              f"    %tensorboard --logdir {logdir}"]
    return "\n".join(lines)


def profile_command(logdir: str, duration_ms: int) -> str:
    """``%tfserve profile --duration_ms N --logdir DIR``: capture live traffic, return the report.

    Raises ValueError for a bad duration and ServingError when another profile is running.
    """
    path, has_events = trace(logdir, duration_ms)
    return profile_report(logdir, duration_ms, path, has_events)
