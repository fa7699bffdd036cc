"""The REST server closes every connection it accepted when it stops, on asyncio's loop and on
uvloop's (``rest_api.OpenConnections``)."""

from __future__ import annotations

import asyncio
import gc
import socket
import sys

import pytest
from aiohttp import web

from nbserve.runtime import IoThread
from nbserve.transport.rest_api import OpenConnections


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_abort_closes_what_the_server_still_holds(monkeypatch, event_loop):
    if event_loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is an optional speed-up")
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    io = IoThread(event_loop=event_loop)
    io.start()

    async def listen() -> tuple[asyncio.AbstractServer, web.Server, OpenConnections]:
        server = web.Server(lambda request: web.Response(text="ok"))
        tracked = OpenConnections(server)
        listener = await asyncio.get_running_loop().create_server(server, "127.0.0.1", 0)
        return listener, server, tracked

    async def connected(server: web.Server) -> None:
        while not server.connections:
            await asyncio.sleep(0.01)

    listener, server, tracked = io.call(listen(), timeout=10)
    client = socket.create_connection(listener.sockets[0].getsockname()[:2], timeout=10)
    try:
        io.call(connected(server), timeout=10)
        listener.close()  # the connection outlives the listener, as one accepted during shutdown

        async def abort() -> int:
            return await tracked.abort()

        assert io.call(abort(), timeout=10) == 1
        assert client.recv(1) == b""  # the server side closed its end
        assert io.call(abort(), timeout=10) == 0
    finally:
        client.close()
        io.stop()
    listener = server = tracked = None  # type: ignore[assignment]
    gc.collect()
    assert unraisable == []
