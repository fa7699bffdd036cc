"""``nbserve.serve``: start a Server from a path, the way a notebook user thinks of it."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterable
from typing import Any

from nbserve import logs
from nbserve.options import ModelConfig, ServerOptions
from nbserve.registry import servers_on_ports
from nbserve.server import Server

log = logging.getLogger("nbserve.server")


def models_for_path(path: str, name: str | None = None) -> tuple[ModelConfig, ...]:
    """The models a folder stands for (relative paths resolve against the current directory).

    - a model's base path (it holds numeric version folders, or nothing yet): one model, named
      ``name`` or after the folder;
    - a folder of such model folders (no numeric child, some child folder holding numeric
      folders): each of those children becomes a model named after it (``name`` is then an
      error).

    Raises FileNotFoundError when ``path`` does not exist, NotADirectoryError for a file.
    """
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(full):
        raise FileNotFoundError(f"Model path {full} does not exist")
    if not os.path.isdir(full):
        raise NotADirectoryError(f"Model path {full} is not a folder")
    children = sorted(e for e in os.listdir(full)
                      if not e.startswith(".") and os.path.isdir(os.path.join(full, e)))
    if any(c.isascii() and c.isdigit() for c in children):
        return (ModelConfig(name or _folder_name(full), full),)
    model_dirs = [c for c in children if _holds_versions(os.path.join(full, c))]
    if not model_dirs:
        return (ModelConfig(name or _folder_name(full), full),)  # versions may come later
    if name:
        raise ValueError(f"{full} is a folder of models ({', '.join(model_dirs)}); a name applies "
                         "to one model's base path only")
    return tuple(ModelConfig(c, os.path.join(full, c)) for c in model_dirs)


def _folder_name(full: str) -> str:
    return os.path.basename(full.rstrip(os.sep)) or "default"


def _holds_versions(folder: str) -> bool:
    try:
        return any(e.isascii() and e.isdigit() and os.path.isdir(os.path.join(folder, e))
                   for e in os.listdir(folder))
    except OSError:
        return False


def replacement_note(old: Server) -> str:
    """``Replaced the server started from ./export at 19:18:31: REST :36579, gRPC :39007
    (stopped)``: what a cell that replaced ``old`` says."""
    return (f"Replaced the server started from {old.source} at "
            f"{old.started_at:%H:%M:%S}: REST {_port(old.rest_port)}, gRPC "
            f"{_port(old.grpc_port)} (stopped)")


def _port(port: int | None) -> str:
    return f":{port}" if port else "off"


def serve(path: str | None, name: str | None = None, port: int | None = 8500,
          rest_api_port: int | None = 8501, host: str = "127.0.0.1", device: str = "auto",
          *, replace: Iterable[Any] = (), isolate: bool = False,
          switch_interval: float | None = 0.001, **options: Any) -> Any:
    """Start a server in background threads and return it (versions may still be LOADING).

    ``path`` is a model's base path (numeric version folders; the model is named after the folder
    unless ``name``), a folder of such model folders (each becomes a model), or a
    ModelServerConfig text file; it may be None when ``model_config_file`` is given. Relative
    paths resolve against the current directory. Ports: ``0`` picks a free port (the Python
    socket meaning; the CLI's ``--rest_api_port=0`` means "REST off" instead), ``None`` disables
    that transport. ``isolate=True`` runs the
    server in a child process (``nbserve.isolation.IsolatedServer``, same API): a crash there
    never takes the kernel down. ``switch_interval`` (seconds, default 1 ms) lowers Python's GIL
    switch interval (``sys.setswitchinterval``, 5 ms by default) for an in-process server, so a
    cell running a pure-Python loop delays requests ~4x less (bench/busy_kernel.py); it never
    raises an interval that is already lower, and None leaves it alone. ``auth_token``: a token
    REST and gRPC clients must send; ``"auto"`` generates one, and so does leaving it out on a
    shared host (JupyterHub) unless ``$NBSERVE_AUTH_TOKEN`` is set; ``""`` keeps the server open
    (warned about on a shared host). The token is ``srv.auth_token``. Other keyword arguments
    are ``ServerOptions`` fields.

    Replacing: a server of this process that holds one of the requested non-zero ports, and
    every running server in ``replace`` (``%tfserve start`` passes the one its cell started
    before), is stopped first; once the new server runs, each replaced one reports
    ``replaced_by`` (and tells its subscribers ``REPLACED``) and a line is printed:
    ``Replaced the server started from ./export at 19:18:31: REST :36579, gRPC :39007 (stopped)``.
    """
    source = path or options.get("model_config_file") or ""
    config_file = options.pop("model_config_file", "") or ""
    if path and os.path.isfile(os.path.expanduser(path)):
        if config_file:
            raise ValueError("Give either a model config file or a path to a config file, not both")
        config_file = path
        path = None
    if config_file:
        from nbserve.config_file import load_model_server_config

        config_file = os.path.abspath(os.path.expanduser(config_file))
        models = tuple(load_model_server_config(config_file) or ())
        options["model_config_file"] = config_file
        if path:
            models += tuple(m for m in models_for_path(path, name)
                            if m.name not in {c.name for c in models})
    elif path:
        models = models_for_path(path, name)
    else:
        raise ValueError("serve() needs a model path or a model_config_file")
    from nbserve.transport.auth import OPEN_ON_SHARED_HOST, resolve_token, shared_host

    if options.get("auth_token") == "" and shared_host():
        warnings.warn(OPEN_ON_SHARED_HOST, UserWarning, stacklevel=2)  # seen in the cell
    options["auth_token"] = resolve_token(options.get("auth_token"))
    opts = ServerOptions(models=models, grpc_port=port, rest_api_port=rest_api_port, host=host,
                         device=device, **options)  # type: ignore[arg-type]  # checked there
    if logs.in_kernel():
        logs.install()  # nbserve's and TensorFlow's background lines stay off the cells
    old = [s for s in replace if s.running]
    old += [s for s in servers_on_ports((port, rest_api_port)) if s not in old]
    for server in old:
        server.stop(1.0)
    if isolate:
        from nbserve.isolation import IsolatedServer

        new: Any = IsolatedServer(opts)
    else:
        if switch_interval is not None and sys.getswitchinterval() > switch_interval:
            sys.setswitchinterval(switch_interval)
        new = Server(opts)
    new.source = str(source)
    new.start()
    for server in old:
        server._mark_replaced(new)
        note = replacement_note(server)
        log.info(note)
        print(note)
    return new
