"""TF Serving's REST API on aiohttp (spec §1), over the transport-neutral ServingService.

Every ``/v1`` request is parsed by ``rest_urls.parse_route``; the body is decoded, the model run
and the response encoded in the predict pool -- or, for a model whose calls take a fraction of a
millisecond, on the event loop's thread itself (``transport.inline``: no thread hops). Errors become
``{"error": msg}`` with the HTTP status of ``status_map``. Paths outside ``/v1`` get the stock
404 HTML page, except nbserve's ``/healthz`` and ``/readyz`` and the Prometheus path.

Contract: ``RestApi.app`` is an ``aiohttp.web.Application``; the caller (``server``) runs it
with AppRunner on its IO loop, behind a SockSite (``rest_front_end="aiohttp"``) or behind
``rest_h1``, which answers the common ``/v1`` requests itself through ``denied`` and
``v1_reply`` (the same code aiohttp's handler runs) and hands aiohttp the rest. ``RestApi``
never owns the loop or signals.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from typing import Any, NamedTuple, TypeVar, cast

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from nbserve.codec import json_examples, json_status
from nbserve.codec.json_predict import JsonPredictCodec
from nbserve.codec.json_tensor import parse_json
from nbserve.errors import ServingError, StatusCode, as_serving_error
from nbserve.service import ModelSpec, ServingService, state_entry
from nbserve.transport.admission import InflightLimit
from nbserve.transport.auth import check_authorization
from nbserve.transport.inline import DEFAULT_THRESHOLD_US, InlinePolicy
from nbserve.transport.offload import post_to_loop, reject, resolve, run_in_pool
from nbserve.transport.rest_urls import RestRoute, is_v1, parse_route
from nbserve.transport.status_map import http_status

log = logging.getLogger("nbserve.rest")
T = TypeVar("T")

JSON = "application/json"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}
NOT_FOUND_HTML = ("<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n"
                  "</BODY></HTML>\n")

INFERENCE = frozenset(("predict", "classify", "regress"))  # the routes that may run inline
# With batching on, a predict body up to this size is decoded on the loop and queued from there
# (as an inline call's body: decoding scales with it); a larger one waits on a pool thread.
QUEUED_BODY_BYTES = 16 * 1024
# (model name, api, status code, seconds): called after every /v1 request (metrics).
RequestObserver = Callable[[str, str, StatusCode, float], None]


class Reply(NamedTuple):
    """One ``/v1`` answer: its HTTP status, JSON body and headers beyond Content-Type (and CORS,
    which the front end adds when enabled)."""

    status: int
    body: bytes
    headers: Mapping[str, str] = {}


class RestApi:
    """The aiohttp application for one server, and the ``/v1`` answers any front end serves."""

    def __init__(self, service: ServingService, executor: Executor, *,
                 timeout_ms: int = 30_000, enable_cors: bool = False,
                 max_request_bytes: int = 100 * 1024 * 1024,
                 observer: RequestObserver | None = None,
                 extra_routes: dict[str, Callable[[], tuple[int, str, bytes]]] | None = None,
                 auth_token: str = "", open_probes: bool = True,
                 limiter: InflightLimit | None = None,
                 inline_threshold_us: float = DEFAULT_THRESHOLD_US) -> None:
        self.service = service
        self._executor = executor
        self._timeout_s = timeout_ms / 1000 if timeout_ms > 0 else None
        self._timeout_ms = timeout_ms if timeout_ms > 0 else None
        self._cors = enable_cors
        self._observer = observer
        self._extra = dict(extra_routes or {})
        self._auth_token = auth_token  # "": auth off (nbserve.transport.auth)
        self._open_probes = open_probes  # probes need no token (a loopback bind)
        self._limiter = limiter or InflightLimit(0)
        self._inline = InlinePolicy(inline_threshold_us / 1e6)
        self._max_request_bytes = max_request_bytes  # after decompression
        self.app = web.Application(client_max_size=max_request_bytes, handler_args={})
        # [\s\S]: a percent-encoded newline in the path must reach _dispatch too
        self.app.router.add_route("*", r"/{tail:[\s\S]*}", self._dispatch,
                                  expect_handler=self._expect)

    # -- dispatch ------------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path
        if not is_v1(raw_path):
            return await self._non_v1(request)
        if request.method == "OPTIONS":
            origin = request.headers.get("Origin", "")
            ok = "http://" in origin or "https://" in origin
            return web.Response(status=200 if ok else 400,
                                headers=CORS_HEADERS if ok and self._cors else None)
        reply = self.denied(request.headers.get("Authorization"))  # before reading any body
        if reply is None:
            try:
                body = await request.read() if request.method == "POST" else b""
            except web.HTTPRequestEntityTooLarge:
                reply = Reply(413, json_status.error_json(
                    f"Request body is larger than the limit of {self._max_request_bytes} bytes "
                    "(--rest_api_max_request_bytes)"))
            except (HttpProcessingError, ClientPayloadError, RequestPayloadError) as exc:
                # an undecodable (Content-Encoding) or truncated body
                reply = Reply(400, json_status.error_json(
                    f"Could not read the request body: {_body_error_text(exc)}"))
            else:
                answer = self.v1_reply(request.method, raw_path, body)
                reply = answer if isinstance(answer, Reply) else await answer
        return self._json(reply.status, reply.body, reply.headers)

    def denied(self, authorization: str | None) -> Reply | None:
        """The 401 reply when a token is required and ``authorization`` (the header's value)
        does not carry it; None when the request may go on."""
        error = check_authorization(authorization, self._auth_token)
        if error is None:
            return None
        return Reply(401, json_status.error_json(error), {"WWW-Authenticate": "Bearer"})

    def v1_reply(self, method: str, raw_path: str, body: bytes) -> Reply | Awaitable[Reply]:
        """The answer to an authorized ``/v1`` request, for any HTTP front end.

        A call that may run inline (``transport.inline``) and every error found before the
        predict pool is needed are answered at once (a ``Reply``); anything else returns an
        awaitable of the reply, which must be awaited (it holds a slot of the in-flight limit
        until it is done). With batching on, a predict body of at most ``QUEUED_BODY_BYTES`` is
        decoded on the loop and queued on the batcher: its awaitable waits on no pool thread.
        Never raises: errors are ``{"error": msg}`` replies with the HTTP
        status of ``status_map``, and every request is reported to the observer."""
        started = time.perf_counter()
        try:
            self._limiter.acquire()
        except ServingError as err:
            return Reply(http_status(err.code), json_status.error_json(err.message))
        route: RestRoute | None = None
        pooled = False
        try:
            route = parse_route(method, raw_path)
            if route.kind == "predict" and self.service.queues_predict and \
                    len(body) <= QUEUED_BODY_BYTES:
                pooled = True
                return self._answered(route, self._queued(route, body), started)
            if route.kind in INFERENCE and self._inline.allows(route.name, len(body)):
                payload = self._timed_route(route, body)
            else:
                pooled = True
                work = self._timed_route if route.kind in INFERENCE else self._route
                return self._answered(route, self._blocking(work, route, body), started)
        except Exception as exc:  # noqa: BLE001 - every failure is an answer, never a crash
            return self._error(route, exc, started)
        finally:
            if not pooled:
                self._limiter.release()
        self._observe(route, StatusCode.OK, started)
        return Reply(200, payload)

    async def _answered(self, route: RestRoute, payload: Awaitable[bytes],
                        started: float) -> Reply:
        """``v1_reply``'s reply once ``payload`` (a call in the predict pool, or a queued
        predict) is ready, every failure an answer; releases the in-flight slot when done."""
        try:
            body = await payload
        except Exception as exc:  # noqa: BLE001 - every failure is an answer, never a crash
            return self._error(route, exc, started)
        finally:
            self._limiter.release()
        self._observe(route, StatusCode.OK, started)
        return Reply(200, body)

    async def _queued(self, route: RestRoute, body: bytes) -> bytes:
        """A batched predict's response body: decoded here, on the loop, and queued; ready once
        its batch ran, bounded by the REST timeout."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()

        def done(payload: Any, error: ServingError | None) -> None:  # on the batch thread
            if error is not None:
                post_to_loop(loop, reject, future, error)
            else:
                post_to_loop(loop, resolve, future, payload)

        codec = JsonPredictCodec.from_body(body)
        spec = ModelSpec(route.name, route.version, route.label, codec.signature_name)
        self.service.start_predict(spec, codec, done, timeout_ms=self._timeout_ms)
        return await self._bounded(future)

    def _error(self, route: RestRoute | None, exc: Exception, started: float) -> Reply:
        if not isinstance(exc, ServingError):  # a bug must never take the server down
            log.error("REST %s failed", route.kind if route else "request", exc_info=exc)
            exc = as_serving_error(exc)
        self._observe(route, exc.code, started)
        return Reply(http_status(exc.code), json_status.error_json(exc.message))

    async def _expect(self, request: web.Request) -> web.Response | None:
        """aiohttp's ``Expect`` handling, with an unknown expectation answered in JSON (417)."""
        expect = request.headers.get("Expect", "")
        if request.version >= (1, 1):
            if expect.lower() == "100-continue":
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.writer.output_size = 0
            else:
                return self._json(417, json_status.error_json(f"Unknown Expect: {expect}"))
        return None

    def _observe(self, route: RestRoute | None, code: StatusCode, started: float) -> None:
        if self._observer is not None:
            api = route.kind if route and route.kind in INFERENCE else ""
            self._observer(route.name if route else "", api, code, time.perf_counter() - started)

    def _json(self, status: int, payload: bytes,
              extra: Mapping[str, str] | None = None) -> web.Response:
        headers = dict(CORS_HEADERS) if self._cors else {}
        headers.update(extra or {})
        return web.Response(status=status, body=payload, content_type=JSON,
                            headers=headers or None)

    async def _non_v1(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        probe = path in self._extra or path in ("/healthz", "/readyz")
        if probe and not self._open_probes:
            denied = self.denied(request.headers.get("Authorization"))
            if denied is not None:
                return self._json(denied.status, denied.body, denied.headers)
        if path in self._extra and request.raw_path != path:  # TF Serving's exporter (§1.10)
            return web.Response(status=400, content_type="text/plain",
                                text=f"Unexpected path: {request.raw_path}. Should be {path}")
        if path in self._extra and request.method in ("GET", "HEAD"):
            status, content_type, payload = await self._blocking(self._extra[path])
            return web.Response(status=status, body=payload, content_type=content_type)
        if path == "/healthz" and request.method in ("GET", "HEAD"):
            return web.Response(body=b'{"status": "ok"}', content_type=JSON)
        if path == "/readyz" and request.method in ("GET", "HEAD"):
            ready, waiting = self.service.ready()
            body = json.dumps({"ready": ready, "waiting_for": waiting}).encode()
            return web.Response(status=200 if ready else 503, body=body, content_type=JSON)
        return web.Response(status=404, text=NOT_FOUND_HTML, content_type="text/html")

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the predict pool, bounded by the REST timeout."""
        return await self._bounded(run_in_pool(self._executor, fn, *args))

    async def _bounded(self, future: asyncio.Future[T]) -> T:
        """``future``'s result, or DEADLINE_EXCEEDED after the REST timeout."""
        try:
            if sys.version_info >= (3, 11):
                async with asyncio.timeout(self._timeout_s):  # cheaper than wait_for: no task
                    return cast(T, await future)
            return cast(T, await asyncio.wait_for(future, self._timeout_s))
        except asyncio.TimeoutError:
            raise ServingError(StatusCode.DEADLINE_EXCEEDED,
                               f"Request timed out after {self._timeout_ms} ms "
                               "(--rest_api_timeout_in_ms)") from None

    # -- routes --------------------------------------------------------------------------------
    def _timed_route(self, route: RestRoute, body: bytes) -> bytes:
        """``_route`` for an inference call, its wall time told to the inline policy."""
        started = time.perf_counter()
        try:
            return self._route(route, body)
        finally:
            self._inline.observe(route.name, time.perf_counter() - started)

    def _route(self, route: RestRoute, body: bytes) -> bytes:
        """The response body for one parsed route (in the predict pool, or inline)."""
        match route.kind:
            case "predict":
                return self._predict(route, body)
            case "classify":
                return self._classify(route, body)
            case "regress":
                return self._regress(route, body)
            case "status":
                return self._status(route)
            case "metadata":
                return self._metadata(route)
            case "list":
                return self._list()

    def _predict(self, route: RestRoute, body: bytes) -> bytes:
        codec = JsonPredictCodec.from_body(body)
        spec = ModelSpec(route.name, route.version, route.label, codec.signature_name)
        return self.service.predict(spec, codec, timeout_ms=self._timeout_ms)

    def _classify(self, route: RestRoute, body: bytes) -> bytes:
        request = json_examples.read_example_body(parse_json(body), body)
        spec = ModelSpec(route.name, route.version, route.label, request.signature_name)
        result = self.service.classify(spec, json_examples.serialized_inputs(request))
        return json_examples.encode_classify_results(result.classes, result.scores)

    def _regress(self, route: RestRoute, body: bytes) -> bytes:
        request = json_examples.read_example_body(parse_json(body), body)
        spec = ModelSpec(route.name, route.version, route.label, request.signature_name)
        result = self.service.regress(spec, json_examples.serialized_inputs(request))
        return json_examples.encode_regress_results(result.values)

    def _status(self, route: RestRoute) -> bytes:
        # TF Serving quirk kept (§1.4): a label on the status URL is ignored.
        states = self.service.status(route.name, route.version)
        return json_status.model_status_json(state_entry(s) for s in states)

    def _metadata(self, route: RestRoute) -> bytes:
        result = self.service.metadata(ModelSpec(route.name, route.version, route.label))
        return json_status.model_metadata_json(route.name, result.id.version,
                                               result.signature_def_map)

    def _list(self) -> bytes:
        return json.dumps({"models": self.service.models()}, indent=1).encode()


def _body_error_text(exc: BaseException) -> str:
    """aiohttp's own words for a body it could not read, without its ``400, message:`` prefix."""
    seen: BaseException | None = exc
    while seen is not None:
        message = getattr(seen, "message", None)
        if isinstance(message, str) and message:
            return message.strip()
        seen = seen.__cause__
    return str(exc) or type(exc).__name__


class OpenConnections:
    """The connections an aiohttp ``web.Server`` has accepted and not yet lost.

    aiohttp's shutdown closes the connections it knows when it starts, then forgets them all;
    one accepted just as the listener closed (its ``connection_made`` a loop iteration late) is
    forgotten unclosed -- an fd leak in a long-lived kernel, a ResourceWarning at GC. Attach
    before serving; after ``AppRunner.cleanup()``, ``abort()`` closes whatever is left, on any
    event loop (asyncio's or uvloop's). Call both on the loop's thread.
    """

    def __init__(self, server: web.Server) -> None:
        self._open: dict[int, asyncio.BaseTransport] = {}
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            self._open[id(handler)] = transport
            made(handler, transport)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            self._open.pop(id(handler), None)
            lost(handler, exc)

        setattr(server, "connection_made", connection_made)  # noqa: B010 - shadows the method
        setattr(server, "connection_lost", connection_lost)  # noqa: B010

    async def abort(self) -> int:
        """Abort every connection still open; returns how many there were."""
        left = list(self._open.values())
        self._open.clear()
        for transport in left:
            transport.abort()  # type: ignore[attr-defined]
        if left:
            await asyncio.sleep(0)  # let connection_lost run before the loop closes
        return len(left)
