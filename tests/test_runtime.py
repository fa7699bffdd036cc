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
    """On asyncio's loop, a connection no server closed is closed by stop(), not by the GC
    (on any loop, the REST server closes its own: tests/transport/test_open_connections.py)."""
    import asyncio
    import socket

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    accepted = threading.Event()

    class Accepting(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.set()

    io = IoThread(event_loop="asyncio")
    io.start()

    async def listen() -> asyncio.AbstractServer:
        return await asyncio.get_running_loop().create_server(Accepting, "127.0.0.1", 0)

    server = io.call(listen(), timeout=10)
    client = socket.create_connection(server.sockets[0].getsockname()[:2], timeout=10)
    try:
        assert accepted.wait(10)
        io.loop.call_soon_threadsafe(server.close)  # the connection stays open, as after
        io.stop()                                   # aiohttp's shutdown
        assert client.recv(1) == b""  # the server side closed its end
    finally:
        client.close()
    gc.collect()
    assert unraisable == []


def test_event_loop_kinds():
    from nbserve.runtime import new_event_loop

    loop = new_event_loop("asyncio")
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()
    with pytest.raises(ValueError, match="event_loop must be one of"):
        new_event_loop("trio")
