"""IoThread: one loop on one daemon thread; nothing leaks when it is built but never started."""

from __future__ import annotations

import gc
import sys
import threading

import pytest

from nbserve.runtime import IoThread


def test_call_runs_on_the_io_thread_and_stop_is_idempotent():
    io = IoThread(name="nbserve-io-test")
    io.start()
    try:
        async def where() -> str:
            return threading.current_thread().name

        assert io.running and io.call(where(), timeout=10) == "nbserve-io-test"
    finally:
        io.stop()
        io.stop()
    assert not io.running and io.loop.is_closed()


def test_an_unstarted_io_thread_holds_no_loop(monkeypatch):
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    io = IoThread()
    with pytest.raises(RuntimeError, match="has not been called"):
        io.loop  # noqa: B018 - the property is the check
    io.stop()  # harmless before start
    del io
    gc.collect()
    assert unraisable == []  # no unclosed self-pipe sockets
