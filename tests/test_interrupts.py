"""Interrupting the kernel (issue 13, item 3): a KeyboardInterrupt that lands anywhere inside
``nbserve.serve``, ``wait_until_available``, ``predict`` or ``nbserve.export`` leaves things
consistent: no half-started server holding ports, no stuck lock or leaked handle, no
half-written version folder; the next cell works. A real kernel, interrupted through
``KernelManager.interrupt_kernel()`` while a cell loops over the operation, so the interrupt
lands at a different point of it each time."""

from __future__ import annotations

import queue
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kernels import Kernel

pytestmark = pytest.mark.tfs_testdata

INTERRUPTS = 3  # per operation, at different points


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


REINTERRUPT_SECONDS = 20  # a cell still running this long after an interrupt gets another


def run_and_interrupt(kernel: Kernel, code: str, after: float) -> str:
    """Start ``code``, interrupt the kernel ``after`` seconds in; return the error name.

    As a user pressing stop again would, a cell still running ``REINTERRUPT_SECONDS`` after an
    interrupt is interrupted once more: once in a clean-clone CI run, one interrupt of the
    ``nbserve.export`` loop did not end the cell within 120 s (cause not found; TensorFlow's
    SavedModel writer runs there). What is checked afterwards (nothing half-written, nothing
    held, the next cell works) is the same either way."""
    msg_id = kernel.kc.execute(code)
    time.sleep(after)
    kernel.km.interrupt_kernel()
    interrupted = time.monotonic()
    deadline = interrupted + 120
    while time.monotonic() < deadline:
        try:
            reply = kernel.kc.get_shell_msg(timeout=5)
        except queue.Empty:
            if time.monotonic() - interrupted > REINTERRUPT_SECONDS:
                kernel.km.interrupt_kernel()
                interrupted = time.monotonic()
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            _wait_until_cells_run(kernel)
            return str(reply["content"].get("ename", reply["content"]["status"]))
    raise AssertionError("the interrupted cell never finished")


def _wait_until_cells_run(kernel: Kernel) -> None:
    """Return once the kernel runs cells again. After an error reply ipykernel aborts the
    execute requests that reach it until it has handled its own "stop aborting" message
    (ipython/ipykernel#609): a cell sent the moment the interrupted one has replied can come back
    ``aborted`` without running (seen once in ~25 runs of this file, as "cell failed:
    {'status': 'aborted'}"). A user's next cell, sent by hand, never lands in that window."""
    for _ in range(100):
        reply = kernel.kc.execute_interactive("pass", silent=True, timeout=30)
        if reply["content"]["status"] == "ok":
            return
        time.sleep(0.05)
    raise AssertionError("the kernel still aborts every cell after the interrupt")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, tfs_testdata: Any) -> Iterator[Kernel]:
    cwd = tmp_path_factory.mktemp("interrupts")
    k = Kernel(str(cwd))
    k.run(f"""
        import json, os, socket, nbserve
        import tensorflow as tf
        MODEL = {str(tfs_testdata / "saved_model_half_plus_two_cpu")!r}
        class HalfPlusTwo(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
            def __call__(self, x):
                return {{"y": x / 2 + 2}}
        module = HalfPlusTwo()
    """, timeout=180)
    try:
        yield k
    finally:
        k.run("import nbserve.server; nbserve.server.stop_all()")
        k.close()


def test_interrupted_serve_leaves_no_port_held(kernel: Kernel) -> None:
    rest, grpc_port = free_port(), free_port()
    for attempt in range(INTERRUPTS):
        ename = run_and_interrupt(kernel, f"""
            for i in range(10_000):
                srv = nbserve.serve(MODEL, name="m", port={grpc_port}, rest_api_port={rest})
        """, after=1.5 + attempt)
        assert ename == "KeyboardInterrupt"
        # the next cell works: the same ports can be served again at once
        status = kernel.json(f"""
            srv = nbserve.serve(MODEL, name="m", port={grpc_port}, rest_api_port={rest})
            srv.wait_until_available("m", timeout=60)
            print(json.dumps([float(srv.predict("m", [2.0])["y"][0]),
                              len(nbserve.server.running_servers())]))
        """)
        assert status == [3.0, 1]  # one server, no half-started leftovers
    # no listener, loop or pool outlives the servers (one started as an interrupt landed was
    # once never stopped: its loop, stream pool and socket stayed)
    leftovers = kernel.json("""
        import threading, time
        nbserve.server.stop_all()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = sorted(t.name for t in threading.enumerate() if t.name.startswith("nbserve")
                          and t.name != "nbserve-native-log")  # the kernel's, lives on
            if not left:
                break
            time.sleep(0.1)
        print(json.dumps(left))
    """)
    assert leftovers == []
    for port in (rest, grpc_port):  # nothing holds the ports after stop
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))


def test_interrupted_wait_and_predict_leave_no_stuck_lock_or_handle(kernel: Kernel,
                                                                    tmp_path: Path) -> None:
    base = tmp_path / "m"
    kernel.run(f"""
        BASE = {str(base)!r}
        nbserve.export(module, BASE)
        srv = nbserve.serve(BASE, port=None, rest_api_port=0)
        srv.wait_until_available("m", timeout=60)
    """, timeout=120)
    for attempt in range(INTERRUPTS):
        assert run_and_interrupt(kernel, "srv.wait_until_available('m', version=999, timeout=600)",
                                 after=0.5 + attempt * 0.3) == "KeyboardInterrupt"
        assert run_and_interrupt(kernel, """
            while True:
                srv.predict("m", [1.0, 2.0])
        """, after=0.5 + attempt * 0.3) == "KeyboardInterrupt"
    # no leaked handle: a new version replaces version 1, which can only unload once every
    # request holding it has let go; no stuck lock: waiting still works
    result = kernel.json("""
        v2 = nbserve.export(module, BASE)
        srv.wait_until_available("m", v2, timeout=60)
        deadline = __import__("time").monotonic() + 60
        while [e["state"] for e in srv.status("m")["m"] if e["version"] == "1"] != ["END"]:
            assert __import__("time").monotonic() < deadline, srv.status("m")
            __import__("time").sleep(0.05)
        print(json.dumps([v2, float(srv.predict("m", [2.0])["y"][0])]))
        srv.stop()
    """)
    assert result == [2, 3.0]


def test_interrupted_export_leaves_no_half_written_version(kernel: Kernel,
                                                           tmp_path: Path) -> None:
    base = tmp_path / "exports"
    for attempt in range(INTERRUPTS):
        assert run_and_interrupt(kernel, f"""
            for i in range(10_000):
                nbserve.export(module, {str(base)!r})
        """, after=1.0 + attempt * 0.7) == "KeyboardInterrupt"
    leftovers = [p.name for p in base.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    versions = sorted(int(p.name) for p in base.iterdir())
    assert versions == list(range(1, len(versions) + 1))
    assert all((base / str(v) / "saved_model.pb").is_file() for v in versions)
    # the newest published version loads and answers; the next export works
    answers = kernel.json(f"""
        v = nbserve.export(module, {str(base)!r})
        srv = nbserve.serve({str(base)!r}, name="e", port=None, rest_api_port=0)
        srv.wait_until_available("e", v, timeout=60)
        print(json.dumps([v, float(srv.predict("e", [2.0])["y"][0])]))
        srv.stop()
    """)
    assert answers == [len(versions) + 1, 3.0]
