"""``ServerPanel``: a live ipywidgets panel over one nbserve Server, or a launcher that starts one.

Built only from standard ipywidgets controls (VBox/HBox, HTML, Dropdown, Text, Textarea, Button),
so it renders wherever ipywidgets 8 does (JupyterLab, Notebook 7, VS Code, Colab) with no extra
front-end bundle::

    panel = ServerPanel(srv)      # or ServerPanel(): the launcher (or this kernel's newest server)
    panel                         # display it

Per model it shows a version table (state, device, load time, labels, error text), a version
picker, load/unload buttons per version and a "try it" box. Everything goes through the public
lifecycle: the picker and the buttons set the model's version-policy override
(``server.core.set_version_policy``), so the manager loads and unloads versions itself and
REST/gRPC status show the change as soon as the manager acts.

- picker "latest (policy: ...)": the configured policy (override removed);
  "version N": ``VersionPolicy.specific(N)``; "label L": ``specific(labels[L])``.
- load N: ``specific(aspired + {N})``; unload N: ``specific(aspired - {N})`` where *aspired* is
  what the current policy selects among the versions on disk. The panel always keeps at least
  one version aspired: the last one's unload button is disabled (stop the server instead).
- "try it": a Predict request body (``{"instances": ...}`` / ``{"inputs": ...}``, or a bare
  JSON list taken as ``instances``) through the REST codec and the serving service, to the
  picked version or label (latest/custom: whatever the policy serves); the answer is the exact
  REST JSON, errors are ``{"error": "<TF Serving's message>"}``.

Thread-safety: state events arrive on the manager's load/unload threads. The panel's
subscriber only coalesces them: it arms one timer (``throttle_seconds``) and returns; the timer
thread then calls ``refresh()``. ``refresh()`` and every widget update run under one lock, so
refreshes from timers, button handlers and the kernel's thread never interleave. Button and
picker handlers call the server outside that lock, then ``refresh()``.
"""

from __future__ import annotations

import html
import logging
import os
import threading
from typing import Any, Callable, Mapping

import ipywidgets as w

from nbserve.core.events import ManagerState, ServableState
from nbserve.errors import ServingError, as_serving_error
from nbserve.options import VersionPolicy
from nbserve.widgets import rows as R

log = logging.getLogger("nbserve.widgets")

DEFAULT_TRY_BODY = '{"instances": [1.0, 2.0, 5.0]}'
# What the launcher passes to nbserve.serve besides the form (as %tfserve start does: a broken
# export shows END with its error within seconds instead of after 5 one-minute retries).
LAUNCHER_DEFAULTS: Mapping[str, Any] = {"max_num_load_retries": 1,
                                         "load_retry_interval_micros": 1_000_000}


def versions_on_disk(base_path: str) -> list[int]:
    """Numeric version folders under ``base_path`` (highest first); [] if it cannot be read."""
    from nbserve.sources.filesystem import parse_version

    found = []
    try:
        with os.scandir(base_path) as it:
            for entry in it:
                version = parse_version(entry.name)
                if version is not None and entry.is_dir():
                    found.append(version)
    except OSError:
        return []
    return sorted(set(found), reverse=True)


def parse_port(text: str, what: str) -> int | None:
    """Launcher port field: ``""``/``off``/``none`` -> None (transport off), else 0..65535
    (0: a free port). Raises ValueError naming the field."""
    text = text.strip().lower()
    if text in ("", "off", "none"):
        return None
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a port (a number, 0 = free, or off)") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{what}: {port} is out of range 0..65535")
    return port


def _message(text: str, error: bool = False) -> str:
    colour = "#cf222e" if error else "inherit"
    return f"<span style='color:{colour}'>{html.escape(text)}</span>" if text else ""


class Launcher:
    """The launcher form: model path, name, REST/gRPC ports, device, Start (widgets only)."""

    def __init__(self) -> None:
        style = {"description_width": "90px"}
        self.path = w.Text(description="model path", placeholder="./export (a model's base path)",
                           style=style, layout=w.Layout(width="420px"))
        self.name = w.Text(description="name", placeholder="(the folder's name)", style=style)
        self.rest_port = w.Text(value="8501", description="REST port", style=style,
                                placeholder="0 = free, off")
        self.grpc_port = w.Text(value="8500", description="gRPC port", style=style,
                                placeholder="0 = free, off")
        self.device = w.Dropdown(options=[("auto", "auto"), ("CPU", "cpu"), ("GPU", "gpu")],
                                 value="auto", description="device", style=style)
        self.start_button = w.Button(description="Start", button_style="success", icon="play")
        self.message = w.HTML()
        self.box = w.VBox([self.path, self.name, w.HBox([self.rest_port, self.grpc_port]),
                           self.device, self.start_button, self.message])

    def prefill(self, server: Any) -> None:
        """The settings of ``server`` (e.g. the one just stopped), so Start restarts it."""
        options = server.options
        if len(options.models) == 1:
            self.path.value = options.models[0].base_path
            self.name.value = options.models[0].name
        port_text = lambda port: "off" if port is None else str(port)  # noqa: E731
        self.rest_port.value = port_text(options.rest_api_port)
        self.grpc_port.value = port_text(options.grpc_port)
        self.device.value = options.device


class ModelView:
    """One model's section: title, picker, version table, load/unload buttons, try-it box.

    Widgets are public attributes (tests and notebooks drive them): ``picker`` (Dropdown; values
    as in ``nbserve.widgets.rows``), ``table`` (HTML), ``load_buttons`` / ``unload_buttons``
    (version -> Button), ``try_input`` (Textarea), ``try_button``, ``try_output`` (HTML);
    ``rows`` (the last ``VersionRow`` list), ``try_result`` (the last response JSON text) and
    ``try_version`` (the version that answered, None on error). Updated only by the panel.
    """

    def __init__(self, panel: "ServerPanel", name: str) -> None:
        self.name = name
        self._panel = panel
        self._syncing: int | None = None  # the thread id of a refresh setting the picker
        self.title = w.HTML()
        self.picker = w.Dropdown(description="serve", options=[("latest", R.LATEST)],
                                 value=R.LATEST, layout=w.Layout(width="360px"))
        self.picker.observe(self._on_pick, names="value")
        self.table = w.HTML()
        self.message = w.HTML()
        self.load_buttons: dict[int, w.Button] = {}
        self.unload_buttons: dict[int, w.Button] = {}
        self.buttons = w.VBox()
        self.try_input = w.Textarea(value=DEFAULT_TRY_BODY, description="try it",
                                    layout=w.Layout(width="420px", height="70px"))
        self.try_button = w.Button(description="Predict", icon="paper-plane")
        self.try_button.on_click(lambda _: panel.try_predict(name, self.try_input.value))
        self.try_output = w.HTML()
        self.try_result = ""
        self.try_version: int | None = None
        self.rows: list[R.VersionRow] = []
        self.box = w.VBox([self.title, self.picker, self.table, self.buttons, self.message,
                           w.HBox([self.try_input, self.try_button]), self.try_output],
                          layout=w.Layout(border="1px solid #d0d7de", padding="4px",
                                          margin="4px 0"))

    def _on_pick(self, change: Mapping[str, Any]) -> None:
        if self._syncing == threading.get_ident():
            return  # the panel is showing the server's state, not a user's choice
        self._panel.pick(self.name, change["new"])

    def _buttons_for(self, version: int) -> w.HBox:
        load = w.Button(description="load", icon="upload", layout=w.Layout(width="90px"))
        unload = w.Button(description="unload", icon="times", layout=w.Layout(width="90px"))
        load.on_click(lambda _: self._panel.load_version(self.name, version))
        unload.on_click(lambda _: self._panel.unload_version(self.name, version))
        self.load_buttons[version], self.unload_buttons[version] = load, unload
        return w.HBox([w.Label(f"version {version}", layout=w.Layout(width="110px")),
                       load, unload])

    def update(self, snap: "ModelSnapshot", preferred: str | None) -> None:
        """Show ``snap`` (call under the panel's lock)."""
        self.rows = snap.rows
        configured, effective = snap.configured, snap.effective
        if configured is None or effective is None:
            self.title.value = f"<b>{html.escape(self.name)}</b> &middot; not in the model config"
        else:
            picked = "" if effective == configured else " (picked in this panel)"
            self.title.value = (f"<b>{html.escape(self.name)}</b> &middot; version policy: "
                                f"{html.escape(effective.describe())}{picked}")
        self._update_picker(snap, preferred)
        self.table.value = R.rows_html(snap.rows)
        self._update_buttons(snap)
        self.try_button.disabled = configured is None

    def _update_picker(self, snap: "ModelSnapshot", preferred: str | None) -> None:
        if snap.configured is None or snap.effective is None:
            options, value, disabled = [("removed from the config", R.LATEST)], R.LATEST, True
        else:
            versions = set(snap.on_disk) | {r.version for r in snap.rows}
            options = R.picker_options(versions, snap.labels, snap.configured, snap.effective)
            value = R.picker_value(snap.effective, snap.configured, snap.labels, preferred)
            disabled = False
        self._syncing = threading.get_ident()
        try:
            if list(self.picker.options) != options:
                self.picker.options = options
            if self.picker.value != value:
                self.picker.value = value
            self.picker.disabled = disabled
        finally:
            self._syncing = None

    def _update_buttons(self, snap: "ModelSnapshot") -> None:
        versions = [r.version for r in snap.rows]
        if set(versions) != set(self.load_buttons):
            for version in set(self.load_buttons) - set(versions):
                self.load_buttons.pop(version).close()
                self.unload_buttons.pop(version).close()
            self.buttons.children = [self._buttons_for(v) if v not in self.load_buttons
                                     else self._button_row(v) for v in versions]
        aspired = set(snap.aspired)
        disk = set(snap.on_disk)
        for version in versions:
            managed = snap.configured is not None
            self.load_buttons[version].disabled = (not managed or version not in disk
                                                   or version in aspired)
            self.unload_buttons[version].disabled = (not managed or version not in aspired
                                                     or len(aspired) < 2)

    def _button_row(self, version: int) -> w.HBox:
        for row in self.buttons.children:
            if self.load_buttons[version] in row.children:
                return row
        return self._buttons_for(version)


class ModelSnapshot:
    """What one model looks like now (built under the panel's lock, from the server)."""

    def __init__(self, server: Any, name: str, entries: list[dict[str, Any]]) -> None:
        config = server.core.models().get(name)
        self.name = name
        self.labels = server.core.labels(name)
        self.on_disk = versions_on_disk(config.base_path) if config else []
        self.configured: VersionPolicy | None = config.version_policy if config else None
        try:
            self.effective: VersionPolicy | None = (server.core.effective_policy(name)
                                                    if config else None)
        except KeyError:  # removed from the config meanwhile
            self.effective = None
        self.aspired = self.effective.select(self.on_disk) if self.effective else []
        self.rows = R.version_rows(entries, self.on_disk, self.labels)


class ServerPanel(w.VBox):
    """A live panel for ``server`` (see the module docstring), or a launcher when there is none.

    ``ServerPanel()`` shows this kernel's newest running server (``attach_running=True``), else
    the launcher; its Start calls ``nbserve.serve(path, name=..., port=..., rest_api_port=...,
    device=..., **serve_options)`` (defaults ``LAUNCHER_DEFAULTS``) and shows the new server.
    Stop calls ``server.stop()`` and returns to the launcher, prefilled with that server's
    settings. If the server is stopped elsewhere, the panel notices (on its END events or the
    next refresh) and returns to the launcher too.
    """

    def __init__(self, server: Any = None, *, attach_running: bool = True,
                 throttle_seconds: float = 0.1, serve_options: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._render_lock = threading.RLock()
        self._timer_lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._throttle = max(0.0, float(throttle_seconds))
        self._serve_options = {**LAUNCHER_DEFAULTS, **(serve_options or {})}
        self._server: Any = None
        self._unsubscribe: Callable[[], None] | None = None
        self._views: dict[str, ModelView] = {}
        self._preferred: dict[str, str] = {}  # the picker value a user chose, per model
        self.refresh_count = 0
        self.launcher = Launcher()
        self.launcher.start_button.on_click(lambda _: self.start())
        self.heading = w.HTML("<b>nbserve</b> model server")
        self.endpoints = w.HTML()
        self.refresh_button = w.Button(description="Refresh", icon="refresh",
                                       tooltip="re-read states and the versions on disk")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop")
        self.stop_button.on_click(lambda _: self.stop())
        self.message = w.HTML()
        self.models_box = w.VBox()
        self.server_box = w.VBox([w.HBox([self.endpoints, self.refresh_button, self.stop_button]),
                                  self.message, self.models_box])
        if server is None and attach_running:
            from nbserve.server import running_servers

            running = running_servers()
            server = running[-1] if running else None
        if server is not None and server.running:
            self.attach(server)
        else:
            if server is not None:
                self.launcher.prefill(server)
                self.launcher.message.value = _message(f"{server!r} is not running.")
            self.children = [self.heading, self.launcher.box]

    # -- public state ---------------------------------------------------------------------------
    @property
    def server(self) -> Any:
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
        server = self._server
        if server is None:
            return "ServerPanel(launcher)"
        return f"ServerPanel(models={self.models!r})"

    # -- attach / detach ------------------------------------------------------------------------
    def attach(self, server: Any) -> None:
        """Show ``server`` (running) and follow its state events. Replaces any other server."""
        with self._render_lock:
            self._detach(None)
            self._server = server
            self._unsubscribe = server.core.event_bus.subscribe(self._on_event)
            self.endpoints.value = self._endpoints_html(server)
            self.message.value = ""
            self.children = [self.heading, self.server_box]
        self.refresh()

    @staticmethod
    def _endpoints_html(server: Any) -> str:
        rest = server.rest_url or "off"
        grpc = server.grpc_target or "off"
        return (f"REST <code>{html.escape(rest)}</code> &middot; gRPC <code>"
                f"{html.escape(grpc)}</code> &middot; device {html.escape(server.options.device)}"
                "&nbsp;")

    def _stop_following(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        with self._timer_lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _detach(self, message: str | None) -> None:
        """Back to the launcher (under the render lock). Idempotent."""
        self._stop_following()
        server, self._server = self._server, None
        for view in self._views.values():
            view.box.close()
        self._views.clear()
        self._preferred.clear()
        self.models_box.children = []
        if server is not None:
            self.launcher.prefill(server)
        if message is not None:
            self.launcher.message.value = _message(message)
            self.children = [self.heading, self.launcher.box]

    def close(self) -> None:
        """Stop following the server (it keeps running) and close the widgets."""
        with self._render_lock:
            self._stop_following()
            self._server = None
        super().close()

    # -- live updates ---------------------------------------------------------------------------
    def _on_event(self, event: ServableState) -> None:
        """EventBus subscriber (manager/load threads): arm one refresh timer, return at once."""
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
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - a display problem must not kill the timer thread
            log.exception("Refreshing the nbserve panel failed")

    def refresh(self) -> None:
        """Re-read the server's states, config and the versions on disk; update every widget.
        Thread-safe; returns to the launcher if the server stopped."""
        with self._render_lock:
            server = self._server
            if server is None:
                return
            if not server.running:
                self._detach("The server stopped.")
                return
            status = server.status()
            for name, entries in status.items():
                view = self._views.get(name)
                if view is None:
                    view = self._views[name] = ModelView(self, name)
                    self.models_box.children = [v.box for v in self._views.values()]
                view.update(ModelSnapshot(server, name, entries), self._preferred.get(name))
            self.refresh_count += 1

    def wait_settled(self, name: str | None = None, timeout: float = 30.0) -> bool:
        """Block until the manager has applied the current policies of ``name`` (every model
        when None): each version the policy selects on disk is AVAILABLE (or END with an error)
        and every other version is END. Refreshes, then returns False on timeout."""
        server = self._server
        if server is None:
            return False
        configs = server.core.models()
        targets = {n: set(server.core.effective_policy(n).select(
            versions_on_disk(configs[n].base_path))) for n in ([name] if name else configs)}

        def settled(monitor: Any) -> bool:
            for model, wanted in targets.items():
                states = monitor.states(model)
                if not wanted.issubset(states):
                    return False
                for version, state in states.items():
                    if version in wanted:
                        if not (state.state == ManagerState.AVAILABLE or
                                (state.state == ManagerState.END and state.error is not None)):
                            return False
                    elif state.state != ManagerState.END:
                        return False
            return True

        done = server.core.monitor.wait_until(settled, timeout)
        self.refresh()
        return done

    # -- actions (button / picker handlers; also callable from code) ----------------------------
    def pick(self, name: str, value: str) -> None:
        """Apply a picker value (``latest``, ``version:N``, ``label:L``) to model ``name``."""
        server = self._server
        if value == R.CUSTOM or server is None:
            return
        try:
            policy = R.policy_for_choice(value, server.core.labels(name))
            server.core.set_version_policy(name, policy)
            self._preferred[name] = value
            self._say(name, "")
        except (ServingError, ValueError) as exc:
            self._say(name, getattr(exc, "message", str(exc)), error=True)
        self.refresh()

    def serve_version(self, name: str, version: int | None = None, label: str | None = None
                      ) -> None:
        """Code form of the picker: serve ``version`` (or ``label``'s), or latest when both None."""
        self.pick(name, f"version:{version}" if version is not None else
                  f"label:{label}" if label is not None else R.LATEST)

    def load_version(self, name: str, version: int) -> None:
        """Add ``version`` to the versions model ``name`` aspires (a specific policy)."""
        self._change_set(name, version, R.policy_after_load)

    def unload_version(self, name: str, version: int) -> None:
        """Remove ``version`` from the versions model ``name`` aspires; refuses the last one."""
        self._change_set(name, version, R.policy_after_unload)

    def _change_set(self, name: str, version: int,
                    change: Callable[[VersionPolicy, list[int], int], VersionPolicy]) -> None:
        server = self._server
        if server is None:
            return
        try:
            on_disk = versions_on_disk(server.core.models()[name].base_path)
            policy = change(server.core.effective_policy(name), on_disk, version)
            server.core.set_version_policy(name, policy)
            self._preferred.pop(name, None)
            self._say(name, "")
        except (ServingError, ValueError, KeyError) as exc:
            self._say(name, getattr(exc, "message", str(exc)), error=True)
        self.refresh()

    def try_predict(self, name: str, body: str) -> str:
        """Send ``body`` (a REST Predict body, or a bare JSON list of instances) to model
        ``name`` through the picked version; show and return the REST JSON answer."""
        from nbserve.codec.json_predict import JsonPredictCodec
        from nbserve.codec.json_status import error_json
        from nbserve.service import ModelSpec

        server = self._server
        view = self.model_view(name)
        text = body.strip()
        if text.startswith("["):
            text = '{"instances": ' + text + "}"
        raw = text.encode()
        answered: int | None = None
        try:
            version, label = R.request_target(view.picker.value, server.core.labels(name))
            codec = JsonPredictCodec.from_body(raw)
            spec = ModelSpec(name, version, label, codec.signature_name)
            answer = server.service.predict(spec, codec).decode()
            answered = codec.servable_id.version if codec.servable_id else None
        except Exception as exc:  # noqa: BLE001 - shown in TF Serving's words, never raised
            answer = error_json(as_serving_error(exc).message).decode()
        with self._render_lock:
            view.try_result, view.try_version = answer, answered
            source = f"version {answered}" if answered is not None else "error"
            colour = "inherit" if answered is not None else "#cf222e"
            view.try_output.value = (f"<div>{source}</div><pre style='color:{colour};"
                                     f"white-space:pre-wrap'>{html.escape(answer)}</pre>")
        return answer

    def start(self) -> Any:
        """The launcher's Start: ``nbserve.serve`` with the form's values; the new server (shown
        at once, versions still LOADING), or None with the error shown under the form."""
        from nbserve.api import serve
        from nbserve.server import ServerStartError

        form = self.launcher
        try:
            path = form.path.value.strip()
            if not path:
                raise ValueError("Enter a model path (a folder of numeric version folders)")
            server = serve(path, name=form.name.value.strip() or None,
                           port=parse_port(form.grpc_port.value, "gRPC port"),
                           rest_api_port=parse_port(form.rest_port.value, "REST port"),
                           device=form.device.value, **self._serve_options)
        except (ServerStartError, ServingError, OSError, ValueError) as exc:
            form.message.value = _message(getattr(exc, "message", None) or str(exc), error=True)
            return None
        form.message.value = ""
        self.attach(server)
        return server

    def stop(self) -> None:
        """The Stop button: ``server.stop()`` (ports freed, versions unloaded), then the
        launcher, prefilled to start it again."""
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
                view.message.value = _message(text, error)
