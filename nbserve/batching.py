"""Dynamic batching: TF Serving's shared batch scheduler in front of ``Servable.run``.

``BatchScheduler.run`` has ``ServingService``'s ``run_hook`` signature. Concurrent requests to the
same *batch key* -- servable instance, signature, output filter, and per input alias its dtype
and the shape of its non-batch dimensions (only the rank with ``pad_variable_length_inputs``) --
are queued, merged along dimension 0 (``np.concatenate``), run once, and split back by each
request's batch size. Requests that could never be concatenated therefore land in different
queues instead of failing each other (TF Serving's ``BatchingSession`` keys by tensor names only
and fails the whole batch on a concatenation error).

Scheduling (TF's ``SharedBatchScheduler``): each key has one *open* batch that collects tasks and
a FIFO of *closed* batches. A fixed pool of ``num_batch_threads`` batch threads (shared by every
model; 0 means one per CPU) takes the oldest ready batch: a closed or full one, or an open one whose
``batch_timeout_micros`` has passed since its first task (0: as soon as a batch thread is free).
``max_enqueued_batches`` bounds the batches (open + closed) per key; a task that needs one more is
refused with ``UNAVAILABLE`` and TF Serving's text ``QUEUE_FULL_MESSAGE`` (HTTP 503). A request
thread in ``run`` blocks on a pre-acquired lock (no thread, event or future object per request).
``submit`` queues the same way without blocking, for an event loop: its ``done`` callback gets the
outputs or the error on the batch thread that ran the batch (so no request thread waits at all).

Request validation, as ``BatchingSession`` words it (INVALID_ARGUMENT): no inputs, a 0-d input,
inputs whose 0th dimensions differ, and a task larger than ``max_batch_size``
(``Task size <n> is larger than maximum input batch size <m>``). Such requests are refused, not
run unbatched, as in TF Serving. With ``enable_large_batch_splitting`` a task (still at most
``max_batch_size``) is split to fill the open batch, then batches of ``max_execution_batch_size``;
its outputs are concatenated back. ``allowed_batch_sizes`` pads a merged batch up to the next
allowed size by repeating its first row (padded outputs are dropped); ``pad_variable_length_inputs``
pads each input's non-batch dimensions up to the batch's largest with that tensor's first element
(outputs stay padded). Every output of a batch must have a 0th dimension equal to the (padded)
batch size, else every task of the batch fails with INVALID_ARGUMENT.

Deadlines: a request's ``timeout_ms`` makes a deadline. A request still queued when it passes is
dropped and answers ``DEADLINE_EXCEEDED`` with TF's text ``QUEUED_TIMEOUT_MESSAGE`` (TF Serving
answers RESOURCE_EXHAUSTED there; nbserve keeps the canonical code for a deadline). A running
batch gets the latest deadline among its tasks (none if one has none) as its run timeout; a
request whose deadline passes while its batch runs answers ``DEADLINE_EXCEEDED`` at once (with
``submit``: when its batch ends).

Per-model settings: ``per_model`` maps a model name to its own BatchingOptions (batch size,
timeout, queue bound, padding, splitting), looked up by the name in the request's ``ServableId``
(the handle's). The thread pool is shared and sized by the default options, as TF Serving's.

Thread-safety: every public method may be called from any thread. ``close()`` finishes the queued
batches, then joins the batch threads; ``run`` or ``submit`` after ``close`` answers UNAVAILABLE.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from nbserve.batch_tensors import check_outputs, merge_inputs, padded_batch_size, split_outputs
from nbserve.core.ids import ServableId
from nbserve.errors import ServingError, StatusCode, as_serving_error, invalid_argument
from nbserve.options import BatchingOptions
from nbserve.servables.signature import Signature

QUEUE_FULL_MESSAGE = "The batch scheduling queue to which this task was submitted is full"
QUEUED_TIMEOUT_MESSAGE = "Run() timeout exceeded while waiting in batching queue"
RUN_TIMEOUT_MESSAGE = "Deadline Exceeded"
CLOSED_MESSAGE = "The batch scheduler is closed"

_QUEUED, _RUNNING, _DONE, _CANCELLED = range(4)
MAX_REQUEST_THREADS = 256

log = logging.getLogger("nbserve.batching")

# (id(servable), signature key, output filter, per input: (alias, dtype, rank or inner shape))
BatchKey = tuple[int, str, tuple[str, ...] | None, tuple[tuple[str, str, Any], ...]]
# ``submit``'s completion: (outputs, None) or (None, error), called once.
Done = Callable[[dict[str, np.ndarray] | None, ServingError | None], None]


# -- options ---------------------------------------------------------------------------------------

def execution_batch_limit(options: BatchingOptions) -> int:
    """The largest batch that runs: ``max_execution_batch_size`` with splitting, else
    ``max_batch_size``."""
    if options.enable_large_batch_splitting and options.max_execution_batch_size:
        return options.max_execution_batch_size
    return options.max_batch_size


def validate_batching_options(options: BatchingOptions) -> None:
    """TF Serving's checks on BatchingParameters; raises ServingError(INVALID_ARGUMENT)."""
    for name, minimum in (("max_batch_size", 1), ("batch_timeout_micros", 0),
                          ("max_enqueued_batches", 1), ("num_batch_threads", 0)):
        value = getattr(options, name)
        if value < minimum:
            raise invalid_argument(
                f"{name} must be {'positive' if minimum else 'non-negative'}; was {value}")
    if options.max_execution_batch_size is not None and options.max_execution_batch_size < 1:
        raise invalid_argument(
            f"max_execution_batch_size must be positive; was {options.max_execution_batch_size}")
    sizes = tuple(options.allowed_batch_sizes)
    if sizes:
        if any(b <= a for a, b in zip((0, *sizes), sizes, strict=False)):
            raise invalid_argument("allowed_batch_sizes entries must be monotonically increasing")
        limit = execution_batch_limit(options)
        if sizes[-1] != limit:
            raise invalid_argument("Last entry in allowed_batch_sizes must match max_batch_size; "
                                   f"last entry was {sizes[-1]}; expected {limit}")


def request_threads(options: BatchingOptions | None,
                    per_model: Mapping[str, BatchingOptions] | None = None) -> int:
    """How many request threads a server needs so that batches can fill: every request waits on
    its thread while it is batched, so with fewer threads than ``max_batch_size`` a batch never
    fills and a positive ``batch_timeout_micros`` is only added latency. One batch per batch
    thread runs while the next one fills: ``(num_batch_threads + 1) * max_batch_size`` for the
    largest model, at most ``MAX_REQUEST_THREADS``. (TF Serving's sync gRPC server is not
    bounded this way; its batching guide asks for about 2x ``max_batch_size`` client threads.)"""
    default = options or BatchingOptions()
    largest = max(o.max_batch_size for o in (default, *(per_model or {}).values()))
    batch_threads = default.num_batch_threads or os.cpu_count() or 1
    return min(MAX_REQUEST_THREADS, (batch_threads + 1) * largest)


def batch_size(inputs: Mapping[str, np.ndarray]) -> int:
    """The shared 0th dimension of ``inputs`` (``BatchingSession::ComputeInputSize``)."""
    if not inputs:
        raise invalid_argument("Batching Run() must have at least one input tensor")
    size = -1
    for array in inputs.values():
        if array.ndim == 0:
            raise invalid_argument("Batching Run() input tensors must have at least one dimension")
        if size < 0:
            size = array.shape[0]
        elif array.shape[0] != size:
            raise invalid_argument(
                "Batching Run() input tensors must have equal 0th-dimension size")
    return size


# -- internal records ------------------------------------------------------------------------------

class _Task:
    """One request (or one piece of a split request). When it ends, ``done`` is released (a
    ``run`` task) or ``on_done`` is called with it (a ``submit`` task)."""

    __slots__ = ("deadline", "done", "error", "inputs", "on_done", "result", "size", "state")

    def __init__(self, inputs: Mapping[str, np.ndarray], size: int, deadline: float | None,
                 waited: bool = True) -> None:
        self.inputs = inputs
        self.size = size
        self.deadline = deadline
        self.state = _QUEUED
        self.result: dict[str, np.ndarray] | None = None
        self.error: ServingError | None = None
        self.on_done: Callable[[_Task], None] | None = None
        self.done = threading.Lock()
        if waited:
            self.done.acquire()

    def finish(self, result: dict[str, np.ndarray] | None, error: ServingError | None) -> None:
        if self.on_done is None:
            self.result, self.error = result, error
            self.state = _DONE
            self.done.release()
            return
        if error is None and self.deadline is not None and time.monotonic() > self.deadline:
            result, error = None, ServingError(StatusCode.DEADLINE_EXCEEDED, RUN_TIMEOUT_MESSAGE)
        self.result, self.error = result, error
        self.state = _DONE
        try:
            self.on_done(self)
        except Exception:
            log.exception("A batched request's completion failed")


def _completion(done: Done) -> Callable[[list[_Task]], Callable[[_Task], None]]:
    """For ``submit``: given a request's tasks (its pieces, in order), the callback each task
    calls when it ends; ``done`` runs once, after the last, with the pieces' outputs
    concatenated or the first error."""

    def bind(tasks: list[_Task]) -> Callable[[_Task], None]:
        if len(tasks) == 1:
            return lambda task: done(task.result, task.error)
        left = [len(tasks)]
        lock = threading.Lock()

        def piece_done(task: _Task) -> None:
            with lock:
                left[0] -= 1
                if left[0]:
                    return
            error = next((t.error for t in tasks if t.error is not None), None)
            if error is not None:
                done(None, error)
                return
            results = [t.result for t in tasks]
            done({alias: np.concatenate([r[alias] for r in results if r is not None])
                  for alias in results[0] or {}}, None)

        return piece_done

    return bind


class _Batch:
    __slots__ = ("opened", "size", "tasks")

    def __init__(self, opened: float) -> None:
        self.tasks: list[_Task] = []
        self.size = 0
        self.opened = opened


class _Queue:
    """The batches of one batch key. Guarded by the scheduler's lock."""

    __slots__ = (
        "closed",
        "key",
        "limit",
        "open",
        "options",
        "output_filter",
        "servable",
        "signature",
        "timeout",
    )

    def __init__(self, key: BatchKey, servable: Any, signature: Signature,
                 output_filter: Sequence[str] | None, options: BatchingOptions) -> None:
        self.key = key
        self.servable = servable
        self.signature = signature
        self.output_filter = output_filter
        self.options = options
        self.limit = execution_batch_limit(options)
        self.timeout = options.batch_timeout_micros / 1e6
        self.open: _Batch | None = None
        self.closed: deque[_Batch] = deque()

    def enqueued(self) -> int:
        return len(self.closed) + (self.open is not None)


# -- the scheduler ---------------------------------------------------------------------------------

class BatchScheduler:
    """Batches concurrent ``Servable.run`` calls; ``run`` is a drop-in ``run_hook``.

    Args:
        default: options for every model without its own entry (None: BatchingOptions()); its
            ``num_batch_threads`` (0: CPU count) and ``thread_pool_name`` size and name the pool.
        per_model: model name -> options for that model.

    Raises ServingError(INVALID_ARGUMENT) for invalid options. Batch threads start on the first
    ``run``.
    """

    def __init__(self, default: BatchingOptions | None = None,
                 per_model: Mapping[str, BatchingOptions] | None = None) -> None:
        self.default = default or BatchingOptions()
        self.per_model = dict(per_model or {})
        for options in (self.default, *self.per_model.values()):
            validate_batching_options(options)
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queues: dict[BatchKey, _Queue] = {}
        self._threads: list[threading.Thread] = []
        self._closed = False
        # statistics, for tests and tuning (read without the lock: approximate while running)
        self.wakeups = 0  # batch-thread wake-ups (notified or timed out)
        self.batches = 0  # batches taken to run
        self.batched_tasks = 0  # tasks in them (a split request counts once per piece)
        self.batched_items = 0  # rows in them (before padding)

    # -- request side --------------------------------------------------------------------------
    def run(self, servable_id: ServableId, servable: Any, signature: Signature,
            inputs: Mapping[str, Any],
            output_filter: Sequence[str] | None = None,
            timeout_ms: int | None = None) -> dict[str, np.ndarray]:
        """Queue one request, wait for its batch, return its slice of the outputs.

        Raises ServingError: INVALID_ARGUMENT (see the module doc), UNAVAILABLE (queue full or
        scheduler closed), DEADLINE_EXCEEDED, or whatever the batch's ``Servable.run`` raised.
        """
        tasks = self._queue(servable_id, servable, signature, inputs, output_filter, timeout_ms,
                            None)
        results = [self._wait(task) for task in tasks]
        if len(results) == 1:
            return results[0]
        return {alias: np.concatenate([r[alias] for r in results]) for alias in results[0]}

    def submit(self, servable_id: ServableId, servable: Any, signature: Signature,
               inputs: Mapping[str, Any], output_filter: Sequence[str] | None,
               timeout_ms: int | None, done: Done) -> None:
        """``run`` without waiting: queue the request and return at once. ``done(outputs,
        None)`` or ``done(None, error)`` is called exactly once, later, on a batch thread (keep
        it short: the next batch waits for it). Raises ServingError, as ``run`` does, for a
        request refused before it is queued (invalid, queue full, scheduler closed)."""
        self._queue(servable_id, servable, signature, inputs, output_filter, timeout_ms,
                    _completion(done))

    def _queue(self, servable_id: ServableId, servable: Any, signature: Signature,
               inputs: Mapping[str, Any], output_filter: Sequence[str] | None,
               timeout_ms: int | None,
               bind: Callable[[list[_Task]], Callable[[_Task], None]] | None) -> list[_Task]:
        arrays = {alias: value if isinstance(value, np.ndarray) else np.asarray(value)
                  for alias, value in inputs.items()}
        size = batch_size(arrays)
        options = self.options_for(servable_id.name)
        if size > options.max_batch_size:
            raise invalid_argument(f"Task size {size} is larger than maximum input batch size "
                                   f"{options.max_batch_size}")
        outputs = None if output_filter is None else tuple(output_filter)
        pad = options.pad_variable_length_inputs
        key = (id(servable), signature.key, outputs,
               tuple((alias, array.dtype.str, array.ndim if pad else array.shape[1:])
                     for alias, array in sorted(arrays.items())))
        now = time.monotonic()
        deadline = now + timeout_ms / 1000 if timeout_ms is not None and timeout_ms > 0 else None
        return self._enqueue(key, servable, signature, outputs, options, arrays, size,
                             deadline, now, bind)

    def options_for(self, model_name: str) -> BatchingOptions:
        """The options that apply to model ``model_name``."""
        return self.per_model.get(model_name, self.default) if self.per_model else self.default

    def _enqueue(self, key: BatchKey, servable: Any, signature: Signature,
                 output_filter: tuple[str, ...] | None, options: BatchingOptions,
                 inputs: dict[str, np.ndarray], size: int, deadline: float | None,
                 now: float, bind: Callable[[list[_Task]], Callable[[_Task], None]] | None
                 ) -> list[_Task]:
        with self._lock:
            if self._closed:
                raise ServingError(StatusCode.UNAVAILABLE, CLOSED_MESSAGE)
            if not self._threads:
                self._start_threads()
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(key, servable, signature, output_filter,
                                                   options)
            pieces, new_batches = _plan(queue, size)
            if queue.enqueued() + new_batches > options.max_enqueued_batches:
                if queue.enqueued() == 0:
                    del self._queues[key]
                raise ServingError(StatusCode.UNAVAILABLE, QUEUE_FULL_MESSAGE)
            tasks = []
            offset = 0
            # Wake a batch thread only when this changes what it waits for: a batch became
            # ready (closed, full, or timeout 0) or a new open batch started its timer. A task
            # joining an underfull open batch whose timer runs already wakes nobody.
            wake = queue.timeout <= 0
            for piece in pieces:
                part = inputs if len(pieces) == 1 else {
                    alias: array[offset:offset + piece] for alias, array in inputs.items()}
                offset += piece
                task = _Task(part, piece, deadline, waited=bind is None)
                batch = queue.open
                if batch is None or batch.size + piece > queue.limit:
                    if batch is not None:
                        queue.closed.append(batch)
                    batch = queue.open = _Batch(now)
                    wake = True
                batch.tasks.append(task)
                batch.size += piece
                tasks.append(task)
                wake = wake or batch.size >= queue.limit
            if bind is not None:  # before any batch thread can see them: the lock is held
                on_done = bind(tasks)
                for task in tasks:
                    task.on_done = on_done
            if wake:
                self._work.notify()
            return tasks

    def _wait(self, task: _Task) -> dict[str, np.ndarray]:
        if task.deadline is None:
            task.done.acquire()
        elif not task.done.acquire(timeout=max(0.0, task.deadline - time.monotonic())):
            with self._lock:
                state = task.state
                if state == _QUEUED:
                    task.state = _CANCELLED
            if state != _DONE:
                raise ServingError(StatusCode.DEADLINE_EXCEEDED, RUN_TIMEOUT_MESSAGE
                                   if state == _RUNNING else QUEUED_TIMEOUT_MESSAGE)
        if task.error is not None:
            raise task.error
        assert task.result is not None
        return task.result

    # -- batch threads -------------------------------------------------------------------------
    def _start_threads(self) -> None:
        count = self.default.num_batch_threads or os.cpu_count() or 1
        name = self.default.thread_pool_name or "model_server_batch_threads"
        for index in range(count):
            thread = threading.Thread(target=self._loop, name=f"nbserve-{name}-{index}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while True:
                    taken, wait = self._take()
                    if taken is not None:
                        break
                    if self._closed and not self._queues:
                        self._work.notify_all()
                        return
                    self._work.wait(wait)
                    self.wakeups += 1
            queue, tasks, expired = taken
            for task in expired:  # outside the lock: a submit task's callback runs here
                task.finish(None, ServingError(StatusCode.DEADLINE_EXCEEDED,
                                               QUEUED_TIMEOUT_MESSAGE))
            if tasks:
                self._process(queue, tasks)

    def _take(self) -> tuple[tuple[_Queue, list[_Task], list[_Task]] | None, float | None]:
        """Under the lock: the oldest ready batch (removed from its queue) with its live tasks
        and those whose deadline passed in the queue (to be finished outside the lock), or None
        and how long until an open batch times out (None: nothing pending)."""
        now = time.monotonic()
        best: _Queue | None = None
        best_opened = math.inf
        wait: float | None = None
        for queue in self._queues.values():
            if queue.closed:
                opened = queue.closed[0].opened
            elif queue.open is not None:
                batch = queue.open
                due = batch.opened + queue.timeout
                if batch.size < queue.limit and due > now and not self._closed:
                    wait = due - now if wait is None else min(wait, due - now)
                    continue
                opened = batch.opened
            else:
                continue
            if opened < best_opened:
                best, best_opened = queue, opened
        if best is None:
            return None, wait
        if best.closed:
            batch = best.closed.popleft()
        else:
            assert best.open is not None  # a queue with no closed batch was picked for its open one
            batch, best.open = best.open, None
        if best.open is None and not best.closed:
            del self._queues[best.key]
        live = []
        expired = []
        for task in batch.tasks:
            if task.state != _QUEUED:
                continue
            if task.deadline is not None and task.deadline <= now:
                task.state = _CANCELLED  # a waiting run() sees a queued timeout
                expired.append(task)
                continue
            task.state = _RUNNING
            live.append(task)
        if live:
            self.batches += 1
            self.batched_tasks += len(live)
            self.batched_items += sum(task.size for task in live)
        return (best, live, expired), None

    def _process(self, queue: _Queue, tasks: list[_Task]) -> None:
        """Run one batch outside the lock and hand every task its result or the error."""
        try:
            results = run_batch(queue.servable, queue.signature, queue.output_filter,
                                queue.options, tasks)
        except Exception as exc:  # noqa: BLE001 - every task must be answered
            error = as_serving_error(exc)
            for task in tasks:
                task.finish(None, error)
            return
        for task, result in zip(tasks, results, strict=True):
            task.finish(result, None)

    # -- lifetime ------------------------------------------------------------------------------
    def close(self, timeout: float | None = 10.0) -> None:
        """Refuse new requests, run what is queued now, join the batch threads. Idempotent."""
        with self._lock:
            first = not self._closed
            self._closed = True
            self._work.notify_all()
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        if first and self.batches:
            stats = self.stats()
            log.info("Batching: %d batches, %.1f tasks and %.1f items per batch on average, "
                     "%d batch-thread wake-ups", stats["batches"], stats["mean_batch_tasks"],
                     stats["mean_batch_items"], stats["wakeups"])

    def stats(self) -> dict[str, float]:
        """Batches run so far, tasks and items per batch on average, batch-thread wake-ups."""
        with self._lock:
            batches = self.batches
            return {"batches": batches, "tasks": self.batched_tasks,
                    "items": self.batched_items,
                    "mean_batch_tasks": self.batched_tasks / batches if batches else 0.0,
                    "mean_batch_items": self.batched_items / batches if batches else 0.0,
                    "wakeups": self.wakeups}

    def queued_tasks(self) -> int:
        """Tasks waiting in queues now (for tests and metrics)."""
        with self._lock:
            return sum(len(b.tasks) for q in self._queues.values()
                       for b in ([q.open] if q.open else []) + list(q.closed))

    def __enter__(self) -> BatchScheduler:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _plan(queue: _Queue, size: int) -> tuple[list[int], int]:
    """The piece sizes a task of ``size`` is cut into, and how many new batches they open."""
    room = queue.limit - queue.open.size if queue.open is not None else 0
    if queue.open is not None and size <= room:
        return [size], 0
    if not queue.options.enable_large_batch_splitting or size == 0:
        return [size], 1
    pieces = [room] if room > 0 else []
    rest = size - room if room > 0 else size
    while rest > 0:
        pieces.append(min(rest, queue.limit))
        rest -= pieces[-1]
    return pieces, len(pieces) - (1 if room > 0 else 0)


# -- running a batch (on a batch thread; the tensor work is nbserve.batch_tensors) ---------------

def run_batch(servable: Any, signature: Signature, output_filter: Sequence[str] | None,
              options: BatchingOptions, tasks: Sequence[_Task]) -> list[dict[str, np.ndarray]]:
    """Merge ``tasks``' inputs, run the servable once, split the outputs back per task."""
    total = sum(task.size for task in tasks)
    padded = padded_batch_size(total, options.allowed_batch_sizes)
    if len(tasks) == 1 and padded == total:
        inputs = tasks[0].inputs
    else:
        inputs = merge_inputs([task.inputs for task in tasks], padded - total,
                              options.pad_variable_length_inputs)
    outputs = servable.run(signature, inputs, output_filter=output_filter,
                           timeout_ms=_run_timeout_ms(tasks))
    check_outputs(outputs, padded)
    if len(tasks) == 1 and padded == total:
        return [outputs]
    return split_outputs(outputs, [task.size for task in tasks])


def _run_timeout_ms(tasks: Sequence[_Task]) -> int | None:
    deadlines = [task.deadline for task in tasks]
    if any(deadline is None for deadline in deadlines):
        return None
    remaining = max(d for d in deadlines if d is not None) - time.monotonic()
    return max(1, math.ceil(remaining * 1000))


# -- wiring ----------------------------------------------------------------------------------------

def scheduler_for(options: Any, core: object = None) -> BatchScheduler | None:
    """The Server's scheduler from ServerOptions (``enable_batching``, ``batching``,
    ``batching_per_model``), or None when batching is off. Raises ServingError(INVALID_ARGUMENT)
    when batching options are given without ``enable_batching``, as TF Serving refuses a
    batching parameters file without ``--enable_batching``. ``core`` is not used (requests carry
    their ``ServableId``); it stays for existing callers."""
    per_model = dict(getattr(options, "batching_per_model", None) or {})
    if not options.enable_batching:
        if options.batching is not None or per_model:
            raise invalid_argument("ServerOptions.batching is set without setting "
                                   "ServerOptions.enable_batching to true.")
        return None
    return BatchScheduler(options.batching, per_model)
