"""Discovery records: how the JupyterLab sidebar finds the servers running in kernels.

Each running ``Server`` has one small JSON record in the Jupyter runtime directory
(``jupyter_core.paths.jupyter_runtime_dir()``, i.e. ``$JUPYTER_RUNTIME_DIR`` when set), named
``nbserve-server-<pid>-<id>.json``. Kernels inherit the Jupyter server's environment, so the
server extension (``nbserve.labapi``) reads the same directory.

Contract:
- ``register(server)`` writes the record atomically (temporary file, then rename) after a
  successful ``start()`` (and prunes stale records while there); ``unregister(server)`` removes
  it on stop. Both are thread-safe and never raise (discovery must never break serving); they
  return what they did.
- ``list_servers()`` returns the records of live processes, oldest first, and deletes records
  whose process is gone (a SIGKILLed kernel) or whose pid now belongs to another process (the
  process start time is recorded on Linux and compared). Unreadable files are skipped, not deleted.

A record: ``{"id", "pid", "process_start", "host", "rest_url", "grpc_target",
"ports": {"rest", "grpc"}, "started" (epoch seconds), "models": [names], "kernel_id" (the
Jupyter kernel this process is, or null), "source" (the PATH/config it was started from)}``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

log = logging.getLogger("nbserve.discovery")

PREFIX = "nbserve-server-"
SUFFIX = ".json"

_lock = threading.Lock()
_paths: dict[int, str] = {}  # id(server) -> its record's path


def runtime_dir() -> str:
    """The Jupyter runtime directory (``$JUPYTER_RUNTIME_DIR`` wins), as Jupyter computes it;
    a plain fallback when jupyter_core is not installed."""
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:
        env = os.environ.get("JUPYTER_RUNTIME_DIR")
        if env:
            return env
        data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"),
                                                                ".local", "share")
        return os.path.join(data, "jupyter", "runtime")
    return jupyter_runtime_dir()


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int, start: int | None = None) -> bool:
    """True when ``pid`` runs (and, if ``start`` is given and knowable, is the same process)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    except OSError:
        return False
    if start is not None:
        now = process_start(pid)
        if now is not None and now != start:
            return False  # the pid was reused
    return True


def _kernel_id() -> str | None:
    """The id of the Jupyter kernel this process is, from its connection file name (an isolated
    server's child gets its kernel's id in ``$NBSERVE_KERNEL_ID``)."""
    if "ipykernel" not in sys.modules:
        return os.environ.get("NBSERVE_KERNEL_ID") or None
    try:
        from ipykernel.kernelapp import IPKernelApp

        if not IPKernelApp.initialized():
            return None
        name = os.path.basename(IPKernelApp.instance().connection_file or "")
    except Exception:  # noqa: BLE001 - optional detail
        return None
    if name.startswith("kernel-") and name.endswith(".json"):
        return name[len("kernel-"):-len(".json")]
    return None


def record_for(server: Any, record_id: str) -> dict[str, Any]:
    """The record describing a started ``server`` (a ``nbserve.server.Server``)."""
    try:
        models = sorted(m.name for m in server.models())
    except Exception:  # noqa: BLE001 - a record without model names still finds the server
        models = []
    pid = os.getpid()
    return {
        "id": record_id,
        "pid": pid,
        "process_start": process_start(pid),
        "host": server.options.host,
        "rest_url": server.rest_url,
        "grpc_target": server.grpc_target,
        "ports": {"rest": server.rest_port, "grpc": server.grpc_port},
        "started": time.time(),
        "models": models,
        "kernel_id": _kernel_id(),
        "source": str(getattr(server, "source", "") or ""),
        # the sidebar's status fetch needs it (the record is the user's own 0600 file); the
        # lab API never passes it on to the browser
        "auth_token": server.options.auth_token or None,
    }


def register(server: Any, directory: str | None = None) -> str | None:
    """Write ``server``'s record; return its path, or None when it could not be written."""
    try:
        folder = directory or runtime_dir()
        os.makedirs(folder, mode=0o700, exist_ok=True)
        record_id = uuid.uuid4().hex[:12]
        path = os.path.join(folder, f"{PREFIX}{os.getpid()}-{record_id}{SUFFIX}")
        data = json.dumps(record_for(server, record_id), indent=1)
        fd, tmp = tempfile.mkstemp(prefix=".nbserve-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            _remove(tmp)
            raise
    except Exception as exc:  # noqa: BLE001 - never break serving
        log.warning("Could not write the nbserve discovery record: %s", exc)
        return None
    with _lock:
        old = _paths.pop(id(server), None)
        _paths[id(server)] = path
    if old:
        _remove(old)
    list_servers(folder)  # prune records left by processes that died without stopping
    return path


def unregister(server: Any) -> bool:
    """Remove ``server``'s record; True when one was removed."""
    with _lock:
        path = _paths.pop(id(server), None)
    return path is not None and _remove(path)


def record_path(server: Any) -> str | None:
    """Where ``server``'s record is, while it is registered."""
    with _lock:
        return _paths.get(id(server))


def _remove(path: str) -> bool:
    try:
        os.remove(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("Could not remove %s: %s", path, exc)
        return False


def list_servers(directory: str | None = None, clean: bool = True) -> list[dict[str, Any]]:
    """The records of running servers, oldest first; stale ones are deleted when ``clean``."""
    folder = directory or runtime_dir()
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    records = []
    for name in names:
        if not (name.startswith(PREFIX) and name.endswith(SUFFIX)):
            continue
        path = os.path.join(folder, name)
        try:
            with open(path) as f:
                record = json.load(f)
            pid = record["pid"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not pid_alive(pid, record.get("process_start")):
            if clean:
                _remove(path)
            continue
        records.append(record)
    records.sort(key=lambda r: (r.get("started") or 0, str(r.get("id"))))
    return records
