"""The one vocabulary of nbserve's notebook surfaces: state words, colours and policy phrases.

The live display (``nbserve.display``), the widget panel (``nbserve.widgets``) and the JupyterLab
sidebar (through ``nbserve.labapi``'s JSON) all describe a version with :func:`version_look` and
a version policy with :func:`policy_words`, so a state reads and looks the same everywhere.

TF Serving's state names (START, LOADING, AVAILABLE, UNLOADING, END) stay the badge text; plain
words say what the state means for *this* version ("unloaded (replaced by 2)", "failed: <error>").
Every function here is pure: plain values in, plain values out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

__all__ = ["COLOURS", "STATES", "Look", "look_json", "model_waiting_look", "policy_words",
           "version_look", "why_disabled"]

STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")

# kind -> colour: one table for every surface (HTML, widgets, the sidebar's JSON)
COLOURS: Mapping[str, str] = {
    "available": "#1a7f37",   # green: serving requests
    "loading": "#9a6700",     # amber: on its way (START, LOADING)
    "unloading": "#9a6700",   # amber: on its way out
    "unloaded": "#6e7781",    # grey: END without an error
    "failed": "#cf222e",      # red: END with an error
    "waiting": "#9a6700",     # amber: a model with no version yet
    "not-loaded": "#6e7781",  # grey: on disk, outside the version policy
}


@dataclass(frozen=True)
class Look:
    """How one version (or a model with no version) is shown.

    ``kind`` is the CSS class suffix (``nbserve-kind-<kind>``) and the key of ``COLOURS``;
    ``badge`` is TF Serving's state name (or a short plain word when there is no state);
    ``words`` is the plain-language meaning; ``title`` a tooltip with the TF Serving term.
    """

    kind: str
    badge: str
    words: str
    colour: str
    title: str

    @property
    def css_class(self) -> str:
        return f"nbserve-kind-{self.kind}"

    @property
    def text(self) -> str:
        """``"END · unloaded (replaced by 2)"``: the badge and its words on one line."""
        return f"{self.badge} \u00b7 {self.words}" if self.words else self.badge


def _look(kind: str, badge: str, words: str, title: str) -> Look:
    return Look(kind, badge, words, COLOURS[kind], title)


def version_look(state: str, error: str | None = None, *, version: int | None = None,
                 newer_available: Iterable[int] = ()) -> Look:
    """The look of a version in ``state`` (TF Serving's name).

    ``error``: the version's load error (an END with an error is "failed: <error>");
    ``newer_available``: AVAILABLE versions of the same model, so an END version says which
    one replaced it. Unknown state names are shown as they are, grey.
    """
    state = (state or "").upper()
    if state == "AVAILABLE":
        return _look("available", state, "serving", "AVAILABLE: loaded and answering requests")
    if state == "START":
        return _look("loading", state, "about to load", "START: the manager will load it")
    if state == "LOADING":
        return _look("loading", state, "loading", "LOADING: the model is being loaded")
    if state == "UNLOADING":
        return _look("unloading", state, "unloading",
                     "UNLOADING: finishing in-flight requests, then freed")
    if state == "END":
        if error:
            return _look("failed", state, f"failed: {error}", f"END with an error: {error}")
        newer = sorted((v for v in newer_available if version is None or v > version),
                       reverse=True)
        words = f"unloaded (replaced by {newer[0]})" if newer else "unloaded"
        return _look("unloaded", state, words, "END: unloaded; no longer serving")
    if state == "NOT LOADED":
        return _look("not-loaded", "not loaded", "on disk, outside the version policy",
                     "Found on disk; the version policy does not select it")
    return Look("unloaded", state or "?", "", COLOURS["unloaded"], state)


def model_waiting_look(hint: str | None = None) -> Look:
    """A model with no version yet: "waiting", with the known cause (a hint) if any."""
    words = hint or "no version folder yet"
    return _look("waiting", "waiting", words,
                 "No numbered version folder has been found in the base path yet")


def look_json(look: Look) -> dict[str, str]:
    """The look as JSON for the lab extension (kind, badge, words, colour, title, css_class)."""
    return {**asdict(look), "css_class": look.css_class}


def _versions_text(versions: Sequence[int]) -> str:
    names = [str(v) for v in versions]
    if len(names) == 1:
        return f"version {names[0]}"
    return "versions " + ", ".join(names[:-1]) + f" and {names[-1]}"


def policy_words(policy: str) -> tuple[str, str]:
    """(plain words, TF Serving term) for a policy string as ``ModelStatus.policy`` gives it.

    ``"latest 1"`` -> ``("the newest version", "model_version_policy { latest { num_versions:
    1 } }")``; ``"latest 2"`` -> "the 2 newest versions"; ``"all"`` -> "every version";
    ``"specific 1,2"`` -> "versions 1 and 2". Anything else is shown as it is.
    """
    kind, _, rest = (policy or "").strip().partition(" ")
    if kind == "latest":
        n = int(rest) if rest.strip().isdigit() else 1
        words = "the newest version" if n == 1 else f"the {n} newest versions"
        return words, f"model_version_policy {{ latest {{ num_versions: {n} }} }}"
    if kind == "all":
        return "every version", "model_version_policy { all {} }"
    if kind == "specific":
        versions = [int(v) for v in rest.replace(" ", "").split(",") if v.isdigit()]
        term = " ".join(f"versions: {v}" for v in versions)
        return (_versions_text(versions) if versions else "no version",
                f"model_version_policy {{ specific {{ {term} }} }}")
    return policy, policy


def why_disabled(action: str, state: str, *, loaded_count: int, on_disk: bool = True) -> str:
    """Why a ``load`` / ``unload`` button of a version in ``state`` is disabled ("" = enabled).

    ``loaded_count``: how many versions of the model are loaded or loading (the panel never
    unloads the last one: stop the server for that).
    """
    state = state.upper()
    if action == "load":
        if state in ("START", "LOADING"):
            return "already loading"
        if state == "AVAILABLE":
            return "already loaded"
        if state == "UNLOADING":
            return "still unloading; load it again once it is unloaded"
        if not on_disk:
            return "its folder is no longer on disk"
        return ""
    if action == "unload":
        if state not in ("START", "LOADING", "AVAILABLE"):
            return "not loaded"
        if loaded_count < 2:
            return "the only loaded version: load another one first, or stop the server"
        return ""
    raise ValueError(f"unknown action {action!r}")
