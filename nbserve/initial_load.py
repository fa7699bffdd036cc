"""The initial load before the ports open: TF Serving's start-up order (spec §5.6), issue 14.

``tensorflow_model_server`` opens gRPC, then REST, only once every configured model has settled:
at least one of its versions is AVAILABLE or has reached END. Its clients, its own test base and
TCP probes rely on "port open" meaning "models loaded". ``nbserve-server`` does the same by default
(``ServerOptions.open_ports_after_initial_load``); the difference kept on purpose: a model that
ends in error does not stop the server, it stays visible as END with its error. A model with no
version folder yet keeps the ports closed until one appears, as in TF Serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from nbserve.core.events import ManagerState, StateMonitor
from nbserve.core.server_core import ServerCore

log = logging.getLogger("nbserve.server")

SETTLED = (ManagerState.AVAILABLE, ManagerState.END)


def unsettled_models(monitor: StateMonitor, names: Sequence[str]) -> list[str]:
    """The models among ``names`` none of whose versions is AVAILABLE or END yet. Pure."""
    return [name for name in names
            if not any(state.state in SETTLED for state in monitor.states(name).values())]


class StartCancelled(Exception):
    """``Server.cancel_start()`` was called while the server waited for its initial load."""


def wait_for_initial_models(core: ServerCore,
                            cancelled: Callable[[], bool] = lambda: False) -> list[str]:
    """Block until every model of ``core``'s initial config has settled; return the models that
    have no AVAILABLE version (each of their versions ended in error; the server stays up).

    Waits without a time limit, as TF Serving does, checking ``cancelled()`` every 0.1 s:
    StartCancelled once it is true (a signal handler sets a flag; it never raises into the wait).
    """
    names = sorted(core.models())
    pending = unsettled_models(core.monitor, names)
    if pending:
        log.info("Opening the ports once the initial models have loaded; waiting for: %s",
                 ", ".join(pending))
        while not core.monitor.wait_until(lambda m: not unsettled_models(m, names), 0.1):
            if cancelled():
                raise StartCancelled("Stopped before the ports opened")
    failed = [name for name in names
              if not any(state.state == ManagerState.AVAILABLE
                         for state in core.monitor.states(name).values())]
    for name in failed:
        errors = [state.error.message for state in core.monitor.states(name).values()
                  if state.error is not None]
        log.error("Model %s did not become available; serving goes on without it: %s", name,
                  "; ".join(errors) or "no version loaded")
    return failed
