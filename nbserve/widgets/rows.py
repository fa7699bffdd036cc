"""Pure state -> view functions of the widget panel: version rows, the HTML table, the picker.

Nothing here touches a server, a widget or a thread: every function maps the facade's typed
values (``ModelStatus``, ``VersionTraffic``) and plain values (versions on disk, the picker's
value) to plain values, so it is tested on its own (tests/widgets/test_rows.py). Words and
colours come from ``nbserve.vocabulary``, like the live display and the sidebar.

Picker values are strings: ``"latest"`` (the newest version), ``"all"``, ``"version:N"``,
``"label:L"``, and ``"custom"`` (a policy that is none of those, e.g. after load/unload left two
versions). :func:`choice_policy` turns one into what ``Server.set_version_policy`` takes.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbserve.display import badge_html, sparkline_svg, traffic_text
from nbserve.vocabulary import Look, policy_words, version_look, why_disabled

if TYPE_CHECKING:  # pragma: no cover
    from nbserve.status import ModelStatus, VersionTraffic

LATEST = "latest"
ALL = "all"
CUSTOM = "custom"
NOT_LOADED = "NOT LOADED"  # on disk, never managed (e.g. outside the version policy)


@dataclass(frozen=True)
class VersionRow:
    """One line of a model's version table (display strings, plus why a button is disabled:
    ``load_why`` / ``unload_why``, "" when the button is enabled)."""

    version: int
    state: str
    look: Look
    device: str = ""
    load_time: str = ""
    labels: tuple[str, ...] = ()
    serving: bool = False
    traffic: str = ""
    spark: str = ""
    load_why: str = ""
    unload_why: str = ""

    @property
    def error(self) -> str:
        return self.look.words[len("failed: "):] if self.look.kind == "failed" else ""


def format_load_time(seconds: float | None) -> str:
    """``0.4213`` -> ``"0.42 s"``; None -> ``""``."""
    return "" if seconds is None else f"{float(seconds):.2f} s"


def version_rows(model: ModelStatus, on_disk: Iterable[int] = (),
                 traffic: Iterable[VersionTraffic] = ()) -> list[VersionRow]:
    """Rows for every version the manager knows plus every version on disk it never managed
    (``NOT LOADED``); highest version first, with traffic and the buttons' reasons."""
    disk = {int(v) for v in on_disk}
    by_label: dict[int, list[str]] = {}
    for label, version in sorted(model.labels.items()):
        by_label.setdefault(int(version), []).append(label)
    flow = {t.version: t for t in traffic}
    available = [v.version for v in model.versions if v.state == "AVAILABLE"]
    serving = max(available, default=None)
    states = {v.version: v.state for v in model.versions}
    loaded = sum(1 for s in states.values() if s in ("START", "LOADING", "AVAILABLE"))
    rows = []
    for v in model.versions:
        t = flow.get(v.version)
        rows.append(VersionRow(
            version=v.version, state=v.state,
            look=version_look(v.state, v.error, version=v.version, newer_available=available),
            device=v.device or "", load_time=format_load_time(v.load_seconds),
            labels=tuple(by_label.get(v.version, ())), serving=v.version == serving,
            traffic=traffic_text(t), spark=sparkline_svg(t.per_second) if t and t.requests
            else "",
            load_why=why_disabled("load", v.state, loaded_count=loaded,
                                  on_disk=v.version in disk),
            unload_why=why_disabled("unload", v.state, loaded_count=loaded)))
    for version in disk - set(states):
        rows.append(VersionRow(version, NOT_LOADED, version_look(NOT_LOADED),
                               labels=tuple(by_label.get(version, ())),
                               unload_why="not loaded"))
    return sorted(rows, key=lambda r: -r.version)


_CELL = "padding:2px 8px;text-align:left;vertical-align:middle"


def rows_html(rows: Sequence[VersionRow]) -> str:
    """The version table as an HTML fragment (every value escaped)."""
    esc = html.escape
    if not rows:
        return "<div class='nbserve-rows'><i>no versions yet</i></div>"
    head = "".join(f"<th style='{_CELL}'>{h}</th>" for h in
                   ("version", "state", "device", "load time", "labels", "last minute"))
    body = []
    for row in rows:
        state = badge_html(row.look)
        version = f"{row.version}{' &#9664; default' if row.serving else ''}"
        flow = (f"<span style='white-space:nowrap'>{esc(row.traffic)} <span style='display:"
                f"inline-block;margin-left:6px'>{row.spark}</span></span>" if row.traffic else
                "<span style='opacity:.6'>no requests</span>")
        cells = [version, state, esc(row.device), esc(row.load_time), esc(", ".join(row.labels)),
                 flow]
        body.append(f"<tr data-version='{row.version}' data-state='{esc(row.state)}'>"
                    + "".join(f"<td style='{_CELL}'>{c}</td>" for c in cells) + "</tr>")
    return ("<table class='nbserve-rows' style='border-collapse:collapse'><thead><tr>" + head
            + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>")


def rows_text(rows: Sequence[VersionRow]) -> str:
    """The version table as plain text, one version a line (for logs, doctests, notebooks)."""
    lines = []
    for row in rows:
        extras = [x for x in (row.device, row.load_time,
                              f"labels {','.join(row.labels)}" if row.labels else "",
                              "default" if row.serving else "", row.traffic) if x]
        lines.append(f"{row.version}: {row.look.text}"
                     + (f" ({'; '.join(extras)})" if extras else ""))
    return "\n".join(lines)


# -- the version picker ---------------------------------------------------------------------------
def picker_options(versions: Iterable[int], labels: Mapping[str, int], policy: str
                   ) -> list[tuple[str, str]]:
    """(text, value) pairs in plain words: the newest version, every version, each version
    (highest first), each label, and ``custom`` when ``policy`` is none of those."""
    options = [("the newest version", LATEST), ("every version", ALL)]
    options += [(f"version {v}", f"version:{v}") for v in sorted(set(versions), reverse=True)]
    options += [(f"label {label} \u2192 version {v}", f"label:{label}")
                for label, v in sorted(labels.items())]
    if picker_value(policy, labels) == CUSTOM:
        options.append((f"custom: {policy_words(policy)[0]}", CUSTOM))
    return options


def picker_value(policy: str, labels: Mapping[str, int], preferred: str | None = None) -> str:
    """The picker value that shows ``policy`` (``ModelStatus.policy``): ``latest`` for
    "latest 1", ``all``, ``version:N`` for one specific version (``preferred`` when it is a label
    pointing at N, so a picked label stays shown), else ``custom``."""
    kind, _, rest = policy.strip().partition(" ")
    if policy.strip() in ("latest", "latest 1"):
        return LATEST
    if kind == "all":
        return ALL
    if kind == "specific" and rest.strip().isdigit():
        version = int(rest)
        if preferred and preferred.startswith("label:") and \
                labels.get(preferred[len("label:"):]) == version:
            return preferred
        return f"version:{version}"
    return CUSTOM


def choice_policy(value: str, labels: Mapping[str, int]) -> str | list[int]:
    """What ``Server.set_version_policy`` gets for a picker value: ``"latest"``, ``"all"`` or
    ``[N]`` (a label's version). ValueError for ``custom``, an unknown label, a bad value."""
    if value in (LATEST, ALL):
        return value
    if value.startswith("version:"):
        return [int(value[len("version:"):])]
    if value.startswith("label:"):
        label = value[len("label:"):]
        if label not in labels:
            raise ValueError(f"Unknown version label {label!r}")
        return [labels[label]]
    raise ValueError(f"Not a version choice: {value!r}")


def policy_title(policy: str) -> tuple[str, str]:
    """(plain words, tooltip) for the panel's title: "serves the newest version", TF's term."""
    words, term = policy_words(policy)
    return f"serves {words}", f"TF Serving: {term}"
