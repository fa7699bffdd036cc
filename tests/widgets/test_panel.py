"""The widget panel with real ipywidgets objects over a real Server (no kernel needed).

Widgets are driven the way a front end would: the picker's ``value`` is set, buttons are
``click()``ed; every assertion about serving goes through the server's REST API.
"""

from __future__ import annotations

import re
import threading

import pytest

from nbserve import vocabulary as V
from nbserve.options import ModelConfig
from nbserve.widgets import ServerPanel
from tests.widgets.helpers import port_closed, rest_predict, rest_states, wait_for

pytestmark = pytest.mark.tfs_testdata

FAST = dict(grpc_port=0, max_num_load_retries=1, load_retry_interval_micros=0,
            file_system_poll_wait_seconds=0.2)


def serving(port, name, version, others_end=True):
    """REST status shows ``version`` AVAILABLE (and every other version END)."""
    states = rest_states(port, name)
    return states.get(version) == "AVAILABLE" and (
        not others_end or all(s == "END" for v, s in states.items() if v != version))


def settled(panel, name, states):
    """The panel's table shows exactly ``states`` ({version: state})."""
    panel.refresh()
    return {r.version: r.state for r in panel.model_view(name).rows} == states


def test_picker_buttons_and_labels_drive_the_server(two_versions, start_server):
    srv = start_server([ModelConfig("hp", str(two_versions), version_labels={"stable": 1})],
                       **FAST)
    port = srv.rest_port
    panel = ServerPanel(srv)
    assert panel.server is srv and panel.models == ["hp"]
    view = panel.model_view("hp")
    wait_for(lambda: serving(port, "hp", 2, others_end=False), what="v2 AVAILABLE")
    # live: the state events reach the table without an explicit refresh
    wait_for(lambda: [(r.version, r.state) for r in view.rows] == [(2, "AVAILABLE"),
                                                                    (1, "NOT LOADED")],
             what="the table to show v2 AVAILABLE")
    assert dict(view.picker.options) == {
        "the newest version": "latest", "every version": "all", "version 2": "version:2",
        "version 1": "version:1", "label stable \u2192 version 1": "label:stable"}
    assert view.picker.value == "latest"
    assert "num_versions: 1" in view.picker.tooltip and "newest version" in view.title.value
    # a disabled button says why
    assert view.load_buttons[2].disabled and view.load_buttons[2].tooltip == \
        "disabled: already loaded"
    assert view.unload_buttons[2].disabled and "only loaded version" in \
        view.unload_buttons[2].tooltip

    # pick the older version: the lifecycle serves it, REST status and predictions show it
    view.picker.value = "version:1"
    wait_for(lambda: serving(port, "hp", 1), what="v1 AVAILABLE and v2 END")
    assert rest_predict(port, "hp", [1.0, 2.0]).json() == {"predictions": [2.5, 3.0]}
    wait_for(lambda: settled(panel, "hp", {1: "AVAILABLE", 2: "END"}), what="table follows")
    assert view.picker.value == "version:1"
    assert [r.version for r in view.rows if r.serving] == [1]
    assert V.version_look("AVAILABLE").colour in view.table.value

    # load v2 beside v1, then unload it again
    assert view.load_buttons[1].disabled and not view.load_buttons[2].disabled
    view.load_buttons[2].click()
    wait_for(lambda: rest_states(port, "hp") == {1: "AVAILABLE", 2: "AVAILABLE"},
             what="both AVAILABLE")
    wait_for(lambda: settled(panel, "hp", {1: "AVAILABLE", 2: "AVAILABLE"}), what="both shown")
    assert view.picker.value == "custom"
    assert not view.unload_buttons[1].disabled and not view.unload_buttons[2].disabled

    # compare the two loaded versions on the builder's inputs
    view.fields["x"].value = "[1.0, 2.0]"
    view.compare_a.value, view.compare_b.value = 1, 2
    view.compare_button.click()
    assert view.comparison is not None and view.comparison.max_abs_diff == {"y": 1.0}
    assert "version 1" in view.compare_output.value and "[2.5, 3.0]" in \
        view.compare_output.value

    view.unload_buttons[2].click()
    wait_for(lambda: serving(port, "hp", 1), what="v2 unloaded again")
    wait_for(lambda: settled(panel, "hp", {1: "AVAILABLE", 2: "END"}), what="v2 END shown")
    assert "unloaded" in view.table.value

    # a label: set canary -> 2; the picker offers it; picking it serves v2
    view.label_name.value, view.label_version.value = "canary", 2
    view.label_button.click()
    wait_for(lambda: ("label canary \u2192 version 2", "label:canary") in view.picker.options,
             what="the new label in the picker")
    view.picker.value = "label:canary"
    wait_for(lambda: serving(port, "hp", 2), what="the label's version")
    wait_for(lambda: settled(panel, "hp", {1: "END", 2: "AVAILABLE"}), what="v2 shown")
    assert view.picker.value == "label:canary"
    view.picker.value = "latest"
    wait_for(lambda: serving(port, "hp", 2), what="latest serves v2")

    # Stop: server stopped, both ports closed, the launcher is back and prefilled
    ports = [srv.rest_port, srv.grpc_port]
    panel.stop_button.click()
    assert not srv.running and panel.server is None
    assert all(port_closed(p) for p in ports)
    assert panel.launcher.box in panel.children
    assert panel.launcher.name.value == "hp"


def test_request_builder_sends_rest_and_grpc_and_shows_the_code(two_versions, start_server):
    srv = start_server([ModelConfig("hp", str(two_versions))], **FAST)
    srv.wait_for("hp", 2, timeout=60)
    panel = ServerPanel(srv)
    view = wait_for(lambda: panel.model_view("hp").fields and panel.model_view("hp"),
                    what="the builder's fields")
    assert list(view.fields) == ["x"]
    assert "float32" in view.fields_box.children[0].children[0].value
    view.fields["x"].value = "[1.0, 2.0]"
    for protocol in ("REST", "gRPC"):
        view.protocol.value = protocol
        view.send_button.click()
        assert view.result_ok, view.result_text
        # half_plus_three: [1, 2] -> [3.5, 4] (REST prints JSON, gRPC numpy arrays)
        assert re.search(r"3\.5,? +4\.", view.result_text), view.result_text
    # "copy as": the exact code of that request
    for choice, needle in (("curl", "curl"), ("requests", "requests.post"),
                           ("gRPC", "PredictRequest")):
        view.copy_as.value = choice
        assert needle in view.code.value and "1.0, 2.0" in view.code.value
    # a bad field: the request is not sent, the error names the field
    view.fields["x"].value = "[1.0,"
    view.send_button.click()
    assert view.result_ok is False and "input 'x'" in view.result_text
    # the requests sent show as traffic, with a sparkline
    wait_for(lambda: settled_traffic(panel), what="traffic in the table")
    assert "<svg" in view.table.value


def settled_traffic(panel):
    panel.refresh()
    row = next(r for r in panel.model_view("hp").rows if r.version == 2)
    return row.traffic.startswith("2 req") or row.traffic.startswith("3 req")


def test_launcher_starts_and_stops_a_server(two_versions):
    panel = ServerPanel(attach_running=False,
                        serve_options=dict(max_num_load_retries=1, load_retry_interval_micros=0))
    assert panel.server is None and panel.launcher.box in panel.children
    form = panel.launcher

    # errors are shown under the form, nothing starts
    form.path.value = str(two_versions / "missing")
    form.start_button.click()
    assert panel.server is None and "does not exist" in form.message.value
    form.path.value = str(two_versions)
    form.rest_port.value = "http"
    form.start_button.click()
    assert panel.server is None and "REST port" in form.message.value

    form.name.value = "launched"
    form.rest_port.value = "0"
    form.grpc_port.value = "0"
    form.device.value = "cpu"
    form.start_button.click()
    srv = panel.server
    try:
        assert srv is not None and srv.running and form.message.value == ""
        assert panel.models == ["launched"] and panel.launcher.box not in panel.children
        wait_for(lambda: serving(srv.rest_port, "launched", 2, others_end=False),
                 what="the launched server to serve")
        wait_for(lambda: any(r.state == "AVAILABLE" for r in panel.model_view("launched").rows),
                 what="the panel to show it")
        # ServerPanel() with no argument attaches to this process's newest running server
        other = ServerPanel()
        assert other.server is srv
        other.close()
    finally:
        ports = [srv.rest_port, srv.grpc_port] if srv else []
        panel.stop_button.click()
    assert srv is not None and not srv.running
    assert all(port_closed(p) for p in ports)
    assert panel.server is None and panel.launcher.box in panel.children


def test_events_from_many_threads_are_coalesced(two_versions, start_server):
    srv = start_server([ModelConfig("hp", str(two_versions))], **FAST)
    panel = ServerPanel(srv, throttle_seconds=0.2)
    wait_for(lambda: any(r.state == "AVAILABLE" for r in panel.model_view("hp").rows),
             what="hp AVAILABLE in the panel")
    before = panel.refresh_count
    errors = []

    def storm():
        try:
            for _ in range(50):
                panel._on_event(None)  # what Server.subscribe delivers, from many threads
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=storm) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    wait_for(lambda: panel.refresh_count > before, what="a refresh")
    assert panel.refresh_count - before < 20  # coalesced, not one refresh per event

    # a server stopped elsewhere sends the panel back to the launcher
    srv.stop()
    panel.refresh()
    assert panel.server is None and "stopped" in panel.launcher.message.value
