"""Dynamic batching (nbserve.batching): a numpy-only fake servable for the scheduler's rules, then
one REST end-to-end run on TF Serving's matrix_half_plus_two test model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from nbserve.batch_tensors import merge_inputs, pad_to_common_shape
from nbserve.batching import (
    MAX_REQUEST_THREADS,
    QUEUE_FULL_MESSAGE,
    QUEUED_TIMEOUT_MESSAGE,
    RUN_TIMEOUT_MESSAGE,
    BatchScheduler,
    request_threads,
    scheduler_for,
)
from nbserve.core.ids import ServableId
from nbserve.errors import ServingError, StatusCode
from nbserve.options import BatchingOptions, ModelConfig, ServerOptions
from nbserve.servables.signature import Signature, TensorInfo
from tests.support import wait_for

SIG = Signature("serving_default", inputs={"x": TensorInfo("x:0", "DT_FLOAT", (-1, -1))},
                outputs={"y": TensorInfo("y:0", "DT_FLOAT", (-1, -1))})
ID = ServableId("m", 1)
LONG = 30_000_000  # µs: an underfull batch waits "forever"; tests make batches fill up instead


class FakeServable:
    """y = 2x + 1 on input ``x``; records every batch it runs. ``gate`` (an Event) holds each run
    until set; ``entered`` is set when a run starts."""

    def __init__(self, name: str = "m", gate: threading.Event | None = None,
                 fn: Callable[[dict], dict] | None = None) -> None:
        self.name = name
        self.signatures = {"serving_default": SIG}
        self.device = "/device:CPU:0"
        self.gate = gate
        self.entered = threading.Event()
        self.fn = fn or (lambda inputs: {"y": inputs["x"] * 2 + 1})
        self.batches: list[np.ndarray] = []
        self.timeouts: list[Any] = []
        self._lock = threading.Lock()

    @property
    def sizes(self) -> list[int]:
        with self._lock:
            return [len(b) for b in self.batches]

    def run(self, signature, inputs, output_filter=None, timeout_ms=None):
        assert signature is SIG
        with self._lock:
            self.batches.append(np.array(inputs["x"]))
            self.timeouts.append(timeout_ms)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        return self.fn(inputs)


def rows(start: int, count: int, width: int = 2) -> np.ndarray:
    return np.arange(start, start + count * width, dtype=np.float32).reshape(count, width)


def submit_all(scheduler: BatchScheduler, servable, requests: list[dict], **kwargs) -> list:
    """Run every request on its own thread, released together; results (or errors) in order."""
    results: list[Any] = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = scheduler.run(ID, servable, SIG, requests[i], **kwargs)
        except ServingError as err:
            results[i] = err

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return results


@pytest.fixture
def make_scheduler():
    made = []

    def make(*args, **kwargs) -> BatchScheduler:
        scheduler = BatchScheduler(*args, **kwargs)
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.close()


# -- merging and splitting -----------------------------------------------------------------------

def test_concurrent_requests_merge_into_one_batch_and_split_back(make_scheduler):
    servable = FakeServable()
    scheduler = make_scheduler(BatchingOptions(max_batch_size=6, batch_timeout_micros=LONG,
                                               num_batch_threads=2))
    requests = [{"x": rows(100 * i, size)} for i, size in enumerate((1, 2, 3))]
    results = submit_all(scheduler, servable, requests)
    assert servable.sizes == [6]  # the batch ran when full
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], request["x"] * 2 + 1)
    merged = np.sort(servable.batches[0], axis=0)
    np.testing.assert_array_equal(merged, np.sort(np.concatenate([r["x"] for r in requests]), 0))


def test_timeout_zero_runs_what_is_queued_when_a_batch_thread_frees_up(make_scheduler):
    gate = threading.Event()
    servable = FakeServable(gate=gate)
    scheduler = make_scheduler(BatchingOptions(num_batch_threads=1))
    first = threading.Thread(target=scheduler.run, args=(ID, servable, SIG,
                                                          {"x": rows(0, 1)}))
    first.start()
    assert servable.entered.wait(10)  # the only batch thread is busy now
    results: dict[int, Any] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(
        i, scheduler.run(ID, servable, SIG, {"x": rows(10 * i, 1)}))) for i in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: scheduler.queued_tasks() == 4)
    gate.set()
    for t in [*threads, first]:
        t.join(10)
    assert servable.sizes == [1, 4]
    for i in range(4):
        np.testing.assert_array_equal(results[i]["y"], rows(10 * i, 1) * 2 + 1)


def test_single_request_passes_through_and_gets_its_timeout(make_scheduler):
    servable = FakeServable()
    scheduler = make_scheduler(BatchingOptions(num_batch_threads=1))
    out = scheduler.run(ID, servable, SIG, {"x": rows(0, 3)}, timeout_ms=5000)
    np.testing.assert_array_equal(out["y"], rows(0, 3) * 2 + 1)
    assert 0 < servable.timeouts[0] <= 5000
    scheduler.run(ID, servable, SIG, {"x": rows(0, 1)})
    assert servable.timeouts[1] is None


def test_different_inner_shapes_use_different_queues(make_scheduler):
    servable = FakeServable()
    scheduler = make_scheduler(BatchingOptions(max_batch_size=2, batch_timeout_micros=LONG))
    requests = [{"x": rows(0, 1, 2)}, {"x": rows(0, 1, 3)}, {"x": rows(5, 1, 2)},
                {"x": rows(5, 1, 3)}]
    results = submit_all(scheduler, servable, requests)
    assert sorted(servable.sizes) == [2, 2]
    assert sorted(b.shape[1] for b in servable.batches) == [2, 3]
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], request["x"] * 2 + 1)


# -- queue bound and deadlines -------------------------------------------------------------------

def test_full_queue_answers_unavailable_with_tf_serving_text(make_scheduler):
    gate = threading.Event()
    servable = FakeServable(gate=gate)
    scheduler = make_scheduler(BatchingOptions(max_batch_size=2, max_enqueued_batches=1,
                                               num_batch_threads=1))
    busy = threading.Thread(target=scheduler.run, args=(ID, servable, SIG,
                                                         {"x": rows(0, 1)}))
    busy.start()
    assert servable.entered.wait(10)
    waiting = [threading.Thread(target=scheduler.run, args=(ID, servable, SIG,
                                                             {"x": rows(0, 1)}))
               for _ in range(2)]
    for t in waiting:
        t.start()
    wait_for(lambda: scheduler.queued_tasks() == 2)  # the one allowed batch is full
    with pytest.raises(ServingError) as err:
        scheduler.run(ID, servable, SIG, {"x": rows(0, 1)})
    assert err.value == ServingError(StatusCode.UNAVAILABLE, QUEUE_FULL_MESSAGE)
    gate.set()
    for t in [*waiting, busy]:
        t.join(10)
    assert servable.sizes == [1, 2]


def test_deadline_passing_in_the_queue_is_deadline_exceeded_and_never_runs(make_scheduler):
    gate = threading.Event()
    servable = FakeServable(gate=gate)
    scheduler = make_scheduler(BatchingOptions(num_batch_threads=1))
    busy = threading.Thread(target=scheduler.run, args=(ID, servable, SIG,
                                                         {"x": rows(0, 1)}))
    busy.start()
    assert servable.entered.wait(10)
    with pytest.raises(ServingError) as err:
        scheduler.run(ID, servable, SIG, {"x": rows(0, 1)}, timeout_ms=30)
    assert err.value == ServingError(StatusCode.DEADLINE_EXCEEDED, QUEUED_TIMEOUT_MESSAGE)
    gate.set()
    busy.join(10)
    out = scheduler.run(ID, servable, SIG, {"x": rows(7, 1)})
    np.testing.assert_array_equal(out["y"], rows(7, 1) * 2 + 1)
    assert servable.sizes == [1, 1]  # the expired task was dropped, not run


# -- padding -------------------------------------------------------------------------------------

def test_allowed_batch_sizes_pad_with_the_first_row_and_drop_padded_outputs(make_scheduler):
    servable = FakeServable()
    scheduler = make_scheduler(BatchingOptions(max_batch_size=8, allowed_batch_sizes=(4, 8)))
    x = rows(1, 3)
    out = scheduler.run(ID, servable, SIG, {"x": x})
    assert servable.sizes == [4]
    np.testing.assert_array_equal(servable.batches[0], np.concatenate([x, x[:1]]))
    np.testing.assert_array_equal(out["y"], x * 2 + 1)


def test_pad_variable_length_inputs_pads_with_the_tensors_first_element(make_scheduler):
    servable = FakeServable()
    scheduler = make_scheduler(BatchingOptions(max_batch_size=2, batch_timeout_micros=LONG,
                                               pad_variable_length_inputs=True))
    small = np.array([[[7, 8], [9, 10]]], dtype=np.float32)  # [1, 2, 2]
    big = np.arange(9, dtype=np.float32).reshape(1, 3, 3)
    out_small, out_big = submit_all(scheduler, servable, [{"x": small}, {"x": big}])
    assert servable.sizes == [2]
    expected_small = np.array([[[7, 8, 7], [9, 10, 7], [7, 7, 7]]], dtype=np.float32)
    np.testing.assert_array_equal(out_small["y"], expected_small * 2 + 1)  # outputs stay padded
    np.testing.assert_array_equal(out_big["y"], big * 2 + 1)


def test_padding_helpers_handle_strings_and_empty_tensors():
    strings = np.array([[b"a"]], dtype=object)
    wide = np.array([[b"b", b"c"]], dtype=object)
    padded = pad_to_common_shape([strings, wide])
    assert padded[0].tolist() == [[b"a", b"a"]]
    empty = np.zeros((0, 1), np.float32)
    assert pad_to_common_shape([empty, np.ones((1, 2), np.float32)])[0].shape == (0, 2)
    merged = merge_inputs([{"x": rows(0, 1)}, {"x": rows(2, 1)}], padding=2)
    np.testing.assert_array_equal(merged["x"], np.concatenate([rows(0, 1), rows(2, 1),
                                                               rows(0, 1), rows(0, 1)]))


# -- request validation --------------------------------------------------------------------------

@pytest.mark.parametrize("inputs,message", [
    ({"x": rows(0, 5)}, "Task size 5 is larger than maximum input batch size 4"),
    ({}, "Batching Run() must have at least one input tensor"),
    ({"x": np.float32(1)}, "Batching Run() input tensors must have at least one dimension"),
    ({"x": rows(0, 2), "z": rows(0, 3)},
     "Batching Run() input tensors must have equal 0th-dimension size"),
])
def test_requests_that_cannot_batch_are_invalid_argument(make_scheduler, inputs, message):
    servable = FakeServable()
    scheduler = make_scheduler(BatchingOptions(max_batch_size=4))
    with pytest.raises(ServingError) as err:
        scheduler.run(ID, servable, SIG, inputs)
    assert err.value == ServingError(StatusCode.INVALID_ARGUMENT, message)
    assert servable.sizes == []


@pytest.mark.parametrize("fn,message", [
    (lambda inputs: {"y": np.float32(1)}, "Batched output tensor has 0 dimensions"),
    (lambda inputs: {"y": inputs["x"][:1]}, "Batched output tensor's 0th dimension does not "
     "equal the sum of the 0th dimension sizes of the input tensors"),
])
def test_unbatched_outputs_are_invalid_argument(make_scheduler, fn, message):
    scheduler = make_scheduler(BatchingOptions())
    with pytest.raises(ServingError) as err:
        scheduler.run(ID, FakeServable(fn=fn), SIG, {"x": rows(0, 2)})
    assert err.value == ServingError(StatusCode.INVALID_ARGUMENT, message)


def test_a_failing_run_fails_every_task_of_its_batch(make_scheduler):
    def fail(inputs):
        raise ServingError(StatusCode.INTERNAL, "boom")

    servable = FakeServable(fn=fail)
    scheduler = make_scheduler(BatchingOptions(max_batch_size=2, batch_timeout_micros=LONG))
    results = submit_all(scheduler, servable, [{"x": rows(0, 1)}, {"x": rows(1, 1)}])
    assert results == [ServingError(StatusCode.INTERNAL, "boom")] * 2
    assert servable.sizes == [2]


def test_large_batch_splitting_runs_pieces_and_joins_outputs(make_scheduler):
    servable = FakeServable()
    scheduler = make_scheduler(BatchingOptions(
        max_batch_size=8, enable_large_batch_splitting=True, max_execution_batch_size=3,
        num_batch_threads=1))
    x = rows(0, 7)
    out = scheduler.run(ID, servable, SIG, {"x": x})
    assert servable.sizes == [3, 3, 1]
    np.testing.assert_array_equal(out["y"], x * 2 + 1)
    with pytest.raises(ServingError, match="Task size 9 is larger than maximum input batch size 8"):
        scheduler.run(ID, servable, SIG, {"x": rows(0, 9)})


# -- submit: queued without a waiting thread ------------------------------------------------------

class Outcomes:
    """``submit``'s ``done`` callbacks: what each got, and on which thread."""

    def __init__(self) -> None:
        self.got: dict[int, tuple[Any, Any]] = {}
        self.threads: set[str] = set()
        self._all = threading.Condition()

    def done(self, index: int) -> Callable[[Any, Any], None]:
        def record(outputs: Any, error: Any) -> None:
            with self._all:
                assert index not in self.got, "done called twice"
                self.got[index] = (outputs, error)
                self.threads.add(threading.current_thread().name)
                self._all.notify_all()

        return record

    def wait(self, count: int) -> dict[int, tuple[Any, Any]]:
        with self._all:
            assert self._all.wait_for(lambda: len(self.got) >= count, 10), self.got
        return self.got


def test_submit_returns_at_once_and_answers_each_request_from_the_batch_thread(make_scheduler):
    servable = FakeServable()
    scheduler = make_scheduler(BatchingOptions(max_batch_size=6, batch_timeout_micros=LONG,
                                               num_batch_threads=1, thread_pool_name="sub"))
    outcomes = Outcomes()
    requests = [rows(100 * i, size) for i, size in enumerate((1, 2, 3))]
    for i, x in enumerate(requests):
        scheduler.submit(ID, servable, SIG, {"x": x}, None, None, outcomes.done(i))
    got = outcomes.wait(3)
    assert servable.sizes == [6]  # one batch, filled by requests no thread waited for
    for i, x in enumerate(requests):
        outputs, error = got[i]
        assert error is None
        np.testing.assert_array_equal(outputs["y"], x * 2 + 1)
    assert outcomes.threads == {"nbserve-sub-0"}


def test_submit_and_run_share_batches(make_scheduler):
    servable = FakeServable()
    scheduler = make_scheduler(BatchingOptions(max_batch_size=2, batch_timeout_micros=LONG,
                                               num_batch_threads=1))
    outcomes = Outcomes()
    scheduler.submit(ID, servable, SIG, {"x": rows(0, 1)}, None, None, outcomes.done(0))
    out = scheduler.run(ID, servable, SIG, {"x": rows(5, 1)})  # fills the batch
    np.testing.assert_array_equal(out["y"], rows(5, 1) * 2 + 1)
    np.testing.assert_array_equal(outcomes.wait(1)[0][0]["y"], rows(0, 1) * 2 + 1)
    assert servable.sizes == [2]


def test_submit_refuses_at_once_what_run_refuses(make_scheduler):
    gate = threading.Event()
    servable = FakeServable(gate=gate)
    scheduler = make_scheduler(BatchingOptions(max_batch_size=2, max_enqueued_batches=1,
                                               num_batch_threads=1))
    outcomes = Outcomes()
    with pytest.raises(ServingError, match="Task size 3 is larger than maximum input batch"):
        scheduler.submit(ID, servable, SIG, {"x": rows(0, 3)}, None, None, outcomes.done(9))
    scheduler.submit(ID, servable, SIG, {"x": rows(0, 1)}, None, None, outcomes.done(0))
    assert servable.entered.wait(10)  # running, gated
    scheduler.submit(ID, servable, SIG, {"x": rows(1, 2)}, None, None, outcomes.done(1))
    with pytest.raises(ServingError) as err:  # the one allowed batch is full
        scheduler.submit(ID, servable, SIG, {"x": rows(3, 1)}, None, None, outcomes.done(2))
    assert err.value == ServingError(StatusCode.UNAVAILABLE, QUEUE_FULL_MESSAGE)
    gate.set()
    got = outcomes.wait(2)
    assert sorted(got) == [0, 1] and all(error is None for _, error in got.values())
    scheduler.close()
    with pytest.raises(ServingError) as err:
        scheduler.submit(ID, servable, SIG, {"x": rows(0, 1)}, None, None, outcomes.done(3))
    assert err.value.code == StatusCode.UNAVAILABLE
    assert sorted(got) == [0, 1]  # refused requests never call done


def test_submit_deadlines_and_failures_come_through_done(make_scheduler):
    gate = threading.Event()
    servable = FakeServable(gate=gate)
    scheduler = make_scheduler(BatchingOptions(num_batch_threads=1))
    outcomes = Outcomes()
    scheduler.submit(ID, servable, SIG, {"x": rows(0, 1)}, None, 100, outcomes.done(0))
    assert servable.entered.wait(10)
    scheduler.submit(ID, servable, SIG, {"x": rows(1, 1)}, None, 30, outcomes.done(1))
    time.sleep(0.2)  # both deadlines pass: one while running, one in the queue
    gate.set()
    got = outcomes.wait(2)
    assert got[0] == (None, ServingError(StatusCode.DEADLINE_EXCEEDED, RUN_TIMEOUT_MESSAGE))
    assert got[1] == (None, ServingError(StatusCode.DEADLINE_EXCEEDED, QUEUED_TIMEOUT_MESSAGE))
    assert servable.sizes == [1]  # the expired one never ran

    def boom(inputs: dict) -> dict:
        raise ServingError(StatusCode.INTERNAL, "boom")

    failing = FakeServable(fn=boom)
    scheduler.submit(ID, failing, SIG, {"x": rows(0, 1)}, None, None, outcomes.done(2))
    assert outcomes.wait(3)[2] == (None, ServingError(StatusCode.INTERNAL, "boom"))


def test_a_failing_done_callback_leaves_the_rest_of_its_batch_answered(make_scheduler, caplog):
    servable = FakeServable()
    scheduler = make_scheduler(BatchingOptions(max_batch_size=2, batch_timeout_micros=LONG,
                                               num_batch_threads=1))
    outcomes = Outcomes()

    def broken(outputs: Any, error: Any) -> None:
        raise RuntimeError("a transport's bug")

    scheduler.submit(ID, servable, SIG, {"x": rows(0, 1)}, None, None, broken)
    scheduler.submit(ID, servable, SIG, {"x": rows(1, 1)}, None, None, outcomes.done(0))
    assert outcomes.wait(1)[0][1] is None
    assert "completion failed" in caplog.text
    out = scheduler.run(ID, servable, SIG, {"x": rows(2, 2)})  # the batch thread lives on
    np.testing.assert_array_equal(out["y"], rows(2, 2) * 2 + 1)


def test_submit_joins_a_split_request_once(make_scheduler):
    servable = FakeServable()
    scheduler = make_scheduler(BatchingOptions(
        max_batch_size=8, enable_large_batch_splitting=True, max_execution_batch_size=3,
        num_batch_threads=2))
    outcomes = Outcomes()
    x = rows(0, 7)
    scheduler.submit(ID, servable, SIG, {"x": x}, None, None, outcomes.done(0))
    outputs, error = outcomes.wait(1)[0]
    assert error is None and sorted(servable.sizes) == [1, 3, 3]
    np.testing.assert_array_equal(outputs["y"], x * 2 + 1)

    def fail_small(inputs: dict) -> dict:
        if len(inputs["x"]) == 1:
            raise ServingError(StatusCode.INTERNAL, "one piece failed")
        return {"y": inputs["x"] * 2 + 1}

    scheduler.submit(ID, FakeServable(fn=fail_small), SIG, {"x": x}, None, None,
                     outcomes.done(1))
    assert outcomes.wait(2)[1] == (None, ServingError(StatusCode.INTERNAL, "one piece failed"))


# -- options, per-model settings, lifetime -------------------------------------------------------

def test_invalid_options_are_refused():
    with pytest.raises(ServingError) as err:
        BatchScheduler(BatchingOptions(max_batch_size=8, allowed_batch_sizes=(2, 4)))
    assert err.value.message == ("Last entry in allowed_batch_sizes must match max_batch_size; "
                                 "last entry was 4; expected 8")
    with pytest.raises(ServingError, match="max_enqueued_batches must be positive; was 0"):
        BatchScheduler(None, {"m": BatchingOptions(max_enqueued_batches=0)})


def test_per_model_options_follow_the_servable_id(make_scheduler):
    scheduler = make_scheduler(BatchingOptions(max_batch_size=10),
                               {"small": BatchingOptions(max_batch_size=2)})
    servable = FakeServable()
    with pytest.raises(ServingError, match="Task size 3 is larger than maximum input batch size 2"):
        scheduler.run(ServableId("small", 1), servable, SIG, {"x": rows(0, 3)})
    np.testing.assert_array_equal(
        scheduler.run(ServableId("big", 1), servable, SIG, {"x": rows(0, 3)})["y"],
        rows(0, 3) * 2 + 1)
    assert scheduler.options_for("small").max_batch_size == 2
    assert scheduler.options_for("big").max_batch_size == 10


def test_close_joins_threads_and_refuses_new_work():
    scheduler = BatchScheduler(BatchingOptions(num_batch_threads=2, thread_pool_name="pool"))
    scheduler.run(ID, FakeServable(), SIG, {"x": rows(0, 1)})
    names = [t.name for t in threading.enumerate() if t.name.startswith("nbserve-pool-")]
    assert len(names) == 2
    scheduler.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("nbserve-pool-")]
    with pytest.raises(ServingError) as err:
        scheduler.run(ID, FakeServable(), SIG, {"x": rows(0, 1)})
    assert err.value.code == StatusCode.UNAVAILABLE


def test_tasks_joining_an_open_batch_wake_no_batch_thread(make_scheduler):
    servable = FakeServable()
    scheduler = make_scheduler(BatchingOptions(max_batch_size=8, batch_timeout_micros=LONG,
                                               num_batch_threads=2))
    results = submit_all(scheduler, servable, [{"x": rows(i, 1)} for i in range(8)])
    assert servable.sizes == [8]
    assert all(isinstance(r, dict) for r in results)
    # at most: the open batch's timer started, the batch became full (was one per request)
    assert scheduler.wakeups <= 2
    stats = scheduler.stats()
    assert (stats["batches"], stats["mean_batch_tasks"], stats["mean_batch_items"]) == (1, 8, 8)


def test_close_logs_the_batch_statistics(caplog):
    scheduler = BatchScheduler(BatchingOptions(max_batch_size=4, batch_timeout_micros=LONG,
                                               num_batch_threads=1))
    submit_all(scheduler, FakeServable(), [{"x": rows(i, 2)} for i in range(2)])
    with caplog.at_level("INFO", logger="nbserve.batching"):
        scheduler.close()
        scheduler.close()
    assert [r.getMessage() for r in caplog.records] == [
        "Batching: 1 batches, 2.0 tasks and 4.0 items per batch on average, "
        f"{scheduler.wakeups} batch-thread wake-ups"]


def test_zero_size_request_with_large_batch_splitting(make_scheduler):
    scheduler = make_scheduler(BatchingOptions(max_batch_size=4, num_batch_threads=1,
                                               enable_large_batch_splitting=True))
    out = scheduler.run(ID, FakeServable(), SIG, {"x": rows(0, 0)})
    assert out["y"].shape == (0, 2)


def test_request_threads_let_batches_fill():
    assert request_threads(BatchingOptions(max_batch_size=32, num_batch_threads=2)) == 96
    assert request_threads(BatchingOptions(max_batch_size=32, num_batch_threads=1),
                           {"big": BatchingOptions(max_batch_size=64)}) == 128
    assert request_threads(None) == MAX_REQUEST_THREADS  # max_batch_size 1000 by default


def test_scheduler_for_server_options():
    assert scheduler_for(ServerOptions()) is None
    with pytest.raises(ServingError, match=r"without setting ServerOptions.enable_batching"):
        scheduler_for(ServerOptions(batching=BatchingOptions()))
    scheduler = scheduler_for(ServerOptions(
        enable_batching=True, batching_per_model={"a": BatchingOptions(max_batch_size=3)}))
    try:
        assert scheduler.options_for("a").max_batch_size == 3
        assert scheduler.options_for("b") == BatchingOptions()
    finally:
        scheduler.close()


# -- CLI flags -----------------------------------------------------------------------------------

def test_cli_batching_and_warmup_flags(tmp_path):
    from nbserve.cli import options_from_flags, parse_flags

    params = tmp_path / "batching.txt"
    params.write_text("max_batch_size { value: 32 }\nbatch_timeout_micros { value: 2000 }\n"
                      "num_batch_threads { value: 4 }\nallowed_batch_sizes: 8\n"
                      "allowed_batch_sizes: 32\n")
    base = ["--model_base_path", str(tmp_path), "--port=0", "--rest_api_port=0"]
    values, warnings = parse_flags([*base, "--enable_batching", "--batching_parameters_file",
                                    str(params), "--enable_model_warmup=false",
                                    "--num_request_iterations_for_warmup=3"])
    assert warnings == []
    options = options_from_flags(values)
    assert options.enable_batching and options.batching == BatchingOptions(
        max_batch_size=32, batch_timeout_micros=2000, num_batch_threads=4,
        allowed_batch_sizes=(8, 32))
    assert options.enable_model_warmup is False and options.num_request_iterations_for_warmup == 3
    values, _ = parse_flags([*base, "--enable_batching"])
    assert options_from_flags(values).batching is None  # defaults
    values, _ = parse_flags([*base, "--batching_parameters_file", str(params)])
    with pytest.raises(ServingError) as err:
        options_from_flags(values)
    assert err.value == ServingError(
        StatusCode.INVALID_ARGUMENT, "server_options.batching_parameters_file is set without "
        "setting server_options.enable_batching to true.")


# -- end to end: REST on matrix_half_plus_two ----------------------------------------------------

def _predict(port: int, instances: Any) -> tuple[int, Any]:
    from tests.transport.rest_client import call

    reply = call(port, "POST", "/v1/models/matrix:predict", {"instances": instances})
    return reply.status, reply.json()


def test_rest_batching_pads_and_answers_503_when_full(tfs_testdata, start_server):
    pytest.importorskip("tensorflow")
    options = BatchingOptions(max_batch_size=2, batch_timeout_micros=LONG, max_enqueued_batches=1,
                              num_batch_threads=1, pad_variable_length_inputs=True)
    server = start_server([ModelConfig("matrix", str(tfs_testdata / "matrix_half_plus_two"))],
                          enable_batching=True, batching_per_model={"matrix": options})
    server.wait_until_available("matrix", timeout=60)
    port = server.rest_port

    small = [[[1.0, 2.0], [3.0, 4.0]]]  # one [2, 2] instance: padded to [3, 3] with 1.0
    big = [[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]]
    replies: dict[str, Any] = {}
    first = threading.Thread(target=lambda: replies.__setitem__("small", _predict(port, small)))
    first.start()
    wait_for(lambda: server.batcher.queued_tasks() == 1)  # an underfull batch is waiting

    status, body = _predict(port, big * 2)  # 2 rows do not fit: a second batch is not allowed
    assert (status, body) == (503, {"error": QUEUE_FULL_MESSAGE})

    replies["big"] = _predict(port, big)  # fills the waiting batch: it runs
    first.join(30)
    padded = np.array([[[1, 2, 1], [3, 4, 1], [1, 1, 1]]], dtype=np.float32)
    assert replies["small"][0] == 200
    np.testing.assert_allclose(replies["small"][1]["predictions"], padded * 0.5 + 2)
    assert replies["big"][0] == 200
    np.testing.assert_allclose(replies["big"][1]["predictions"], np.array(big) * 0.5 + 2)


@pytest.mark.parametrize("front_end", ["h1", "aiohttp"])
def test_rest_batched_predicts_wait_on_no_pool_thread(start_server, tmp_path, front_end):
    """With batching on, a small REST predict body is decoded on the IO loop and queued there:
    four concurrent requests form one batch on a server whose predict pool has one thread
    (waiting on pool threads, that batch could never fill); refusals keep their words."""
    from nbserve import testing
    from tests.transport.rest_client import call

    runs: list[int] = []

    def record(signature, inputs):
        runs.append(len(inputs["x"]))
        return {"y": np.asarray(inputs["x"], np.float32) / 2 + 2}

    testing.fake_version_dirs(str(tmp_path), [1])
    servable = testing.FakeServable(fn=record)
    srv = start_server([ModelConfig("m", str(tmp_path))], rest_front_end=front_end,
                       loader_factory=lambda sid, path: testing.FakeLoader(servable),
                       enable_batching=True, rest_api_num_threads=1,
                       batching=BatchingOptions(max_batch_size=4, batch_timeout_micros=LONG,
                                                num_batch_threads=1))
    srv.wait_until_available("m")
    replies: list[Any] = [None] * 4

    def predict(i: int) -> None:
        replies[i] = call(srv.rest_port, "POST", "/v1/models/m:predict", {"instances": [i]})

    clients = [threading.Thread(target=predict, args=(i,)) for i in range(4)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(30)
    assert [(r.status, r.json()) for r in replies] == [
        (200, {"predictions": [i / 2 + 2]}) for i in range(4)]
    assert runs == [4]
    refused = call(srv.rest_port, "POST", "/v1/models/m:predict",
                   {"signature_name": "nope", "instances": [1.0]})
    assert refused.status == 400
    assert refused.json() == {"error": 'Serving signature name: "nope" not found in signature def'}


# -- bench/compute_bound.py (the pure parts; the load run itself is a benchmark, not a test) -------

H2LOAD_OUTPUT = """finished in 2.50s, 400.00 req/s, 41.60KB/s
requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 1000 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 150.00KB (153600) total, 5.00KB (5120) headers (space savings 94%), 101.56KB (104000) data
                     min         max         mean         sd        +/- sd
time for request:    58.77ms    192.75ms     79.90ms     26.93ms    69.28%
"""


def test_compute_bound_parses_h2load_and_refuses_failed_answers():
    from bench.compute_bound import parse_h2load

    result = parse_h2load(H2LOAD_OUTPUT, 0, 1000, 104)
    assert (result.requests, result.seconds, result.rps, result.mean_ms) == (1000, 2.5, 400.0,
                                                                          79.9)
    with pytest.raises(RuntimeError, match="not all successful"):
        parse_h2load(H2LOAD_OUTPUT, 0, 1000, 105)  # an error answer carries no message
    with pytest.raises(RuntimeError, match="failures"):
        parse_h2load(H2LOAD_OUTPUT.replace("1000 2xx", "990 2xx"), 0, 1000, None)
    with pytest.raises(RuntimeError, match="h2load failed"):
        parse_h2load("", 1, 1000, None)


def test_compute_bound_grpc_body_is_one_uncompressed_frame():
    pytest.importorskip("tensorflow_serving")
    from tensorflow_serving.apis import predict_pb2

    from bench.compute_bound import grpc_body

    body = grpc_body("m")
    assert body[0] == 0 and int.from_bytes(body[1:5], "big") == len(body) - 5
    request = predict_pb2.PredictRequest.FromString(body[5:])
    assert request.model_spec.name == "m"
    assert list(request.inputs["x"].tensor_shape.dim) and \
        [d.size for d in request.inputs["x"].tensor_shape.dim] == [1, 96, 96, 3]


@pytest.mark.parametrize("num_threads, expected", [(0, 2 * 16), (5, 5)])
def test_a_batching_server_has_threads_for_a_full_batch(num_threads, expected):
    from nbserve.server import Server

    server = Server(ServerOptions(
        enable_batching=True, rest_api_num_threads=num_threads,
        batching=BatchingOptions(max_batch_size=16, num_batch_threads=1)))
    try:
        assert server._executor._max_workers == expected  # 32 > the default 4 x CPUs here
    finally:
        server.stop()
        server._executor.shutdown()
