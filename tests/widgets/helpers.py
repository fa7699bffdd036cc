"""Helpers shared by the widget panel tests (bounded waits, raw REST calls)."""

from __future__ import annotations

import socket

from tests.support import wait_for  # noqa: F401 - re-exported for the widget tests
from tests.transport.rest_client import call


def rest_states(port, name):
    """``GET /v1/models/NAME`` as {version: state}."""
    reply = call(port, "GET", f"/v1/models/{name}")
    assert reply.status == 200, reply.body
    return {int(e["version"]): e["state"] for e in reply.json()["model_version_status"]}


def rest_predict(port, name, instances):
    return call(port, "POST", f"/v1/models/{name}:predict", {"instances": instances})


def port_closed(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except OSError:
        return True
