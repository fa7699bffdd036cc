"""The "Model servers" sidebar in a real browser: headless Debian Chromium driven by Python
Playwright (no browser download), against a real ``jupyter lab`` with a token and a hub-style
base_url. A kernel started by that lab runs ``nbserve.serve``; the sidebar must list the model and
its AVAILABLE version, then the version exported afterwards, and drop the server once stopped.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import textwrap
import time

import pytest

from .conftest import Lab

CHROMIUM = os.environ.get("NBSERVE_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]
PANEL = "#nbserve-model-servers"
MODEL = "half_plus_two_lab"
SCREENSHOT_COPY = "/tmp/nbserve-sidebar.png"

pytestmark = pytest.mark.timeout(180)


def lab_extension_installed() -> bool:
    from jupyter_core.paths import jupyter_path

    return any(os.path.isfile(os.path.join(d, "nbserve-labextension", "package.json"))
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
        pytest.skip("the nbserve JupyterLab extension is not installed: `pip install -e .` builds "
                    "it when Node.js/npm are available")


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
            args=FLAGS, viewport={"width": 1280, "height": 800})
        context.set_default_timeout(30_000)
        p = context.pages[0] if context.pages else context.new_page()
        p.errors = []  # type: ignore[attr-defined]
        p.on("pageerror", lambda exc: p.errors.append(str(exc)))  # type: ignore[attr-defined]
        try:
            yield p
        finally:
            context.close()


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

    page.goto(f"{lab.url}lab?token={lab.token}")
    tab = page.locator('.jp-SideBar.jp-mod-left li[data-id="nbserve-model-servers"]')
    tab.wait_for(timeout=60_000)
    tab.click()
    version_row(page, 1, "AVAILABLE").wait_for(timeout=20_000)

    card = page.locator(f"{PANEL} section.nbserve-server", has=page.locator(f'[data-model="{MODEL}"]'))
    assert card.locator(".nbserve-endpoint-rest .nbserve-endpoint-value").inner_text() == rest_url
    assert card.locator(".nbserve-endpoint-grpc .nbserve-endpoint-value").inner_text().startswith(
        "127.0.0.1:")
    assert card.locator(".nbserve-endpoint-rest .nbserve-copy").get_attribute("data-copy") == rest_url
    assert f"kernel {kernel.id[:8]}" in card.locator(".nbserve-server-title").inner_text()
    check_proxy_endpoint(lab, card, rest_url)

    # A new version exported in the kernel shows up without any reload.
    assert kernel.run(f"print(nbserve.export(half_plus_two, {str(base)!r}))").strip() == "2"
    version_row(page, 2, "AVAILABLE").wait_for(timeout=30_000)
    card.locator(".nbserve-endpoint-rest .nbserve-copy").click()
    page.locator(f"{PANEL} .nbserve-copy", has_text="copied").wait_for(timeout=5_000)

    shot = tmp_path / "sidebar.png"
    page.screenshot(path=str(shot))
    shutil.copyfile(shot, SCREENSHOT_COPY)
    print(f"sidebar screenshot: {shot} (copy: {SCREENSHOT_COPY})")
    assert shot.stat().st_size > 10_000

    # Stopping the server removes its record; the sidebar drops it.
    kernel.run("srv.stop()")
    page.locator(f'{PANEL} [data-model="{MODEL}"]').wait_for(state="detached", timeout=15_000)
    assert not [e for e in page.errors if "nbserve" in e], page.errors
