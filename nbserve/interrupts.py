"""Holding a kernel interrupt back until a step that must not stop halfway is done (nbserve).

A notebook user stops a cell with SIGINT (the kernel's interrupt). Python raises
``KeyboardInterrupt`` wherever the main thread happens to be; some steps must not end there:
publishing an exported version (a half-written folder), starting a transport on the IO loop (a
listener the server never learns of, so never closes), stopping a server (ports, threads and
loaded versions left behind). ``interrupts_deferred`` runs such a step to its end and raises the
interrupt right after it, so the cell still stops, with everything consistent.
"""

from __future__ import annotations

import contextlib
import signal
import threading
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
