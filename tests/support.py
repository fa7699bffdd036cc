"""Test support shared by the suite (not a test module): ports, waiting, a hand-moved clock.

Test modules import from here (or from ``nbserve.testing``), never from each other.
"""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from nbserve.testing import free_port

__all__ = ["REPO", "FakeClock", "InterruptAt", "free_port", "wait_for"]

T = TypeVar("T")
REPO = pathlib.Path(__file__).resolve().parent.parent  # the repository root


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition",
             interval: float = 0.005) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    A synchronisation point, not a timing assertion: ``timeout`` only bounds a test that would
    otherwise hang, and raises ``AssertionError`` naming ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class FakeClock:
    """Monotonic and wall time that move only when the test says so.

    ``monotonic()`` starts at 0; ``wall()`` starts at the real time of construction (files the
    test writes carry real mtimes close to it) and moves with ``advance``.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._wall_start = time.time()

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self._wall_start + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def stop_process(proc: subprocess.Popen[str], reader: threading.Thread,
                 timeout: float = 60) -> int:
    """SIGTERM ``proc`` (a server under test), wait up to ``timeout`` s for its exit code; kill
    it if it is still running after that, and join the thread that read its output."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        reader.join(30)


def _in_finalizer(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


class InterruptAt:
    """Raises KeyboardInterrupt at the ``n``-th signal check point of this thread inside the
    block (profile events "call" and "c_return", where CPython runs signal handlers).

    ``only_in``: count only check points in frames of files under these folders (default: all).
    The standard library's own locks are not interrupt-safe (an interrupt just after
    ``Condition.__enter__`` took its lock leaks it: CPython's known hazard), so a test of
    nbserve's code limits the interrupts to nbserve's frames."""

    def __init__(self, n: int, only_in: tuple[str, ...] = ()) -> None:
        self.n = n
        self.only_in = only_in
        self.seen = 0
        self.fired = False

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if _in_finalizer(frame):
            return  # Python ignores (prints) an exception raised in __del__: not simulated
        if self.only_in and not frame.f_code.co_filename.startswith(self.only_in):
            return
        if event in ("call", "c_return") and not self.fired:
            self.seen += 1
            if self.seen > self.n:
                self.fired = True
                raise KeyboardInterrupt

    def __enter__(self) -> InterruptAt:
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc: Any) -> None:
        sys.setprofile(None)
