"""Item 10's numbers: nbserve.traffic's rolling minute per version (a fake clock, no server)."""

from __future__ import annotations

import threading

from nbserve.traffic import TrafficRecorder, bin_seconds, latency_bin, percentile


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_counts_errors_and_percentiles_per_version():
    clock = Clock()
    rec = TrafficRecorder(clock)
    for i in range(100):
        rec.record("m", 1, (i + 1) / 1000, True)  # 1..100 ms
    rec.record("m", 1, 0.5, False)
    rec.record("m", 2, 0.002, True)
    rec.record("other", 7, 0.002, True)
    v2, v1 = rec.snapshot("m")
    assert (v1.version, v1.requests, v1.errors) == (1, 101, 1)
    assert abs(v1.p50_ms - 50) <= 50 * 0.05 and abs(v1.p99_ms - 99) <= 99 * 0.05
    assert v1.per_second[-1] == 101 and sum(v1.per_second) == 101 and len(v1.per_second) == 60
    assert (v2.version, v2.requests, v2.errors) == (2, 1, 0)


def test_the_window_rolls_over_one_minute():
    clock = Clock()
    rec = TrafficRecorder(clock)
    rec.record("m", 1, 0.001, True)
    clock.now += 30
    rec.record("m", 1, 0.001, True)
    rec.record("m", 1, 0.001, True)
    (t,) = rec.snapshot("m")
    assert t.requests == 3 and t.per_second[-1] == 2 and t.per_second[-31] == 1
    clock.now += 30  # the first request is now 60 s old: out of the window
    (t,) = rec.snapshot("m")
    assert t.requests == 2 and t.per_second[-31] == 2
    clock.now += 120
    assert rec.snapshot("m") == ()


def test_only_errors_have_no_latency():
    rec = TrafficRecorder(Clock())
    rec.record("m", 3, 0.1, False)
    (t,) = rec.snapshot("m")
    assert (t.requests, t.errors, t.p50_ms, t.p99_ms) == (1, 1, None, None)


def test_bins_are_within_five_percent():
    for seconds in (2e-6, 1e-4, 0.0123, 1.5, 30.0):
        assert abs(bin_seconds(latency_bin(seconds)) - seconds) <= seconds * 0.05
    assert percentile({}, 0.5) is None


def test_threads_lose_no_request():
    rec = TrafficRecorder()

    def hammer() -> None:
        for _ in range(2000):
            rec.record("m", 1, 0.001, True)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(t.requests for t in rec.snapshot("m")) == 8000
