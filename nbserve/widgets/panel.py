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
import os
import threading
import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets as w  # type: ignore[import-untyped]

from nbserve.display import ticker
from nbserve.widgets import builder as B
from nbserve.widgets import rows as R

if TYPE_CHECKING:  # pragma: no cover
    from nbserve.server import Server
    from nbserve.status import ModelStatus, VersionTraffic

log = logging.getLogger("nbserve.widgets")

# What the launcher passes to nbserve.serve besides the form (as %tfserve start does: a broken
# export shows END with its error within seconds instead of after 5 one-minute retries).
LAUNCHER_DEFAULTS: Mapping[str, Any] = {"max_num_load_retries": 1,
                                         "load_retry_interval_micros": 1_000_000}
COPY_AS = (("curl", ("rest", "curl")), ("requests", ("rest", "python")),
           ("gRPC", ("grpc", "python")))


def versions_on_disk(base_path: str) -> list[int]:
    """Numeric version folders under ``base_path`` (highest first); [] if it cannot be read."""
    try:
        with os.scandir(base_path) as it:
            found = {int(e.name) for e in it if e.name.isascii() and e.name.isdigit()
                     and e.is_dir()}
    except OSError:
        return []
    return sorted(found, reverse=True)


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
    return (f"<span style='color:{colour};white-space:pre-wrap'>{html.escape(text)}</span>"
            if text else "")


def _error_text(exc: BaseException) -> str:
    return str(getattr(exc, "message", None) or exc or type(exc).__name__)


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

    def prefill(self, server: Server, names: list[str]) -> None:
        """The settings of ``server`` (e.g. the one just stopped), so Start restarts it."""
        self.path.value = str(getattr(server, "source", "") or "")
        self.name.value = names[0] if len(names) == 1 else ""
        for field, url in ((self.rest_port, server.rest_url), (self.grpc_port,
                                                               server.grpc_target)):
            field.value = url.rsplit(":", 1)[1] if url else "off"


class ModelView:
    """One model's section. Widgets are public attributes (tests and notebooks drive them):
    ``picker``, ``table``, ``load_buttons`` / ``unload_buttons`` (version -> Button),
    ``label_name`` / ``label_version`` / ``label_button``; the request builder's ``fields``
    (alias -> Textarea), ``protocol``, ``send_button``, ``result`` (HTML) and ``result_text`` /
    ``result_ok``; ``copy_as`` and ``code`` (HTML); ``compare_a`` / ``compare_b``,
    ``compare_button``, ``compare_output`` and ``comparison``. ``rows``: the last VersionRows.
    Updated only by the panel, under its render lock."""

    def __init__(self, panel: ServerPanel, name: str) -> None:
        self.name = name
        self._panel = panel
        self._syncing: int | None = None  # the thread id of a refresh setting the picker
        self.title = w.HTML()
        self.hint = w.HTML()
        self.picker = w.Dropdown(description="serve", options=[("the newest version", R.LATEST)],
                                 value=R.LATEST, layout=w.Layout(width="360px"))
        self.picker.observe(self._on_pick, names="value")
        self.table = w.HTML()
        self.message = w.HTML()
        self.load_buttons: dict[int, w.Button] = {}
        self.unload_buttons: dict[int, w.Button] = {}
        self.buttons = w.VBox()
        self.label_name = w.Text(placeholder="label, e.g. stable", layout=w.Layout(width="160px"))
        self.label_version = w.Dropdown(options=[], layout=w.Layout(width="120px"))
        self.label_button = w.Button(description="set label", icon="tag",
                                     layout=w.Layout(width="110px"))
        self.label_button.on_click(lambda _: panel.set_label(
            name, self.label_name.value.strip(), self.label_version.value))
        self.rows: list[R.VersionRow] = []
        # request builder
        self.fields: dict[str, w.Textarea] = {}
        self.fields_box = w.VBox()
        self.protocol = w.ToggleButtons(options=["REST", "gRPC"], value="REST",
                                        style={"button_width": "70px"})
        self.send_button = w.Button(description="Send", icon="paper-plane",
                                    button_style="primary")
        self.send_button.on_click(lambda _: panel.send(name))
        self.result = w.HTML()
        self.result_text = ""
        self.result_ok: bool | None = None
        self.copy_as = w.ToggleButtons(options=[label for label, _ in COPY_AS], value=None,
                                       description="copy as", style={"button_width": "80px"})
        self.copy_as.observe(lambda _: panel.show_code(name), names="value")
        self.code = w.HTML()
        self._built_for: Any = None
        # compare
        self.compare_a = w.Dropdown(options=[], description="compare",
                                    layout=w.Layout(width="200px"))
        self.compare_b = w.Dropdown(options=[], description="with",
                                    layout=w.Layout(width="180px"))
        self.compare_button = w.Button(description="Compare", icon="columns")
        self.compare_button.on_click(lambda _: panel.compare(name))
        self.compare_output = w.HTML()
        self.comparison: Any = None
        builder = w.VBox([w.HTML("<b>request</b>"), self.fields_box,
                          w.HBox([self.protocol, self.send_button]), self.result,
                          self.copy_as, self.code,
                          w.HBox([self.compare_a, self.compare_b, self.compare_button]),
                          self.compare_output])
        self.box = w.VBox([self.title, self.hint, self.picker, self.table, self.buttons,
                           w.HBox([w.Label("label"), self.label_name, self.label_version,
                                   self.label_button]), self.message, builder],
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

    # -- apply a state (under the panel's lock) ----------------------------------------------
    def update(self, model: ModelStatus, on_disk: list[int], traffic: tuple[VersionTraffic, ...],
               preferred: str | None) -> None:
        self.rows = R.version_rows(model, on_disk, traffic)
        words, tooltip = R.policy_title(model.policy)
        self.title.value = (f"<b>{html.escape(self.name)}</b> &middot; <span title="
                            f"'{html.escape(tooltip)}' style='text-decoration:underline dotted'>"
                            f"{html.escape(words)}</span>")
        self.hint.value = (f"<div class='nbserve-hint' style='border-left:3px solid #9a6700;"
                           f"padding:2px 8px;white-space:pre-wrap'>&#9888; "
                           f"{html.escape(model.hint)}</div>" if model.hint else "")
        self.table.value = R.rows_html(self.rows)
        self._update_picker(model, on_disk, preferred, tooltip)
        self._update_buttons()
        versions = [r.version for r in self.rows]
        if list(self.label_version.options) != versions:
            self.label_version.options = versions
        available = [r.version for r in self.rows if r.state == "AVAILABLE"]
        for dropdown, pick in ((self.compare_a, 0), (self.compare_b, 1)):
            if list(dropdown.options) != available:
                dropdown.options = available
                if len(available) > pick:
                    dropdown.value = available[pick]
        self.compare_button.disabled = len(available) < 2
        self.compare_button.tooltip = ("" if len(available) >= 2 else
                                       "needs two AVAILABLE versions: load another one")
        self.send_button.disabled = not available
        self.send_button.tooltip = "" if available else "no version is AVAILABLE yet"

    def _update_picker(self, model: ModelStatus, on_disk: list[int], preferred: str | None,
                       tooltip: str) -> None:
        versions = set(on_disk) | {v.version for v in model.versions}
        options = R.picker_options(versions, model.labels, model.policy)
        value = R.picker_value(model.policy, model.labels, preferred)
        self._syncing = threading.get_ident()
        try:
            if list(self.picker.options) != options:
                self.picker.options = options
            if self.picker.value != value:
                self.picker.value = value
            self.picker.tooltip = tooltip
        finally:
            self._syncing = None

    def _update_buttons(self) -> None:
        versions = [r.version for r in self.rows]
        if versions != list(self.load_buttons):
            for version in set(self.load_buttons) - set(versions):
                self.load_buttons.pop(version).close()
                self.unload_buttons.pop(version).close()
            keep = {v: row for row in self.buttons.children for v in self.load_buttons
                    if self.load_buttons[v] in row.children}
            self.buttons.children = [keep[v] if v in keep else self._buttons_for(v)
                                     for v in versions]
            self.load_buttons = {v: self.load_buttons[v] for v in versions}
            self.unload_buttons = {v: self.unload_buttons[v] for v in versions}
        for row in self.rows:
            for button, why in ((self.load_buttons[row.version], row.load_why),
                                (self.unload_buttons[row.version], row.unload_why)):
                button.disabled = bool(why)
                button.tooltip = f"disabled: {why}" if why else ""

    def set_fields(self, fields: list[B.Field], key: Any) -> None:
        """The builder's inputs (once per signature; user edits are kept)."""
        if key == self._built_for:
            return
        self._built_for = key
        self.fields = {}
        rows = []
        for field in fields:
            area = w.Textarea(value=field.text, layout=w.Layout(width="420px", height="48px"))
            self.fields[field.alias] = area
            rows.append(w.HBox([w.HTML(f"<code>{html.escape(field.alias)}</code><br><small>"
                                       f"{html.escape(field.describe)}</small>",
                                       layout=w.Layout(width="200px")), area]))
        self.fields_box.children = rows


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
            from nbserve.server import running_servers

            running = running_servers()
            server = running[-1] if running else None
        if server is not None and server.running:
            self.attach(server)
        else:
            if server is not None:
                self.launcher.prefill(server, [])
                self.launcher.message.value = _message(f"{server!r} is not running.")
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
            self.launcher.message.value = _message(message)
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
            self._say(name, f"No request builder: {_error_text(exc)}", error=True)
            return
        with self._render_lock:
            view.set_fields(fields, name)

    # -- actions (button / picker handlers; also callable from code) ----------------------------
    def _act(self, name: str, action: Callable[[], Any]) -> None:
        try:
            action()
            self._say(name, "")
        except Exception as exc:  # noqa: BLE001 - every failure is shown in the panel
            self._say(name, _error_text(exc), error=True)
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
            view.code.value = _message(_error_text(exc), error=True)

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
            result, page = None, _message(_error_text(exc), error=True)
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
            form.message.value = _message(_error_text(exc), error=True)
            return None
        form.message.value = ""
        self.attach(server)
        return server

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
                view.message.value = _message(text, error)
