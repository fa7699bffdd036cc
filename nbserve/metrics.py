"""Prometheus metrics with TF Serving's names (spec §1.10), one registry per Server.

Metrics are kept with ``prometheus_client`` in a private ``CollectorRegistry`` (several servers in
one kernel never clash) and exposed the way TF Serving's exporter writes them: ``# TYPE <name>
<type>`` then samples named exactly ``:tensorflow:serving:request_count{...}`` (prometheus_client
would add ``_total``/``_created``; TF Serving does not).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

from nbserve.core.events import ServableState
from nbserve.errors import StatusCode

DEFAULT_PATH = "/monitoring/prometheus/metrics"
# TF Serving's request latency buckets: exponential 10 * 1.8^k µs, 33 of them.
LATENCY_BUCKETS_US = (*(10 * 1.8**k for k in range(33)), math.inf)


class ServingMetrics:
    """The serving-owned metrics of one server. Thread-safe (prometheus_client is)."""

    def __init__(self) -> None:
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

    def observe_request(self, model: str, api: str, code: StatusCode, seconds: float,
                        entrypoint: str) -> None:
        """Count every request; time successful ones (as TF Serving does)."""
        self.request_count.labels(model, code.name).inc()
        if code == StatusCode.OK:
            self.request_latency.labels(model, api, entrypoint).observe(seconds * 1e6)

    def observe_state(self, event: ServableState) -> None:
        """EventBus subscriber: per-version state and load latency."""
        self.version_state.labels(event.id.name, str(event.id.version)).set(int(event.state))
        load_seconds = getattr(event, "load_seconds", None)
        if load_seconds:
            self.model_load_latency.labels(event.id.name, "total").observe(load_seconds * 1e6)

    def exposition(self) -> bytes:
        """Prometheus text format, TF Serving's metric names."""
        return render(self.registry.collect()).encode()


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
