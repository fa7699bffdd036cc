"""Live traffic per model version over the last minute (``Server.traffic``).

``TrafficRecorder.record(model, version, seconds, ok)`` is called once per request on the
serving threads; ``snapshot(model)`` returns, per version, the requests and errors of the last
60 seconds, p50 / p99 latency of the successful ones and the requests in each of those seconds.

Bounded and cheap: each version keeps 60 one-second buckets (a ring indexed by the second);
latencies go into a log-scale histogram per bucket (bins 5 % wide), so memory does not grow
with load and a percentile is exact to within one bin. ``record`` takes one lock for a few
dict operations. Thread-safe; the clock is injectable for tests.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nbserve.status import VersionTraffic

WINDOW_SECONDS = 60
_BIN_BASE = 1.05  # latency histogram bins: each 5 % wider than the last
_LOG_BASE = math.log(_BIN_BASE)
_MIN_SECONDS = 1e-6  # 1 µs: the first bin


@dataclass
class _Bucket:
    second: int = -1
    requests: int = 0
    errors: int = 0
    latency_bins: dict[int, int] = field(default_factory=dict)


class _VersionWindow:
    """60 one-second buckets of one version (guarded by the recorder's lock)."""

    def __init__(self) -> None:
        self.buckets = [_Bucket() for _ in range(WINDOW_SECONDS)]

    def bucket(self, second: int) -> _Bucket:
        bucket = self.buckets[second % WINDOW_SECONDS]
        if bucket.second != second:
            bucket.second, bucket.requests, bucket.errors = second, 0, 0
            bucket.latency_bins = {}
        return bucket


def latency_bin(seconds: float) -> int:
    """The histogram bin of a latency (0 for 1 µs and less)."""
    if seconds <= _MIN_SECONDS:
        return 0
    return int(math.log(seconds / _MIN_SECONDS) / _LOG_BASE) + 1


def bin_seconds(index: int) -> float:
    """The middle of bin ``index``, in seconds (what a percentile in that bin reports)."""
    if index <= 0:
        return _MIN_SECONDS
    low = _MIN_SECONDS * _BIN_BASE ** (index - 1)
    return low * (1 + _BIN_BASE) / 2


def percentile(bins: dict[int, int], fraction: float) -> float | None:
    """The latency (seconds) below which ``fraction`` of the counted requests fall; None when
    there are none."""
    total = sum(bins.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return bin_seconds(index)
    return bin_seconds(max(bins))  # pragma: no cover - unreachable: seen reaches total


class TrafficRecorder:
    """Per model and version request counts over the last minute; see the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, int], _VersionWindow] = {}

    def record(self, model: str, version: int, seconds: float, ok: bool) -> None:
        """Count one request to ``model`` ``version`` that took ``seconds`` (timed only when
        ``ok``)."""
        second = int(self._clock())
        index = latency_bin(seconds) if ok else -1
        with self._lock:
            window = self._windows.get((model, version))
            if window is None:
                window = self._windows[(model, version)] = _VersionWindow()
            bucket = window.bucket(second)
            bucket.requests += 1
            if ok:
                bucket.latency_bins[index] = bucket.latency_bins.get(index, 0) + 1
            else:
                bucket.errors += 1

    def snapshot(self, model: str) -> tuple[VersionTraffic, ...]:
        """Every version of ``model`` with requests in the last minute, highest first."""
        now = int(self._clock())
        first = now - WINDOW_SECONDS + 1
        result = []
        with self._lock:
            windows = [(v, w) for (m, v), w in self._windows.items() if m == model]
            for version, window in windows:
                per_second = [0] * WINDOW_SECONDS
                requests = errors = 0
                bins: dict[int, int] = {}
                for bucket in window.buckets:
                    if not first <= bucket.second <= now:
                        continue
                    per_second[bucket.second - first] = bucket.requests
                    requests += bucket.requests
                    errors += bucket.errors
                    for index, count in bucket.latency_bins.items():
                        bins[index] = bins.get(index, 0) + count
                if requests:
                    result.append(_traffic(version, requests, errors, bins, per_second))
        return tuple(sorted(result, key=lambda t: -t.version))

    def forget(self, model: str | None = None) -> None:
        """Drop the counts of ``model`` (of every model when None)."""
        with self._lock:
            for key in [k for k in self._windows if model is None or k[0] == model]:
                del self._windows[key]


def idle(version: int) -> VersionTraffic:
    """A version without requests in the last minute."""
    return VersionTraffic(version, 0, 0, None, None, (0,) * WINDOW_SECONDS)


def _traffic(version: int, requests: int, errors: int, bins: dict[int, int],
             per_second: list[int]) -> VersionTraffic:
    p50, p99 = percentile(bins, 0.50), percentile(bins, 0.99)
    return VersionTraffic(version, requests, errors,
                          round(p50 * 1000, 3) if p50 is not None else None,
                          round(p99 * 1000, 3) if p99 is not None else None,
                          tuple(per_second))
