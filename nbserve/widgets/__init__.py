"""nbserve's ipywidgets panel: ``ServerPanel(server=None)`` (live states and traffic, version
picker, load/unload, labels, request builder, compare; or a launcher), and the pure state -> view
functions behind it (``nbserve.widgets.rows``, ``nbserve.widgets.builder``).

``rows`` and ``builder`` need no ipywidgets; ``ServerPanel`` imports ipywidgets on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbserve.widgets.rows import VersionRow, rows_html, rows_text, version_rows

__all__ = ["Launcher", "ModelView", "ServerPanel", "VersionRow", "rows_html", "rows_text",
           "version_rows"]

if TYPE_CHECKING:  # pragma: no cover
    from nbserve.widgets.panel import ServerPanel
    from nbserve.widgets.parts import Launcher, ModelView


def __getattr__(name: str) -> Any:
    if name in ("ServerPanel", "ModelView", "Launcher"):
        from nbserve.widgets import panel, parts

        return getattr(panel if name == "ServerPanel" else parts, name)
    raise AttributeError(f"module 'nbserve.widgets' has no attribute {name!r}")
