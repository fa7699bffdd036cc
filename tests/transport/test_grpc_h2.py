"""nbserve's own HTTP/2 gRPC front end (``--grpc_front_end=h2``) at the protocol level.

The gRPC API itself runs on both front ends in test_grpc_api, test_fuzz_grpc, test_auth,
test_limits, test_shutdown and test_unix_socket (grpcio's own client). Here a raw HTTP/2 client
(a socket, ``hpack``, our frame writer) does what stock clients rarely do: tiny flow-control
windows, PING, RST_STREAM, compressed messages, broken frames.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib

import hpack
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2

from nbserve.codec.tensors import from_tensor_proto, to_tensor_proto
from nbserve.testing import FakeServable
from nbserve.transport.grpc_h2 import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PING,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    _status_trailers,
    frame,
    grpc_timeout_seconds,
    keeps_table,
)
from tests.reliability.helpers import FakeServers

PREDICT = "/tensorflow.serving.PredictionService/Predict"


@pytest.fixture
def h2_server(tmp_path):
    servers = FakeServers(tmp_path)
    yield lambda servable=None, **kw: servers.start(servable, grpc_front_end="h2", **kw)
    servers.stop_all(grace=1)


def request_bytes(values) -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(to_tensor_proto(np.asarray(values, np.float32)))
    return request.SerializeToString()


def grpc_message(message: bytes, compressed: bool = False) -> bytes:
    return struct.pack(">BI", int(compressed), len(message)) + message


class RawClient:
    """An HTTP/2 client that sends exactly the frames a test writes."""

    def __init__(self, port: int, settings: bytes = b"") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buffer = b""
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, settings))

    def headers(self, stream_id: int, path: str = PREDICT, end: bool = False,
                extra: tuple[tuple[str, str], ...] = ()) -> None:
        block = self.encoder.encode([(":method", "POST"), (":scheme", "http"), (":path", path),
                                     (":authority", "x"), ("content-type", "application/grpc"),
                                     ("te", "trailers"), *extra])
        self.sock.sendall(frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), stream_id,
                                block))

    def call(self, stream_id: int, message: bytes, path: str = PREDICT,
             extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.headers(stream_id, path, extra=extra)
        chunks = [message[i:i + 16384] for i in range(0, len(message), 16384)] or [b""]
        self.sock.sendall(b"".join(frame(DATA, END_STREAM if i == len(chunks) - 1 else 0,
                                         stream_id, chunk) for i, chunk in enumerate(chunks)))

    def read_frame(self) -> tuple[int, int, int, bytes] | None:
        """The next frame, or None once the server closed the connection."""
        while True:
            if len(self.buffer) >= 9:
                size = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) >= 9 + size:
                    kind, flags = self.buffer[3], self.buffer[4]
                    stream_id = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
                    payload = self.buffer[9:9 + size]
                    self.buffer = self.buffer[9 + size:]
                    return kind, flags, stream_id, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk

    def until(self, predicate) -> list[tuple[int, int, int, bytes]]:
        """Frames up to and including the first that ``predicate`` accepts."""
        seen = []
        while True:
            got = self.read_frame()
            assert got is not None, f"connection closed; frames so far: {seen}"
            seen.append(got)
            if predicate(got):
                return seen

    def answer(self, stream_id: int) -> tuple[dict[str, str], bytes]:
        """The trailers (and headers) and the DATA bytes of one stream, read to its end."""
        fields: dict[str, str] = {}
        data = b""
        for kind, _flags, sid, payload in self.until(
                lambda f: f[2] == stream_id and f[0] == HEADERS and f[1] & END_STREAM):
            if sid != stream_id:
                continue
            if kind == HEADERS:
                fields.update(dict(self.decoder.decode(payload)))
            elif kind == DATA:
                data += payload
        return fields, data

    def close(self) -> None:
        self.sock.close()


def test_grpc_timeout_header():
    assert grpc_timeout_seconds("5S") == 5.0
    assert grpc_timeout_seconds("250m") == 0.25
    assert grpc_timeout_seconds("3H") == 10800.0
    assert grpc_timeout_seconds("10u") == pytest.approx(1e-5)
    for bad in (None, "", "5", "S", "123456789S", "5s", "1.5S"):
        assert grpc_timeout_seconds(bad) is None


def test_keeps_table_tells_which_header_blocks_can_be_cached():
    from hpack.struct import NeverIndexedHeaderTuple

    encoder = hpack.Encoder()
    assert not keeps_table(encoder.encode([("a", "b")]))  # incremental indexing: table grows
    assert keeps_table(encoder.encode([("a", "b")]))  # now indexed
    assert keeps_table(encoder.encode([NeverIndexedHeaderTuple("k" * 200, "v" * 300)]))
    assert keeps_table(bytes.fromhex("04042f782f7986c183c0bfbe0f0d023630"))  # h2load's repeat
    assert not keeps_table(b"\x3f\xe1\x1f")  # a dynamic table size update
    for truncated in (b"\x00\x05ab", b"\xff", b"\x0f", b"\x00\x7f"):
        assert not keeps_table(truncated)


def test_status_trailers_percent_encode_the_message():
    fields = dict(hpack.Decoder().decode(_status_trailers(3, "bad: 100% \u00e9\n")))
    assert fields["grpc-status"] == "3"
    assert fields["grpc-message"] == "bad: 100%25 %C3%A9%0A"
    assert "grpc-message" not in dict(hpack.Decoder().decode(_status_trailers(5, "")))


def test_a_call_end_to_end_and_ping(h2_server):
    srv = h2_server()
    client = RawClient(srv.grpc_port)
    try:
        client.sock.sendall(frame(PING, 0, 0, b"12345678"))
        client.until(lambda f: f[0] == PING and f[1] == 1 and f[3] == b"12345678")
        client.call(1, grpc_message(request_bytes([1.0, 2.0])))
        fields, data = client.answer(1)
        assert fields[":status"] == "200" and fields["grpc-status"] == "0"
        reply = predict_pb2.PredictResponse.FromString(data[5:])
        assert from_tensor_proto(reply.outputs["y"]).tolist() == [2.5, 3.0]
    finally:
        client.close()


def test_responses_wait_for_the_clients_flow_control_windows(h2_server):
    srv = h2_server()
    client = RawClient(srv.grpc_port, settings=struct.pack(">HI", 0x4, 100))  # 100-byte windows
    try:
        values = np.arange(40_000, dtype=np.float32)
        client.call(1, grpc_message(request_bytes(values)))
        first = b""
        while len(first) < 100:  # the window's worth arrives, then nothing until it is widened
            kind, _, sid, payload = client.read_frame()
            if kind == DATA and sid == 1:
                first += payload
        assert len(first) == 100
        client.sock.settimeout(0.5)
        with pytest.raises(socket.timeout):
            client.read_frame()
        client.sock.settimeout(10)
        client.sock.sendall(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 10_000_000))
                            + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 10_000_000)))
        fields, rest = client.answer(1)
        assert fields["grpc-status"] == "0"
        data = first + rest
        reply = predict_pb2.PredictResponse.FromString(data[5:])
        assert np.array_equal(from_tensor_proto(reply.outputs["y"]), values * 0.5 + 2)
    finally:
        client.close()


def test_a_reset_stream_gets_no_answer_and_the_connection_goes_on(h2_server):
    gate = threading.Event()
    servable = FakeServable(gate=gate)
    srv = h2_server(servable)
    client = RawClient(srv.grpc_port)
    try:
        client.call(1, grpc_message(request_bytes([1.0])))
        assert servable.entered.acquire(timeout=10)
        client.sock.sendall(frame(RST_STREAM, 0, 1, struct.pack(">I", 0x8))  # CANCEL
                            + frame(PING, 0, 0, b"rst-seen"))
        client.until(lambda f: f[0] == PING and f[3] == b"rst-seen")  # frames go in order
        gate.set()
        client.call(3, grpc_message(request_bytes([2.0])))
        frames = client.until(lambda f: f[2] == 3 and f[0] == HEADERS and f[1] & END_STREAM)
        assert not [f for f in frames if f[2] == 1]
    finally:
        client.close()


def test_compressed_messages_and_header_continuations(h2_server):
    srv = h2_server()
    client = RawClient(srv.grpc_port)
    try:
        message = request_bytes([4.0])
        gz = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
        body = gz.compress(message) + gz.flush()
        client.call(1, grpc_message(body, compressed=True), extra=(("grpc-encoding", "gzip"),))
        fields, data = client.answer(1)
        assert fields["grpc-status"] == "0"
        assert predict_pb2.PredictResponse.FromString(data[5:]).outputs["y"].float_val == [4.0]
        client.call(3, grpc_message(body, compressed=True), extra=(("grpc-encoding", "snappy"),))
        fields, _ = client.answer(3)
        assert fields["grpc-status"] == "12"  # UNIMPLEMENTED
        block = client.encoder.encode([(":method", "POST"), (":scheme", "http"),
                                       (":path", PREDICT), (":authority", "x"),
                                       ("content-type", "application/grpc")])
        client.sock.sendall(frame(HEADERS, 0, 5, block[:3]) + frame(CONTINUATION, 0, 5, block[3:6])
                            + frame(CONTINUATION, END_HEADERS, 5, block[6:])
                            + frame(DATA, END_STREAM, 5, grpc_message(request_bytes([6.0]))))
        fields, data = client.answer(5)
        assert fields["grpc-status"] == "0"
        assert predict_pb2.PredictResponse.FromString(data[5:]).outputs["y"].float_val == [5.0]
    finally:
        client.close()


def test_requests_that_cannot_be_served_get_their_status_codes(h2_server):
    srv = h2_server()
    client = RawClient(srv.grpc_port)
    try:
        client.call(1, grpc_message(b""), path="/nope.Service/Method")
        assert client.answer(1)[0]["grpc-status"] == "12"  # UNIMPLEMENTED
        client.call(3, grpc_message(request_bytes([1.0]))[:-1])  # one byte short
        assert client.answer(3)[0]["grpc-status"] == "13"  # INTERNAL
        client.call(5, grpc_message(request_bytes([1.0])) * 2)
        assert client.answer(5)[0]["grpc-status"] == "13"
        block = client.encoder.encode([(":method", "GET"), (":scheme", "http"),
                                       (":path", PREDICT), (":authority", "x")])
        client.sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 7, block))
        assert client.answer(7)[0][":status"] == "415"
    finally:
        client.close()


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not HTTP/2
    PREFACE + frame(SETTINGS, 0, 0) + frame(DATA, 0, 0, b"x"),  # DATA on stream 0
    PREFACE + frame(SETTINGS, 0, 0) + b"\xff\xff\xff" + b"\x00" * 6,  # frame over the maximum
    PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff"),
    PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, 0, 1, b"\x82") + frame(PING, 0, 0, b"1" * 8),
])
def test_a_broken_connection_ends_alone(h2_server, garbage):
    srv = h2_server()
    bad = socket.create_connection(("127.0.0.1", srv.grpc_port), timeout=10)
    try:
        bad.sendall(garbage)
        received = b""
        while chunk := bad.recv(65536):
            received += chunk
        if garbage.startswith(PREFACE):  # a GOAWAY says why before the close
            assert bytes([GOAWAY]) in received
    finally:
        bad.close()
    client = RawClient(srv.grpc_port)  # the server goes on
    try:
        client.call(1, grpc_message(request_bytes([8.0])))
        assert client.answer(1)[0]["grpc-status"] == "0"
    finally:
        client.close()


def test_cheap_calls_move_onto_the_io_thread(h2_server):
    threads: list[str] = []

    def record(signature, inputs):
        threads.append(threading.current_thread().name)
        return {"y": np.asarray(inputs["x"], np.float32) * 0.5 + 2}

    srv = h2_server(FakeServable(fn=record))
    client = RawClient(srv.grpc_port)
    try:
        for n in range(40):
            client.call(2 * n + 1, grpc_message(request_bytes([1.0])))
            assert client.answer(2 * n + 1)[0]["grpc-status"] == "0"
    finally:
        client.close()
    assert threads[0].startswith("nbserve-predict")  # the first calls measure in the pool
    assert threads[-1] == "nbserve-io"


def test_health_watch_streams_until_the_server_stops(h2_server):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    srv = h2_server()
    with grpc.insecure_channel(srv.grpc_target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        stopper = threading.Thread(target=srv.stop, kwargs={"grace": 1})
        stopper.start()
        statuses = [reply.status for reply in watch]  # ends when the server stops
        stopper.join(30)
    assert statuses == [health_pb2.HealthCheckResponse.NOT_SERVING]
    assert not stopper.is_alive() and not srv.running


def test_reflection_is_served_as_a_bidirectional_stream(h2_server):
    import grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    srv = h2_server()
    with grpc.insecure_channel(srv.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(
                        file_containing_symbol="tensorflow.serving.PredictionService")]
        replies = list(stub.ServerReflectionInfo(iter(requests), timeout=30))
    assert len(replies) == 2
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"tensorflow.serving.PredictionService", "grpc.health.v1.Health"} <= names
    assert replies[1].file_descriptor_response.file_descriptor_proto


def test_batched_predicts_are_queued_from_the_loop_and_answered_by_the_batch_thread(h2_server):
    """With batching on, a Predict is parsed, decoded and queued on the IO loop and answered
    from the batch thread's callback: a batch fills beyond the predict pool's threads (one here;
    waiting on pool threads, this batch of four could never fill), errors keep their words, and
    the traffic and metrics count every call."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from nbserve.options import BatchingOptions

    runs: list[tuple[str, int]] = []

    def record(signature, inputs):
        runs.append((threading.current_thread().name, len(inputs["x"])))
        return {"y": np.asarray(inputs["x"], np.float32) / 2 + 2}

    srv = h2_server(FakeServable(fn=record), enable_batching=True, rest_api_num_threads=1,
                    batching=BatchingOptions(max_batch_size=4, batch_timeout_micros=30_000_000,
                                             num_batch_threads=1, thread_pool_name="h2b"))
    requests = [predict_pb2.PredictRequest.FromString(request_bytes([float(i)]))
                for i in range(4)]
    with grpc.insecure_channel(srv.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        calls = [stub.Predict.future(request, timeout=20) for request in requests]
        answers = [call.result() for call in calls]
        bad = predict_pb2.PredictRequest.FromString(request_bytes([1.0]))
        bad.model_spec.signature_name = "nope"
        with pytest.raises(grpc.RpcError) as refused:  # refused before it is queued
            stub.Predict(bad, timeout=20)
    for i, answer in enumerate(answers):
        assert from_tensor_proto(answer.outputs["y"]).tolist() == [i / 2 + 2]
        assert answer.model_spec.name == "m" and answer.model_spec.version.value == 1
    assert runs == [("nbserve-h2b-0", 4)]
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.details() == 'Serving signature key "nope" not found.'
    (traffic,) = srv.traffic("m")
    assert (traffic.requests, traffic.errors) == (5, 1)


@pytest.mark.parametrize("piece", [1, 7, 9, 4096, 16393, 40000])
def test_a_call_split_across_reads_anywhere_is_read_whole(h2_server, piece):
    """The bytes of a call arrive in pieces of any size (mid-preface, mid-frame-header,
    mid-payload, several frames at once): the request is the one sent, DATA payloads (kept as
    views of what was read) included, and the next call on the connection works."""
    srv = h2_server()
    values = np.arange(9000, dtype=np.float32)  # 36 KB: three DATA frames, one padded
    message = grpc_message(request_bytes(values))
    encoder = hpack.Encoder()
    block = encoder.encode([(":method", "POST"), (":scheme", "http"), (":path", PREDICT),
                            (":authority", "x"), ("content-type", "application/grpc")])
    padded = bytes([3]) + message[16000:32000] + b"\0\0\0"
    conversation = (PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 1, block)
                    + frame(DATA, 0, 1, message[:16000]) + frame(DATA, 0x8, 1, padded)
                    + frame(DATA, END_STREAM, 1, message[32000:]))
    sock = socket.create_connection(("127.0.0.1", srv.grpc_port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = RawClient.__new__(RawClient)
    client.sock, client.decoder, client.buffer = sock, hpack.Decoder(), b""
    try:
        for start in range(0, len(conversation), piece):
            sock.sendall(conversation[start:start + piece])
            if piece > 1 or start % 997 == 0:
                time.sleep(0.002)  # each piece its own read, most of the time
        fields, data = client.answer(1)
        assert fields["grpc-status"] == "0"
        response = predict_pb2.PredictResponse.FromString(data[5:])
        np.testing.assert_array_equal(from_tensor_proto(response.outputs["y"]), values / 2 + 2)
        client.encoder = encoder
        client.call(3, grpc_message(request_bytes([2.0])))
        fields, data = client.answer(3)
        assert fields["grpc-status"] == "0"
    finally:
        sock.close()


class _Transport:
    """What H2Connection needs of an asyncio transport: it records what is written."""

    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    def get_extra_info(self, name: str, default=None):
        return default

    def close(self) -> None:
        pass


def test_a_waiting_stream_keeps_no_view_of_a_read():
    """DATA payloads are views of the bytes read, joined without a copy when the message ends in
    the same read; a stream still waiting for more holds copies only, so one small frame cannot
    keep a whole read (up to 256 KiB) alive."""
    from nbserve.transport.admission import InflightLimit
    from nbserve.transport.grpc_h2 import H2Connection, _Calls
    from nbserve.transport.grpc_h2_handlers import HandlerRegistry
    from nbserve.transport.inline import InlinePolicy

    calls = _Calls({}, None, InflightLimit(0), None, InlinePolicy(0), 1 << 20, "", True,
                   None, HandlerRegistry(), None)
    connection = H2Connection(calls)
    connection.connection_made(_Transport())
    block = hpack.Encoder().encode([(":method", "POST"), (":scheme", "http"),
                                    (":path", "/x.Y/Z"), (":authority", "x"),
                                    ("content-type", "application/grpc")])
    last = frame(DATA, END_STREAM, 1, b"")
    read = (PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 1, block)
            + frame(DATA, 0, 1, b"\0\0\0\0\x02ab") + frame(PING, 0, 0, b"p" * 8) + last[:4])
    connection.data_received(read)
    (stream,) = connection._streams.values()
    assert stream.body == [b"\0\0\0\0\x02ab"]
    assert all(type(part) is bytes for part in stream.body)  # copied out of the read
    assert connection._buffer == last[:4]  # a frame header cut by the read waits for the rest
    connection.data_received(last[4:])
    assert connection._buffer == b"" and stream.done  # the call ended (here: UNIMPLEMENTED)
