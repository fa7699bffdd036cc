"""Cheap REST inference calls run on the IO thread; anything else stays in the predict pool
(``nbserve.transport.inline``, ``--rest_inline_threshold_us``)."""

from __future__ import annotations

import threading
import time

import numpy as np

from nbserve.options import ModelConfig
from nbserve.testing import FakeLoader, FakeServable, fake_version_dirs
from nbserve.transport.inline import WINDOW, InlinePolicy
from tests.transport.rest_client import call

BODY = '{"instances": [1.0, 2.0]}'


def test_inline_only_after_a_full_window_of_cheap_calls():
    policy = InlinePolicy(threshold_s=0.001)
    for _ in range(WINDOW - 1):
        policy.observe("m", 0.0001)
        assert not policy.allows("m", 10)
    policy.observe("m", 0.0001)
    assert policy.allows("m", 10)
    assert not policy.allows("other", 10)  # per model
    assert not policy.allows("m", policy.max_body_bytes + 1)  # large bodies: the pool


def test_a_model_that_turns_slow_leaves_the_io_thread():
    policy = InlinePolicy(threshold_s=0.001)
    for _ in range(WINDOW):
        policy.observe("m", 0.0001)
    for _ in range(WINDOW - 1):
        policy.observe("m", 0.01)
        assert policy.allows("m", 10)  # the minimum of the window is still cheap
    policy.observe("m", 0.01)
    assert not policy.allows("m", 10)


def test_threshold_zero_never_inlines():
    policy = InlinePolicy(threshold_s=0)
    for _ in range(2 * WINDOW):
        policy.observe("m", 0.0)
    assert not policy.allows("m", 0)


def serve(start_server, tmp_path, fn, **options):
    fake_version_dirs(str(tmp_path), [1])
    servable = FakeServable(fn=fn)
    srv = start_server([ModelConfig("m", str(tmp_path))],
                       loader_factory=lambda sid, path: FakeLoader(servable), **options)
    srv.wait_until_available("m")
    return srv


def threads_of(start_server, tmp_path, cost_s=0.0, calls=WINDOW + 8, **options):
    """Send ``calls`` predicts one after another; the names of the threads that ran them."""
    seen: list[str] = []

    def fn(signature, inputs):
        seen.append(threading.current_thread().name)
        if cost_s:
            time.sleep(cost_s)
        return {"y": np.asarray(inputs["x"], np.float32) * 2}

    srv = serve(start_server, tmp_path, fn, **options)
    for _ in range(calls):
        reply = call(srv.rest_port, "POST", "/v1/models/m:predict", BODY)
        assert reply.status == 200 and reply.json() == {"predictions": [2.0, 4.0]}
    return seen


def test_a_cheap_model_moves_to_the_io_thread(start_server, tmp_path):
    seen = threads_of(start_server, tmp_path, rest_inline_threshold_us=20_000)  # a busy machine
    assert all(name.startswith("nbserve-predict") for name in seen[:WINDOW])
    assert seen[-1] == "nbserve-io"


def test_a_slow_model_stays_in_the_pool(start_server, tmp_path):
    seen = threads_of(start_server, tmp_path, cost_s=0.03, rest_inline_threshold_us=10_000)
    assert all(name.startswith("nbserve-predict") for name in seen)


def test_inline_off_by_flag_and_with_batching(start_server, tmp_path):
    assert all(name.startswith("nbserve-predict") for name in threads_of(
        start_server, tmp_path / "off", rest_inline_threshold_us=0))
    batched = threads_of(start_server, tmp_path / "batched", enable_batching=True)
    assert batched and "nbserve-io" not in batched  # a batched call waits for its batch


def test_errors_inline_keep_their_text_and_status(start_server, tmp_path):
    srv = serve(start_server, tmp_path, lambda signature, inputs: {
        "y": np.asarray(inputs["x"], np.float32)}, rest_inline_threshold_us=20_000)
    for _ in range(WINDOW):
        call(srv.rest_port, "POST", "/v1/models/m:predict", BODY)
    reply = call(srv.rest_port, "POST", "/v1/models/m:predict", '{"instances": [1.0, "a"]}')
    assert reply.status == 400 and "error" in reply.json()
    reply = call(srv.rest_port, "POST", "/v1/models/m:predict", '{"inputs": {"nope": [1.0]}}')
    assert reply.status == 400
    assert reply.json() == {"error": "Missing named input: x in 'inputs' object."}
