"""The panel's parts: the launcher form, one model's section (widgets + applying a state),
and the small pure helpers they share. ``nbserve.widgets.panel.ServerPanel`` composes them.

Widgets only: nothing here calls the server; ``ModelView.update`` applies a state the panel has
read (under the panel's render lock), and its buttons call the panel's actions.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from nbserve.widgets import builder as B
from nbserve.widgets import rows as R

if TYPE_CHECKING:  # pragma: no cover
    from nbserve.server import Server
    from nbserve.status import ModelStatus, VersionTraffic
    from nbserve.widgets.panel import ServerPanel

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


def settled(model: ModelStatus, on_disk: list[int]) -> bool:
    """The manager has applied ``model``'s policy to the versions ``on_disk``: each version the
    policy selects is AVAILABLE (or failed) and every other version it knows is END."""
    states = {v.version: v for v in model.versions}
    kind, _, rest = model.policy.partition(" ")
    if kind == "specific":
        wanted = {int(x) for x in rest.split(",") if x.strip().isdigit()}
    elif kind == "all":
        wanted = set(on_disk)
    else:
        count = int(rest) if rest.strip().isdigit() else 1
        wanted = set(sorted(on_disk, reverse=True)[:count])
    for version in wanted:
        v = states.get(version)
        if v is None or not (v.state == "AVAILABLE" or (v.state == "END" and v.error)):
            return False
    return all(v.state == "END" for n, v in states.items() if n not in wanted)


def message_html(text: str, error: bool = False) -> str:
    colour = "#cf222e" if error else "inherit"
    return (f"<span style='color:{colour};white-space:pre-wrap'>{html.escape(text)}</span>"
            if text else "")


def error_text(exc: BaseException) -> str:
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
        if self.label_version.value is None and versions:
            serving = [r.version for r in self.rows if r.serving]
            self.label_version.value = (serving or versions)[0]
        available = [r.version for r in self.rows if r.state == "AVAILABLE"]
        for dropdown, pick in ((self.compare_a, 0), (self.compare_b, 1)):
            if list(dropdown.options) != available:
                dropdown.options = available
                if len(available) > pick:
                    dropdown.value = available[pick]
        self.compare_button.disabled = len(available) < 2
        self.compare_button.tooltip = ("" if len(available) >= 2 else
                                       "needs two AVAILABLE versions: load another one")
        if self.comparison is None:
            self.compare_output.value = (
                "" if len(available) >= 2 else "<small style='opacity:.7'>Compare needs two "
                "loaded versions: load another one with its <i>load</i> button.</small>")
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
