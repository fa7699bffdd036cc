"""ServableHandle and HandleGate under a kernel interrupt: an exception that lands at any point
where Python checks for signals (a Python function's entry, a return from C) while a handle is
taken or released never leaves the version's count wrong, so an unload never waits forever for a
handle nobody holds. Before, an interrupt at the entry of ``HandleGate.release`` (the handle
already unlinked) leaked one count, and the version stayed UNLOADING."""

from __future__ import annotations

import gc
import sys
import threading
from typing import Any

from nbserve.core.handle import HandleGate
from nbserve.core.ids import ServableId

ID = ServableId("m", 1)


def _in_finalizer(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


class InterruptAt:
    """Raises KeyboardInterrupt at the ``n``-th signal check point of this thread inside the
    block (profile events "call" and "c_return", where CPython runs signal handlers)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0
        self.fired = False

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if _in_finalizer(frame):
            return  # Python ignores (prints) an exception raised in __del__: not simulated
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


def request(gate: HandleGate) -> None:
    """What a request does with a handle: take it, use it, let it go."""
    handle = gate.acquire(ID, object())
    assert handle is not None
    with handle:
        pass


def test_an_interrupt_anywhere_in_a_request_leaves_no_count_behind():
    points = 0
    for n in range(200):
        gate = HandleGate()
        interrupt = InterruptAt(n)
        try:
            with interrupt:
                request(gate)
        except KeyboardInterrupt:
            pass
        gc.collect()  # a handle the interrupt left unreleased is released when collected
        assert gate.count == 0, f"interrupt at check point {n} leaked a handle"
        if not interrupt.fired:
            break
        points += 1
    else:
        raise AssertionError("the request never ran to its end")
    assert points >= 5  # the check points were really visited


def test_a_handle_released_twice_counts_once():
    gate = HandleGate()
    first, second = gate.acquire(ID, 1), gate.acquire(ID, 2)
    assert first is not None and second is not None and gate.count == 2
    first.release()
    first.release()
    del first
    gc.collect()
    assert gate.count == 1 and not second.released
    gate.close()
    assert gate.acquire(ID, 3) is None
    waiter = threading.Thread(target=gate.wait_quiesced)
    waiter.start()
    second.release()
    waiter.join(5)
    assert not waiter.is_alive() and gate.count == 0
