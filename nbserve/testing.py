"""Test helpers shipped with nbserve, for nbserve's own suite and for loader/source authors.

* ``FakeLoader`` exercises the lifecycle without TensorFlow: it counts calls, records their order,
  fails on demand, blocks on an event, and checks the Loader contract (no concurrent calls, one
  unload per successful load).
* ``FakeServable`` is a real ``Servable`` (``nbserve.servables.signature``) computing with numpy:
  signatures, ``run`` with the resolved ``Signature``, a gate that holds runs, error knobs, and a
  record of every run. Its default is TF Serving's ``half_plus_two`` (``y = 0.5 * x + 2``).
* ``start_test_server()`` serves fake servables on real sockets (REST on a free port by default),
  no TensorFlow needed.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nbserve.core.events import ManagerState
from nbserve.core.ids import ServableId
from nbserve.errors import ServingError, StatusCode
from nbserve.servables.signature import Signature, TensorInfo
from nbserve.servables.signature_def import signature_def_map

if TYPE_CHECKING:
    from nbserve.server import Server

Arrays = Mapping[str, np.ndarray]
RunFn = Callable[[Signature, Arrays], Arrays]

HALF_PLUS_TWO = Signature(
    "serving_default", inputs={"x": TensorInfo("x:0", "DT_FLOAT", (-1,))},
    outputs={"y": TensorInfo("y:0", "DT_FLOAT", (-1,))})
"""TF Serving's ``saved_model_half_plus_two``'s predict signature: ``x`` -> ``y`` (float, [-1])."""


def half_plus_two(signature: Signature, inputs: Arrays) -> dict[str, np.ndarray]:
    """``y = 0.5 * x + 2`` of the (single) input, under every output alias of ``signature``."""
    (x,) = inputs.values()
    y = np.asarray(x, dtype=np.float32) * np.float32(0.5) + np.float32(2)
    return dict.fromkeys(signature.outputs, y)


@dataclass(frozen=True)
class FakeRun:
    """One call of ``FakeServable.run``, as it arrived."""

    signature_key: str
    inputs: dict[str, np.ndarray]
    output_filter: tuple[str, ...] | None
    timeout_ms: int | None


class FakeServable:
    """A Servable without TensorFlow. Thread-safe: ``run`` may be called from many threads.

    Args:
      value, id: free for the test (the lifecycle tests tag a version's servable with them).
      signatures: the signatures by key (or a sequence of them); default ``{"serving_default":
        HALF_PLUS_TWO}``.
      fn: ``fn(signature, inputs) -> outputs`` computes a run (default ``half_plus_two``);
        ``run`` keeps only the ``output_filter`` aliases when one is given.
      gate: when set, each run waits for this event (``gate_timeout`` seconds at most, then
        fails with DEADLINE_EXCEEDED), so a test can hold requests in flight.
      error: every run raises it (assignable later: ``servable.error = ...``).
      fail_times: only the first ``fail_times`` runs raise ``error`` (0: all of them).
      device: what ``device`` reports.

    Observed: ``calls`` (every ``FakeRun``, in arrival order), ``run_count``, ``entered`` (a
    semaphore released as each run starts: ``entered.acquire(timeout=5)`` waits for the next one
    without sleeping), ``unloaded`` (set by ``FakeLoader.unload``).
    """

    def __init__(self, value: Any = None, id: Any = None, *,
                 signatures: Mapping[str, Signature] | Sequence[Signature] | None = None,
                 fn: RunFn | None = None, gate: threading.Event | None = None,
                 gate_timeout: float = 60.0, error: BaseException | None = None,
                 fail_times: int = 0, device: str = "/device:CPU:0") -> None:
        self.value = value
        self.id = id
        if signatures is None:
            signatures = {HALF_PLUS_TWO.key: HALF_PLUS_TWO}
        elif not isinstance(signatures, Mapping):
            signatures = {sig.key: sig for sig in signatures}
        self._signatures: dict[str, Signature] = dict(signatures)
        self.fn: RunFn = fn or half_plus_two
        self.gate = gate
        self.gate_timeout = gate_timeout
        self.error = error
        self._fail_times = fail_times
        self._device = device
        self.unloaded = False
        self.entered = threading.Semaphore(0)
        self.calls: list[FakeRun] = []
        self._lock = threading.Lock()

    # -- the Servable protocol -------------------------------------------------------------------
    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    @property
    def device(self) -> str:
        return self._device

    def run(self, signature: Signature, inputs: Arrays,
            output_filter: Sequence[str] | None = None,
            timeout_ms: int | None = None) -> dict[str, np.ndarray]:
        """Record the run, wait for the gate, fail or compute ``fn``; see the class docstring."""
        if self._signatures.get(signature.key) != signature:
            raise ServingError(StatusCode.INTERNAL, "FakeServable.run got a signature it does "
                               f"not have: {signature.key}")
        with self._lock:
            self.calls.append(FakeRun(signature.key, dict(inputs),
                                      None if output_filter is None else tuple(output_filter),
                                      timeout_ms))
            fail = self.error is not None and (not self._fail_times
                                               or len(self.calls) <= self._fail_times)
        self.entered.release()
        if self.gate is not None and not self.gate.wait(self.gate_timeout):
            raise ServingError(StatusCode.DEADLINE_EXCEEDED,
                               f"FakeServable: gate still closed after {self.gate_timeout:g} s")
        if fail and self.error is not None:
            raise self.error
        outputs = dict(self.fn(signature, inputs))
        if output_filter:
            return {alias: outputs[alias] for alias in output_filter}
        return outputs

    def signature_def_map(self) -> Any:
        """The signatures as a ``tensorflow.serving.SignatureDefMap`` (for metadata requests).

        Imports TF Serving's protos (and so TensorFlow) only when called.
        """
        return signature_def_map(self._signatures)

    # -- observation -----------------------------------------------------------------------------
    @property
    def run_count(self) -> int:
        with self._lock:
            return len(self.calls)

    def __repr__(self) -> str:
        return f"FakeServable(value={self.value!r}, id={self.id!r})"


class FakeLoader:
    """A Loader for tests. Thread-safe counters; checks the Loader contract as it goes.

    Args:
      servable: what ``servable()`` returns; a fresh ``FakeServable()`` when None.
      fail_times: the first ``fail_times`` loads raise ``error``. If ``error`` is given and
        ``fail_times`` is 0, every load fails; ``fail_times < 0`` also means every load.
      error: the exception raised by failing loads (any exception; default
        ``ServingError(UNKNOWN, "FakeLoader: load failed")``).
      load_delay: seconds each load sleeps (real time; keep it small).
      block: each load waits for this event to be set before it proceeds.
      journal: a list shared between loaders; each call appends ``(event, label)``, event one of
        ``"load"``, ``"load_failed"``, ``"unload"``, so tests can assert a cross-version order.
      label: this loader's name in the journal (e.g. a ServableId).

    Attributes: ``load_calls``, ``unload_calls``, ``loaded`` (bool), ``calls`` (this loader's own
    sequence of events), ``violations`` (contract breaches seen: concurrent calls, unload without
    load, servable() while not loaded), ``load_started`` (an Event set when a load begins).
    """

    def __init__(self, servable: Any = None, *, fail_times: int = 0,
                 error: BaseException | None = None, load_delay: float = 0.0,
                 block: threading.Event | None = None,
                 journal: list[tuple[str, Any]] | None = None, label: Any = None) -> None:
        self._servable = servable if servable is not None else FakeServable()
        self._failures_left = -1 if (fail_times < 0 or (error is not None and fail_times == 0)) \
            else fail_times
        self._error = error
        self._load_delay = load_delay
        self._block = block
        self._journal = journal
        self.label = label
        self._lock = threading.Lock()
        self._busy = False
        self.load_calls = 0
        self.unload_calls = 0
        self.loaded = False
        self.calls: list[str] = []
        self.violations: list[str] = []
        self.load_started = threading.Event()

    def _record(self, event: str) -> None:
        with self._lock:
            self.calls.append(event)
            if self._journal is not None:
                self._journal.append((event, self.label))

    def _enter(self, what: str) -> None:
        with self._lock:
            if self._busy:
                self.violations.append(f"concurrent {what}")
            self._busy = True

    def _leave(self) -> None:
        with self._lock:
            self._busy = False

    def load(self) -> None:
        self._enter("load")
        try:
            with self._lock:
                self.load_calls += 1
                if self.loaded:
                    self.violations.append("load while loaded")
            self.load_started.set()
            if self._block is not None:
                self._block.wait()
            if self._load_delay:
                time.sleep(self._load_delay)
            with self._lock:
                fail = self._failures_left != 0
                if self._failures_left > 0:
                    self._failures_left -= 1
            if fail:
                self._record("load_failed")
                raise self._error if self._error is not None else ServingError(
                    StatusCode.UNKNOWN, "FakeLoader: load failed")
            with self._lock:
                self.loaded = True
                if isinstance(self._servable, FakeServable):
                    self._servable.unloaded = False
            self._record("load")
        finally:
            self._leave()

    def unload(self) -> None:
        self._enter("unload")
        try:
            with self._lock:
                self.unload_calls += 1
                if not self.loaded:
                    self.violations.append("unload without a successful load")
                self.loaded = False
                if isinstance(self._servable, FakeServable):
                    self._servable.unloaded = True
            self._record("unload")
        finally:
            self._leave()

    def servable(self) -> Any:
        if not self.loaded:
            with self._lock:
                self.violations.append("servable() while not loaded")
            raise ServingError(StatusCode.FAILED_PRECONDITION,
                               "FakeLoader.servable() called while not loaded")
        return self._servable

    def __repr__(self) -> str:
        return (f"FakeLoader(label={self.label!r}, loads={self.load_calls}, "
                f"unloads={self.unload_calls}, loaded={self.loaded})")


# -- a whole server ------------------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for a subprocess that must be told its port;
    in-process servers should bind port 0 instead, which cannot race)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


ServableSpec = Any  # a servable, or {version: servable}


def fake_version_dirs(base: str, versions: Iterable[int]) -> None:
    """Make ``base/<v>/saved_model.pb`` (empty, dated a minute ago so the source takes it at once)
    for each version: what the file-system source needs to aspire a version of a fake model."""
    past = time.time() - 60
    for version in versions:
        folder = os.path.join(base, str(version))
        os.makedirs(folder, exist_ok=True)
        marker = os.path.join(folder, "saved_model.pb")
        with open(marker, "wb"):
            pass
        os.utime(marker, (past, past))
        os.utime(folder, (past, past))


def start_test_server(models: Mapping[str, ServableSpec] | None = None, *, port: int = 0,
                      grpc_port: int | None = None, wait_timeout: float = 30.0,
                      **options: Any) -> Server:
    """A started ``Server`` serving fake servables, without TensorFlow, on real sockets.

    ``models`` maps a model name to a servable (served as version 1) or to ``{version:
    servable}``; default ``{"half_plus_two": FakeServable()}``. ``port`` is the REST port (0: a
    free one; read ``server.rest_port``), ``grpc_port`` the gRPC one (None: off; its protos load
    TensorFlow). Other keywords go to ``ServerOptions``. Returns once every version is AVAILABLE
    (or raises); the caller stops the server, which also removes the temporary model folders.
    """
    from nbserve.options import ModelConfig, ServerOptions, VersionPolicy
    from nbserve.server import Server

    if models is None:
        models = {"half_plus_two": FakeServable()}
    root = tempfile.mkdtemp(prefix="nbserve-test-")
    by_id: dict[ServableId, Any] = {}
    configs = []
    for name, spec in models.items():
        versions = dict(spec) if isinstance(spec, Mapping) else {1: spec}
        for version, servable in versions.items():
            by_id[ServableId(name, int(version))] = servable
        base = os.path.join(root, name)
        fake_version_dirs(base, versions)
        configs.append(ModelConfig(name, base, version_policy=VersionPolicy.all()))

    def loader(servable_id: ServableId, path: str) -> FakeLoader:
        return FakeLoader(by_id[servable_id], label=servable_id)

    settings: dict[str, Any] = {"max_num_load_retries": 0, "load_retry_interval_micros": 0}
    settings.update(options)
    server = Server(ServerOptions(models=tuple(configs), rest_api_port=port, grpc_port=grpc_port,
                                  **settings), loader_factory=loader)
    weakref.finalize(server, shutil.rmtree, root, True)
    server.start()
    try:
        for servable_id in by_id:
            state = server.core.monitor.wait_for_state(
                servable_id, (ManagerState.AVAILABLE, ManagerState.END), wait_timeout)
            if state is None or state.state is not ManagerState.AVAILABLE:
                raise ServingError(StatusCode.UNAVAILABLE,
                                   f"start_test_server: {servable_id} did not become available: "
                                   f"{state}")
    except BaseException:
        server.stop()
        raise
    return server
