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


def test_stop_closes_connections_no_server_is_left_to_close(monkeypatch):
    """A connection accepted as a listener closes is closed by stop(), not by the GC."""
    import asyncio
    import socket

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    io = IoThread()
    io.start()

    async def listen() -> asyncio.base_events.Server:
        return await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)

    server = io.call(listen(), timeout=10)
    client = socket.create_connection(server.sockets[0].getsockname()[:2], timeout=10)

    async def close_listener() -> int:
        while not io.loop._transports:  # type: ignore[attr-defined] # wait for the accept
            await asyncio.sleep(0.01)
        server.close()  # the accepted connection stays open, as after aiohttp's shutdown
        return len(io.loop._transports)  # type: ignore[attr-defined]

    try:
        assert io.call(close_listener(), timeout=10) == 1
        io.stop()
        assert client.recv(1) == b""  # the server side closed its end
    finally:
        client.close()
    gc.collect()
    assert unraisable == []
