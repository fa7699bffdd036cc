"""Prometheus metrics with TF Serving's names (spec §1.10), one registry per Server.

Metrics are kept with ``prometheus_client`` in a private ``CollectorRegistry`` (several servers in
one kernel never clash) and exposed the way TF Serving's exporter writes them: ``# TYPE <name>
<type>`` then samples named exactly ``:tensorflow:serving:request_count{...}`` (prometheus_client
would add ``_total``/``_created``; TF Serving does not).

Several processes, one server (``nbserve-server --num_workers=N``, ``nbserve.workers``): each
worker calls ``share(directory)`` and writes ``snapshot()`` to ``directory`` with
``write_snapshot`` every ``SNAPSHOT_INTERVAL_SECONDS`` and once more when it stops. Its
``exposition()`` then merges its own live values with every other worker's latest snapshot
(``merge``): counters and histograms are summed over every worker that ever ran (a worker that
died keeps its last snapshot, so totals never go back by more than what it counted in its last
interval), gauges take the minimum over the workers alive now (a version is AVAILABLE once every
worker serves it). So any worker answering the metrics path reports the whole server, with the
other workers' counts at most one interval (plus a file write) old.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

from nbserve.core.events import ServableState
from nbserve.errors import StatusCode

DEFAULT_PATH = "/monitoring/prometheus/metrics"
SNAPSHOT_INTERVAL_SECONDS = 1.0  # how often a worker writes its snapshot (the staleness bound)
SNAPSHOT_PREFIX = "metrics-"  # a snapshot file: metrics-<pid>.json in the shared directory
SUMMED_TYPES = ("counter", "histogram", "summary", "untyped")  # gauges: minimum over live workers
# TF Serving's request latency buckets: exponential 10 * 1.8^k µs, 33 of them.
LATENCY_BUCKETS_US = (*(10 * 1.8**k for k in range(33)), math.inf)


class ServingMetrics:
    """The serving-owned metrics of one server. Thread-safe (prometheus_client is)."""

    def __init__(self) -> None:
        self.shared_directory = ""  # share(): the workers' snapshot folder ("" = this process only)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_count = Counter(
            ":tensorflow:serving:request_count", "The total number of requests.",
            ["model_name", "status"], registry=r)
        self.request_latency = Histogram(
            ":tensorflow:serving:request_latency", "Distribution of wall time (in microseconds) "
            "for Tensorflow Serving request.", ["model_name", "API", "entrypoint"],
            buckets=LATENCY_BUCKETS_US, registry=r)
        self.model_load_latency = Histogram(
            ":tensorflow:cc:saved_model:load_latency_by_stage", "Distribution of wall time spent "
            "(in microseconds) in each stage of the restore.", ["model_path", "stage"],
            buckets=LATENCY_BUCKETS_US, registry=r)
        self.version_state = Gauge(
            ":tensorflow:serving:model_version_state", "nbserve: state of each model version "
            "(10 START, 20 LOADING, 30 AVAILABLE, 40 UNLOADING, 50 END).",
            ["model_name", "version"], registry=r)
        # labels -> the labelled child: ``labels()`` costs more than the count itself, per request
        self._counts: dict[tuple[str, str], Any] = {}
        self._latencies: dict[tuple[str, str, str], Any] = {}

    def observe_request(self, model: str, api: str, code: StatusCode, seconds: float,
                        entrypoint: str) -> None:
        """Count every request; time successful ones (as TF Serving does)."""
        key = (model, code.name)
        count = self._counts.get(key)
        if count is None:  # two threads may both look it up: labels() gives both the same child
            count = self._counts[key] = self.request_count.labels(*key)
        count.inc()
        if code == StatusCode.OK:
            timed = (model, api, entrypoint)
            latency = self._latencies.get(timed)
            if latency is None:
                latency = self._latencies[timed] = self.request_latency.labels(*timed)
            latency.observe(seconds * 1e6)

    def observe_state(self, event: ServableState) -> None:
        """EventBus subscriber: per-version state and load latency."""
        self.version_state.labels(event.id.name, str(event.id.version)).set(int(event.state))
        load_seconds = getattr(event, "load_seconds", None)
        if load_seconds:
            self.model_load_latency.labels(event.id.name, "total").observe(load_seconds * 1e6)

    def exposition(self) -> bytes:
        """Prometheus text format, TF Serving's metric names; after ``share``, the sum over the
        workers (see the module docstring)."""
        if not self.shared_directory:
            return render(self.registry.collect()).encode()
        others = read_snapshots(self.shared_directory, exclude_pid=os.getpid())
        return render(merge([self.snapshot(), *others], pid_alive)).encode()

    # -- several worker processes (nbserve.workers) ----------------------------------------------
    def share(self, directory: str) -> None:
        """Merge the snapshots other workers write to ``directory`` into ``exposition()``."""
        self.shared_directory = directory

    def snapshot(self) -> dict[str, Any]:
        """This process's metrics as plain JSON-able data: ``{"pid", "families": [{"name",
        "type", "help", "samples": [[name, labels, value], ...]}]}`` (no ``_created``)."""
        families = [{"name": family.name, "type": family.type, "help": family.documentation,
                     "samples": [[s.name, s.labels, s.value] for s in family.samples
                                 if not s.name.endswith("_created")]}
                    for family in self.registry.collect()]
        return {"pid": os.getpid(), "families": families}

    def write_snapshot(self, directory: str) -> str:
        """Write ``snapshot()`` to ``directory/metrics-<pid>.json`` atomically (a reader sees
        the previous snapshot or this one, never a torn file); returns the path."""
        path = os.path.join(directory, f"{SNAPSHOT_PREFIX}{os.getpid()}.json")
        fd, tmp = tempfile.mkstemp(prefix=".metrics-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.snapshot(), f)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise
        return path


def read_snapshots(directory: str, exclude_pid: int | None = None) -> list[dict[str, Any]]:
    """Every readable snapshot in ``directory`` (but ``exclude_pid``'s), by file name; a file
    that cannot be read or parsed is skipped (it is replaced whole, so this is rare)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    snapshots = []
    for name in names:
        if not (name.startswith(SNAPSHOT_PREFIX) and name.endswith(".json")):
            continue
        try:
            with open(os.path.join(directory, name)) as f:
                snapshot = json.load(f)
            if snapshot["pid"] != exclude_pid:
                snapshots.append(snapshot)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return snapshots


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError, TypeError):
        return False
    return True


def merge(snapshots: Iterable[Mapping[str, Any]], alive: Callable[[int], bool]
          ) -> list[Metric]:
    """Metric families merged over ``snapshots`` (``ServingMetrics.snapshot()`` records): a
    sample (name + labels) of a counter, histogram, summary or untyped family is summed over
    every snapshot; a gauge sample is the minimum over the snapshots whose ``pid`` is
    ``alive``. Families and samples keep the order they are first seen in. Pure."""
    kinds: dict[str, tuple[str, str]] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for snapshot in snapshots:
        live = alive(snapshot["pid"])
        for family in snapshot["families"]:
            name, kind = family["name"], family["type"]
            kinds.setdefault(name, (kind, family.get("help", "")))
            merged = values.setdefault(name, {})
            summed = kinds[name][0] in SUMMED_TYPES
            if not (summed or live):
                continue
            for sample_name, labels, value in family["samples"]:
                key = (sample_name, tuple(labels.items()))
                if key not in merged:
                    merged[key] = float(value)
                elif summed:
                    merged[key] += float(value)
                else:
                    merged[key] = min(merged[key], float(value))
    families = []
    for name, (kind, help_text) in kinds.items():
        metric = Metric(name, help_text, kind)
        for (sample_name, labels), value in values[name].items():
            metric.add_sample(sample_name, dict(labels), value)
        families.append(metric)
    return families


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    return repr(float(value)) if value != int(value) else str(int(value))


def render(families: Iterable[Metric]) -> str:
    lines = []
    for family in families:
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            name = sample.name[:-6] if sample.name.endswith("_total") else sample.name
            lines.append(f"{name}{_labels(sample.labels)} {_number(sample.value)}")
    return "\n".join(lines) + "\n"
