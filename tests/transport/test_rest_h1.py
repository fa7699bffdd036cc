"""nbserve's HTTP/1.1 REST front end (``--rest_front_end=h1``, ``transport.rest_h1``), on raw
sockets: what it serves itself, what it hands to aiohttp (and that aiohttp then answers as
before), answers byte for byte aiohttp's, pipelining, partial reads, back-pressure, half-close,
the idle timeout and stopping. The REST suites (``test_rest_api``, ``test_fuzz_rest``) run on both
front ends as well."""

from __future__ import annotations

import gzip
import json
import re
import socket
import threading
import time

import pytest

from nbserve.options import ModelConfig
from nbserve.transport import rest_h1
from nbserve.transport.rest_h1 import parse_head
from tests.support import wait_for

pytestmark = pytest.mark.tfs_testdata

TOKEN = "s3cret-token-for-tests"
PREDICT = b'{"instances": [1.0, 2.0, 5.0]}'


# -- the request heads served here -----------------------------------------------------------
def head(*fields: str, line: str = "POST /v1/models/m:predict HTTP/1.1") -> bytes:
    return "\r\n".join((line, *fields)).encode()


def test_a_plain_head_is_served_here():
    parsed = parse_head(head("Host: x", "Content-Type: application/json", "Content-Length: 12",
                             "Authorization: Bearer t", "Connection: keep-alive"))
    assert parsed == ("POST", "/v1/models/m:predict", 12, "Bearer t", False)
    get = parse_head(head("host:x", "Connection: Close", line="GET /v1/models/m?x=1 HTTP/1.1"))
    assert get == ("GET", "/v1/models/m?x=1", 0, None, True)


@pytest.mark.parametrize("raw", [
    head("Host: x", line="POST /v1/models/m:predict HTTP/1.0"),
    head("Host: x", line="OPTIONS /v1/models/m:predict HTTP/1.1"),
    head("Host: x", line="HEAD /v1/models/m HTTP/1.1"),
    head("Host: x", line="GET /healthz HTTP/1.1"),
    head("Host: x", line="GET /v1x HTTP/1.1"),
    head("Host: x", line="GET http://x/v1/models/m HTTP/1.1"),
    head("Host: x", line="GET /v1/models/m#frag HTTP/1.1"),
    head("Host: x", line="GET  /v1/models/m HTTP/1.1"),
    head("Content-Length: 2"),
    head("Host: x", "Host: y"),
    head("Host: x", "Content-Length: 2", "content-length: 2"),
    head("Host: x", "Content-Length: +2"),
    head("Host: x", "Content-Length: 2e3"),
    head("Host: x", "Transfer-Encoding: chunked"),
    head("Host: x", "Content-Encoding: gzip"),
    head("Host: x", "Expect: 100-continue"),
    head("Host: x", "Upgrade: h2c", "Connection: Upgrade"),
    head("Host: x", "Connection: keep-alive, Upgrade"),
    head("Host : x"),
    head("Host: x", " folded: value"),
    head("Host: x", "X-Bad: a\x01b"),
    head("Host: x", "Content-Length: 2", line="GET /v1/models/m HTTP/1.1"),
], ids=lambda raw: raw.decode("latin-1").replace("\r\n", " | ")[:60])
def test_anything_else_goes_to_aiohttp(raw):
    assert parse_head(raw) is None


# -- live servers ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def servers(tfs_testdata):
    """An h1 and an aiohttp server with the same models and settings (CORS on, a 1 MiB body
    limit), and an h1 server that wants a token."""
    from nbserve.options import ServerOptions
    from nbserve.server import Server

    models = (ModelConfig("m", str(tfs_testdata / "saved_model_half_plus_two_cpu")),)
    started = {}
    for key, front, token in (("h1", "h1", ""), ("aiohttp", "aiohttp", ""),
                              ("h1-token", "h1", TOKEN), ("aiohttp-token", "aiohttp", TOKEN)):
        srv = Server(ServerOptions(models=models, rest_api_port=0, grpc_port=None,
                                   max_num_load_retries=0, max_request_bytes=1 << 20,
                                   rest_api_enable_cors_support=True, rest_front_end=front,
                                   auth_token=token))
        srv.start()
        started[key] = srv
    for srv in started.values():
        srv.wait_until_available("m", timeout=60)
    yield started
    for srv in started.values():
        srv.stop()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request(method: str, path: str, body: bytes = b"", *extra: str) -> bytes:
    fields = ["Host: 127.0.0.1", *extra]
    if method == "POST":
        fields.append(f"Content-Length: {len(body)}")
    return ("\r\n".join([f"{method} {path} HTTP/1.1", *fields]) + "\r\n\r\n").encode() + body


class Responses:
    """Reads HTTP/1.1 responses with Content-Length bodies off one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(1 << 20)
        self.data += chunk
        return bool(chunk)

    def next(self) -> tuple[int, dict[str, str], bytes, bytes]:
        """(status, headers, body, the raw head) of the next response."""
        while b"\r\n\r\n" not in self.data:
            assert self._fill(), f"connection closed; read so far: {self.data!r}"
        raw_head, _, self.data = self.data.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        length = int(headers.get("content-length", 0))
        while len(self.data) < length:
            assert self._fill(), "connection closed in a body"
        body, self.data = self.data[:length], self.data[length:]
        return int(lines[0].split()[1]), headers, body, raw_head

    def closed(self) -> bool:
        try:
            return not self.data and not self._fill()
        except ConnectionResetError:
            return True


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes, bytes]:
    with connect(port) as sock:
        sock.sendall(raw)
        return Responses(sock).next()


def without_date(raw_head: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*", b"", raw_head)


SAME_AS_AIOHTTP = [
    ("POST", "/v1/models/m:predict", PREDICT, ()),
    ("POST", "/v1/models/m:predict", b'{"instances": "nope"}', ()),
    ("POST", "/v1/models/m/versions/7:predict", PREDICT, ()),
    ("POST", "/v1/models/m:explode", PREDICT, ()),
    ("GET", "/v1/models/m", b"", ()),
    ("GET", "/v1/models/m/metadata", b"", ()),
    ("GET", "/v1/models/nope", b"", ()),
    ("GET", "/v1/models", b"", ()),
    ("GET", "/v1/models/m?x=%20", b"", ()),
    ("POST", "/v1/models/m:predict", PREDICT, ("Connection: close",)),
    ("POST", "/v1/models/m:regress", b'{"examples": []}', ("Content-Type: application/json",)),
]


@pytest.mark.parametrize("method,path,body,extra", SAME_AS_AIOHTTP)
def test_answers_are_aiohttps_byte_for_byte(servers, method, path, body, extra):
    raw = request(method, path, body, *extra)
    h1, aio = exchange(servers["h1"].rest_port, raw), exchange(servers["aiohttp"].rest_port, raw)
    assert h1[0] == aio[0] and h1[2] == aio[2]
    assert without_date(h1[3]) == without_date(aio[3])
    assert "access-control-allow-origin" in h1[1]  # CORS on


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Bearer {TOKEN}"])
def test_the_token_check_answers_as_aiohttps(servers, authorization):
    extra = (f"Authorization: {authorization}",) if authorization else ()
    raw = request("POST", "/v1/models/m:predict", PREDICT, *extra)
    h1 = exchange(servers["h1-token"].rest_port, raw)
    aio = exchange(servers["aiohttp-token"].rest_port, raw)
    assert without_date(h1[3]) == without_date(aio[3]) and h1[2] == aio[2]
    assert h1[0] == (200 if authorization == f"Bearer {TOKEN}" else 401)


def test_pipelined_requests_are_answered_in_order(servers):
    # status and metadata always run in the pool, predict inline once the model is known cheap:
    # answers still leave in the order the requests came
    batch = [request("POST", "/v1/models/m:predict", b'{"instances": [%d.0]}' % i)
             if i % 3 else request("GET", "/v1/models/m/metadata") for i in range(30)]
    with connect(servers["h1"].rest_port) as sock:
        sock.sendall(b"".join(batch))
        replies = Responses(sock)
        for i in range(30):
            status, _, body, _ = replies.next()
            assert status == 200
            if i % 3:
                assert json.loads(body) == {"predictions": [i / 2 + 2]}
            else:
                assert "metadata" in json.loads(body)


def test_requests_split_anywhere_are_served(servers):
    raw = request("POST", "/v1/models/m:predict", PREDICT)
    with connect(servers["h1"].rest_port) as sock:
        replies = Responses(sock)
        for cut in (1, 10, raw.index(b"\r\n\r\n") + 2, raw.index(b"\r\n\r\n") + 4, len(raw) - 1):
            sock.sendall(raw[:cut])
            time.sleep(0.02)  # arrives as its own read
            sock.sendall(raw[cut:])
            status, _, body, _ = replies.next()
            assert (status, json.loads(body)) == (200, {"predictions": [2.5, 3.0, 4.5]})


def test_a_connection_handed_to_aiohttp_keeps_working(servers):
    """A fast request, a chunked one (aiohttp from there on), then plain ones: all answered."""
    chunked = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
               b"\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(PREDICT), PREDICT))
    gzipped = gzip.compress(PREDICT)
    with connect(servers["h1"].rest_port) as sock:
        replies = Responses(sock)
        sock.sendall(request("POST", "/v1/models/m:predict", PREDICT))
        assert replies.next()[0] == 200
        sock.sendall(chunked + request("GET", "/v1/models/m"))
        assert json.loads(replies.next()[2]) == {"predictions": [2.5, 3.0, 4.5]}
        assert replies.next()[0] == 200
        sock.sendall(request("POST", "/v1/models/m:predict", gzipped, "Content-Encoding: gzip"))
        assert json.loads(replies.next()[2]) == {"predictions": [2.5, 3.0, 4.5]}


def test_expect_continue_and_http_1_0_go_to_aiohttp(servers):
    port = servers["h1"].rest_port
    with connect(port) as sock:
        sock.sendall(request("POST", "/v1/models/m:predict", b"", "Expect: 100-continue")
                     .replace(b"Content-Length: 0", b"Content-Length: %d" % len(PREDICT)))
        replies = Responses(sock)
        while b"\r\n\r\n" not in replies.data:
            replies._fill()
        assert replies.data.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        replies.data = replies.data[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        sock.sendall(PREDICT)
        assert replies.next()[0] == 200
    status, _, body, raw_head = exchange(port, b"POST /v1/models/m:predict HTTP/1.0\r\n"
                                         b"Content-Length: %d\r\n\r\n%s" % (len(PREDICT), PREDICT))
    assert raw_head.startswith(b"HTTP/1.0 200") and json.loads(body)["predictions"][0] == 2.5
    status, _, body, _ = exchange(port, b"GET /v1/models/m HTTP/1.1\r\n\r\n")
    assert status == 400 and b"Host" in body  # aiohttp's own words


def test_bodies_up_to_the_limit_are_served_here_and_larger_ones_get_413(servers):
    n = 60_000
    body = ('{"instances": [' + ", ".join(["1.0"] * n) + "]}").encode()  # ~300 KB
    with connect(servers["h1"].rest_port) as sock:
        sock.sendall(request("POST", "/v1/models/m:predict", body))
        status, _, answer, _ = Responses(sock).next()
    assert status == 200 and json.loads(answer)["predictions"] == [2.5] * n
    too_big = b"[" + b"1.0," * (1 << 18) + b"1.0]"  # over 1 MiB
    status, _, answer, _ = exchange(servers["h1"].rest_port,
                                    request("POST", "/v1/models/m:predict", too_big))
    assert status == 413 and "--rest_api_max_request_bytes" in json.loads(answer)["error"]


def test_a_client_that_stops_reading_is_paused_not_buffered(servers):
    """Thousands of pipelined requests whose answers go unread for a while: the server stops
    answering once its writes back up, then stops reading, so what it buffers stays bounded;
    once the client reads, every request is answered."""
    n = 2_000
    instances = ", ".join(["1.0"] * 1000)  # ~6 KB each way: 12 MB, more than socket buffers hold
    raw = request("POST", "/v1/models/m:predict", f'{{"instances": [{instances}]}}'.encode())
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # answers back up soon
    sock.settimeout(60)
    sock.connect(("127.0.0.1", servers["h1"].rest_port))
    sender = threading.Thread(target=sock.sendall, args=(raw * n,), daemon=True)
    sender.start()
    fast = servers["h1"]._fast_rest[0]
    wait_for(lambda: fast.connections and not fast.connections[0].idle, what="the requests")
    most, paused = 0, False
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        for connection in fast.connections:
            most = max(most, len(connection._buffer))
            paused = paused or connection._read_paused
        time.sleep(0.005)
    assert paused  # it stopped reading (the kernel's buffers hold the rest)
    assert most <= rest_h1.PAUSE_READING_BYTES + (1 << 20)  # one read past the mark at most
    replies = Responses(sock)
    for _ in range(n):
        status, _, body, _ = replies.next()
        assert status == 200 and json.loads(body) == {"predictions": [2.5] * 1000}
    sender.join(30)
    sock.close()


class _PausingTransport:
    """What H1Connection needs of a transport: records the answers and whether reading is
    paused."""

    def __init__(self) -> None:
        self.written = b""
        self.reading_paused = False

    def write(self, data: bytes) -> None:
        self.written += data

    def writelines(self, parts) -> None:
        self.written += b"".join(parts)

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str):
        return None

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def test_reading_resumes_when_the_buffer_ends_inside_the_next_head(servers):
    """Reading paused while answers backed up resumes once every complete request is answered,
    also when what was read ends part way through the next request's head. It used to stay
    paused there: the rest of that head never arrived and the connection hung (a pipelining
    client that stopped reading for a while, as in the test above, now and then)."""
    import asyncio

    instances = ", ".join(["1.0"] * 20_000)
    raw = request("POST", "/v1/models/m:predict", f'{{"instances": [{instances}]}}'.encode())
    assert 3 * len(raw) > rest_h1.PAUSE_READING_BYTES

    async def scenario() -> _PausingTransport:
        transport = _PausingTransport()
        connection = rest_h1.H1Connection(servers["h1"]._fast_rest[0]._shared)
        connection.connection_made(transport)
        connection.pause_writing()  # the client stopped reading its answers
        connection.data_received(raw * 3 + raw[:20])  # ends inside the fourth request's head
        assert transport.reading_paused
        connection.resume_writing()  # it reads again
        for _ in range(3000):
            if transport.written.count(b"HTTP/1.1 200 OK") == 3:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        connection.abort()
        return transport

    transport = asyncio.run_coroutine_threadsafe(scenario(), servers["h1"]._io.loop).result(60)
    assert transport.written.count(b"HTTP/1.1 200 OK") == 3
    assert not transport.reading_paused


def test_half_close_still_gets_its_answer(servers):
    with connect(servers["h1"].rest_port) as sock:
        sock.sendall(request("GET", "/v1/models/m/metadata") +
                     request("POST", "/v1/models/m:predict", PREDICT))
        sock.shutdown(socket.SHUT_WR)
        replies = Responses(sock)
        assert replies.next()[0] == 200
        assert json.loads(replies.next()[2]) == {"predictions": [2.5, 3.0, 4.5]}
        assert replies.closed()


def test_a_client_gone_mid_call_leaves_the_server_serving(servers):
    for _ in range(5):
        sock = connect(servers["h1"].rest_port)
        sock.sendall(request("GET", "/v1/models/m/metadata"))  # runs in the pool
        sock.close()
    status, _, body, _ = exchange(servers["h1"].rest_port,
                                  request("POST", "/v1/models/m:predict", PREDICT))
    assert status == 200 and json.loads(body)["predictions"] == [2.5, 3.0, 4.5]


def test_idle_connections_close_after_the_keepalive_timeout(tfs_testdata, start_server,
                                                           monkeypatch):
    monkeypatch.setattr(rest_h1, "KEEPALIVE_TIMEOUT_S", 0.3)
    srv = start_server([ModelConfig("m", str(tfs_testdata / "saved_model_half_plus_two_cpu"))])
    srv.wait_until_available("m", timeout=60)
    with connect(srv.rest_port) as sock:
        sock.sendall(request("GET", "/v1/models/m"))
        replies = Responses(sock)
        assert replies.next()[0] == 200
        started = time.monotonic()
        assert replies.closed()  # blocks until the server closes it
        assert time.monotonic() - started < 5


def test_stop_closes_idle_connections_and_finishes_answers(tfs_testdata, start_server):
    srv = start_server([ModelConfig("m", str(tfs_testdata / "saved_model_half_plus_two_cpu"))])
    srv.wait_until_available("m", timeout=60)
    idle = connect(srv.rest_port)
    idle.sendall(request("GET", "/v1/models/m"))
    idle_replies = Responses(idle)
    assert idle_replies.next()[0] == 200
    wait_for(lambda: len(srv._fast_rest[0].connections) == 1, what="the connection to count")
    srv.stop(grace=5)
    assert idle_replies.closed()
    idle.close()
    with pytest.raises(OSError):
        connect(srv.rest_port).close()


def test_asyncios_own_loop_serves_and_hands_off_the_same(tfs_testdata, start_server):
    """``--event_loop=asyncio``: its transports are not uvloop's; pipelined fast requests and a
    hand-off in the middle of them work the same."""
    srv = start_server([ModelConfig("m", str(tfs_testdata / "saved_model_half_plus_two_cpu"))],
                       event_loop="asyncio")
    srv.wait_until_available("m", timeout=60)
    plain = request("POST", "/v1/models/m:predict", PREDICT)
    chunked = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
               b"\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(PREDICT), PREDICT))
    with connect(srv.rest_port) as sock:
        sock.sendall(plain * 3 + chunked + plain)
        replies = Responses(sock)
        for _ in range(5):
            status, _, body, _ = replies.next()
            assert (status, json.loads(body)) == (200, {"predictions": [2.5, 3.0, 4.5]})


@pytest.mark.parametrize("field", ["rest_front_end", "grpc_front_end"])
def test_an_unknown_front_end_is_a_clear_start_error(field):
    from nbserve.options import ServerOptions
    from nbserve.server import Server, ServerStartError

    server = Server(ServerOptions(rest_api_port=0, grpc_port=0, **{field: "nope"}))
    with pytest.raises(ServerStartError, match=f"{field} must be one of .*, not 'nope'"):
        server.start()
    assert not server.running
