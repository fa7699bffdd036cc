"""ServableHandle and HandleGate under a kernel interrupt: an exception that lands at any point
where Python checks for signals (a Python function's entry, a return from C) while a handle is
taken or released never leaves the version's count wrong, so an unload never waits forever for a
handle nobody holds. Before, an interrupt at the entry of ``HandleGate.release`` (the handle
already unlinked) leaked one count, and the version stayed UNLOADING."""

from __future__ import annotations

import gc
import threading

from nbserve.core.handle import HandleGate
from nbserve.core.ids import ServableId
from tests.support import InterruptAt

ID = ServableId("m", 1)


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
