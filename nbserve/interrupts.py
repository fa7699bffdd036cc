"""Holding a kernel interrupt back until a step that must not stop halfway is done (nbserve).

A notebook user stops a cell with SIGINT (the kernel's interrupt). Python raises
``KeyboardInterrupt`` wherever the main thread happens to be; some steps must not end there:
publishing an exported version (a half-written folder), starting a transport on the IO loop (a
listener the server never learns of, so never closes), stopping a server (ports, threads and
loaded versions left behind). ``interrupts_deferred`` runs such a step to its end and raises the
interrupt right after it, so the cell still stops, with everything consistent.

A step that may wait long (a predict queued in the batcher) must stay interruptible instead;
``frames_freed_on_interrupt`` makes what an interrupt cut short there let go at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import traceback
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """SIGINT during the block is held back and delivered once the block is done: to the handler
    that was installed (Python's default one raises ``KeyboardInterrupt``; a program's own, like
    the command line's, does what it does). Only on the main thread, where Python
    delivers signals; elsewhere the block runs as is. Nests: an inner block's held interrupt is
    raised by the outer one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[Any] = []

    def hold(signum: int, frame: Any) -> None:
        caught.append(frame)

    hold.nbserve_deferring = True  # type: ignore[attr-defined]
    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT,
                      previous if previous is not None else signal.default_int_handler)
    if not caught:
        return
    if getattr(previous, "nbserve_deferring", False):  # nested: the outer block raises it
        previous(signal.SIGINT, caught[0])  # type: ignore[misc,operator]
        return
    if callable(previous):  # Python's default handler raises KeyboardInterrupt; others decide
        previous(signal.SIGINT, caught[0])
    elif previous == signal.SIG_DFL:  # the process would have ended: stop the caller at least
        raise KeyboardInterrupt


@contextlib.contextmanager
def frames_freed_on_interrupt() -> Iterator[None]:
    """A ``KeyboardInterrupt`` leaving the block first clears the local variables of the frames
    it unwound, then goes on. An interrupt can land between taking a resource and the ``with``
    or ``finally`` that would give it back (a ``ServableHandle`` between ``acquire`` and
    ``__exit__``); the resource is then held only by those frames, which the traceback keeps
    alive, and IPython keeps the last traceback: a handle never released, a version that never
    unloads. Cleared, the frames drop it at once (its finaliser gives it back). The traceback
    still names every line; only its variables are gone."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        traceback.clear_frames(interrupt.__traceback__)
        raise
