"""Property-based fuzzing of the REST API: bodies, URLs, headers (hypothesis, derandomized).

Every reply is a documented status (never a 5xx other than 503/504), every ``/v1`` error is a
JSON ``{"error": ...}``, no connection hangs (client timeouts), and the server still answers a
normal predict correctly afterwards.
"""

from __future__ import annotations

import gzip
import json
import socket
import string
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbserve.options import ModelConfig, VersionPolicy
from tests.reliability.helpers import FUZZ, report
from tests.transport.rest_client import call

pytestmark = pytest.mark.tfs_testdata

CASES: dict[str, int] = {}
TIMEOUT = 20.0  # a reply slower than this is a hung connection


@pytest.fixture(scope="module", params=["h1", "aiohttp"])
def server(tfs_testdata, request):
    from nbserve.options import ServerOptions
    from nbserve.server import Server

    models = (
        ModelConfig("hp", str(tfs_testdata / "saved_model_half_plus_two_cpu")),
        ModelConfig("two", str(tfs_testdata / "saved_model_half_plus_two_2_versions"),
                    version_policy=VersionPolicy.all(), version_labels={"stable": 123}),
    )
    srv = Server(ServerOptions(models=models, rest_api_port=0, grpc_port=None,
                               max_num_load_retries=0, max_request_bytes=1 << 20,
                               rest_front_end=request.param))
    srv.start()
    for m in models:
        srv.wait_until_available(m.name, timeout=60)
    yield srv
    srv.stop()
    with_cases = ", ".join(f"{k}={v}" for k, v in CASES.items())
    report(request, f"\n[fuzz rest] {sum(CASES.values())} cases: {with_cases}")


def check(reply, path: str) -> None:
    """The contract for any reply."""
    assert reply.status < 500 or reply.status in (503, 504), (reply.status, reply.body[:300])
    if path.lower().startswith("/v1") and reply.status != 200:
        if reply.status == 400 and reply.headers.get("content-type", "").startswith("text/plain"):
            return  # aiohttp's own reply to a request it could not parse as HTTP
        body = reply.json()
        assert set(body) == {"error"} and isinstance(body["error"], str), body


def still_correct(server) -> None:
    reply = call(server.rest_port, "POST", "/v1/models/hp:predict", '{"instances": [1.0, 2.0]}')
    assert reply.json() == {"predictions": [2.5, 3.0]}


# -- bodies --------------------------------------------------------------------------------------
TOKENS = ['{', '}', '[', ']', '"instances"', '"inputs"', '"signature_name"', '"examples"', ':', ',',
          'NaN', 'Infinity', '-Infinity', '1e309', '-1e309', '-0', '1.5', '"b64"', '"x"', 'null',
          'true', 'false', '"', '\\', '\\u0000', '\\ud800', '9' * 400, ' ', '\n', '"\xff"', '0x10']
TEXTISH = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)
SCALARS = (st.none() | st.booleans() | st.integers(-(10 ** 400), 10 ** 400)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
           | st.fixed_dictionaries({"b64": st.text(max_size=20)}))
KEYS = st.sampled_from(["x", "y", "b64", "instances", "inputs", ""]) | st.text(max_size=5)


def nested(inner: st.SearchStrategy) -> st.SearchStrategy:
    """Lists and objects of ``inner`` (hypothesis checks that ``extend`` uses its argument)."""
    return st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=4)


VALUES = st.recursive(SCALARS, nested, max_leaves=30)
DOCUMENTS = st.one_of(
    st.builds(lambda v: {"instances": v}, VALUES),
    st.builds(lambda v: {"inputs": v}, VALUES),
    st.builds(lambda v, s: {"instances": v, "signature_name": s}, VALUES,
              st.sampled_from(["serving_default", "regress_x_to_y", "classify_x_to_y", "", 7])),
    st.builds(lambda v: {"examples": v}, VALUES),
    st.builds(lambda v: {"inputs": {"x": v}}, VALUES),
    VALUES,
).map(lambda doc: json.dumps(doc, allow_nan=True))
DEEP = st.integers(1, 20_000).map(lambda n: '{"instances": ' + "[" * n + "1.0" + "]" * n + "}")
BODIES = st.one_of(TEXTISH, DOCUMENTS, DOCUMENTS, DEEP, st.binary(max_size=200))
PATHS = st.sampled_from([
    "/v1/models/hp:predict", "/v1/models/hp:classify", "/v1/models/hp:regress",
    "/v1/models/two/labels/stable:predict", "/v1/models/two/versions/124:regress",
    "/v1/models/nope:predict"])


@settings(max_examples=2000, **FUZZ)
@given(path=PATHS, body=BODIES)
def test_fuzz_bodies(server, path, body):
    CASES["bodies"] = CASES.get("bodies", 0) + 1
    check(call(server.rest_port, "POST", path, body, timeout=TIMEOUT), path)


# -- URLs ----------------------------------------------------------------------------------------
SEGMENT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["models", "hp", "two", "versions", "labels", "metadata", "123", "..", ".",
                     ":predict", ":classify", ":regress", "%2e%2e", "%2F", "%00", "%ff", "%",
                     "%zz", "-1", "99999999999999999999", "stable", ""]),
    st.integers(1, 5000).map(lambda n: "m" * n),
    st.binary(max_size=20).map(lambda b: quote(b, safe="")),
)
URLS = st.lists(SEGMENT, min_size=1, max_size=8).map(
    lambda parts: "/" + "/".join(quote(p, safe="/:%.@!$&'()*+,;=-_~") for p in parts))
PREFIXES = st.sampled_from(["/v1/models/", "/v1/", "/V1/models/", "/v1/models/hp", "/", ""])


@settings(max_examples=500, **FUZZ)
@given(prefix=PREFIXES, rest=URLS, method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD"]))
def test_fuzz_urls(server, prefix, rest, method):
    CASES["urls"] = CASES.get("urls", 0) + 1
    path = (prefix + rest.lstrip("/") if prefix.endswith("/") else prefix + rest) or "/"
    body = '{"instances": [1.0]}' if method in ("POST", "PUT") else None
    reply = call(server.rest_port, method, path, body, timeout=TIMEOUT)
    if method != "HEAD":
        check(reply, path)
    else:
        assert reply.status < 500


# -- headers -------------------------------------------------------------------------------------
HEADER_NAME = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=20)
HEADER_VALUE = st.text(string.printable.strip() + " \xe9\xff", max_size=60).map(str.strip)
ENCODINGS = st.sampled_from(["gzip", "deflate", "br", "x-junk", "gzip, gzip", "identity", "",
                             "GZIP", "compress", "gzip;q=1"])
HEADERS = st.fixed_dictionaries({}, optional={
    "Content-Type": st.sampled_from(["application/json", "text/plain", "", "multipart/form-data",
                                     "application/json; charset=utf-16"]) | HEADER_VALUE,
    "Content-Encoding": ENCODINGS,
    "Accept-Encoding": ENCODINGS,
    "Accept": HEADER_VALUE,
    "Authorization": HEADER_VALUE,
    "Expect": st.sampled_from(["100-continue", "junk"]),
    "Origin": HEADER_VALUE,
}).flatmap(lambda fixed: st.dictionaries(HEADER_NAME, HEADER_VALUE, max_size=4).map(
    lambda extra: {**extra, **fixed}))


@settings(max_examples=300, **FUZZ)
@given(headers=HEADERS, gzipped=st.booleans(), path=PATHS)
def test_fuzz_headers(server, headers, gzipped, path):
    CASES["headers"] = CASES.get("headers", 0) + 1
    headers = {k: v for k, v in headers.items()
               if k.lower() not in ("content-length", "transfer-encoding", "host", "connection")}
    body = b'{"instances": [1.0, 2.0]}'
    if gzipped:
        body = gzip.compress(body)
    check(call(server.rest_port, "POST", path, body, headers=headers, timeout=TIMEOUT), path)


# -- Content-Length that lies --------------------------------------------------------------------
def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, half-close, read until the server closes; fails on a hang."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):  # socket.timeout here = a hung connection
            reply += chunk
        return reply


@settings(max_examples=100, **FUZZ)
@given(declared=st.integers(0, 200), body=st.binary(max_size=100),
       chunked=st.booleans())
def test_fuzz_content_length_mismatch(server, declared, body, chunked):
    CASES["content_length"] = CASES.get("content_length", 0) + 1
    framing = "Transfer-Encoding: chunked\r\n" if chunked else ""
    head = (f"POST /v1/models/hp:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n"
            f"{framing}\r\n").encode()
    reply = raw_exchange(server.rest_port, head + body)
    for line in reply.split(b"\r\n"):
        if line.startswith(b"HTTP/1.1 "):
            status = int(line.split()[1])
            assert status < 500 or status in (503, 504), reply[:300]


def test_server_alive_and_correct_after_fuzzing(server):
    still_correct(server)
    assert call(server.rest_port, "GET", "/v1/models/two").status == 200
