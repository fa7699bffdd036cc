"""The process's running servers (a notebook kernel's registry).

``Server.start()`` registers a server and ``stop()`` unregisters it; the first registration
installs an ``atexit`` hook that stops every server left running, so a kernel shutdown or
restart frees the ports. A re-run notebook cell finds the server it replaces here.

Thread-safe: one lock guards the list; servers are stopped outside it.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from nbserve.server import Server

log = logging.getLogger("nbserve.server")

_registry_lock = threading.Lock()
_running: list[Server] = []
_atexit_registered = False


def register(server: Server) -> None:
    """Add a started ``server`` (idempotent)."""
    global _atexit_registered
    with _registry_lock:
        if server not in _running:
            _running.append(server)
        if not _atexit_registered:
            atexit.register(stop_all)  # kernel shutdown / restart frees the ports
            _atexit_registered = True


def unregister(server: Server) -> None:
    """Remove a stopped ``server`` (idempotent)."""
    with _registry_lock:
        if server in _running:
            _running.remove(server)


def running_servers() -> list[Server]:
    """The servers started in this process and not stopped yet, oldest first."""
    with _registry_lock:
        return list(_running)


def stop_all(grace: float = 1.0) -> int:
    """Stop every running server of this process; returns how many were stopped."""
    servers = running_servers()
    for server in servers:
        try:
            server.stop(grace)
        except Exception:  # keep stopping the others
            log.exception("stopping %r failed", server)
    return len(servers)


def servers_on_ports(ports: Iterable[int | None]) -> list[Server]:
    """This process's running servers that hold any of the (non-zero) ``ports``."""
    wanted = {p for p in ports if p}
    return [s for s in running_servers() if wanted & {s.rest_port, s.grpc_port}]


def stop_servers_on_ports(ports: Iterable[int | None], grace: float = 1.0) -> list[Server]:
    """Stop this process's running servers that hold any of the (non-zero) ``ports``, so that a
    re-run notebook cell can bind them again; returns the stopped servers."""
    stopped = servers_on_ports(ports)
    for server in stopped:
        server.stop(grace)
    return stopped
