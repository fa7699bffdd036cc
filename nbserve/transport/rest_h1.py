"""TF Serving's REST API on nbserve's own HTTP/1.1 connection, for the requests clients repeat
(``--rest_front_end=h1``; issue 12).

aiohttp spends most of a small REST call in its own request machinery (a request object, its
header multidict, a handler task, the response object and its writer): more than the model,
JSON and TF Serving's rules together on half_plus_two. ``H1Connection`` answers the common
requests itself, on the IO loop, with the same ``RestApi.v1_reply`` as the aiohttp handler, and
hands anything else to aiohttp for good:

- served here: ``GET`` and ``POST`` on ``/v1...`` over HTTP/1.1, ``Content-Length`` bodies up
  to ``--rest_api_max_request_bytes``, keep-alive and pipelining (answers in order);
- handed to aiohttp, with every byte of the connection from that request on (so aiohttp sees
  the request exactly as sent): any other method (``OPTIONS``, ``HEAD``...) or path (probes,
  metrics, 404s), HTTP/1.0, ``Transfer-Encoding``, ``Content-Encoding``, ``Expect``,
  ``Connection`` other than keep-alive, ``Upgrade``, a repeated header field, no ``Host``, a
  head over 8 KiB or anything the strict grammar below does not accept. aiohttp then answers
  as it always did (its 400s, 413, 417, chunked bodies, gzip), and keeps the connection.

The answers are byte for byte aiohttp's (status line, CORS headers when enabled, Content-Type,
Content-Length, Date, Server), so a client cannot tell which one answered. A call that may run
inline (``transport.inline``) is answered within ``data_received``; any other waits for the
predict pool while later pipelined requests wait in the buffer (reading pauses past 256 KiB).

Threads: everything runs on the IO loop. ``H1Server.stop(grace)`` stops listening, closes idle
connections, lets in-flight answers finish for up to ``grace`` seconds and aborts the rest;
connections already handed to aiohttp are aiohttp's to stop (``AppRunner.cleanup``).
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, cast

from aiohttp.http import SERVER_SOFTWARE

from nbserve.transport.rest_api import CORS_HEADERS, Reply, RestApi

MAX_HEAD_BYTES = 8190  # aiohttp's max_line_size: a longer head goes to aiohttp, which decides
PAUSE_READING_BYTES = 256 * 1024  # buffered past a request waiting for the pool
KEEPALIVE_TIMEOUT_S = 3630.0  # aiohttp's default: an idle connection is closed after this
LARGE_BODY_BYTES = 64 * 1024  # answers from here on are written without joining head and body
HEAD_CACHE = 256  # parsed heads remembered per server

_REQUEST_LINE = re.compile(rb"(GET|POST) (/v1(?:[/?][\x21\x22\x24-\x7e]*)?) HTTP/1\.1")
_HEADER_FIELDS = re.compile(rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\x00-\x08\x0a-\x1f\x7f]*\r\n)*")
_HAND_OFF_FIELDS = frozenset((b"transfer-encoding", b"content-encoding", b"expect", b"upgrade"))


class Head(NamedTuple):
    """A request head this front end serves (``parse_head``)."""

    method: str
    target: str  # the raw path and query, as aiohttp's ``request.raw_path``
    content_length: int
    authorization: str | None
    close: bool  # ``Connection: close``: the answer ends the connection


def parse_head(head: bytes) -> Head | None:
    """The request line and header fields ``head`` (up to, not including, the blank line) hold,
    or None when this front end does not serve it (aiohttp will). Strict on purpose: a head is
    served here only when every line matches HTTP/1.1's grammar, no field repeats, ``Host`` is
    there and nothing asks for a feature aiohttp handles (see the module docstring)."""
    line_end = head.find(b"\r\n")
    if line_end < 0:
        return None  # no Host field
    request_line = _REQUEST_LINE.fullmatch(head, 0, line_end)
    fields = head[line_end + 2:] + b"\r\n"
    if request_line is None or _HEADER_FIELDS.fullmatch(fields) is None:
        return None
    seen: set[bytes] = set()
    content_length = 0
    authorization: str | None = None
    close = False
    for line in fields[:-2].split(b"\r\n"):
        name, _, value = line.partition(b":")
        name = name.lower()
        if name in seen or name in _HAND_OFF_FIELDS:
            return None
        seen.add(name)
        value = value.strip(b" \t")
        if name == b"content-length":
            if not value.isdigit() or len(value) > 18:
                return None
            content_length = int(value)
        elif name == b"authorization":
            authorization = value.decode("utf-8", "surrogateescape")
        elif name == b"connection":
            value = value.lower()
            if value == b"close":
                close = True
            elif value != b"keep-alive":
                return None
    method = request_line.group(1).decode()
    if b"host" not in seen or (method == "GET" and content_length):
        return None
    return Head(method, request_line.group(2).decode(), content_length, authorization, close)


class _Writer:
    """Response bytes as aiohttp writes them, with the Date field cached per second."""

    def __init__(self, cors: bool) -> None:
        self._fixed = b"".join(f"{k}: {v}\r\n".encode() for k, v in CORS_HEADERS.items()) \
            if cors else b""
        self._tail = b"\r\nServer: " + SERVER_SOFTWARE.encode() + b"\r\n\r\n"
        self._closing_tail = self._tail[:-2] + b"Connection: close\r\n\r\n"
        self._second = -1
        self._date = b""
        self._status_lines: dict[int, bytes] = {}

    def response(self, reply: Reply, close: bool) -> tuple[bytes, bytes]:
        """(head, body) of the HTTP/1.1 response for ``reply``; ``close``: the last one."""
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._date = email.utils.formatdate(now, usegmt=True).encode()
        status_line = self._status_lines.get(reply.status)
        if status_line is None:
            phrase = http.HTTPStatus(reply.status).phrase
            status_line = self._status_lines.setdefault(
                reply.status, f"HTTP/1.1 {reply.status} {phrase}\r\n".encode())
        extra = b"".join(f"{k}: {v}\r\n".encode() for k, v in reply.headers.items()) \
            if reply.headers else b""
        head = b"".join((status_line, self._fixed, extra,
                         b"Content-Type: application/json\r\nContent-Length: ",
                         str(len(reply.body)).encode(), b"\r\nDate: ", self._date,
                         self._closing_tail if close else self._tail))
        return head, reply.body


class _Shared:
    """What every connection of one server uses."""

    def __init__(self, api: RestApi, hand_off: Callable[[], asyncio.Protocol],
                 max_request_bytes: int, cors: bool) -> None:
        self.api = api
        self.hand_off = hand_off  # aiohttp's protocol factory (web.Server)
        self.max_request_bytes = max_request_bytes
        self.writer = _Writer(cors)
        self.connections: set[H1Connection] = set()
        self.closing = False
        self._heads: dict[bytes, Head] = {}  # clients repeat their heads byte for byte

    def head(self, raw: bytes) -> Head | None:
        """``parse_head(raw)``, remembered for the last ``HEAD_CACHE`` distinct heads; None also
        for a body over ``max_request_bytes`` (aiohttp answers 413)."""
        head = self._heads.get(raw)
        if head is None:
            head = parse_head(raw)
            if head is None or head.content_length > self.max_request_bytes:
                return None
            if len(self._heads) >= HEAD_CACHE:
                self._heads.clear()
            self._heads[raw] = head
        return head


class H1Connection(asyncio.Protocol):
    """One client connection (see the module docstring)."""

    def __init__(self, shared: _Shared) -> None:
        self._shared = shared
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._head: tuple[Head, int] | None = None  # parsed head waiting for its body: (head, end)
        self._busy = False  # an answer is being computed in the pool
        self._write_paused = False
        self._read_paused = False
        self._eof = False
        self._last_active = 0.0
        self._idle: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:  # as aiohttp (tcp_keepalive): a vanished peer is noticed
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            except OSError:
                pass
        self._shared.connections.add(self)
        self._last_active = time.monotonic()
        self._idle = asyncio.get_running_loop().call_later(KEEPALIVE_TIMEOUT_S, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self._last_active = time.monotonic()
        if not self._buffer and not self._busy and not self._write_paused:
            end = data.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)  # the usual case: one request
            head = self._shared.head(data[:end]) if end >= 0 else None
            if head is not None and end + 4 + head.content_length == len(data):
                self._answer(head, data[end + 4:])
                return
        self._buffer += data
        if self._busy or self._write_paused:
            if len(self._buffer) > PAUSE_READING_BYTES and not self._read_paused:
                self._read_paused = True
                if self._transport is not None:
                    self._transport.pause_reading()
            return
        self._serve_buffered()

    def eof_received(self) -> bool:
        self._eof = True
        if self._busy or self._write_paused:
            return True  # half-closed: the answers still go out, then the connection closes
        self._serve_buffered()  # answers what is complete, hands a partial request to aiohttp
        return self._transport is not None

    def connection_lost(self, exc: Exception | None) -> None:
        self._detach()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._serve_buffered()

    # -- requests ------------------------------------------------------------------------------
    def _serve_buffered(self) -> None:
        """Answer every complete request in the buffer, in order, until one must wait; reading
        paused meanwhile resumes once the next request needs more bytes or nothing waits."""
        buffer = self._buffer
        while self._transport is not None and not self._busy and not self._write_paused:
            if self._head is None:
                end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
                if end < 0:
                    if len(buffer) > MAX_HEAD_BYTES or (buffer and self._eof):
                        self._hand_off()
                    elif self._eof:
                        self._close()
                    else:  # the rest of the next head is still to come
                        self._resume_reading()
                    return
                head = self._shared.head(bytes(buffer[:end]))
                if head is None:
                    self._hand_off()
                    return
                self._head = (head, end + 4)
            head, start = self._head
            stop = start + head.content_length
            if len(buffer) < stop:
                if self._eof:  # the body will never be complete: aiohttp's 400
                    self._hand_off()
                else:
                    self._resume_reading()
                return
            body = bytes(buffer[start:stop])
            del buffer[:stop]
            self._head = None
            self._answer(head, body)
        if not self._busy:
            self._resume_reading()

    def _resume_reading(self) -> None:
        """Read again if reading was paused (the connection is still open)."""
        if self._read_paused and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()

    def _answer(self, head: Head, body: bytes) -> None:
        api = self._shared.api
        reply = api.denied(head.authorization)
        if reply is None:
            answer = api.v1_reply(head.method, head.target, body)
            if not isinstance(answer, Reply):
                self._busy = True
                asyncio.get_running_loop().create_task(self._answer_later(answer, head.close))
                return
            reply = answer
        self._write(reply, head.close)

    async def _answer_later(self, answer: Awaitable[Reply], close: bool) -> None:
        try:
            reply = await answer
        except BaseException:  # cancelled at shutdown: nothing to say any more
            self._busy = False
            self._close()
            raise
        self._busy = False
        self._write(reply, close)
        self._serve_buffered()

    def _write(self, reply: Reply, close: bool) -> None:
        transport = self._transport
        if transport is None:
            return  # the client left; the call still ran to its end
        close = close or self._shared.closing
        head, body = self._shared.writer.response(reply, close)
        if len(body) >= LARGE_BODY_BYTES:
            transport.writelines((head, body))
        else:
            transport.write(head + body)
        if close or (self._eof and not self._buffer):
            self._close()  # what the client sent after a "Connection: close" request is dropped

    # -- connection ----------------------------------------------------------------------------
    def _hand_off(self) -> None:
        """Give the connection, with every byte from the current request on, to aiohttp."""
        transport = self._transport
        if transport is None:
            return
        data = bytes(self._buffer)
        read_paused, eof = self._read_paused, self._eof
        self._detach()
        if self._shared.closing:
            transport.close()
            return
        handler = self._shared.hand_off()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if data:
            handler.data_received(data)
        if eof:
            handler.eof_received()
        if read_paused:
            transport.resume_reading()

    def _detach(self) -> None:
        self._transport = None
        self._buffer = bytearray()
        self._head = None
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._shared.connections.discard(self)

    def _close(self) -> None:
        transport = self._transport
        self._detach()
        if transport is not None:
            transport.close()

    def _check_idle(self) -> None:
        if self._transport is None:
            return
        left = self._last_active + KEEPALIVE_TIMEOUT_S - time.monotonic()
        if self._busy or left > 0:
            self._idle = asyncio.get_running_loop().call_later(max(left, 1.0), self._check_idle)
        else:
            self._close()

    @property
    def idle(self) -> bool:
        return not self._busy and self._head is None and not self._buffer

    def close_when_idle(self) -> None:
        """Shutdown: close now when idle, else once the answer in progress is written."""
        if self.idle:
            self._close()

    def abort(self) -> None:
        transport = self._transport
        self._detach()
        if transport is not None:
            transport.abort()


class H1Server:
    """The listeners of one server's HTTP/1.1 front end (``start_h1_server``)."""

    def __init__(self, servers: list[asyncio.Server], shared: _Shared) -> None:
        self._servers = servers
        self._shared = shared

    @property
    def connections(self) -> list[H1Connection]:
        """The connections this front end still serves (not those handed to aiohttp)."""
        return list(self._shared.connections)

    @property
    def addresses(self) -> list[Any]:
        """The listening sockets' addresses (as aiohttp's ``AppRunner.addresses``)."""
        return [sock.getsockname() for server in self._servers for sock in server.sockets]

    async def stop(self, grace: float) -> None:
        """Stop listening; idle connections close at once, the others after their answer or
        after ``grace`` seconds, whichever is first."""
        self._shared.closing = True
        for server in self._servers:
            server.close()
        for connection in list(self._shared.connections):
            connection.close_when_idle()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._shared.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self._shared.connections):
            connection.abort()


async def start_h1_server(api: RestApi, hand_off: Callable[[], Any], sock: socket.socket, *,
                          max_request_bytes: int, cors: bool) -> H1Server:
    """Serve REST on ``sock`` (bound; listening starts here) on the running loop, with
    ``hand_off`` (an aiohttp ``web.Server``, set up) taking what this front end leaves."""
    shared = _Shared(api, hand_off, max_request_bytes, cors)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: H1Connection(shared), sock=sock)
    return H1Server([server], shared)
