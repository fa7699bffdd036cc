"""How a server looks in a notebook: ONE live view of a ``Server``, built from pure functions.

``server_view(server)`` is what ``Server._ipython_display_`` / ``_repr_html_`` and ``%tfserve
status`` show. It reads the server only through its public facade (``models()``, ``traffic()``,
``example_request()``, ``subscribe()``, ``replaced_by``...) into a :class:`Snapshot`; the pure
functions :func:`snapshot_html` / :func:`snapshot_text` turn a snapshot into HTML / text (tested
without a kernel, tests/test_display.py). State words and colours come from
``nbserve.vocabulary``, the one vocabulary the panel and the sidebar share.

Every rich display is live: :class:`ServerView` displays once with a display id and updates it
on the server's state events (coalesced) and, while there is traffic, once a second. A stopped
or replaced server's display says so (and by which server it was replaced), then stops
following. ``_repr_html_`` (a context that cannot update, e.g. a saved notebook) says plainly
that it is a snapshot and when it was taken.
"""

from __future__ import annotations

import html
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from nbserve.vocabulary import Look, model_waiting_look, policy_words, version_look

if TYPE_CHECKING:  # pragma: no cover
    from nbserve.server import Server
    from nbserve.status import ModelStatus, VersionStatus, VersionTraffic

__all__ = ["ServerView", "Snapshot", "StatusView", "server_view", "snapshot_html",
           "snapshot_of", "snapshot_text", "sparkline_svg", "status_view", "traffic_text"]

SNIPPETS = (("client code: curl (REST)", "rest", "curl"),
            ("client code: Python requests (REST)", "rest", "python"),
            ("client code: Python gRPC", "grpc", "python"))


# -- the snapshot: everything a view shows, read from the facade ---------------------------------
@dataclass(frozen=True)
class Snapshot:
    """What one server looks like at ``taken_at`` (plain values only; see ``snapshot_of``).

    ``phase``: "running", "stopped" or "replaced"; ``replaced_by``: a one-line description of
    the server that replaced this one; ``snippets``: model -> [(title, code)].
    """

    phase: str
    rest_url: str | None
    grpc_target: str | None
    source: str
    started_at: datetime | None
    models: tuple[ModelStatus, ...]
    traffic: Mapping[str, tuple[VersionTraffic, ...]] = field(default_factory=dict)
    snippets: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    replaced_by: str | None = None
    taken_at: datetime = field(default_factory=datetime.now)


def describe_server(server: Server) -> str:
    """``"the server started from ./export at 19:18:31 (REST :8601, gRPC :8600)"``."""
    started = getattr(server, "started_at", None)
    when = f" at {started:%H:%M:%S}" if isinstance(started, datetime) else ""
    ports = ", ".join(p for p in (
        f"REST {server.rest_url}" if server.rest_url else "",
        f"gRPC {server.grpc_target}" if server.grpc_target else "") if p)
    return f"the server started from {getattr(server, 'source', '?')}{when} ({ports or 'no ports'})"


def snapshot_of(server: Server, snippet_cache: dict[Any, Any] | None = None) -> Snapshot:
    """Read ``server`` through its facade. ``snippet_cache`` keeps generated client code per
    (model, available versions), so a live view does not regenerate it every second."""
    replaced = getattr(server, "replaced_by", None)
    running = bool(server.running)
    phase = "replaced" if replaced is not None else ("running" if running else "stopped")
    models: tuple[ModelStatus, ...] = ()
    traffic: dict[str, tuple[VersionTraffic, ...]] = {}
    snippets: dict[str, tuple[tuple[str, str], ...]] = {}
    if running:
        models = tuple(server.models())
        for model in models:
            traffic[model.name] = tuple(server.traffic(model.name))
            available = tuple(v.version for v in model.versions if v.state == "AVAILABLE")
            if available:
                snippets[model.name] = _snippets(server, model.name, available, snippet_cache)
    return Snapshot(phase=phase, rest_url=server.rest_url, grpc_target=server.grpc_target,
                    source=str(getattr(server, "source", "")),
                    started_at=getattr(server, "started_at", None), models=models,
                    traffic=traffic, snippets=snippets,
                    replaced_by=describe_server(replaced) if replaced is not None else None)


def _snippets(server: Server, name: str, available: tuple[int, ...],
              cache: dict[Any, Any] | None) -> tuple[tuple[str, str], ...]:
    key = (name, available, server.rest_url, server.grpc_target)
    if cache is not None and key in cache:
        return cache[key]  # type: ignore[no-any-return]
    out = []
    if server.rest_url:
        out.append(("model status (REST)", f"curl {server.rest_url}/v1/models/{name}"))
    for title, protocol, language in SNIPPETS:
        if (protocol == "rest" and not server.rest_url) or \
                (protocol == "grpc" and not server.grpc_target):
            continue
        try:
            out.append((title, server.example_request(name, protocol=protocol,
                                                      language=language)))
        except Exception as exc:  # noqa: BLE001 - a missing snippet must not break the view
            out.append((title, f"# no example: {exc}"))
    result = tuple(out)
    if cache is not None:
        cache[key] = result
    return result


# -- pure pieces -----------------------------------------------------------------------------------
def sparkline_svg(values: Sequence[int], width: int = 90, height: int = 18,
                  colour: str = "#0969da") -> str:
    """A small inline SVG line of ``values`` (requests per second, oldest first)."""
    points = list(values) or [0]
    top = max(max(points), 1)
    step = width / max(len(points) - 1, 1)
    coords = " ".join(f"{i * step:.1f},{height - 1 - (v / top) * (height - 2):.1f}"
                      for i, v in enumerate(points))
    total = sum(points)
    return (f"<svg class='nbserve-spark' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' role='img' style='vertical-align:middle'>"
            f"<title>{total} requests in the last {len(points)} s (peak {max(points)}/s)"
            f"</title><polyline fill='none' stroke='{colour}' stroke-width='1.5' "
            f"points='{coords}'/></svg>")


def _ms(value: float | None) -> str:
    return "" if value is None else (f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms")


def traffic_text(t: VersionTraffic | None) -> str:
    """``"12 req, 1 err, p50 1.2 ms, p99 4.0 ms"`` over the last minute ("" when idle)."""
    if t is None or not t.requests:
        return ""
    parts = [f"{t.requests} req"]
    if t.errors:
        parts.append(f"{t.errors} err")
    if t.p50_ms is not None:
        parts.append(f"p50 {_ms(t.p50_ms)}")
    if t.p99_ms is not None:
        parts.append(f"p99 {_ms(t.p99_ms)}")
    return ", ".join(parts)


def looks_of(model: ModelStatus) -> dict[int, Look]:
    """version -> its look, END versions naming the newer AVAILABLE version that replaced them."""
    available = [v.version for v in model.versions if v.state == "AVAILABLE"]
    return {v.version: version_look(v.state, v.error, version=v.version,
                                    newer_available=available) for v in model.versions}


def badge_html(look: Look) -> str:
    """The state badge (TF Serving's name, coloured) and its plain words."""
    esc = html.escape
    badge = (f"<span class='nbserve-badge {look.css_class}' title='{esc(look.title)}' "
             f"style='background:{look.colour};color:#fff;border-radius:8px;padding:0 6px;"
             f"font-size:85%;white-space:nowrap'>{esc(look.badge)}</span>")
    words = (f" <span class='nbserve-words' style='color:{look.colour}'>{esc(look.words)}</span>"
             if look.words else "")
    return badge + words


def _version_label(model: ModelStatus, v: VersionStatus) -> str:
    labels = sorted(label for label, version in model.labels.items() if version == v.version)
    return f"{v.version}" + (f" ({', '.join(labels)})" if labels else "")


_HEAD = ("version", "state", "device", "load", "last minute")
_IDLE = "<span style='opacity:.6'>no requests</span>"


def _traffic_cell(t: VersionTraffic | None) -> str:
    """The numbers of the last minute, then the sparkline, on one line."""
    if t is None or not t.requests:
        return _IDLE
    return (f"<span style='white-space:nowrap'>{html.escape(traffic_text(t))} "
            f"<span style='display:inline-block;margin-left:6px'>"
            f"{sparkline_svg(t.per_second)}</span></span>")
_CELL = "padding:2px 8px;text-align:left;vertical-align:middle"


def model_html(model: ModelStatus, traffic: Iterable[VersionTraffic] = (),
               snippets: Sequence[tuple[str, str]] = ()) -> str:
    """One model: name, policy in plain words (TF term as tooltip), hint, version table,
    traffic with a sparkline, and collapsible client code."""
    esc = html.escape
    words, term = policy_words(model.policy)
    title = (f"<div><b>{esc(model.name)}</b> <span style='opacity:.75'>serves "
             f"<span title='{esc(term)}' style='text-decoration:underline dotted'>"
             f"{esc(words)}</span> &middot; <code style='word-break:keep-all'>"
             f"{esc(model.base_path)}</code></span></div>")
    hint = ""
    if model.hint:
        hint = (f"<div class='nbserve-hint' style='border-left:3px solid #9a6700;"
                f"padding:2px 8px;margin:4px 0;white-space:pre-wrap'>&#9888; {esc(model.hint)}"
                "</div>")
    by_version = {t.version: t for t in traffic}
    looks = looks_of(model)
    if not model.versions:
        look = model_waiting_look()
        table = f"<div style='margin:2px 0'>{badge_html(look)}</div>"
    else:
        head = "".join(f"<th style='{_CELL}'>{h}</th>" for h in _HEAD)
        rows = []
        for v in model.versions:
            t = by_version.get(v.version)
            cells = (esc(_version_label(model, v)), badge_html(looks[v.version]),
                     esc(v.device or ""), esc(f"{v.load_seconds:.2f} s"
                                              if v.load_seconds is not None else ""),
                     _traffic_cell(t))
            rows.append(f"<tr data-version='{v.version}' data-state='{esc(v.state)}'>"
                        + "".join(f"<td style='{_CELL}'>{c}</td>" for c in cells) + "</tr>")
        table = (f"<div class='nbserve-versions'><table><thead><tr>{head}</tr></thead><tbody>"
                 f"{''.join(rows)}</tbody></table></div>")
    code = "".join(f"<details><summary>{esc(t)}</summary><pre style='white-space:pre'>"
                   f"{esc(c)}</pre></details>" for t, c in snippets)
    return (f"<div class='nbserve-model' data-model='{esc(model.name)}' style='margin:6px 0'>"
            f"{title}{hint}{table}{code}</div>")


def _header_html(snap: Snapshot) -> str:
    esc = html.escape
    started = f" at {snap.started_at:%H:%M:%S}" if snap.started_at else ""
    ends = " &middot; ".join(
        f"{label} <code style='white-space:nowrap'>{esc(value)}</code>"
        for label, value in (("REST", snap.rest_url), ("gRPC", snap.grpc_target)) if value)
    head = (f"<div><b>nbserve</b> &middot; started from <code>{esc(snap.source)}</code>"
            f"{started} &middot; {ends or 'no endpoints'}</div>")
    if snap.phase == "replaced":
        head += (f"<div class='nbserve-replaced' style='color:#cf222e'><b>Replaced</b> by "
                 f"{esc(snap.replaced_by or 'another server')}; this one is stopped.</div>")
    elif snap.phase == "stopped":
        head += (f"<div class='nbserve-stopped' style='color:#6e7781'><b>Stopped</b> "
                 f"(seen at {snap.taken_at:%H:%M:%S}).</div>")
    return head


def snapshot_html(snap: Snapshot, live: bool = True) -> str:
    """The whole view as HTML; ``live=False`` adds "snapshot at HH:MM:SS" (it will not update)."""
    parts = [_header_html(snap)]
    if snap.phase == "running":
        if not snap.models:
            parts.append("<div><i>no models</i></div>")
        parts += [model_html(m, snap.traffic.get(m.name, ()), snap.snippets.get(m.name, ()))
                  for m in snap.models]
    if not live:
        parts.append(f"<div style='opacity:.6;font-size:85%'>snapshot at "
                     f"{snap.taken_at:%H:%M:%S}; display the server again for a live view</div>")
    return "<div class='nbserve-view'>" + "".join(parts) + "</div>"


def snapshot_text(snap: Snapshot) -> str:
    """Plain text of the same view (terminals, logs, ``repr``)."""
    started = f" at {snap.started_at:%H:%M:%S}" if snap.started_at else ""
    lines = [f"nbserve server started from {snap.source}{started} ({snap.phase})",
             f"  REST {snap.rest_url or 'off'}  gRPC {snap.grpc_target or 'off'}"]
    if snap.phase == "replaced":
        lines.append(f"  replaced by {snap.replaced_by}")
    for model in snap.models:
        words, _ = policy_words(model.policy)
        lines.append(f"  {model.name}: serves {words}")
        if model.hint:
            lines.append(f"    hint: {model.hint}")
        traffic = {t.version: t for t in snap.traffic.get(model.name, ())}
        looks = looks_of(model)
        if not model.versions:
            lines.append(f"    {model_waiting_look().text}")
        for v in model.versions:
            extra = "; ".join(x for x in (v.device or "", traffic_text(traffic.get(v.version)))
                              if x)
            lines.append(f"    {_version_label(model, v)}: {looks[v.version].text}"
                         + (f" ({extra})" if extra else ""))
    return "\n".join(lines)


def _ipython_display() -> Callable[..., Any]:
    """``IPython.display.display`` (imported on first use: ``import nbserve`` stays light)."""
    from IPython.display import display

    return display


class _Rendered:
    """A fixed HTML/text pair for ``display`` (what a display id is updated with)."""

    def __init__(self, html_text: str, text: str) -> None:
        self.html, self.text = html_text, text

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text


# -- the live view ---------------------------------------------------------------------------------
class Ticking(Protocol):
    """What the ticker drives: anything with a cheap, thread-safe ``tick()``."""

    def tick(self) -> None: ...


class Ticker:
    """One daemon thread for every live view (display and panel): ``tick()`` each registered
    object once a second; objects are held weakly and dropped with ``discard``."""

    def __init__(self) -> None:
        self._views: weakref.WeakSet[Ticking] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def discard(self, view: Ticking) -> None:
        with self._lock:
            self._views.discard(view)

    def add(self, view: Ticking) -> None:
        with self._lock:
            self._views.add(view)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="nbserve-display",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(1.0)
            with self._lock:
                views = list(self._views)
                if not views:
                    self._thread = None
                    return
            for view in views:
                try:
                    view.tick()
                except Exception:  # noqa: BLE001 - one broken view must not stop the others
                    pass


ticker = Ticker()


class ServerView:
    """The live view of one server (see the module docstring). Thread-safe.

    ``display`` defaults to ``IPython.display.display``; ``_ipython_display_`` calls it once
    with ``display_id=True`` and then updates that display: on the server's state events
    (coalesced to one render per ``min_interval``) and every second while traffic shows.
    Renders happen outside any lock the server holds; a failing render is skipped, never raised
    into the server's threads.
    """

    def __init__(self, server: Server, *, display: Callable[..., Any] | None = None,
                 min_interval: float = 0.25) -> None:
        self.server = server
        self._display = display
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._cache: dict[Any, Any] = {}
        self._handle: Any = None
        self._last_html = ""
        self._unsubscribe: Callable[[], None] | None = None
        self.closed = False
        self.updates = 0

    def snapshot(self) -> Snapshot:
        return snapshot_of(self.server, self._cache)

    def _repr_html_(self) -> str:
        return snapshot_html(self.snapshot(), live=False)

    def __repr__(self) -> str:
        return snapshot_text(self.snapshot())

    def _ipython_display_(self) -> None:
        self.show()

    def show(self) -> Any:
        """Display now and follow the server; returns the display handle."""
        display = self._display or _ipython_display()
        snap = self.snapshot()
        self._last_html = snapshot_html(snap)
        self._handle = display(_Rendered(self._last_html, snapshot_text(snap)), display_id=True)
        if snap.phase == "running":
            self._unsubscribe = self.server.subscribe(self.on_event)
            ticker.add(self)
        else:
            self.closed = True
        return self._handle

    def on_event(self, event: Any = None) -> None:
        """Schedule a refresh (bursts coalesce); cheap, callable from any thread."""
        with self._lock:
            if self._unsubscribe is None or self._timer is not None:
                return
            self._timer = threading.Timer(self._min_interval, self.refresh)
            self._timer.daemon = True
            self._timer.start()

    def tick(self) -> None:
        """The once-a-second refresh (the traffic numbers move; states may too)."""
        if not self.closed:
            self.refresh()

    def refresh(self) -> None:
        """Re-render now (only pushes when the HTML changed). A stopped server's view stops
        ticking but still listens: ``serve`` stops a server before it marks it REPLACED, and the
        view must then say by which server. Once replaced, it stops following."""
        with self._lock:
            self._timer = None
        try:
            snap = self.snapshot()
        except Exception:  # noqa: BLE001 - a display must never break the server's threads
            return
        page = snapshot_html(snap)
        if page != self._last_html and self._handle is not None:
            self._last_html = page
            self._handle.update(_Rendered(page, snapshot_text(snap)))
            self.updates += 1
        if snap.phase == "replaced":
            self.close()
        elif snap.phase == "stopped":
            ticker.discard(self)  # no more traffic; still listening for a REPLACED event

    def close(self) -> None:
        """Stop following (idempotent); the display keeps its last content."""
        with self._lock:
            if self.closed and self._unsubscribe is None:
                return
            self.closed = True
            timer, self._timer = self._timer, None
            unsubscribe, self._unsubscribe = self._unsubscribe, None
        if timer is not None:
            timer.cancel()
        if unsubscribe is not None:
            unsubscribe()
        ticker.discard(self)


def server_view(server: Server, *, display: Callable[..., Any] | None = None) -> ServerView:
    """The one view of ``server``: ``display(server_view(srv))`` shows it live."""
    return ServerView(server, display=display)


class StatusView:
    """``%tfserve status``: a live view of each server of this kernel (or a line saying none)."""

    def __init__(self, servers: Iterable[Server], *,
                 display: Callable[..., Any] | None = None) -> None:
        self.views = [ServerView(s, display=display) for s in servers]

    def _ipython_display_(self) -> None:
        if not self.views:
            _ipython_display()(_Rendered("<p>No nbserve server is running in this kernel.</p>",
                           "No nbserve server is running in this kernel."))
        for view in self.views:
            view.show()

    def _repr_html_(self) -> str:
        if not self.views:
            return "<p>No nbserve server is running in this kernel.</p>"
        return "<hr>".join(v._repr_html_() for v in self.views)

    def __repr__(self) -> str:
        if not self.views:
            return "No nbserve server is running in this kernel."
        return "\n\n".join(repr(v) for v in self.views)


def status_view(servers: Iterable[Server], *,
                display: Callable[..., Any] | None = None) -> StatusView:
    """What ``%tfserve status`` returns: the same live views as ``server_view``."""
    return StatusView(servers, display=display)
