"""TF Serving's gRPC API on nbserve's own HTTP/2 server (``--grpc_front_end=h2``, the default).

grpcio's Python server spends most of a small call in its own machinery (a completion-queue
thread, a hand-off to a pool thread, condition waits: a grpcio echo server reaches about a third
of an aiohttp echo's rate here). This front end speaks HTTP/2 and gRPC's framing directly on the
server's IO loop, and runs each call there (``transport.inline``'s policy: a model whose recent
calls were cheap) or on the predict pool, as REST does. With batching on, a Predict of at most
``QUEUED_MAX_BYTES`` is parsed, decoded and queued on the batcher from the loop, and answered
from the batch thread's callback: no pool thread waits for its batch. Same servicers, messages,
status codes and texts as ``grpc_api`` (the ``grpcio`` front end); stock gRPC clients work
unchanged.

What it serves: the unary methods of ``tensorflow.serving.PredictionService`` and
``ModelService`` on this fast path; and, through ``grpc_h2_handlers``, grpcio's own handlers of
``grpc.health.v1.Health`` (``Check``, the streaming ``Watch``), server reflection (a
bidirectional stream) and ``tensorflow.ProfilerService``. Per call it honours ``grpc-timeout``
(the run timeout), ``authorization`` (``auth_token``; the health service is exempt on a loopback
host), ``grpc-encoding`` gzip/deflate on unary requests, the message size limit
(RESOURCE_EXHAUSTED) and the shared in-flight limit (UNAVAILABLE). Responses are not compressed.

HTTP/2 (RFC 9113), server side, no push: the preface and SETTINGS exchange, HEADERS with
CONTINUATION and padding, DATA with padding, PING, WINDOW_UPDATE and flow control both ways
(receive windows stay wide open and are topped up; responses wait for the peer's windows),
RST_STREAM (a cancelled call's answer is dropped, a handler's call ends), GOAWAY both ways. HPACK
decoding is the ``hpack`` package's, with a cache for the header blocks clients repeat that leave
the table unchanged; responses are encoded without the dynamic table (static index or literal
without indexing), so they need no encoder state. Anything malformed ends the connection with
GOAWAY, never the server.

Threads: everything runs on the loop that started the server, except calls handed to the predict
pool and grpcio handlers on their own small pool (their answers are written back on the loop).
Not thread-safe otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import time
import urllib.parse
import zlib
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar, cast

import hpack
from google.protobuf.message import DecodeError

from nbserve.errors import ServingError, StatusCode, as_serving_error, internal
from nbserve.service import ServingService
from nbserve.transport.admission import InflightLimit
from nbserve.transport.auth import GRPC_HEALTH_PREFIX, check_authorization
from nbserve.transport.grpc_api import (
    MODEL_SERVICE,
    OBSERVED_APIS,
    PREDICTION_SERVICE,
    Method,
    ModelServicer,
    PredictionServicer,
    ReloadHandler,
    RequestObserver,
    add_standard_services,
    serialized,
    truncate,
)
from nbserve.transport.grpc_h2_handlers import (
    HandlerContext,
    HandlerRegistry,
    RequestStream,
    run_handler,
)
from nbserve.transport.inline import InlinePolicy
from nbserve.transport.offload import post_to_loop

log = logging.getLogger("nbserve.grpc")

__all__ = ["H2GrpcServer", "start_h2_grpc_server"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 0x6, 0x7, 0x8, 0xB
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 0x4, 0x5
MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65535
MAX_FRAME = 16384  # the frame size we accept (SETTINGS_MAX_FRAME_SIZE's default; not raised)
MAX_STREAMS = 1024  # SETTINGS_MAX_CONCURRENT_STREAMS we announce
MAX_HEADER_BLOCK = 64 * 1024  # a longer header block ends the connection (ENHANCE_YOUR_CALM)
STREAM_THREADS = 8  # grpcio handler calls (health Watch, reflection, profiler) at once
# A batched Predict up to this size is parsed and decoded on the loop (tens of microseconds for
# tensor_content); a larger one is parsed on a pool thread that then waits for its batch.
QUEUED_MAX_BYTES = 1 << 20
_FRAME = struct.Struct(">BHBBI")  # length (24 bits as 8 + 16), type, flags, stream id
_SETTING = struct.Struct(">HI")
_ERROR_CODE = struct.Struct(">I")
_GOAWAY = struct.Struct(">II")
_MESSAGE_PREFIX = struct.Struct(">BI")
_TIMEOUT = re.compile(r"(\d{1,8})([HMSmun])")
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame."""
    size = len(payload)
    return _FRAME.pack(size >> 16, size & 0xFFFF, kind, flags, stream_id) + payload


def _literal(name: bytes, value: bytes) -> bytes:
    """An HPACK literal header field without indexing, new name, no Huffman coding."""
    return b"\x00" + _hpack_int(len(name), 7) + name + _hpack_int(len(value), 7) + value


def _hpack_int(value: int, prefix_bits: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((value,))
    out = bytearray((limit,))
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


# :status 200 (static index 8), content-type: application/grpc (static name 31, literal value)
_RESPONSE_HEADERS = b"\x88" + b"\x0f\x10" + _hpack_int(16, 7) + b"application/grpc"
_OK_TRAILERS = _literal(b"grpc-status", b"0")


def _status_trailers(code: int, message: str) -> bytes:
    """grpc-status and grpc-message (percent-encoded, as gRPC's wire format says)."""
    block = _literal(b"grpc-status", str(code).encode())
    if message:
        encoded = urllib.parse.quote(message.encode("utf-8", "replace"), safe=" !\"#$&'()*+,-./"
                                     "0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijk"
                                     "lmnopqrstuvwxyz{|}~")
        block += _literal(b"grpc-message", encoded.encode("ascii"))
    return block


def grpc_timeout_seconds(value: str | None) -> float | None:
    """The ``grpc-timeout`` header in seconds (None when absent or malformed)."""
    if not value:
        return None
    match = _TIMEOUT.fullmatch(value)
    if match is None:
        return None
    return int(match.group(1)) * _TIMEOUT_UNITS[match.group(2)]


class _Context:
    """What the servicers ask of a call: the time left before its deadline."""

    __slots__ = ("_deadline",)

    def __init__(self, timeout: float | None) -> None:
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())


_B = TypeVar("_B", bytes, memoryview)
Buffer = bytes | memoryview  # a request message: a view of the bytes read, or bytes

# (response bytes, None) or (None, error): how a queued call ends, from the batch thread.
Answer = Callable[[bytes | None, ServingError | None], None]


@dataclass(frozen=True)
class _Method:
    """One unary method: its API name, request parser (ServingError INTERNAL when the bytes do
    not parse), the call (parsed request, context) -> response bytes, whether it is an
    inference API (metrics, and the inline policy), and for a Predict that the batcher queues
    the non-blocking start (parsed request, context, answer); raises ServingError when refused
    at once."""

    api: str
    parse: Callable[[Buffer], Any]
    call: Callable[[Any, _Context], bytes]
    observed: bool
    start: Callable[[Any, _Context, Answer], None] | None = None


def _parser(request_type: type[Any]) -> Callable[[Buffer], Any]:
    parse = request_type.FromString

    def parse_or_internal(data: Buffer) -> Any:
        try:
            return parse(data)
        except DecodeError:
            raise internal(f"Failed to parse the {request_type.__name__}") from None

    return parse_or_internal


def _servicer_method(api: str, method: Method, request_type: type[Any]) -> _Method:
    def call(request: Any, context: _Context) -> bytes:
        return serialized(method(request, cast(Any, context)))

    return _Method(api, _parser(request_type), call, api in OBSERVED_APIS)


def _queued_predict(method: _Method, servicer: PredictionServicer) -> _Method:
    """``method`` (Predict) with the start of a queued call: the response is encoded on the
    batch thread that ran it (its codec answers the wire bytes)."""

    def start(request: Any, context: _Context, answer: Answer) -> None:
        def done(response: Any, error: ServingError | None) -> None:
            if error is not None:
                answer(None, error)
                return
            try:
                data = serialized(response)
            except Exception as exc:  # noqa: BLE001 - answered, never lost
                answer(None, as_serving_error(exc))
                return
            answer(data, None)

        servicer.start_predict(request, context, done)

    return _Method(method.api, method.parse, method.call, method.observed, start)


@dataclass
class _Calls:
    """What every connection of one server shares."""

    methods: dict[str, _Method]
    executor: Executor
    limiter: InflightLimit
    observer: RequestObserver | None
    inline: InlinePolicy
    max_message_bytes: int
    auth_token: str
    open_health: bool
    loop: asyncio.AbstractEventLoop
    handlers: HandlerRegistry  # health, reflection, profiler: grpcio's handlers
    stream_executor: ThreadPoolExecutor  # where those run (never the predict pool)
    connections: set[H2Connection] = field(default_factory=set)
    closing: bool = False
    handler_calls: int = 0  # handler calls running (at most STREAM_THREADS)


class _Stream:
    __slots__ = ("body", "body_bytes", "context", "done", "feed", "headers", "headers_sent",
                 "parse", "pending", "send_window", "trailers")

    def __init__(self, send_window: int) -> None:
        self.headers = _NO_HEADERS  # the request's, until its call starts
        self.body: list[Buffer] = []
        self.body_bytes = 0
        self.send_window = send_window
        self.pending = b""  # response bytes waiting for flow-control window
        self.done = False  # the request's END_STREAM arrived
        self.headers_sent = False
        self.trailers: bytes | None = None  # the status, sent once ``pending`` is out
        self.context: HandlerContext | None = None  # a grpcio handler's call
        self.feed: RequestStream | None = None  # its request stream (client streaming)
        self.parse: Callable[[Buffer], Any] | None = None  # its request deserializer


class H2Connection(asyncio.Protocol):
    """One HTTP/2 connection (see the module doc)."""

    def __init__(self, calls: _Calls) -> None:
        self._calls = calls
        self._transport: Any = None
        self._buffer = bytearray()
        self._viewed: set[_Stream] = set()  # streams given a view of the read being handled
        self._preface = False
        self._decoder = hpack.Decoder(max_header_list_size=MAX_HEADER_BLOCK)
        self._indexed: dict[bytes, _Headers] = {}  # all-indexed header blocks, decoded
        self._streams: dict[int, _Stream] = {}
        self._running: set[int] = set()  # streams whose call has not answered yet
        self._continuation: tuple[int, int, bytearray] | None = None  # stream, flags, block
        self._send_window = DEFAULT_WINDOW
        self._peer_window = DEFAULT_WINDOW
        self._peer_frame = 16384
        self._last_stream = 0
        self._received = 0  # DATA bytes since the connection window was last topped up
        self._goaway_sent = False
        self._blocked: list[int] = []  # streams with response bytes waiting for window

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        self._calls.connections.add(self)
        settings = (_SETTING.pack(0x3, MAX_STREAMS) + _SETTING.pack(0x4, MAX_WINDOW)
                    + _SETTING.pack(0x6, MAX_HEADER_BLOCK))
        transport.write(frame(SETTINGS, 0, 0, settings)
                        + frame(WINDOW_UPDATE, 0, 0, _ERROR_CODE.pack(MAX_WINDOW - DEFAULT_WINDOW)))
        if self._calls.closing:
            self.goaway()

    def connection_lost(self, exc: Exception | None) -> None:
        self._calls.connections.discard(self)
        for stream in self._streams.values():
            _end_handler_call(stream)
        self._streams.clear()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if self._buffer:  # a frame began in an earlier read: one copy joins the two
            data = b"".join((self._buffer, data))
            self._buffer.clear()
        elif type(data) is not bytes:
            data = bytes(data)
        try:
            consumed = self._read_frames(data)
            if consumed < len(data) and self._transport is not None:
                self._buffer += memoryview(data)[consumed:]
        except _ConnectionError as err:
            self._fail(err.code, str(err))
        except Exception:  # never the server: this connection ends, the rest goes on
            log.exception("gRPC (h2) connection failed")
            self._fail(INTERNAL_ERROR, "internal error")
        finally:
            self._unpin()

    def _unpin(self) -> None:
        """Copy out the views a stream still holds once its read is handled: a small DATA frame
        must not keep a whole read alive while its stream waits for more (a message done within
        the read was joined already, without this copy)."""
        for stream in self._viewed:
            stream.body = [part if type(part) is bytes else bytes(part) for part in stream.body]
        self._viewed.clear()

    # -- reading -------------------------------------------------------------------------------
    def _read_frames(self, buffer: bytes) -> int:
        """Handle every complete frame in ``buffer``; returns the bytes consumed. A DATA frame's
        payload is a view of ``buffer`` (immutable: no copy until the message is joined)."""
        start = 0
        if not self._preface:
            if len(buffer) < len(PREFACE):
                if not PREFACE.startswith(buffer):
                    raise _ConnectionError(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                return 0
            if not buffer.startswith(PREFACE):
                raise _ConnectionError(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
            start = len(PREFACE)
            self._preface = True
        view = memoryview(buffer)
        end = len(buffer)
        while end - start >= 9 and self._transport is not None:
            high, low, kind, flags, stream_id = _FRAME.unpack_from(buffer, start)
            size = (high << 16) | low
            if size > MAX_FRAME:
                raise _ConnectionError(FRAME_SIZE_ERROR, "frame over SETTINGS_MAX_FRAME_SIZE")
            if end - start - 9 < size:
                break
            payload = view[start + 9:start + 9 + size]
            start += 9 + size
            self._frame(kind, flags, stream_id & MAX_WINDOW,
                        payload if kind == DATA else payload.tobytes())
        return start

    def _frame(self, kind: int, flags: int, stream_id: int, payload: Any) -> None:
        """One frame; ``payload`` is bytes, or for DATA a memoryview."""
        if self._continuation is not None and kind != CONTINUATION:
            raise _ConnectionError(PROTOCOL_ERROR, "expected CONTINUATION")
        if kind == DATA:
            self._data(flags, stream_id, payload)
        elif kind == HEADERS:
            self._headers(flags, stream_id, payload)
        elif kind == CONTINUATION:
            self._more_headers(flags, stream_id, payload)
        elif kind == SETTINGS:
            self._settings(flags, stream_id, payload)
        elif kind == PING:
            if len(payload) != 8 or stream_id:
                raise _ConnectionError(PROTOCOL_ERROR, "bad PING")
            if not flags & ACK:
                self._write(frame(PING, ACK, 0, payload))
        elif kind == WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == RST_STREAM:
            stream = self._streams.pop(stream_id, None)  # a running call's answer is dropped
            if stream is not None:
                _end_handler_call(stream)
        elif kind == GOAWAY:
            self.goaway()
        elif kind == PUSH_PROMISE:
            raise _ConnectionError(PROTOCOL_ERROR, "a client must not push")
        # PRIORITY and unknown frame types are ignored (RFC 9113 5.5)

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id or len(payload) % 6:
            raise _ConnectionError(FRAME_SIZE_ERROR, "bad SETTINGS")
        if flags & ACK:
            return
        for offset in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, offset)
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise _ConnectionError(FLOW_CONTROL_ERROR, "window too large")
                delta = value - self._peer_window
                self._peer_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not 16384 <= value <= 2**24 - 1:
                    raise _ConnectionError(PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE")
                self._peer_frame = value
        self._write(frame(SETTINGS, ACK, 0))
        self._flush_blocked()

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(FRAME_SIZE_ERROR, "bad WINDOW_UPDATE")
        increment = _ERROR_CODE.unpack(payload)[0] & MAX_WINDOW
        if stream_id == 0:
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise _ConnectionError(FLOW_CONTROL_ERROR, "connection window overflow")
        else:
            stream = self._streams.get(stream_id)
            if stream is None:
                return
            stream.send_window += increment
        self._flush_blocked()

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or not stream_id & 1:
            raise _ConnectionError(PROTOCOL_ERROR, "HEADERS on a bad stream id")
        payload = _unpad(flags, payload)
        if flags & PRIORITY_FLAG:
            payload = payload[5:]
        if flags & END_HEADERS:
            self._header_block(stream_id, flags, payload)
        else:
            self._continuation = (stream_id, flags, bytearray(payload))

    def _more_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuation is None or self._continuation[0] != stream_id:
            raise _ConnectionError(PROTOCOL_ERROR, "unexpected CONTINUATION")
        block = self._continuation[2]
        block += payload
        if len(block) > MAX_HEADER_BLOCK:
            raise _ConnectionError(ENHANCE_YOUR_CALM, "header block too large")
        if flags & END_HEADERS:
            first_flags = self._continuation[1]
            self._continuation = None
            self._header_block(stream_id, first_flags, bytes(block))

    def _header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        headers = self._decode(block)
        stream = self._streams.get(stream_id)
        if stream is not None:  # trailers from the client: only END_STREAM matters
            if flags & END_STREAM:
                self._end_of_request(stream_id, stream)
            return
        if stream_id <= self._last_stream:
            raise _ConnectionError(PROTOCOL_ERROR, "stream id reused")
        self._last_stream = stream_id
        if self._goaway_sent or len(self._streams) >= MAX_STREAMS:
            self._write(frame(RST_STREAM, 0, stream_id, _ERROR_CODE.pack(REFUSED_STREAM)))
            return
        stream = _Stream(self._peer_window)
        stream.headers = headers
        self._streams[stream_id] = stream
        path = headers.first.get(":path", "")
        if path not in self._calls.methods:
            handler = self._calls.handlers.lookup(path)
            if handler is not None and handler.request_streaming:
                self._start_handler_call(stream_id, stream, handler, RequestStream())
                if stream_id not in self._streams:  # refused: already answered
                    return
        if flags & END_STREAM:
            self._end_of_request(stream_id, stream)

    def _decode(self, block: bytes) -> _Headers:
        """HPACK-decode ``block``. A block that leaves the dynamic table as it is (indexed fields
        and literals without indexing: what clients send once their headers are in the table)
        decodes the same until the table changes, which only another kind of block does: those
        clear the cache."""
        cached = self._indexed.get(block)
        if cached is not None:
            return cached
        try:
            fields = [(str(k), str(v)) for k, v in self._decoder.decode(block, raw=False)]
        except hpack.HPACKError as exc:
            raise _ConnectionError(0x9, f"HPACK: {exc}") from None  # COMPRESSION_ERROR
        headers = _Headers(fields, _first_values(fields))
        if keeps_table(block):
            if len(self._indexed) < 64:
                self._indexed[block] = headers
        else:
            self._indexed.clear()
        return headers

    def _data(self, flags: int, stream_id: int, payload: memoryview) -> None:
        if stream_id == 0:
            raise _ConnectionError(PROTOCOL_ERROR, "DATA on stream 0")
        self._received += len(payload)
        if self._received >= MAX_WINDOW // 2:  # top the connection window up
            self._write(frame(WINDOW_UPDATE, 0, 0, _ERROR_CODE.pack(self._received)))
            self._received = 0
        stream = self._streams.get(stream_id)
        if stream is None or stream.done:
            return  # a stream we refused or reset: its data is dropped
        data = _unpad(flags, payload)
        stream.body.append(data)
        stream.body_bytes += len(data)
        self._viewed.add(stream)
        if stream.feed is not None:
            self._feed(stream_id, stream, bool(flags & END_STREAM))
            return
        if stream.body_bytes > self._calls.max_message_bytes + 5:
            self._finish(stream_id, StatusCode.RESOURCE_EXHAUSTED,
                         f"Received message larger than max ({stream.body_bytes - 5} vs. "
                         f"{self._calls.max_message_bytes})")
            stream.done = True
            return
        if flags & END_STREAM:
            self._end_of_request(stream_id, stream)

    # -- calls ---------------------------------------------------------------------------------
    def _end_of_request(self, stream_id: int, stream: _Stream) -> None:
        stream.done = True
        if stream.feed is not None:  # a client-streaming handler call: its stream ends
            stream.feed.close()
            return
        headers = stream.headers.first
        stream.headers = _NO_HEADERS
        path = headers.get(":path", "")
        if headers.get(":method") != "POST" or \
                not headers.get("content-type", "").startswith("application/grpc"):
            self._write(frame(HEADERS, END_HEADERS | END_STREAM, stream_id,
                              _literal(b":status", b"415")))
            self._streams.pop(stream_id, None)
            return
        calls = self._calls
        method = calls.methods.get(path)
        handler: Any = None if method is not None else calls.handlers.lookup(path)
        if method is None and handler is None:
            self._finish(stream_id, StatusCode.UNIMPLEMENTED, "Method not found!")
            return
        if not self._authorized(stream_id, path, headers):
            return
        try:
            message = _message(b"".join(stream.body), headers.get("grpc-encoding", "identity"),
                               calls.max_message_bytes)
        except ServingError as err:
            self._finish(stream_id, err.code, err.message)
            return
        stream.body = []
        timeout = grpc_timeout_seconds(headers.get("grpc-timeout"))
        if method is not None:
            self._call(stream_id, method, message, _Context(timeout))
            return
        try:
            request = handler.request_deserializer(message) \
                if handler.request_deserializer else bytes(message)
        except DecodeError:  # grpcio's answer to a request it cannot deserialize
            self._finish(stream_id, StatusCode.INTERNAL, "Failed to parse the request")
            return
        self._start_handler_call(stream_id, stream, handler, request, list(headers.items()))

    def _authorized(self, stream_id: int, path: str, headers: dict[str, str]) -> bool:
        """True when the call may go on; else it is answered UNAUTHENTICATED."""
        calls = self._calls
        if not calls.auth_token or (calls.open_health and path.startswith(GRPC_HEALTH_PREFIX)):
            return True
        error = check_authorization(headers.get("authorization"), calls.auth_token)
        if error is None:
            return True
        self._finish(stream_id, StatusCode.UNAUTHENTICATED, error)
        return False

    # -- grpcio's handlers (health, reflection, profiler) ------------------------------------------
    def _start_handler_call(self, stream_id: int, stream: _Stream, handler: Any, request: Any,
                            headers: list[tuple[str, str]] | None = None) -> None:
        """Run a grpcio handler on the stream pool; its answers come back to this loop."""
        calls = self._calls
        if headers is None:
            headers = stream.headers.fields
        first = _first_values(headers)
        if isinstance(request, RequestStream) and not self._authorized(
                stream_id, first.get(":path", ""), first):
            return
        if calls.closing or calls.handler_calls >= STREAM_THREADS:
            self._finish(stream_id, StatusCode.RESOURCE_EXHAUSTED,
                         f"Too many concurrent streaming gRPC calls ({STREAM_THREADS})")
            return
        calls.handler_calls += 1
        context = HandlerContext(headers, grpc_timeout_seconds(first.get("grpc-timeout")))
        stream.context = context
        if isinstance(request, RequestStream):
            stream.feed = request
            stream.parse = handler.request_deserializer or (lambda message: message)
        self._running.add(stream_id)
        loop = calls.loop

        def send(data: bytes) -> None:
            post_to_loop(loop, self._send_message, stream_id, data)

        def finish(code: StatusCode, details: str) -> None:
            post_to_loop(loop, self._handler_call_ended, stream_id, code, details)

        calls.stream_executor.submit(run_handler, handler, request, context, send, finish)

    def _handler_call_ended(self, stream_id: int, code: StatusCode, details: str) -> None:
        self._calls.handler_calls -= 1
        self._running.discard(stream_id)
        self._send_status(stream_id, code, details)
        self._close_if_done()

    def _feed(self, stream_id: int, stream: _Stream, end: bool) -> None:
        """Hand every complete request message of a client-streaming call to its handler."""
        assert stream.feed is not None and stream.parse is not None
        buffer = b"".join(stream.body)
        while len(buffer) >= 5:
            compressed, size = _MESSAGE_PREFIX.unpack_from(buffer)
            if size > self._calls.max_message_bytes or compressed:
                stream.feed.close()
                _end_handler_call(stream)
                self._finish(stream_id, StatusCode.RESOURCE_EXHAUSTED if not compressed else
                             StatusCode.UNIMPLEMENTED, "Cannot take this request message")
                return
            if len(buffer) < 5 + size:
                break
            try:
                stream.feed.put(stream.parse(buffer[5:5 + size]))
            except DecodeError:  # a message that does not parse ends the call
                stream.feed.close()
                _end_handler_call(stream)
                self._finish(stream_id, StatusCode.INTERNAL, "Failed to parse the request")
                return
            buffer = buffer[5 + size:]
        stream.body = [buffer] if buffer else []
        stream.body_bytes = len(buffer)
        if end:
            stream.done = True
            stream.feed.close()

    def _call(self, stream_id: int, method: _Method, message: Buffer,
              context: _Context) -> None:
        calls = self._calls
        try:
            calls.limiter.acquire()
        except ServingError as err:
            self._finish(stream_id, err.code, err.message)
            return
        started = time.perf_counter()
        if method.start is not None and len(message) <= QUEUED_MAX_BYTES:
            self._start_queued(stream_id, method, message, context, started)
            return
        policy = calls.inline if method.observed else None
        request = _inline_request(policy, method.parse, message)
        if request is not None:
            self._answer(stream_id, method, started, _run(method, request, context, policy))
            return
        self._running.add(stream_id)
        future = calls.loop.run_in_executor(calls.executor, _run, method, message, context,
                                            policy)
        future.add_done_callback(
            lambda done: self._answer(stream_id, method, started, done.result()))

    def _start_queued(self, stream_id: int, method: _Method, message: Buffer,
                      context: _Context,
                      started: float) -> None:
        """A Predict the batcher queues: parsed, decoded and queued here; the batch thread's
        answer comes back to this loop. Refused at once: answered at once."""
        assert method.start is not None
        loop = self._calls.loop
        model = ""

        def answer(response: bytes | None, error: ServingError | None) -> None:
            post_to_loop(loop, self._answer, stream_id, method, started, (response, error, model))

        try:
            request = method.parse(message)
            model = str(request.model_spec.name)
            method.start(request, context, answer)
        except ServingError as err:
            self._answer(stream_id, method, started, (None, err, model))
            return
        except Exception as exc:  # never UNKNOWN with a traceback to the client, never a crash
            log.exception("gRPC %s failed", method.api)
            self._answer(stream_id, method, started, (None, as_serving_error(exc), model))
            return
        self._running.add(stream_id)

    def _answer(self, stream_id: int, method: _Method, started: float,
                outcome: tuple[bytes | None, ServingError | None, str]) -> None:
        self._calls.limiter.release()
        self._running.discard(stream_id)
        response, error, model = outcome
        if method.observed and self._calls.observer is not None:
            self._calls.observer(model, method.api,
                                 StatusCode.OK if error is None else error.code,
                                 time.perf_counter() - started)
        if error is not None:
            self._finish(stream_id, error.code, error.message)
        else:
            assert response is not None
            self._respond(stream_id, response)
        self._close_if_done()

    # -- writing -------------------------------------------------------------------------------
    def _respond(self, stream_id: int, response: bytes) -> None:
        """A unary call's answer: headers, the message and OK, in one write when the windows
        allow (the usual case), else as they allow."""
        stream = self._streams.get(stream_id)
        if stream is None or self._transport is None:
            return  # reset by the client meanwhile
        body = _MESSAGE_PREFIX.pack(0, len(response)) + response
        if not stream.headers_sent and not stream.pending and \
                len(body) <= min(self._send_window, stream.send_window, self._peer_frame):
            self._send_window -= len(body)
            self._streams.pop(stream_id)
            self._write(frame(HEADERS, END_HEADERS, stream_id, _RESPONSE_HEADERS)
                        + frame(DATA, 0, stream_id, body)
                        + frame(HEADERS, END_HEADERS | END_STREAM, stream_id, _OK_TRAILERS))
            return
        self._send_message(stream_id, response)
        self._send_status(stream_id, StatusCode.OK, "")

    def _send_message(self, stream_id: int, response: bytes) -> None:
        """One response message (the headers first, once), as the windows allow."""
        stream = self._streams.get(stream_id)
        if stream is None or self._transport is None:
            return
        if not stream.headers_sent:
            stream.headers_sent = True
            self._write(frame(HEADERS, END_HEADERS, stream_id, _RESPONSE_HEADERS))
        stream.pending += _MESSAGE_PREFIX.pack(0, len(response)) + response
        if stream_id not in self._blocked:
            self._blocked.append(stream_id)
        self._flush_blocked()

    def _send_status(self, stream_id: int, code: StatusCode, message: str) -> None:
        """End the stream with ``code``: after its pending messages, or at once as a
        Trailers-Only response when nothing was sent."""
        stream = self._streams.get(stream_id)
        if stream is None or self._transport is None:
            return
        trailers = _OK_TRAILERS if code == StatusCode.OK else \
            _status_trailers(int(code), truncate(message))
        if not stream.headers_sent:
            self._streams.pop(stream_id)
            _end_handler_call(stream)
            self._write(frame(HEADERS, END_HEADERS | END_STREAM, stream_id,
                              _RESPONSE_HEADERS + trailers))
            return
        stream.trailers = trailers
        if stream_id not in self._blocked:
            self._blocked.append(stream_id)
        self._flush_blocked()

    def _flush_blocked(self) -> None:
        """Send what the windows now allow of the responses waiting for them, in order; a
        stream's status goes once its messages are out."""
        still: list[int] = []
        for stream_id in self._blocked:
            stream = self._streams.get(stream_id)
            if stream is None:
                continue
            out = []
            while stream.pending and self._send_window > 0 and stream.send_window > 0:
                size = min(len(stream.pending), self._send_window, stream.send_window,
                           self._peer_frame)
                out.append(frame(DATA, 0, stream_id, stream.pending[:size]))
                stream.pending = stream.pending[size:]
                self._send_window -= size
                stream.send_window -= size
            if stream.pending:
                still.append(stream_id)
            elif stream.trailers is not None:
                out.append(frame(HEADERS, END_HEADERS | END_STREAM, stream_id, stream.trailers))
                self._streams.pop(stream_id)
                _end_handler_call(stream)
            if out:
                self._write(b"".join(out))
        self._blocked = still
        self._close_if_done()

    def _finish(self, stream_id: int, code: StatusCode, message: str) -> None:
        """End the stream with a non-OK status."""
        self._send_status(stream_id, code, message)

    def _close_if_done(self) -> None:
        """After GOAWAY: close once no call is running and nothing waits to be sent."""
        if self._goaway_sent and not self._running and not self._blocked and self._transport:
            self._transport.close()

    def end_handler_calls(self) -> None:
        """The server stops: grpcio handler calls still running (a health Watch) end now."""
        for stream in list(self._streams.values()):
            _end_handler_call(stream)

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def goaway(self) -> None:
        """Refuse new streams; close once the calls in flight have answered."""
        if self._goaway_sent or self._transport is None:
            return
        self._goaway_sent = True
        self._write(frame(GOAWAY, 0, 0, _GOAWAY.pack(self._last_stream, NO_ERROR)))
        if not self._running and not self._blocked:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, code: int, reason: str) -> None:
        log.debug("gRPC (h2) connection error %d: %s", code, reason)
        if self._transport is not None:
            self._transport.write(frame(GOAWAY, 0, 0, _GOAWAY.pack(self._last_stream, code)
                                        + reason.encode()[:200]))
            self._transport.close()
            self._transport = None
        self._buffer.clear()


def keeps_table(block: bytes) -> bool:
    """True when the HPACK ``block`` surely leaves the dynamic table unchanged: only indexed
    fields and literals without indexing / never indexed (RFC 7541 6.1, 6.2.2, 6.2.3); False for
    anything else (incremental indexing, a size update, a block that does not parse)."""
    position, end = 0, len(block)
    while position < end:
        first = block[position]
        if first & 0x80:  # indexed field
            position = _skip_int(block, position, 7)
        elif first & 0xE0 == 0:  # literal without indexing (0000) or never indexed (0001)
            name_index = first & 0x0F
            position = _skip_int(block, position, 4)
            if name_index == 0:
                position = _skip_string(block, position)
            position = _skip_string(block, position)
        else:
            return False
        if position < 0:
            return False
    return True


def _skip_int(block: bytes, position: int, prefix_bits: int) -> int:
    """Past the HPACK integer at ``position`` (-1 when the block ends inside it)."""
    if block[position] & ((1 << prefix_bits) - 1) != (1 << prefix_bits) - 1:
        return position + 1
    position += 1
    while position < len(block) and block[position] & 0x80:
        position += 1
    return position + 1 if position < len(block) else -1


def _skip_string(block: bytes, position: int) -> int:
    """Past the HPACK string literal at ``position`` (-1 when it does not fit the block)."""
    if position < 0 or position >= len(block):
        return -1
    length = block[position] & 0x7F
    if length == 0x7F:
        after = _skip_int(block, position, 7)
        if after < 0:
            return -1
        length, shift = 0x7F, 0
        for byte in block[position + 1:after]:
            length += (byte & 0x7F) << shift
            shift += 7
        position = after
    else:
        position += 1
    return position + length if position + length <= len(block) else -1


class _Headers(NamedTuple):
    """A request's decoded header block; both are shared (a repeated block decodes once) and
    never changed."""

    fields: list[tuple[str, str]]  # in order, repeats kept
    first: dict[str, str]  # ``_first_values(fields)``


_NO_HEADERS = _Headers([], {})


def _first_values(headers: list[tuple[str, str]]) -> dict[str, str]:
    """Each header's first value (a repeated ``authorization`` counts as its first, as on
    the grpcio front end)."""
    first: dict[str, str] = {}
    for name, value in headers:
        first.setdefault(name, value)
    return first


def _end_handler_call(stream: _Stream) -> None:
    """A grpcio handler's call on ``stream`` is over (or never was): tell its handler."""
    if stream.feed is not None:
        stream.feed.close()
    if stream.context is not None:
        stream.context.end()


class _ConnectionError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def _unpad(flags: int, payload: _B) -> _B:
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise _ConnectionError(PROTOCOL_ERROR, "bad padding")
    return payload[1:len(payload) - payload[0]]


def _message(body: bytes, encoding: str, max_bytes: int) -> Buffer:
    """The one gRPC message of a unary request body (length-prefixed, maybe compressed); a view
    of ``body`` when not compressed."""
    if len(body) < 5:
        raise internal("Missing request message")
    compressed, size = _MESSAGE_PREFIX.unpack_from(body)
    if len(body) != 5 + size:
        raise internal("A unary call needs exactly one request message")
    if size > max_bytes:
        raise ServingError(StatusCode.RESOURCE_EXHAUSTED,
                           f"Received message larger than max ({size} vs. {max_bytes})")
    message = memoryview(body)[5:]
    if not compressed:
        return message
    try:
        if encoding == "gzip":
            return zlib.decompress(message, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return zlib.decompress(message)
    except zlib.error:
        raise internal("Could not decompress the request message") from None
    raise ServingError(StatusCode.UNIMPLEMENTED,
                       f"Compression algorithm '{encoding}' is not supported")


def _inline_request(policy: InlinePolicy | None, parse: Callable[[Buffer], Any],
                    message: Buffer) -> Any:
    """The parsed request when its call may run on the loop (``policy`` allows its model at
    this size), else None (the pool parses it, and reports one that does not parse)."""
    if policy is None or not policy.allows_size(len(message)):
        return None
    try:
        request = parse(message)
    except ServingError:
        return None
    return request if policy.allows(request.model_spec.name, len(message)) else None


def _run(method: _Method, request: Any, context: _Context, policy: InlinePolicy | None
         ) -> tuple[bytes | None, ServingError | None, str]:
    """(response, None, model) or (None, error, model) for ``request`` (bytes, or already
    parsed); tells ``policy`` the work's wall time. Never raises."""
    started = time.perf_counter()
    model = ""
    try:
        if isinstance(request, (bytes, memoryview)):
            request = method.parse(request)
        if method.observed:
            model = str(request.model_spec.name)
        return method.call(request, context), None, model
    except ServingError as err:
        return None, err, model
    except Exception as exc:  # never UNKNOWN with a traceback to the client, never a crash
        log.exception("gRPC %s failed", method.api)
        return None, as_serving_error(exc), model
    finally:
        if policy is not None and model:
            policy.observe(model, time.perf_counter() - started)


class H2GrpcServer:
    """The listening sockets and connections of one front end; ``stop`` ends them."""

    def __init__(self, servers: list[asyncio.AbstractServer], calls: _Calls, health: Any) -> None:
        self._servers = servers
        self._calls = calls
        self._health = health

    async def stop(self, grace: float | None) -> None:
        """On the server's loop: stop listening, GOAWAY every connection (calls in flight still
        answer; health Watch streams see NOT_SERVING), wait up to ``grace`` seconds for them
        (None: none), then end grpcio handler calls and abort what is left."""
        self._calls.closing = True
        self._health.enter_graceful_shutdown()
        for server in self._servers:
            server.close()
        for connection in list(self._calls.connections):
            connection.goaway()
        deadline = time.monotonic() + (grace or 0.0)
        while self._calls.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self._calls.connections):
            connection.end_handler_calls()
        await asyncio.sleep(0.05)  # their statuses go out
        for connection in list(self._calls.connections):
            connection.abort()
        for server in self._servers:
            await server.wait_closed()
        self._calls.stream_executor.shutdown(wait=False, cancel_futures=True)


def _grpcio_handlers(profiler: bool) -> tuple[HandlerRegistry, Any]:
    """grpcio's standard services (``grpc_api.add_standard_services``) in a registry;
    returns (registry, health servicer)."""
    registry = HandlerRegistry()
    return registry, add_standard_services(registry, profiler)


async def start_h2_grpc_server(service: ServingService, executor: Executor,
                               sock: Any | None, *, host: str, max_message_bytes: int,
                               reload: ReloadHandler | None = None,
                               observer: RequestObserver | None = None, auth_token: str = "",
                               limiter: InflightLimit | None = None, unix_socket: str = "",
                               open_health: bool = True, profiler: bool = False,
                               inline_threshold_us: float = 0.0) -> H2GrpcServer:
    """Serve gRPC on ``sock`` (a bound, listening TCP socket, or None) and, when given, on the
    Unix socket ``unix_socket``; on the running loop. The arguments mean what they mean for
    ``grpc_api.start_grpc_server``; ``open_health``: the health check needs no token."""
    loop = asyncio.get_running_loop()
    methods: dict[str, _Method] = {}
    prediction = PredictionServicer(service)
    for service_name, servicer_methods in (
            (PREDICTION_SERVICE, prediction.methods()),
            (MODEL_SERVICE, ModelServicer(service, reload).methods())):
        for name, (method, request_type) in servicer_methods.items():
            methods[f"/{service_name}/{name}"] = _servicer_method(name, method, request_type)
    if service.queues_predict:
        predict = f"/{PREDICTION_SERVICE}/Predict"
        methods[predict] = _queued_predict(methods[predict], prediction)
    registry, health_servicer = _grpcio_handlers(profiler)
    calls = _Calls(methods, executor, limiter or InflightLimit(0), observer,
                   InlinePolicy(inline_threshold_us / 1e6), max_message_bytes, auth_token,
                   open_health, loop, registry,
                   ThreadPoolExecutor(STREAM_THREADS, thread_name_prefix="nbserve-grpc-stream"))
    servers: list[asyncio.AbstractServer] = []
    try:
        if sock is not None:
            servers.append(await loop.create_server(lambda: H2Connection(calls), sock=sock))
        if unix_socket:
            servers.append(await loop.create_unix_server(lambda: H2Connection(calls),
                                                         unix_socket))
    except BaseException:
        for server in servers:
            server.close()
        calls.stream_executor.shutdown(wait=False)
        raise
    return H2GrpcServer(servers, calls, health_servicer)
