"""nbserve.interrupts: a SIGINT during a step that must not stop halfway waits for its end."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import threading
import time
from typing import Any

import pytest

from nbserve.interrupts import interrupts_deferred
from tests.support import REPO, InterruptAt


@pytest.fixture(autouse=True)
def pythons_sigint_handler():
    """These tests send SIGINT to this process and expect Python's own handler, the one a
    kernel has. A process started in the background by a shell without job control (``make
    test &`` in a script, ``nohup``) inherits SIGINT ignored, and Python then installs no
    handler: an ignored interrupt is held back and stays ignored, as it should, and these tests
    would fail for that reason alone."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_interrupt_waits_for_the_version_being_written():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the block ran to its end")
    assert done == ["the block ran to its end"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupts_deferred():  # no interrupt: nothing raised
        done.append("again")

    def off_the_main_thread() -> None:  # signals go to the main thread: nothing to hold back
        with interrupts_deferred():
            done.append(signal.getsignal(signal.SIGINT))

    elsewhere = threading.Thread(target=off_the_main_thread)
    elsewhere.start()
    elsewhere.join(10)
    assert done[-1] is signal.default_int_handler


def test_an_ignored_interrupt_stays_ignored():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a process started in the background
    done = []
    with interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        done.append("ran")
    assert done == ["ran"]  # and nothing raised
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_nested_blocks_raise_once_when_the_outer_one_ends():
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                steps.append("inner")
            steps.append("outer")  # the inner block held the interrupt for the outer one
    assert steps == ["inner", "outer"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_program_handler_gets_the_held_signal_and_nothing_is_raised():
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            assert received == []  # held while the block runs
        assert received == [signal.SIGINT]  # e.g. the command line's "stop serving" flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _nbserve_threads() -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        left = sorted(t.name for t in threading.enumerate() if t.name.startswith("nbserve-")
                      and t.name != "nbserve-native-log")
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.mark.tfs_testdata
@pytest.mark.parametrize("step", ["_start_grpc", "_start_rest", "_stop_transports"])
def test_an_interrupt_while_transports_start_or_stop_leaves_nothing_running(
        tfs_testdata, monkeypatch, step):
    """A kernel interrupt that lands while the IO loop starts or stops a transport: the step
    finishes, the server ends stopped (ports free, no thread of it left) and the interrupt is
    raised after. Before, an interrupt in ``stop()`` left the server half-stopped."""
    from nbserve.options import ModelConfig, ServerOptions
    from nbserve.server import Server

    original = getattr(Server, step)

    async def interrupted(self, *args):
        os.kill(os.getpid(), signal.SIGINT)  # delivered to the main thread, waiting on the loop
        await asyncio.sleep(0.2)
        return await original(self, *args)

    monkeypatch.setattr(Server, step, interrupted)
    server = Server(ServerOptions(
        models=(ModelConfig("m", str(tfs_testdata / "saved_model_half_plus_two_cpu")),),
        rest_api_port=0, grpc_port=0))
    with pytest.raises(KeyboardInterrupt):
        server.start()
        server.stop()
    assert not server.running
    assert server.stop() is None  # stopped for good: nothing left to do
    for port in (server.rest_port, server.grpc_port):
        assert port is None or _port_is_free(port)
    assert _nbserve_threads() == []


@pytest.mark.tfs_testdata
def test_an_interrupt_as_the_started_server_registers_stops_it(tfs_testdata, monkeypatch):
    """A kernel interrupt that lands once everything has started, as the server registers
    (simulated: ``registry.register`` raises at its entry, its first check point): ``start``
    raises KeyboardInterrupt and the server is stopped (ports free, no thread left, not
    registered). Before, that point lay after ``start``'s clean-up: the server kept its ports
    and threads, but neither ``stop_all`` nor a replacing ``serve`` could see it."""
    from nbserve import registry
    from nbserve.options import ModelConfig, ServerOptions
    from nbserve.server import Server

    def interrupted(server):
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "register", interrupted)
    server = Server(ServerOptions(
        models=(ModelConfig("m", str(tfs_testdata / "saved_model_half_plus_two_cpu")),),
        rest_api_port=0, grpc_port=0))
    with pytest.raises(KeyboardInterrupt):
        server.start()
    assert not server.running and server not in registry.running_servers()
    for port in (server.rest_port, server.grpc_port):
        assert port is not None and _port_is_free(port)
    assert _nbserve_threads() == []


# nbserve's own frames (the fakes of nbserve.testing excluded: their locks are the stdlib's)
NBSERVE_CODE = tuple(str(path) for path in (REPO / "nbserve").iterdir()
                     if path.is_dir() or path.name not in ("testing.py",))


def _handles_held(server: Any, name: str) -> int:
    (harness,) = server.core.manager._serving[name].latest_first
    return int(harness.gate.count)


def test_an_interrupt_anywhere_in_a_notebook_predict_leaves_no_handle_held():
    """A kernel interrupt at any signal check point of ``srv.predict`` or ``srv.signature``, its
    exception kept alive as IPython keeps the last traceback, with no garbage collection: no
    handle stays held, so the version can still unload. Before, an interrupt at the entry of the
    handle's ``__exit__`` left the handle held by the kept traceback's frames, and a newer version
    never replaced the old one (found by a full run of tests/test_interrupts.py)."""
    from nbserve.testing import start_test_server

    server = start_test_server(port=0)
    kept: list[BaseException] = []  # what IPython's sys.last_value would keep
    calls = {"predict": lambda: server.predict("half_plus_two", [1.0, 2.0]),
             "signature": lambda: server.signature("half_plus_two")}
    gc.disable()
    try:
        for what, call in calls.items():
            points = 0
            for n in range(2000):
                interrupt = InterruptAt(n, only_in=NBSERVE_CODE)
                try:
                    with interrupt:
                        call()
                except KeyboardInterrupt as err:
                    kept.append(err)
                held = _handles_held(server, "half_plus_two")
                assert held == 0, f"an interrupt at check point {n} of {what} left a handle held"
                if not interrupt.fired:
                    break
                points += 1
            else:
                raise AssertionError(f"{what} never ran to its end")
            assert points >= 20, points  # the check points were really visited
    finally:
        gc.enable()
        server.stop()
