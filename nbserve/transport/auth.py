"""Optional bearer-token auth for both transports, and the bind-address checks (nbserve).

TF Serving has no auth of its own; nbserve adds one shared secret (``ServerOptions.auth_token``,
flag ``--auth_token``, env ``NBSERVE_AUTH_TOKEN``). When it is set:

* REST requests carry ``Authorization: Bearer <token>``; gRPC calls carry the metadata
  ``authorization: Bearer <token>``. A missing or wrong token is UNAUTHENTICATED (HTTP 401 with
  ``{"error": ...}``, gRPC ``UNAUTHENTICATED``). Tokens are compared with ``hmac.compare_digest``
  (constant time).
* ``auto`` (``--auth_token auto``, ``auth_token="auto"``) generates a random token; on a shared
  host (JupyterHub sets ``JUPYTERHUB_USER``), where 127.0.0.1 is reachable by every user of the
  machine, a server started without any token setting gets one that way. An explicit empty
  token keeps the server open there, with a one-line warning.
* The probes (``/healthz``, ``/readyz``, the Prometheus path, ``grpc.health.v1.Health``) stay
  open without a token only while the server binds a loopback address; bound to anything else
  they need the token too. CORS preflights (``OPTIONS``) never need it (browsers send no
  credentials there, and they return no data).

Pure functions plus one gRPC server interceptor; thread-safe (no mutable state after construction).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("nbserve.auth")

TOKEN_ENV = "NBSERVE_AUTH_TOKEN"
AUTO = "auto"
SHARED_HOST_ENV = "JUPYTERHUB_USER"
OPEN_ON_SHARED_HOST = ("auth_token is empty: every user of this shared machine can call these "
                       "models (drop the setting, or use auth_token='auto', to require a token)")
MISSING_TOKEN = "Missing bearer token: send the header \"Authorization: Bearer <token>\""
WRONG_TOKEN = "Invalid bearer token"
GRPC_HEALTH_PREFIX = "/grpc.health.v1.Health/"


def shared_host() -> bool:
    """True where other users of this machine can reach its loopback ports (JupyterHub)."""
    return bool(os.environ.get(SHARED_HOST_ENV))


def generate_token() -> str:
    """A fresh random token (32 bytes, URL-safe text)."""
    return secrets.token_urlsafe(32)


def resolve_token(setting: str | None = None) -> str:
    """The token to require ("" = auth off) from a flag or argument value.

    ``None`` (not given): ``$NBSERVE_AUTH_TOKEN`` when set, else a generated token on a shared
    host, else "". ``"auto"``: a generated token. ``""``: auth off, with a warning logged on a
    shared host. Any other value is the token. The token itself is never logged.
    """
    if setting is None:
        setting = os.environ.get(TOKEN_ENV)
        if setting is None:
            return generate_token() if shared_host() else ""
    if setting.strip().lower() == AUTO:
        return generate_token()
    if not setting and shared_host():
        log.warning(OPEN_ON_SHARED_HOST)
    return setting


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, ``localhost``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: assume it may be reachable from the network
        return False


def exposure_warning(host: str, auth_token: str) -> str | None:
    """The warning to log when binding ``host`` exposes the models to the network, else None."""
    if is_loopback(host):
        return None
    tail = ("; every request needs the bearer token" if auth_token else
            "; anyone who can reach this machine can call them (set --auth_token or "
            f"{TOKEN_ENV} to require a token)")
    return f"Binding {host}: the models are reachable from the network{tail}"


def check_authorization(header: str | None, token: str) -> str | None:
    """None when ``header`` (an ``Authorization`` value) carries ``token``; else the error text.

    An empty ``token`` means auth is off: always None. The scheme is case-insensitive.
    """
    if not token:
        return None
    if not header:
        return MISSING_TOKEN
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return MISSING_TOKEN
    if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"),
                               token.encode("utf-8", "surrogateescape")):
        return WRONG_TOKEN
    return None


def probes_open(host: str) -> bool:
    """Health, readiness and metrics endpoints need no token only on a loopback bind."""
    return is_loopback(host)


def grpc_auth_interceptor(token: str, host: str) -> Any:
    """A ``grpc.ServerInterceptor`` (sync server) that rejects calls without the token (see
    module doc). It runs on gRPC's server thread before the call is handed to a pool thread, so
    a refused call never takes a pool thread for its work."""
    import grpc

    open_health = probes_open(host)

    def denied(handler: Any, message: str) -> Any:
        def abort(request_or_iterator: Any, context: Any) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        def abort_stream(request_or_iterator: Any, context: Any) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
            yield  # pragma: no cover - makes this a generator

        kw = dict(request_deserializer=handler.request_deserializer,
                  response_serializer=handler.response_serializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(abort, **kw)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(abort_stream, **kw)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(abort, **kw)
        return grpc.stream_stream_rpc_method_handler(abort_stream, **kw)

    class TokenAuthInterceptor(grpc.ServerInterceptor):
        def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
            handler = continuation(details)
            if handler is None:
                return None
            if open_health and details.method.startswith(GRPC_HEALTH_PREFIX):
                return handler
            error = check_authorization(_metadata_value(details.invocation_metadata), token)
            return handler if error is None else denied(handler, error)

    return TokenAuthInterceptor()


def _metadata_value(metadata: Iterable[Any] | None, key: str = "authorization") -> str | None:
    for item in metadata or ():
        k, v = item[0], item[1]
        if k.lower() == key:
            return v.decode("latin-1") if isinstance(v, bytes) else v
    return None
