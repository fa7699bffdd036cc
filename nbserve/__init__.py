"""nbserve: TensorFlow Serving in the notebook.

Public API (small on purpose; guarded by tests/test_public_api.py)::

    srv = nbserve.serve("./export")         # a Server: REST on 8501, gRPC on 8500, 127.0.0.1
    srv.predict("export", [[1.0], [2.0]])   # in-process, through the same service as REST/gRPC
    srv.models()                            # typed status: ModelStatus / VersionStatus (+ hint)
    print(srv.example_request("export", "grpc", "python"))  # client code that runs as-is
    srv.stop()

The facade's typed objects (``nbserve.status``) are re-exported here.

``import nbserve`` imports neither TensorFlow nor IPython; they load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "BatchingOptions",
    "Comparison",
    "ModelConfig",
    "ModelStatus",
    "Server",
    "ServerOptions",
    "ServingError",
    "SignatureInfo",
    "StateChange",
    "StatusCode",
    "TensorSpec",
    "VersionPolicy",
    "VersionStatus",
    "VersionTraffic",
    "__version__",
    "export",
    "serve",
]

_LAZY = {
    "Server": ("nbserve.server", "Server"),
    "ServerOptions": ("nbserve.options", "ServerOptions"),
    "ModelConfig": ("nbserve.options", "ModelConfig"),
    "VersionPolicy": ("nbserve.options", "VersionPolicy"),
    "BatchingOptions": ("nbserve.options", "BatchingOptions"),
    "ServingError": ("nbserve.errors", "ServingError"),
    "StatusCode": ("nbserve.errors", "StatusCode"),
    "ModelStatus": ("nbserve.status", "ModelStatus"),
    "VersionStatus": ("nbserve.status", "VersionStatus"),
    "SignatureInfo": ("nbserve.status", "SignatureInfo"),
    "TensorSpec": ("nbserve.status", "TensorSpec"),
    "VersionTraffic": ("nbserve.status", "VersionTraffic"),
    "Comparison": ("nbserve.status", "Comparison"),
    "StateChange": ("nbserve.status", "StateChange"),
    "serve": ("nbserve.api", "serve"),
    "export": ("nbserve.exporter", "export"),
}

if TYPE_CHECKING:  # pragma: no cover
    from nbserve.api import serve
    from nbserve.errors import ServingError, StatusCode
    from nbserve.exporter import export
    from nbserve.options import BatchingOptions, ModelConfig, ServerOptions, VersionPolicy
    from nbserve.server import Server
    from nbserve.status import (
        Comparison,
        ModelStatus,
        SignatureInfo,
        StateChange,
        TensorSpec,
        VersionStatus,
        VersionTraffic,
    )


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'nbserve' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbserve``: registers the ``%tfserve`` line magic (IPython loads lazily)."""
    from nbserve.magic import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext nbserve``: stops this kernel's servers."""
    from nbserve.magic import unload

    unload(ipython)
