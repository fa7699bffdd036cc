"""nbserve.display: the pure snapshot -> HTML/text functions, the vocabulary they share, and the
live ServerView driven by a fake display over a real Server (FakeLoader: no TensorFlow)."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest

from nbserve import vocabulary as V
from nbserve.display import (
    ServerView,
    Snapshot,
    snapshot_html,
    snapshot_text,
    sparkline_svg,
    status_view,
    traffic_text,
)
from nbserve.status import ModelStatus, VersionStatus, VersionTraffic

HINT = ("Did you forget to name your leaf directory as a number (eg. '/1/')? A SavedModel sits "
        "directly in /x/export: use nbserve.export(model, 'export') or move it to export/1")


def model(name="half", versions=(), policy="latest 1", labels=None, hint=None):
    return ModelStatus(name=name, base_path=f"/x/{name}", versions=tuple(versions),
                       policy=policy, labels=labels or {}, hint=hint)


def traffic(version, requests, errors=0, per_second=None):
    return VersionTraffic(version, requests, errors, 1.25 if requests else None,
                          4.0 if requests else None,
                          per_second or tuple([0] * 59 + [requests]))


def snap(models=(), phase="running", **extra):
    return Snapshot(phase=phase, rest_url="http://127.0.0.1:8501", grpc_target="127.0.0.1:8500",
                    source="./export", started_at=datetime(2026, 1, 1, 19, 18, 31),
                    models=tuple(models), taken_at=datetime(2026, 1, 1, 19, 20, 0), **extra)


HALF = model(versions=[VersionStatus(3, "END", error="bad <proto> & more"),
                       VersionStatus(2, "AVAILABLE", "/device:CPU:0", 0.4567),
                       VersionStatus(1, "END", "/device:CPU:0", 0.1)],
             labels={"stable": 2})


# -- the vocabulary --------------------------------------------------------------------------------
def test_states_keep_tf_serving_names_and_add_plain_words():
    assert V.version_look("AVAILABLE").text == "AVAILABLE \u00b7 serving"
    replaced = V.version_look("END", version=1, newer_available=[2])
    assert replaced.text == "END \u00b7 unloaded (replaced by 2)" and replaced.kind == "unloaded"
    failed = V.version_look("END", "Could not load", version=3, newer_available=[2])
    assert failed.words == "failed: Could not load" and failed.colour == V.COLOURS["failed"]
    # an END version newer than every available one was not replaced by an older one
    assert V.version_look("END", version=3, newer_available=[2]).words == "unloaded"
    assert V.version_look("LOADING").colour == V.version_look("START").colour
    assert V.version_look("UNLOADING").kind == "unloading"
    assert {V.version_look(s).badge for s in V.STATES} == set(V.STATES)


def test_policy_words_are_plain_with_the_tf_serving_term_beside():
    assert V.policy_words("latest 1") == (
        "the newest version", "model_version_policy { latest { num_versions: 1 } }")
    assert V.policy_words("latest 2")[0] == "the 2 newest versions"
    assert V.policy_words("all") == ("every version", "model_version_policy { all {} }")
    assert V.policy_words("specific 1,2") == (
        "versions 1 and 2", "model_version_policy { specific { versions: 1 versions: 2 } }")
    assert V.policy_words("specific 3")[0] == "version 3"


def test_disabled_buttons_say_why():
    assert V.why_disabled("load", "AVAILABLE", loaded_count=1) == "already loaded"
    assert V.why_disabled("load", "END", loaded_count=1) == ""
    assert "only loaded version" in V.why_disabled("unload", "AVAILABLE", loaded_count=1)
    assert V.why_disabled("unload", "AVAILABLE", loaded_count=2) == ""
    assert V.why_disabled("unload", "END", loaded_count=2) == "not loaded"
    with pytest.raises(ValueError):
        V.why_disabled("explode", "END", loaded_count=1)


# -- the pure view ---------------------------------------------------------------------------------
def test_html_uses_the_vocabulary_escapes_and_shows_labels_policy_and_traffic():
    page = snapshot_html(snap([HALF], traffic={"half": (traffic(2, 12, 1),)}))
    assert "bad &lt;proto&gt; &amp; more" in page and "<proto>" not in page
    assert "failed: bad" in page and V.COLOURS["failed"] in page
    assert "unloaded (replaced by 2)" in page and V.COLOURS["available"] in page
    assert "2 (stable)" in page and "/device:CPU:0" in page and "0.46 s" in page
    assert "the newest version" in page and "num_versions: 1" in page  # words + tooltip term
    assert "12 req, 1 err, p50 1.2 ms, p99 4.0 ms" in page and "<svg" in page
    assert "started from <code>./export</code> at 19:18:31" in page
    assert "snapshot" not in page  # the live form does not call itself a snapshot
    assert "snapshot at 19:20:00" in snapshot_html(snap([HALF]), live=False)


def test_hint_and_waiting_model_are_shown():
    page = snapshot_html(snap([model("flat", hint=HINT)]))
    assert "nbserve-hint" in page and "leaf directory as a number" in page
    assert "nbserve.export(model, &#x27;export&#x27;)" in page
    text = snapshot_text(snap([model("flat", hint=HINT)]))
    assert "hint: Did you forget" in text and "waiting" in text


def test_replaced_and_stopped_servers_say_so():
    page = snapshot_html(snap(phase="replaced", replaced_by="the server started from ./export "
                                                            "at 19:19:00 (REST http://h:1)"))
    assert "Replaced" in page and "19:19:00" in page and "this one is stopped" in page
    assert "Stopped" in snapshot_html(snap(phase="stopped"))
    assert "replaced by the server" in snapshot_text(snap(phase="replaced", replaced_by="the "
                                                          "server started from ./e"))


def test_text_form_lists_versions_with_the_same_words():
    lines = snapshot_text(snap([HALF], traffic={"half": (traffic(2, 3),)})).splitlines()
    assert lines[0] == "nbserve server started from ./export at 19:18:31 (running)"
    assert "    2 (stable): AVAILABLE \u00b7 serving (/device:CPU:0; 3 req, p50 1.2 ms, " \
           "p99 4.0 ms)" in lines
    assert "    1: END \u00b7 unloaded (replaced by 2) (/device:CPU:0)" in lines


def test_sparkline_and_traffic_text():
    svg = sparkline_svg([0, 1, 4, 2])
    assert svg.startswith("<svg") and "7 requests in the last 4 s (peak 4/s)" in svg
    assert sparkline_svg([]).count("polyline") == 1
    assert traffic_text(None) == "" and traffic_text(traffic(1, 0)) == ""


def test_snippets_are_collapsible_per_model():
    page = snapshot_html(snap([HALF], snippets={"half": (("curl", "curl -d '{}' x"),)}))
    assert "<details><summary>curl</summary>" in page and "curl -d &#x27;{}&#x27; x" in page


# -- the live view over a real server --------------------------------------------------------------
class FakeHandle:
    def __init__(self):
        self.shown = []
        self.changed = threading.Event()

    def update(self, obj):
        self.shown.append(obj)
        self.changed.set()


def test_server_view_is_live_and_closes_when_stopped(start_server, tmp_path):
    from nbserve.options import ModelConfig
    from nbserve.testing import FakeLoader

    (tmp_path / "live" / "1").mkdir(parents=True)
    server = start_server([ModelConfig("live", str(tmp_path / "live"))],
                          loader_factory=lambda sid, path: FakeLoader())
    server.wait_for("live", timeout=20)
    handle = FakeHandle()
    displayed = []

    def display(obj, display_id=False):
        displayed.append((obj, display_id))
        return handle

    view = ServerView(server, display=display)
    view.show()
    [(first, display_id)] = displayed
    assert display_id is True and "AVAILABLE" in first._repr_html_()
    assert "live" in repr(first)
    server.stop()
    assert handle.changed.wait(10)
    assert "Stopped" in handle.shown[-1]._repr_html_()
    assert "snapshot at" in view._repr_html_()


@pytest.mark.tfs_testdata
def test_a_replaced_servers_view_says_by_which_server(tfs_testdata, capsys):
    import nbserve

    base = str(tfs_testdata / "saved_model_half_plus_two_cpu")
    old = nbserve.serve(base, name="half", port=None, rest_api_port=0)
    new = None
    try:
        handle = FakeHandle()
        view = ServerView(old, display=lambda obj, display_id=False: handle)
        view.show()
        new = nbserve.serve(base, name="half", port=None, rest_api_port=0, replace=[old])
        assert "Replaced the server started from" in capsys.readouterr().out
        deadline = time.monotonic() + 20
        while not view.closed:  # the view closes itself once it has shown the replacement
            assert time.monotonic() < deadline, [repr(s) for s in handle.shown]
            time.sleep(0.05)
        page = handle.shown[-1]._repr_html_()
        assert "Replaced" in page and new.rest_url in page and "this one is stopped" in page
        assert old.replaced_by is new
    finally:
        old.stop()
        if new is not None:
            new.stop()


def test_status_view_without_servers():
    empty = status_view([])
    assert repr(empty) == "No nbserve server is running in this kernel."
    assert "No nbserve server" in empty._repr_html_()


@pytest.mark.parametrize("state,error", [("START", None), ("LOADING", None), ("AVAILABLE", None),
                                         ("UNLOADING", None), ("END", None), ("END", "bad")])
def test_display_panel_and_sidebar_say_and_colour_a_state_alike(state, error):
    """One vocabulary: the live display, the panel's table and the sidebar's JSON (labapi)."""
    pytest.importorskip("jupyter_server")
    from nbserve import labapi
    from nbserve.widgets import rows as R

    versions = [VersionStatus(3, state, error=error), VersionStatus(4, "AVAILABLE")]
    look = V.version_look(state, error, version=3, newer_available=[4])
    page = snapshot_html(snap([model(versions=versions)]))
    table = R.rows_html(R.version_rows(model(versions=versions)))
    [listed] = labapi.with_looks([{"name": "half", "model_version_status": [
        {"version": "3", "state": state, "status": {"error_message": error or ""}},
        {"version": "4", "state": "AVAILABLE", "status": {}}]}])
    sidebar = listed["model_version_status"][0]["look"]
    assert sidebar == V.look_json(look)
    for html_text in (page, table):
        assert f"background:{look.colour}" in html_text and look.css_class in html_text
        assert f">{look.badge}</span>" in html_text and look.words in html_text


PUBLIC = ("nbserve", "nbserve.server", "nbserve.status", "nbserve.errors", "nbserve.logs",
          "nbserve.snippets", "nbserve.vocabulary", "nbserve.discovery", "nbserve.display",
          "nbserve.widgets")


def test_the_views_import_only_the_public_api():
    """display, widgets, labapi, discovery and vocabulary stand on the facade (PROTOCOL item 5):
    no import of the lifecycle, the service, the codecs or the options."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "nbserve"
    files = [root / "display.py", root / "labapi.py", root / "discovery.py",
             root / "vocabulary.py", *sorted((root / "widgets").glob("*.py"))]
    bad = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for name in names:
                if name.startswith("nbserve") and not any(
                        name == p or name.startswith("nbserve.widgets.") for p in PUBLIC):
                    bad.append(f"{path.name} imports {name}")
    assert bad == []
