"""The notebook console and the "Model servers" sidebar in a real browser: headless Debian
Chromium driven by Python Playwright (no browser download), against a real ``jupyter lab`` with a
token and a hub-style base_url, loading this checkout's lab extension build.

- ``test_console_in_a_notebook``: a notebook opened in the lab; its start cell has no TensorFlow
  log line; the flat-export hint shows in the live display, and goes once a version exists; the
  panel's request builder sends a request that succeeds on a ``(None, 3)`` Keras model (REST and
  gRPC); traffic numbers move; the sidebar lists the server under the notebook's name.
- ``test_sidebar_lists_kernel_servers_live``: a server in a bare kernel shows with its versions,
  a new version appears without reload, the copy button works, a stopped server disappears.

Screenshots are kept under ``test-artifacts/`` (``NBSERVE_ARTIFACTS`` to change it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re

import pytest

from .conftest import LOCAL_BUILD, REPO, Kernel

CHROMIUM = os.environ.get("NBSERVE_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]
PANEL = "#nbserve-model-servers"
MODEL = "half_plus_two_lab"
ARTIFACTS = pathlib.Path(os.environ.get("NBSERVE_ARTIFACTS", REPO / "test-artifacts"))
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} |tensorflow/|oneDNN|cuda|XLA|MLIR|rendezvous", re.M)

pytestmark = pytest.mark.timeout(420)


def lab_extension_installed() -> bool:
    from jupyter_core.paths import jupyter_path

    return (LOCAL_BUILD / "package.json").is_file() or any(
        os.path.isfile(os.path.join(d, "nbserve-labextension", "package.json"))
        for d in jupyter_path("labextensions"))


@pytest.fixture(scope="module")
def browser_prerequisites():
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's chromium with apt; "
                    "set NBSERVE_CHROMIUM to use another)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("Python playwright is not installed (pip install -e '.[dev]')")
    if not lab_extension_installed():
        pytest.skip("the nbserve JupyterLab extension is not built: `cd labextension && npm "
                    "install && npm run build:prod` (or `pip install -e .` with Node.js/npm)")


@pytest.fixture
def kernel(lab, browser_prerequisites):
    k = Kernel(lab)
    yield k
    k.close()


@pytest.fixture
def page(lab, tmp_path, browser_prerequisites):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=FLAGS, viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(30_000)
        p = context.pages[0] if context.pages else context.new_page()
        p.errors = []  # type: ignore[attr-defined]
        p.on("pageerror", lambda exc: p.errors.append(str(exc)))  # type: ignore[attr-defined]
        try:
            yield p
        finally:
            context.close()


def shot(page, name: str, locator=None) -> pathlib.Path:
    """A screenshot kept as a test artifact (of ``locator`` when given, else the page)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    (locator or page).screenshot(path=str(path))
    assert path.stat().st_size > 5_000
    return path


def open_sidebar(page):
    tab = page.locator('.jp-SideBar.jp-mod-left li[data-id="nbserve-model-servers"]')
    tab.wait_for(timeout=60_000)
    tab.click()


# -- the console in a notebook ---------------------------------------------------------------------
CELLS = [
    # 0: the commonest mistake: a SavedModel saved straight into the base path
    """import numpy as np, tensorflow as tf, keras, nbserve
inp = keras.Input(shape=(3,), name="feats")
model = keras.Model(inp, keras.layers.Dense(1, name="score")(inp))
tf.saved_model.save(model, "flat")""",
    # 1: start: the live display shows the hint
    """%load_ext nbserve
srv = %tfserve start ./flat --port 0 --rest_api_port 0""",
    # 2: the server displayed again: live too, never a stale second table
    "srv",
    # 3: the fix: a numbered version
    """nbserve.export(model, "flat")
srv.wait_for("flat", timeout=120)""",
    # 4: the panel
    """from nbserve.widgets import ServerPanel
panel = ServerPanel(srv)
panel""",
    # 5: traffic in the background
    """import threading, time, json, urllib.request
def load(n=300):
    for _ in range(n):
        body = json.dumps({"instances": [[1.0, 2.0, 3.0]]}).encode()
        urllib.request.urlopen(urllib.request.Request(
            srv.rest_url + "/v1/models/flat:predict", data=body), timeout=10).read()
        time.sleep(0.05)
threading.Thread(target=load, daemon=True).start()""",
]


def write_notebook(path: pathlib.Path) -> None:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {},
              "outputs": [], "source": src} for i, src in enumerate(CELLS)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "cells": cells, "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}}}))


def run_cell(page, index: int, timeout: float = 180_000):
    """Select cell ``index``, run it (Shift+Enter), wait until its prompt shows a number."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    prompt = cell.locator(".jp-InputArea-prompt")
    page.wait_for_function(
        "(el) => /\\[\\d+\\]/.test(el.textContent)", arg=prompt.element_handle(),
        timeout=timeout)
    return cell


@pytest.fixture
def notebook_kernels(lab):
    """Shuts down the kernels of the notebooks a test opened (their servers with them)."""
    yield
    _, sessions = lab.request("api/sessions")
    for session in sessions or []:
        lab.request(f"api/sessions/{session['id']}", method="DELETE")


def test_console_in_a_notebook(lab, page, browser_prerequisites, notebook_kernels):
    write_notebook(lab.root_dir / "work" / "console.ipynb")
    page.goto(f"{lab.url}lab/tree/work/console.ipynb?reset&token={lab.token}")
    page.locator(".jp-Notebook .jp-Cell").nth(len(CELLS) - 1).wait_for(timeout=60_000)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(
        timeout=90_000)

    run_cell(page, 0)
    start = run_cell(page, 1)
    view = start.locator(".nbserve-view")
    view.wait_for()
    outputs = start.locator(".jp-OutputArea").inner_text()
    assert not TF_LOG_LINE.search(outputs), outputs  # no TensorFlow log line in the start cell
    hint = view.locator(".nbserve-hint")
    hint.wait_for(timeout=30_000)
    assert "leaf directory as a number" in hint.inner_text()
    assert "nbserve.export" in hint.inner_text()
    assert start.locator(".nbserve-view").count() == 1  # one view per display
    shot(page, "01-flat-export-hint", start)
    again = run_cell(page, 2).locator(".nbserve-view")
    again.locator(".nbserve-hint").wait_for()
    assert "snapshot" not in again.inner_text()  # live, not a snapshot

    run_cell(page, 3)
    for shown in (view, again):  # both displays follow the server
        shown.locator("tr[data-version='1'][data-state='AVAILABLE']").wait_for(timeout=60_000)
        shown.locator(".nbserve-hint").wait_for(state="detached", timeout=30_000)
    shot(page, "02-version-1-available", start)

    panel_cell = run_cell(page, 4)
    send = panel_cell.get_by_role("button", name="Send")
    send.wait_for(timeout=60_000)
    panel_cell.locator("textarea").first.wait_for()
    assert "feats" in panel_cell.inner_text() and "float32 shape (-1, 3)" in \
        panel_cell.inner_text()
    send.click()
    answer = panel_cell.locator(".nbserve-answer")
    answer.wait_for(timeout=30_000)
    page.wait_for_function("(el) => el.textContent.trim().length > 0",
                           arg=answer.element_handle())
    assert re.search(r"\[\[-?\d", answer.inner_text()), answer.inner_text()  # one row, 1 score
    assert "failed" not in panel_cell.locator(".nbserve-answer").locator("xpath=..").inner_text()
    panel_cell.get_by_role("button", name="gRPC").first.click()  # the protocol toggle
    send.click()
    panel_cell.get_by_text("answer (grpc)").wait_for(timeout=60_000)
    assert re.search(r"\[\[-?\d", answer.inner_text()), answer.inner_text()
    panel_cell.get_by_role("button", name="curl").click()
    panel_cell.locator("pre", has_text="curl").first.wait_for()
    shot(page, "03-request-builder", panel_cell)

    run_cell(page, 5)
    row = view.locator("tr[data-version='1']")
    # the live display re-renders: query the row afresh on every poll
    requests_now = """(above) => {
        const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[1];
        const row = cell && cell.querySelector(".nbserve-view tr[data-version='1']");
        const m = row && /(\\d+) req/.exec(row.textContent);
        return m !== null && m !== undefined && +m[1] > above;
    }"""
    page.wait_for_function(requests_now, arg=0, timeout=30_000)
    first = int(re.search(r"(\d+) req", row.inner_text()).group(1))
    page.wait_for_function(requests_now, arg=first, timeout=30_000)  # and it keeps moving
    assert row.locator("svg.nbserve-spark").count() == 1
    shot(page, "04-traffic-moving", start)

    open_sidebar(page)
    card = page.locator(f"{PANEL} section.nbserve-server[data-group='notebook']")
    card.wait_for(timeout=30_000)
    assert card.locator(".nbserve-server-title").inner_text() == "console.ipynb"
    card.locator("[data-model='flat'] tr[data-state='AVAILABLE']").wait_for(timeout=30_000)
    badge = card.locator("[data-model='flat'] .nbserve-badge").first
    colour = badge.evaluate("(el) => getComputedStyle(el).backgroundColor")
    assert colour == "rgb(26, 127, 55)"  # vocabulary.COLOURS["available"], as in the notebook
    value = card.locator(".nbserve-endpoint-rest .nbserve-endpoint-value")
    assert value.evaluate("(el) => getComputedStyle(el).whiteSpace") == "nowrap"
    shot(page, "05-sidebar-notebook", page.locator(PANEL))
    shot(page, "06-whole-lab")
    assert not [e for e in page.errors if "nbserve" in e], page.errors


# -- the sidebar alone -----------------------------------------------------------------------------
def version_row(page, version: int, state: str):
    return page.locator(f'{PANEL} [data-model="{MODEL}"] '
                        f'tr[data-version="{version}"][data-state="{state}"]')


def check_proxy_endpoint(lab, card, rest_url: str) -> None:
    """With jupyter-server-proxy installed, the card shows ``<lab>/proxy/<port>/`` and it works."""
    if importlib.util.find_spec("jupyter_server_proxy") is None:
        assert card.locator(".nbserve-endpoint-proxy").count() == 0
        return
    port = rest_url.rsplit(":", 1)[1]
    proxied = card.locator(".nbserve-endpoint-proxy .nbserve-endpoint-value").inner_text()
    assert proxied == f"{lab.url}proxy/{port}/"
    code, reply = lab.request("", url=f"{proxied}v1/models/{MODEL}")
    assert code == 200, reply
    assert reply["model_version_status"][0]["state"] == "AVAILABLE"


def test_sidebar_lists_kernel_servers_live(lab, kernel, page, tmp_path):
    base = tmp_path / "export" / MODEL
    rest_url = kernel.run(f"""
        import tensorflow as tf, nbserve

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def half_plus_two(x):
            return {{"y": 0.5 * x + 2.0}}

        nbserve.export(half_plus_two, {str(base)!r})
        srv = nbserve.serve({str(base)!r}, port=0, rest_api_port=0)
        srv.wait_until_available({MODEL!r}, timeout=60)
        print(srv.rest_url)
        """).strip().splitlines()[-1]
    assert rest_url.startswith("http://127.0.0.1:")

    page.goto(f"{lab.url}lab?reset&token={lab.token}")  # a fresh layout
    open_sidebar(page)
    version_row(page, 1, "AVAILABLE").wait_for(timeout=20_000)

    card = page.locator(f"{PANEL} section.nbserve-server",
                        has=page.locator(f'[data-model="{MODEL}"]'))
    rest = card.locator(".nbserve-endpoint-rest")
    assert rest.locator(".nbserve-endpoint-value").inner_text() == rest_url
    assert card.locator(".nbserve-endpoint-grpc .nbserve-endpoint-value").inner_text(
    ).startswith("127.0.0.1:")
    assert rest.locator(".nbserve-copy").get_attribute("data-copy") == rest_url
    # a kernel with no notebook: named after the kernel, still among this server's notebooks
    assert card.get_attribute("data-group") == "notebook"
    assert card.locator(".nbserve-server-title").inner_text() == f"kernel {kernel.id[:8]}"
    check_proxy_endpoint(lab, card, rest_url)

    # A new version exported in the kernel shows up without any reload; v1 says it was replaced.
    assert kernel.run(f"print(nbserve.export(half_plus_two, {str(base)!r}))").strip() == "2"
    version_row(page, 2, "AVAILABLE").wait_for(timeout=30_000)
    version_row(page, 1, "END").filter(has_text="replaced by 2").wait_for(timeout=30_000)
    rest.locator(".nbserve-copy").click()
    page.locator(f"{PANEL} .nbserve-copy", has_text="copied").wait_for(timeout=5_000)
    shot(page, "07-sidebar-kernel", page.locator(PANEL))

    # Stopping the server removes its record; the sidebar drops it and suggests how to start.
    kernel.run("srv.stop()")
    page.locator(f'{PANEL} [data-model="{MODEL}"]').wait_for(state="detached", timeout=15_000)
    page.locator(f"{PANEL} .nbserve-empty-command", has_text="%tfserve start ./export").wait_for(
        timeout=15_000)
    shot(page, "08-sidebar-empty", page.locator(PANEL))
    assert not [e for e in page.errors if "nbserve" in e], page.errors
