"""Blocking work off the event loop: the predict pool hand-off REST uses (gRPC runs on the pool),
and handing results back to the loop from another thread (``post_to_loop``; a future settled
there with ``resolve``/``reject``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")


def run_in_pool(executor: Executor, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """``loop.run_in_executor`` with one thread hop less: the worker resolves the loop's future
    itself (one ``call_soon_threadsafe``) instead of chaining a concurrent Future into it.
    Call on the loop's thread; cancelling the returned future does not stop ``fn``."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def work() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - delivered to the awaiting coroutine
            post_to_loop(loop, reject, future, exc)
        else:
            post_to_loop(loop, resolve, future, result)

    executor.submit(work)
    return future


def post_to_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """From any thread: ``fn(*args)`` on ``loop`` soon (``call_soon_threadsafe``); nothing once
    the loop is closed (the server stopped: no one waits for it any more)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop is closed
        pass


def resolve(future: asyncio.Future[T], result: T) -> None:
    """On the loop: ``future``'s result, unless it was cancelled meanwhile."""
    if not future.done():  # else cancelled meanwhile (timeout, client gone)
        future.set_result(result)


def reject(future: asyncio.Future[T], exc: BaseException) -> None:
    """On the loop: ``future``'s exception, unless it was cancelled meanwhile."""
    if not future.done():  # else cancelled meanwhile (timeout, client gone)
        future.set_exception(exc)
