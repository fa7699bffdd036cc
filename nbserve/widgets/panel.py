"""``ServerPanel``: a live ipywidgets panel over one nbserve Server, or a launcher that starts one.

Standard ipywidgets only (VBox/HBox, HTML, Dropdown, ToggleButtons, Textarea, Button) plus inline
SVG in HTML, so it renders wherever ipywidgets 8 does, with no extra front-end bundle::

    panel = ServerPanel(srv)      # or ServerPanel(): the launcher (or this kernel's newest server)
    panel                         # display it

Per model: the version table (states in the shared vocabulary, traffic of the last minute with a
sparkline), a version picker (``Server.set_version_policy``), load/unload per version
(``Server.load_version`` / ``unload_version``; a disabled button says why in its tooltip), a
label action (``Server.set_label``), the request builder (a field per signature input,
prefilled by ``Server.example_inputs``; REST or gRPC; Send runs exactly the code that "copy as"
shows, from ``Server.example_request(..., inputs=...)``) and compare (``Server.compare``).
The panel uses only the facade: nothing here reaches into the server's internals.

Threads: state events (``Server.subscribe``) arrive on the lifecycle's threads; the panel's
subscriber only arms a timer. Once a second the shared ticker (``nbserve.display.ticker``)
refreshes too, so traffic moves. A refresh reads the server (``models()``, ``traffic()``, the
versions on disk) *outside* the render lock, then applies the pure view under it; actions call
the server outside the lock, then refresh.
"""

from __future__ import annotations

import contextlib
import html
import io
import logging
import threading
import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from nbserve.display import ticker
from nbserve.widgets import builder as B
from nbserve.widgets import rows as R
from nbserve.widgets.parts import (
    COPY_AS,
    Launcher,
    ModelView,
    error_text,
    message_html,
    parse_port,
    settled,
    versions_on_disk,
)

if TYPE_CHECKING:  # pragma: no cover
    from nbserve.server import Server
    from nbserve.status import ModelStatus, VersionTraffic

log = logging.getLogger("nbserve.widgets")

# What the launcher passes to nbserve.serve besides the form (as %tfserve start does: a broken
# export shows END with its error within seconds instead of after 5 one-minute retries).
LAUNCHER_DEFAULTS: Mapping[str, Any] = {"max_num_load_retries": 1,
                                         "load_retry_interval_micros": 1_000_000}


class ServerPanel(w.VBox):  # type: ignore[misc]
    """A live panel for ``server`` (see the module docstring), or a launcher when there is none.

    ``ServerPanel()`` shows this kernel's newest running server (``attach_running=True``), else
    the launcher (Start: ``nbserve.serve(path, name=..., port=..., rest_api_port=...,
    device=..., **serve_options)``). Stop calls ``server.stop()`` and returns to the launcher,
    prefilled; a server stopped (or replaced) elsewhere does the same on the next refresh.
    """

    def __init__(self, server: Server | None = None, *, attach_running: bool = True,
                 throttle_seconds: float = 0.1, serve_options: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._render_lock = threading.RLock()
        self._timer_lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._throttle = max(0.0, float(throttle_seconds))
        self._serve_options = {**LAUNCHER_DEFAULTS, **(serve_options or {})}
        self._server: Server | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._views: dict[str, ModelView] = {}
        self._preferred: dict[str, str] = {}  # the picker value a user chose, per model
        self.refresh_count = 0
        self.launcher = Launcher()
        self.launcher.start_button.on_click(lambda _: self.start())
        self.heading = w.HTML("<b>nbserve</b> model server")
        self.endpoints = w.HTML()
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop")
        self.stop_button.on_click(lambda _: self.stop())
        self.message = w.HTML()
        self.models_box = w.VBox()
        self.server_box = w.VBox([w.HBox([self.endpoints, self.stop_button]), self.message,
                                  self.models_box])
        if server is None and attach_running:
            from nbserve.server import Server as ServerClass

            running = ServerClass.running_servers()
            server = running[-1] if running else None
        if server is not None and server.running:
            self.attach(server)
        else:
            if server is not None:
                self.launcher.prefill(server, [])
                self.launcher.message.value = message_html(f"{server!r} is not running.")
            self.children = [self.heading, self.launcher.box]

    # -- public state ---------------------------------------------------------------------------
    @property
    def server(self) -> Server | None:
        """The server shown, or None while the launcher shows."""
        return self._server

    @property
    def models(self) -> list[str]:
        with self._render_lock:
            return list(self._views)

    def model_view(self, name: str) -> ModelView:
        """The section of model ``name``; KeyError if the panel does not show it."""
        with self._render_lock:
            return self._views[name]

    def __repr__(self) -> str:
        return "ServerPanel(launcher)" if self._server is None else \
            f"ServerPanel(models={self.models!r})"

    # -- attach / detach ------------------------------------------------------------------------
    def attach(self, server: Server) -> None:
        """Show ``server`` (running) and follow its state events. Replaces any other server."""
        with self._render_lock:
            self._detach(None)
            self._server = server
            self.endpoints.value = self._endpoints_html(server)
            self.message.value = ""
            self.children = [self.heading, self.server_box]
        self._unsubscribe = server.subscribe(self._on_event)
        ticker.add(self)
        self.refresh()

    @staticmethod
    def _endpoints_html(server: Server) -> str:
        parts = [f"{label} <code style='white-space:nowrap'>{html.escape(value)}</code>"
                 for label, value in (("REST", server.rest_url), ("gRPC", server.grpc_target))
                 if value]
        return " &middot; ".join(parts or ["no endpoints"]) + "&nbsp;"

    def _stop_following(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        ticker.discard(self)
        with self._timer_lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _detach(self, message: str | None) -> None:
        """Back to the launcher (under the render lock). Idempotent."""
        self._stop_following()
        server, self._server = self._server, None
        names = list(self._views)
        for view in self._views.values():
            view.box.close()
        self._views.clear()
        self._preferred.clear()
        self.models_box.children = []
        if server is not None:
            self.launcher.prefill(server, names)
        if message is not None:
            self.launcher.message.value = message_html(message)
            self.children = [self.heading, self.launcher.box]

    def close(self) -> None:
        """Stop following the server (it keeps running) and close the widgets."""
        with self._render_lock:
            self._stop_following()
            self._server = None
        super().close()

    # -- live updates ---------------------------------------------------------------------------
    def _on_event(self, event: Any) -> None:
        """``Server.subscribe`` callback (lifecycle threads): arm one refresh timer, return."""
        with self._timer_lock:
            if self._timer is not None or self._unsubscribe is None:
                return
            timer = threading.Timer(self._throttle, self._flush)
            timer.daemon = True
            timer.name = "nbserve-panel"
            self._timer = timer
        timer.start()

    def _flush(self) -> None:
        with self._timer_lock:
            self._timer = None  # events from now on arm a new timer: none is lost
        self.tick()

    def tick(self) -> None:
        """A refresh that never raises (timer and ticker threads)."""
        try:
            self.refresh()
        except Exception:  # a display problem must not kill the timer thread
            log.exception("Refreshing the nbserve panel failed")

    def _read(self, server: Server) -> list[tuple[ModelStatus, list[int],
                                                  tuple[VersionTraffic, ...]]]:
        """Everything a refresh shows, read from the server (no lock held)."""
        return [(m, versions_on_disk(m.base_path), tuple(server.traffic(m.name)))
                for m in server.models()]

    def refresh(self) -> None:
        """Re-read the server and update every widget; back to the launcher once it stopped."""
        server = self._server
        if server is None:
            return
        if not server.running:
            with self._render_lock:
                if self._server is server:
                    replaced = getattr(server, "replaced_by", None)
                    self._detach("The server was replaced by another one." if replaced else
                                 "The server stopped.")
            return
        state = self._read(server)
        with self._render_lock:
            if self._server is not server:
                return
            for model, on_disk, traffic in state:
                view = self._views.get(model.name)
                if view is None:
                    view = self._views[model.name] = ModelView(self, model.name)
                    self.models_box.children = [v.box for v in self._views.values()]
                view.update(model, on_disk, traffic, self._preferred.get(model.name))
            self.refresh_count += 1
        for model, _, _ in state:
            if any(v.state == "AVAILABLE" for v in model.versions):
                self._build_fields(model.name)

    def _build_fields(self, name: str) -> None:
        server, view = self._server, self._views.get(name)
        if server is None or view is None or view._built_for is not None:
            return
        try:
            fields = B.input_fields(server.signature(name), server.example_inputs(name))
        except Exception as exc:  # noqa: BLE001 - shown in the panel, never raised
            self._say(name, f"No request builder: {error_text(exc)}", error=True)
            return
        with self._render_lock:
            view.set_fields(fields, name)

    def wait_settled(self, name: str | None = None, timeout: float = 30.0) -> bool:
        """Block until model ``name`` (every model when None) is settled: the manager has
        applied its version policy to the versions on disk, so each version the policy selects
        is AVAILABLE (or failed) and every other one is END. Refreshes the panel, then returns
        False on timeout. Woken by the server's state events (no polling)."""
        server = self._server
        if server is None:
            return False
        changed = threading.Event()
        unsubscribe = server.subscribe(lambda _: changed.set())
        expired = threading.Event()
        timer = threading.Timer(timeout, expired.set)
        timer.daemon = True
        timer.start()
        try:
            while not expired.is_set():
                changed.clear()
                if all(settled(m, versions_on_disk(m.base_path)) for m in server.models()
                       if name in (None, m.name)):
                    return True
                while not (changed.wait(0.5) or expired.is_set()):
                    pass  # a missed event costs at most half a second
            return False
        finally:
            timer.cancel()
            unsubscribe()
            self.refresh()

    # -- actions (button / picker handlers; also callable from code) ----------------------------
    def _act(self, name: str, action: Callable[[], Any]) -> None:
        try:
            action()
            self._say(name, "")
        except Exception as exc:  # noqa: BLE001 - every failure is shown in the panel
            self._say(name, error_text(exc), error=True)
        self.refresh()

    def pick(self, name: str, value: str) -> None:
        """Apply a picker value (``latest``, ``all``, ``version:N``, ``label:L``)."""
        server = self._server
        if value == R.CUSTOM or server is None:
            return
        labels: Mapping[str, int] = next(
            (m.labels for m in server.models() if m.name == name), {})

        def apply() -> None:
            server.set_version_policy(name, R.choice_policy(value, labels))
            self._preferred[name] = value

        self._act(name, apply)

    def load_version(self, name: str, version: int) -> None:
        if self._server is not None:
            server = self._server
            self._act(name, lambda: server.load_version(name, version))
            self._preferred.pop(name, None)

    def unload_version(self, name: str, version: int) -> None:
        if self._server is not None:
            server = self._server
            self._act(name, lambda: server.unload_version(name, version))
            self._preferred.pop(name, None)

    def set_label(self, name: str, label: str, version: int | None) -> None:
        server = self._server
        if server is None:
            return
        if not label or version is None:
            self._say(name, "Give a label name and pick a version", error=True)
            return
        self._act(name, lambda: server.set_label(name, label, version))

    def inputs(self, name: str) -> dict[str, Any]:
        """The request builder's values (ValueError naming a field that is not JSON)."""
        view = self.model_view(name)
        return B.parse_inputs({alias: area.value for alias, area in view.fields.items()})

    def request_code(self, name: str, protocol: str, language: str) -> str:
        """The exact client code for the builder's request (``Server.example_request``)."""
        server = self._server
        if server is None:
            raise RuntimeError("No server is shown")
        code: str = server.example_request(name, protocol=protocol, language=language,
                                           inputs=self.inputs(name))
        return code

    def show_code(self, name: str) -> None:
        view = self.model_view(name)
        choice = dict(COPY_AS).get(view.copy_as.value or "")
        if choice is None:
            view.code.value = ""
            return
        try:
            code = self.request_code(name, *choice)
            view.code.value = (f"<pre style='white-space:pre;user-select:all'>"
                               f"{html.escape(code)}</pre>")
        except Exception as exc:  # noqa: BLE001 - shown, never raised
            view.code.value = message_html(error_text(exc), error=True)

    def send(self, name: str) -> str:
        """Send the builder's request over the picked protocol: runs exactly the Python code
        that "copy as requests / gRPC" shows; shows and returns what it printed."""
        view = self.model_view(name)
        protocol = "grpc" if view.protocol.value == "gRPC" else "rest"
        out = io.StringIO()
        try:
            code = self.request_code(name, protocol, "python")
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"<nbserve {protocol} request>", "exec"), {})
            ok, text = True, out.getvalue()
        except Exception as exc:  # noqa: BLE001 - the request's failure is the answer shown
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            ok, text = False, (out.getvalue() + last).strip()
        with self._render_lock:
            view.result_ok, view.result_text = ok, text
            colour = "inherit" if ok else "#cf222e"
            view.result.value = (f"<div>{'answer' if ok else 'failed'} ({html.escape(protocol)})"
                                 f"</div><pre class='nbserve-answer' style='color:{colour};"
                                 f"white-space:pre-wrap'>{html.escape(text)}</pre>")
        self.refresh()
        return text

    def compare(self, name: str) -> Any:
        """Compare the two picked versions on the builder's inputs (``Server.compare``)."""
        server = self._server
        view = self.model_view(name)
        if server is None or view.compare_a.value is None or view.compare_b.value is None:
            return None
        try:
            result = server.compare(name, self.inputs(name),
                                    versions=(view.compare_a.value, view.compare_b.value))
            page = B.comparison_html(result)
        except Exception as exc:  # noqa: BLE001 - shown, never raised
            result, page = None, message_html(error_text(exc), error=True)
        with self._render_lock:
            view.comparison, view.compare_output.value = result, page
        return result

    def start(self) -> Server | None:
        """The launcher's Start: ``nbserve.serve`` with the form's values; the new server, or
        None with the error under the form."""
        import nbserve

        form = self.launcher
        try:
            path = form.path.value.strip()
            if not path:
                raise ValueError("Enter a model path (a folder of numeric version folders)")
            server = nbserve.serve(path, name=form.name.value.strip() or None,
                                   port=parse_port(form.grpc_port.value, "gRPC port"),
                                   rest_api_port=parse_port(form.rest_port.value, "REST port"),
                                   device=form.device.value, **self._serve_options)
        except Exception as exc:  # noqa: BLE001 - shown under the form, the kernel lives on
            form.message.value = message_html(error_text(exc), error=True)
            return None
        form.message.value = ""
        self.attach(server)
        started: Server = server
        return started

    def stop(self) -> None:
        """The Stop button: ``server.stop()``, then the launcher, prefilled to start it again."""
        server = self._server
        if server is None:
            return
        with self._render_lock:
            self._stop_following()
        try:
            server.stop()
        finally:
            with self._render_lock:
                if self._server is server:
                    self._detach("Stopped.")

    def _say(self, name: str, text: str, error: bool = False) -> None:
        with self._render_lock:
            view = self._views.get(name)
            if view is not None:
                view.message.value = message_html(text, error)
