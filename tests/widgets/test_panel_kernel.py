"""The widget panel in a real ipykernel (jupyter_client), driven as a front end drives it.

The test process plays the front end: it displays the panel in the kernel, then changes the
picker and clicks Stop by sending the widget comm messages a browser would send
(``update`` of the Dropdown's ``index``, the Button's ``click`` event). What the server does is
checked from the test process through REST. Every wait is bounded.
"""

from __future__ import annotations

import pytest

from tests.kernels import Kernel
from tests.widgets.helpers import port_closed, rest_predict, rest_states, wait_for

pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

pytestmark = pytest.mark.tfs_testdata

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def kernel(tmp_path):
    k = Kernel(str(tmp_path))
    try:
        yield k
    finally:
        k.close()


def test_panel_in_a_kernel_picks_versions_for_rest(kernel, two_versions):
    _, displays = kernel.run_with_displays(f"""
        import json
        import nbserve
        from IPython.display import display
        from nbserve.widgets import ServerPanel
        srv = nbserve.serve({str(two_versions)!r}, name="hp", port=0, rest_api_port=0,
                            max_num_load_retries=1, load_retry_interval_micros=0)
        panel = ServerPanel(srv)
        display(panel)
    """)
    assert any(WIDGET_VIEW in d for d in displays), displays  # a widget view, not text
    info = kernel.json("""
        view = panel.model_view("hp")
        print(json.dumps({"rest": srv.rest_port, "grpc": srv.grpc_port,
                          "picker": view.picker.model_id, "stop": panel.stop_button.model_id,
                          "options": [v for _, v in view.picker.options]}))
    """)
    port = info["rest"]
    wait_for(lambda: rest_states(port, "hp").get(2) == "AVAILABLE", 60, "v2 AVAILABLE")
    assert info["options"] == ["latest", "all", "version:2", "version:1"]

    # the front end picks "version 1": the Dropdown's index changes through its comm
    kernel.comm_msg(info["picker"], {"method": "update", "buffer_paths": [],
                                     "state": {"index": info["options"].index("version:1")}})
    wait_for(lambda: rest_states(port, "hp") == {1: "AVAILABLE", 2: "END"}, 60,
             "v1 serving and v2 END")
    assert rest_predict(port, "hp", [1.0, 2.0]).json() == {"predictions": [2.5, 3.0]}
    def shown():
        return kernel.json("""
            panel.refresh()
            print(json.dumps([view.picker.value, [[r.version, r.state] for r in view.rows]]))
        """)

    wait_for(lambda: shown() == ["version:1", [[2, "END"], [1, "AVAILABLE"]]], 60,
             "the panel to show v1 serving")

    # latest again (set from a cell this time): the newer version is back
    kernel.run("view.picker.value = 'latest'")
    wait_for(lambda: rest_states(port, "hp") == {1: "END", 2: "AVAILABLE"}, 60, "v2 back")
    assert rest_predict(port, "hp", [1.0, 2.0]).json() == {"predictions": [3.5, 4.0]}

    # the front end clicks Stop: the ports close and the panel shows the launcher
    kernel.comm_msg(info["stop"], {"method": "custom", "content": {"event": "click"}})
    wait_for(lambda: port_closed(port) and port_closed(info["grpc"]), 60, "ports closed")
    state = kernel.json("print(json.dumps([srv.running, panel.server is None, "
                        "panel.launcher.box in panel.children]))")
    assert state == [False, True, True]
