"""Where a client on this machine reaches a server: one definition for ``Server`` (in the kernel)
and ``IsolatedServer`` (in a child process).

``Endpoints`` is a mixin: its host class provides ``options`` (a ``ServerOptions``),
``rest_port`` and ``grpc_port`` (None while the port is off or not open yet).
"""

from __future__ import annotations

from nbserve.options import ServerOptions


def url_host(host: str) -> str:
    """The host a client on this machine uses for a server bound to ``host``."""
    if host in ("0.0.0.0", "::", ""):
        return "localhost"
    return f"[{host}]" if ":" in host else host


def rest_url(host: str, port: int | None) -> str | None:
    """``http://host:port`` for a REST port, or None when REST is off."""
    return f"http://{url_host(host)}:{port}" if port else None


def grpc_target(host: str, port: int | None) -> str | None:
    """``host:port`` for ``grpc.insecure_channel``, or None when gRPC is off."""
    return f"{url_host(host)}:{port}" if port else None


class Endpoints:
    """``rest_url``, ``grpc_target`` and ``auth_token`` of a server (see the module doc)."""

    options: ServerOptions
    rest_port: int | None
    grpc_port: int | None

    @property
    def rest_url(self) -> str | None:
        """``http://host:port`` of the REST API, or None when REST is off."""
        return rest_url(self.options.host, self.rest_port)

    @property
    def auth_token(self) -> str:
        """The bearer token REST and gRPC clients must send ("" when auth is off)."""
        return self.options.auth_token

    @property
    def grpc_target(self) -> str | None:
        """``host:port`` for ``grpc.insecure_channel``, or None when gRPC is off."""
        return grpc_target(self.options.host, self.grpc_port)
