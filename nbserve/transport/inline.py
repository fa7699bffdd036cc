"""When a REST inference call may run on the IO thread instead of the predict pool (nbserve).

A tiny model (half_plus_two: tens of microseconds for decode, run and encode) spends more time
in the two thread hops of the predict pool than in the call itself. ``InlinePolicy`` lets such
calls run on the event loop's own thread, and keeps everything else in the pool:

- a call is inline only when its model's *recent* cost is known and below ``threshold_s``: the
  smallest of the last ``WINDOW`` measured calls (the minimum, because calls measured in the
  pool under load include waits for the GIL that are not the model's cost; a model that becomes
  slow -- a bigger version, a large batch -- leaves inline once a whole window of its calls is
  slow, and one slow call costs the loop at most that call);
- never before a model has ``WINDOW`` measurements (the first calls, warmup and TensorFlow's
  first run, go to the pool);
- never for a body over ``max_body_bytes`` (decoding scales with the body);
- never with ``threshold_s <= 0`` (``--rest_inline_threshold_us=0``; the server passes 0 when
  batching is on, since a batched call waits for its batch).

Thread-safe without locks: ``observe`` appends to a bounded deque (atomic under the GIL) from
any thread; ``allows`` reads it. Inline calls are not bounded by ``--rest_api_timeout_in_ms``:
by construction they take a fraction of a millisecond.
"""

from __future__ import annotations

from collections import deque

WINDOW = 32
DEFAULT_THRESHOLD_US = 1000
DEFAULT_MAX_BODY_BYTES = 16 * 1024


class InlinePolicy:
    """Per model: run inline on the IO thread, or hop to the predict pool."""

    def __init__(self, threshold_s: float, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.threshold_s = threshold_s
        self.max_body_bytes = max_body_bytes
        self._costs: dict[str, deque[float]] = {}

    def allows_size(self, body_bytes: int) -> bool:
        """False when no call with a body of ``body_bytes`` runs inline (off, or too big)."""
        return self.threshold_s > 0 and body_bytes <= self.max_body_bytes

    def allows(self, model: str, body_bytes: int) -> bool:
        """True when a call to ``model`` with a body of ``body_bytes`` should run inline."""
        if not self.allows_size(body_bytes):
            return False
        costs = self._costs.get(model)
        if costs is None or len(costs) < WINDOW:
            return False
        return min(costs) < self.threshold_s

    def observe(self, model: str, seconds: float) -> None:
        """Record one call's wall time (inline or in the pool), successful or not."""
        if self.threshold_s <= 0:
            return
        costs = self._costs.get(model)
        if costs is None:
            costs = self._costs.setdefault(model, deque(maxlen=WINDOW))
        costs.append(seconds)
