"""Jupyter server extension: ``GET <base_url>nbserve/api/servers`` for the "Model servers" sidebar.

Enabled by ``jupyter-config/server-config/nbserve.json`` (installed as
``etc/jupyter/jupyter_server_config.d/nbserve.json``), or by hand with
``jupyter server --ServerApp.jpserver_extensions="{'nbserve.labapi': True}"``.

The reply is ``{"servers": [...], "proxy_available": bool, "base_url": str}``: each running
server's discovery record (``nbserve.discovery``), this Jupyter server's kernels first, plus

- ``group``: ``"notebook"`` for a server in a kernel of THIS Jupyter server (``kernel_id`` in
  the record -> the session manager -> the notebook's path), else ``"other"`` (another process
  of the same user: another Jupyter server, a script);
- ``notebook``: that notebook's path relative to the Jupyter root (null when the kernel has no
  session, or for ``other``); ``title``: what the sidebar shows as the card's name;
- each ``live_models[*].model_version_status[*]`` gains ``look`` (``nbserve.vocabulary``: the
  same state words and colours as the live display and the panel); a model with no version
  gets ``waiting``;

- ``reachable`` / ``error`` / ``live_models``: its REST ``GET /v1/models`` fetched now, with a
  short timeout (an unreachable or REST-less server is listed with ``reachable: false``);
- ``proxy_path``: ``<base_url>proxy/<rest port>/`` when jupyter-server-proxy is importable (so a
  user on a remote hub can reach the endpoint through Jupyter), else null.

The handler sits behind Jupyter's own auth (``APIHandler`` + ``tornado.web.authenticated``):
a request without the token or session cookie gets 403.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado.httpclient import AsyncHTTPClient

from nbserve import discovery
from nbserve.vocabulary import look_json, model_waiting_look, version_look

ROUTE = ("nbserve", "api", "servers")
CONNECT_TIMEOUT_S = 1.0
REQUEST_TIMEOUT_S = 2.0


def proxy_available() -> bool:
    """True when jupyter-server-proxy is installed in the Jupyter server's environment."""
    try:
        return importlib.util.find_spec("jupyter_server_proxy") is not None
    except (ImportError, ValueError):
        return False


async def live_status(record: dict[str, Any]) -> dict[str, Any]:
    """``reachable``, ``error`` and ``live_models`` for one record, from its REST listing."""
    rest_url = record.get("rest_url")
    if not rest_url:
        return {"reachable": False, "error": "REST is off for this server", "live_models": []}
    token = record.get("auth_token")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        response = await AsyncHTTPClient().fetch(
            rest_url.rstrip("/") + "/v1/models", raise_error=False, headers=headers,
            connect_timeout=CONNECT_TIMEOUT_S, request_timeout=REQUEST_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - reported in the reply
        return {"reachable": False, "error": str(exc) or type(exc).__name__, "live_models": []}
    if response.code != 200:
        reason = str(response.error) if response.error else f"HTTP {response.code}"
        return {"reachable": False, "error": reason, "live_models": []}
    try:
        models = json.loads(response.body)["models"]
    except (ValueError, KeyError, TypeError):
        return {"reachable": False, "error": "GET /v1/models: not a model listing",
                "live_models": []}
    return {"reachable": True, "error": None, "live_models": models}


def with_looks(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``GET /v1/models`` entries with the vocabulary's ``look`` per version (``waiting`` for a
    model with no version), so the sidebar shows the words and colours the notebook shows."""
    out = []
    for model in models:
        entries = list(model.get("model_version_status") or [])
        available = [int(e["version"]) for e in entries if e.get("state") == "AVAILABLE"
                     and str(e.get("version", "")).isdigit()]
        looked = []
        for entry in entries:
            error = (entry.get("status") or {}).get("error_message") or None
            version = int(entry["version"]) if str(entry.get("version", "")).isdigit() else None
            look = version_look(str(entry.get("state", "")), error, version=version,
                                newer_available=available)
            looked.append({**entry, "look": look_json(look)})
        extra = {} if entries else {"waiting": look_json(model_waiting_look())}
        out.append({**model, "model_version_status": looked, **extra})
    return out


def place(record: dict[str, Any], kernels: set[str], notebooks: dict[str, str]) -> dict[str, Any]:
    """``group`` / ``notebook`` / ``title`` of a record: under its notebook's name when its
    kernel belongs to this Jupyter server, else under "other" (pid)."""
    kernel = record.get("kernel_id")
    if kernel and kernel in kernels:
        path = notebooks.get(kernel)
        title = path.rsplit("/", 1)[-1] if path else f"kernel {kernel[:8]}"
        return {"group": "notebook", "notebook": path, "title": title}
    return {"group": "other", "notebook": None, "title": f"process {record.get('pid')}"}


async def servers_reply(base_url: str, directory: str | None = None,
                        kernels: set[str] | None = None,
                        notebooks: dict[str, str] | None = None) -> dict[str, Any]:
    """The reply body: every live record with its status (fetched concurrently), placed under
    its notebook (``kernels``: this Jupyter server's kernel ids; ``notebooks``: kernel id ->
    notebook path), this server's notebooks first."""
    records = discovery.list_servers(directory)
    statuses = await asyncio.gather(*(live_status(r) for r in records))
    proxy = proxy_available()
    servers = []
    for record, status in zip(records, statuses, strict=True):
        port = (record.get("ports") or {}).get("rest")
        proxy_path = url_path_join(base_url, "proxy", str(port)) + "/" if proxy and port else None
        status = {**status, "live_models": with_looks(status["live_models"])}
        public = {k: v for k, v in record.items() if k != "auth_token"}  # never to the browser
        servers.append({**public, **status, "proxy_path": proxy_path, "auth": bool(
                            record.get("auth_token")),
                        **place(record, kernels or set(), notebooks or {})})
    servers.sort(key=lambda s: s["group"] != "notebook")  # stable: oldest first in each group
    return {"servers": servers, "proxy_available": proxy, "base_url": base_url}


async def kernel_notebooks(handler: Any) -> tuple[set[str], dict[str, str]]:
    """This Jupyter server's kernel ids, and kernel id -> notebook path from its sessions."""
    try:
        kernels = set(handler.kernel_manager.list_kernel_ids())
    except Exception:  # noqa: BLE001 - no kernel manager (a bare server): nothing is ours
        return set(), {}
    notebooks: dict[str, str] = {}
    try:
        sessions = await handler.session_manager.list_sessions()
    except Exception:  # noqa: BLE001 - no session manager: kernels without names
        sessions = []
    for session in sessions:
        kernel = (session.get("kernel") or {}).get("id")
        if kernel and session.get("path"):
            notebooks[kernel] = str(session["path"])
    return kernels, notebooks


class ServersHandler(APIHandler):
    """``GET /nbserve/api/servers`` (under base_url)."""

    @tornado.web.authenticated
    async def get(self) -> None:
        kernels, notebooks = await kernel_notebooks(self)
        reply = await servers_reply(self.base_url, kernels=kernels, notebooks=notebooks)
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(reply))


def setup_handlers(web_app: Any) -> None:
    """Add the route under the server's base_url."""
    base_url = web_app.settings.get("base_url", "/")
    web_app.add_handlers(".*$", [(url_path_join(base_url, *ROUTE), ServersHandler)])


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbserve.labapi"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    setup_handlers(server_app.web_app)
    server_app.log.info("nbserve: serving %s", url_path_join(
        server_app.web_app.settings.get("base_url", "/"), *ROUTE))


# The name jupyter_server looked for before 2.0.
load_jupyter_server_extension = _load_jupyter_server_extension
