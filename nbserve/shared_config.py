"""A config reload that reaches one worker of ``--num_workers=N`` applies to every worker.

A ``HandleReloadConfigRequest`` lands on the worker its connection landed on (SO_REUSEPORT). On
its own, that worker would serve the new config and the others the old one, so which models a
client sees would depend on its connection. ``SharedConfig`` makes the reload the server's:

- the receiving worker validates and applies the config as a one-process server does (an
  invalid config is refused with TF Serving's error and reaches no other worker), then publishes
  it in the workers' private folder with the next *generation* number, then waits until its new
  models are AVAILABLE and every other worker has applied that generation (or a later one), up
  to ``wait_timeout`` seconds. Only then does it answer OK: after the answer, every connection
  sees the new config. A worker that failed to apply it (a model that does not load there)
  makes the answer UNKNOWN ``worker <i>: <its error>``; one that has not answered within the
  wait makes it DEADLINE_EXCEEDED;
- every worker follows the published generation (a thread polling every ``POLL_SECONDS``) and
  applies a newer one as the receiver did, then acknowledges it once its new models are
  AVAILABLE (``model-config-applied-<index>.json``; a worker's acknowledgement never goes back
  to an older generation);
- a worker started later (the supervisor restarts one that died) starts from the latest
  published config, not from the command line's (``latest_models``).

Concurrent reloads on two workers converge: generations are allocated under a file lock, each
worker applies configs in one order under its own lock, and every worker ends on the highest
generation. The config file poller (``--model_config_file_poll_wait_seconds``) stays per worker:
each polls the same file.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import threading
import time
from typing import Any

from nbserve.config_file import model_configs_from_proto
from nbserve.core.server_core import ServerCore
from nbserve.errors import ServingError, StatusCode
from nbserve.options import ModelConfig

log = logging.getLogger("nbserve.workers")

CONFIG_FILE = "model-config.bin"  # 8-byte big-endian generation + a serialized ModelServerConfig
LOCK_FILE = "model-config.lock"
POLL_SECONDS = 0.1
WAIT_TIMEOUT_SECONDS = 300.0  # as a one-process reload waits for its new models


def write_atomically(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data``: a reader in another worker sees the old file or the new
    one, never a torn one. One writer per path and process at a time (the temporary file is
    named after this process)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _parse(data: bytes) -> tuple[ModelConfig, ...]:
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    config.ParseFromString(data)
    return model_configs_from_proto(config)


def read_published(directory: str) -> tuple[int, bytes] | None:
    """The latest published (generation, ModelServerConfig bytes), or None before any reload."""
    try:
        with open(os.path.join(directory, CONFIG_FILE), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    if len(data) < 8:
        return None
    return struct.unpack(">Q", data[:8])[0], data[8:]


def latest_models(directory: str) -> tuple[int, tuple[ModelConfig, ...]] | None:
    """(generation, models) of the latest published config, for a worker that starts now."""
    found = read_published(directory)
    return None if found is None else (found[0], _parse(found[1]))


class SharedConfig:
    """Worker ``index`` of ``count``'s side of config reloads (the module docstring).
    ``reload`` is the gRPC handler; ``start`` (once the server serves) acknowledges the
    generation it started from and follows later ones; ``close`` stops following."""

    def __init__(self, core: ServerCore, directory: str, index: int, count: int, *,
                 generation: int = 0, wait_timeout: float = WAIT_TIMEOUT_SECONDS) -> None:
        self._core = core
        self._directory = directory
        self._index = index
        self._count = count
        self._applied = generation  # under _lock: the generation this worker serves
        self._wait_timeout = wait_timeout
        self._lock = threading.Lock()
        self._ack_lock = threading.Lock()  # the handler's and the follower's acknowledgements
        self._acked = 0  # under _ack_lock: the generation of the last acknowledgement written
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the receiving worker --------------------------------------------------------------
    def reload(self, config: Any) -> None:
        """``HandleReloadConfigRequest`` for the whole server: raises ServingError as the
        one-process reload does, or for another worker (see the module docstring)."""
        models = model_configs_from_proto(config)
        deadline = time.monotonic() + self._wait_timeout
        with self._lock:
            new_names = self._core.apply_config(models)  # invalid: raises, nothing published
            generation = self._publish(config.SerializeToString())
            self._applied = generation
        try:
            if new_names:
                self._core.wait_for_models(new_names, max(0.0, deadline - time.monotonic()))
        except ServingError as exc:
            self._acknowledge(generation, exc.message)
            raise
        self._acknowledge(generation, None)
        self._wait_for_others(generation, deadline)

    def _publish(self, data: bytes) -> int:
        with open(os.path.join(self._directory, LOCK_FILE), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            found = read_published(self._directory)
            generation = (found[0] if found else 0) + 1
            write_atomically(os.path.join(self._directory, CONFIG_FILE),
                             struct.pack(">Q", generation) + data)
        log.info("Config reload published to every worker (generation %d)", generation)
        return generation

    def _wait_for_others(self, generation: int, deadline: float) -> None:
        waiting = [i for i in range(self._count) if i != self._index]
        while waiting:
            for index in list(waiting):
                ack = self._read_ack(index)
                if ack is None or ack.get("generation", 0) < generation:
                    continue
                if ack["generation"] == generation and ack.get("error"):
                    raise ServingError(StatusCode.UNKNOWN, f"worker {index}: {ack['error']}")
                waiting.remove(index)
            if not waiting:
                return
            if time.monotonic() >= deadline:
                raise ServingError(
                    StatusCode.DEADLINE_EXCEEDED,
                    f"worker(s) {', '.join(map(str, waiting))} did not apply the config within "
                    f"{self._wait_timeout:g} s; it is published and they apply it when they can")
            time.sleep(POLL_SECONDS / 2)

    # -- every worker ----------------------------------------------------------------------
    def start(self) -> None:
        """Acknowledge the generation this worker started from; follow later ones."""
        with self._lock:
            started_from = self._applied
        if started_from:
            self._acknowledge(started_from, None)
        self._thread = threading.Thread(target=self._follow, name="nbserve-shared-config",
                                        daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.catch_up()
            except Exception:
                log.exception("Could not follow the shared model config")

    def catch_up(self) -> None:
        """Apply the published config when it is newer than this worker's, then acknowledge
        it (with the error, if it failed here)."""
        error: str | None = None
        with self._lock:
            found = read_published(self._directory)
            if found is None or found[0] <= self._applied:
                return
            generation, data = found
            self._applied = generation
            try:
                new_names = self._core.apply_config(_parse(data))
            except ServingError as exc:
                error, new_names = exc.message, []
        log.info("Applying the model config another worker received (generation %d)",
                 generation)
        if new_names:
            try:
                self._core.wait_for_models(new_names, self._wait_timeout)
            except ServingError as exc:
                error = exc.message
        self._acknowledge(generation, error)

    def _ack_path(self, index: int) -> str:
        return os.path.join(self._directory, f"model-config-applied-{index}.json")

    def _acknowledge(self, generation: int, error: str | None) -> None:
        """Tell the other workers this one serves ``generation`` (or failed to, ``error``);
        nothing when it already acknowledged a later one (a slow load of an older config
        finishing after a newer reload)."""
        with self._ack_lock:
            if generation < self._acked:
                return
            self._acked = generation
            write_atomically(self._ack_path(self._index), json.dumps(
                {"generation": generation, "error": error, "pid": os.getpid()}).encode())

    def _read_ack(self, index: int) -> dict[str, Any] | None:
        try:
            with open(self._ack_path(index)) as f:
                ack = json.load(f)
        except (OSError, ValueError):
            return None
        return ack if isinstance(ack, dict) else None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
