"""Re-read a model config file every ``poll`` s (``--model_config_file_poll_wait_seconds``).

A changed file is applied with ``ServerCore.reload_config``; a bad file is reported through
``on_error`` (and the log) and the running config stays in force; a good read clears the error
(``on_error(None)``). One daemon thread, ``nbserve-config``; ``stop()`` joins it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from nbserve.core.server_core import ServerCore
from nbserve.errors import ServingError

log = logging.getLogger("nbserve.server")


class ConfigWatcher:
    """Watches ``path`` for ``core``; see the module docstring."""

    def __init__(self, core: ServerCore, path: str, poll: float,
                 on_error: Callable[[ServingError | None], None]) -> None:
        self._core = core
        self._path = path
        self._poll = poll
        self._on_error = on_error
        self._last_error: ServingError | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nbserve-config", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.wait(self._poll):
            self.check_once()

    def check_once(self) -> None:
        """Read the file once and apply it if it changed."""
        from nbserve.config_file import load_model_server_config

        try:
            models = tuple(load_model_server_config(self._path) or ())
            current = tuple(self._core.models().values())
            if models != current:
                self._core.reload_config(models)
                log.info("Reloaded model config from %s: %s", self._path,
                         [m.name for m in models])
            self._last_error = None
            self._on_error(None)
        except ServingError as err:
            if err != self._last_error:
                log.error("Model config %s not applied; the running config stays: %s",
                          self._path, err.message)
            self._last_error = err
            self._on_error(err)
        except Exception:  # the watcher thread must survive a bad read
            log.exception("Reading model config %s failed", self._path)
