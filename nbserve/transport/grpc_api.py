"""TF Serving's gRPC API (spec §2) on a synchronous ``grpc.server`` (``--grpc_front_end=grpcio``),
over the transport-neutral ServingService. The servicers here (``PredictionServicer``,
``ModelServicer``) also serve the default ``h2`` front end (``nbserve.transport.grpc_h2``).

Uses the generated messages of ``tensorflow-serving-api`` (no hand-written protos), so stock
clients work unchanged. Also registers the standard ``grpc.health.v1.Health`` service and server
reflection, and optionally ``tensorflow.ProfilerService`` (``nbserve.transport.profiler``).

Threads: gRPC's own server thread polls the completion queue and runs each call on a thread of
the pool ``start_grpc_server`` is given: the server's predict pool, shared with REST, or gRPC's
own pool with ``--grpc_max_threads``. The call runs there start to end (parse, service call,
serialize), with no hop to another thread and nothing on the REST event loop: a sync
``grpc.server`` measured faster here than grpc.aio with a hand-off to the pool per call. The
shared predict pool (``--rest_api_num_threads``, default 4 x CPUs: TF Serving's default for both
its REST threads and ``--grpc_max_threads``) bounds the model work of both transports together.
On half_plus_two, 2 to 16 threads measured within the noise of each other (gRPC's single polling
thread, not the pool, is the bottleneck).

The inference methods are raw-bytes handlers: the request is parsed once on the pool thread and
the response serialized here, so no serializer layer runs on gRPC's side. Every ServingError
becomes the gRPC status with the same canonical code and TF Serving's text (truncated as TF
Serving does); a request that does not parse is INTERNAL, as gRPC's own deserializer answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2,
    predict_pb2,
    prediction_service_pb2,
    regression_pb2,
)

from nbserve.codec.input_proto import serialized_examples
from nbserve.codec.proto_predict import ProtoPredictCodec, fill_model_spec
from nbserve.errors import ServingError, StatusCode, as_serving_error, internal, invalid_argument
from nbserve.service import ModelSpec, Outcome, ServingService
from nbserve.transport.admission import InflightLimit
from nbserve.transport.auth import grpc_auth_interceptor
from nbserve.transport.status_map import grpc_status
from nbserve.transport.unix_socket import grpc_address

log = logging.getLogger("nbserve.grpc")

MAX_MESSAGE_CHARS = 1024
# From the generated descriptors, which reflection serves (importing them registers them).
PREDICTION_SERVICE = prediction_service_pb2.DESCRIPTOR.services_by_name[
    "PredictionService"].full_name
MODEL_SERVICE = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name
HEALTH_NAMES = ("", PREDICTION_SERVICE, MODEL_SERVICE, "PredictionService", "ModelService")
OBSERVED_APIS = ("Predict", "Classify", "Regress")
# A sync server reports ~9.2e18 s remaining for a call without a deadline: anything beyond
# this many seconds means "no deadline" (no run timeout), as grpc.aio's None did.
NO_DEADLINE_SECONDS = 1e9
STOP_POLL_SECONDS = 0.005  # how often ``GrpcServer.stop`` looks at gRPC's shutdown event

# (model name, API, status code, seconds): called after every inference RPC (metrics).
RequestObserver = Callable[[str, str, StatusCode, float], None]
# ModelServerConfig proto -> None; raises ServingError (the server's reload).
ReloadHandler = Callable[[Any], None]
# (parsed request, call context) -> response message, or for Predict its wire bytes (``serialized``
# takes either); raises ServingError.
Method = Callable[[Any, grpc.ServicerContext], Any]


def truncate(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[:MAX_MESSAGE_CHARS] + "...TRUNCATED"


def serialized(response: Any) -> bytes:
    """A servicer method's answer in wire form: Predict's codec writes the bytes itself
    (``proto_predict.response_bytes``), the other methods answer a message."""
    if type(response) is bytes:
        return response
    data: bytes = response.SerializeToString()
    return data


def spec_from_proto(request: Any) -> ModelSpec:
    """The request's ModelSpec, checked as TF Serving checks it."""
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")
    proto = request.model_spec
    if not proto.name:
        raise invalid_argument("ModelSpec has no name specified.")
    which = proto.WhichOneof("version_choice")
    version = proto.version.value if which == "version" else None
    label = proto.version_label if which == "version_label" else None
    return ModelSpec(proto.name, version, label, proto.signature_name)


def fill_classification(result: Any, classes: Any, scores: Any) -> None:
    batch = len(scores) if scores is not None else len(classes)
    for i in range(batch):
        row = result.classifications.add()
        n = scores.shape[1] if scores is not None else classes.shape[1]
        for j in range(n):
            cls = row.classes.add()
            if classes is not None:
                label = classes[i][j]
                cls.label = (label.decode("utf-8", "replace") if isinstance(label, bytes)
                             else str(label))
            if scores is not None:
                cls.score = float(scores[i][j])


def _timeout_ms(context: Any) -> int | None:
    """The call's deadline as a run timeout in ms (None: no deadline)."""
    remaining = context.time_remaining()
    return int(remaining * 1000) if remaining and remaining < NO_DEADLINE_SECONDS else None


def fill_regression(result: Any, values: Any) -> None:
    for value in values.reshape(-1):
        result.regressions.add().value = float(value)


class PredictionServicer:
    """``tensorflow.serving.PredictionService``: parsed request + context -> response message
    (Predict: the serialized ``PredictResponse``).

    Methods are called on a pool thread and block until the answer is ready; they raise
    ServingError (``raw_handlers`` turns it into the call's status).
    """

    def __init__(self, service: ServingService, tensor_content_outputs: bool = False) -> None:
        self.service = service
        self._tensor_content = tensor_content_outputs

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        spec = spec_from_proto(request)
        codec = ProtoPredictCodec(request, self._tensor_content)
        return self.service.predict(spec, codec, timeout_ms=_timeout_ms(context))

    def start_predict(self, request: Any, context: Any, done: Outcome) -> None:
        """``Predict`` without blocking, for an event loop, when the service queues predicts
        (``service.queues_predict``: batching on). ``done(response message, None)`` or
        ``done(None, error)`` comes later, from the batch thread; raises ServingError for a
        request refused at once."""
        spec = spec_from_proto(request)
        codec = ProtoPredictCodec(request, self._tensor_content)
        self.service.start_predict(spec, codec, done, timeout_ms=_timeout_ms(context))

    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:
        spec = spec_from_proto(request)
        result = self.service.classify(spec, serialized_examples(request.input))
        response = classification_pb2.ClassificationResponse()
        fill_model_spec(response.model_spec, spec.name, result.id.version, result.signature_key)
        fill_classification(response.result, result.classes, result.scores)
        return response

    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:
        spec = spec_from_proto(request)
        result = self.service.regress(spec, serialized_examples(request.input))
        response = regression_pb2.RegressionResponse()
        fill_model_spec(response.model_spec, spec.name, result.id.version, result.signature_key)
        fill_regression(response.result, result.values)
        return response

    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:
        tasks = []
        for task in request.tasks:
            proto = task.model_spec
            which = proto.WhichOneof("version_choice")
            tasks.append((ModelSpec(proto.name,
                                    proto.version.value if which == "version" else None,
                                    proto.version_label if which == "version_label" else None,
                                    proto.signature_name), task.method_name))
        servable_id, results = self.service.multi_inference(
            tasks, serialized_examples(request.input))
        response = inference_pb2.MultiInferenceResponse()
        for (spec, _), result in zip(tasks, results, strict=True):
            out = response.results.add()
            fill_model_spec(out.model_spec, spec.name, servable_id.version, spec.signature_key)
            if result.classification is not None:
                classes, scores = result.classification
                fill_classification(out.classification_result, classes, scores)
            else:
                fill_regression(out.regression_result, result.regression)
        return response

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        spec = spec_from_proto(request)
        if not request.metadata_field:
            raise invalid_argument(
                "GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise invalid_argument(f"Metadata field {field} is not supported")
        result = self.service.metadata(spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        fill_model_spec(response.model_spec, spec.name, result.id.version, None)
        response.metadata["signature_def"].Pack(result.signature_def_map)
        return response

    def methods(self) -> dict[str, tuple[Method, type[Any]]]:
        """Method name -> (method, request message class)."""
        return {
            "Predict": (self.Predict, predict_pb2.PredictRequest),
            "Classify": (self.Classify, classification_pb2.ClassificationRequest),
            "Regress": (self.Regress, regression_pb2.RegressionRequest),
            "MultiInference": (self.MultiInference, inference_pb2.MultiInferenceRequest),
            "GetModelMetadata": (self.GetModelMetadata,
                                 get_model_metadata_pb2.GetModelMetadataRequest),
        }


class ModelServicer:
    """``tensorflow.serving.ModelService``: status and config reload (same contract as
    ``PredictionServicer``)."""

    def __init__(self, service: ServingService, reload: ReloadHandler | None = None) -> None:
        self.service = service
        self._reload = reload

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        spec = spec_from_proto(request)
        response = get_model_status_pb2.GetModelStatusResponse()
        for state in self.service.status(spec.name, spec.version):
            entry = response.model_version_status.add()
            entry.version = state.id.version
            entry.state = int(state.state)
            if state.error is not None:
                entry.status.error_code = int(state.error.code)
                entry.status.error_message = state.error.message
        return response

    def HandleReloadConfigRequest(self, request: Any, context: grpc.ServicerContext) -> Any:
        if self._reload is None:
            raise ServingError(StatusCode.UNIMPLEMENTED, "Config reload is not enabled")
        self._reload(request.config)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = 0
        return response

    def methods(self) -> dict[str, tuple[Method, type[Any]]]:
        """Method name -> (method, request message class)."""
        return {
            "GetModelStatus": (self.GetModelStatus, get_model_status_pb2.GetModelStatusRequest),
            "HandleReloadConfigRequest": (self.HandleReloadConfigRequest,
                                          model_management_pb2.ReloadConfigRequest),
        }


def raw_handlers(methods: dict[str, tuple[Method, type[Any]]], limiter: InflightLimit,
                 observer: RequestObserver | None) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """Unary raw-bytes handlers (no gRPC serializers) around servicer methods.

    Each call takes a slot of ``limiter`` (refused with UNAVAILABLE when none is free), parses
    the request bytes, runs the method, serializes the response and, for Predict, Classify and
    Regress, reports (model, API, code, seconds) to ``observer``. Errors end the call with
    ``context.abort`` and the mapped status.
    """
    return {name: grpc.unary_unary_rpc_method_handler(
        _raw_call(name, method, request_type, limiter,
                  observer if name in OBSERVED_APIS else None))
        for name, (method, request_type) in methods.items()}


def _raw_call(api: str, method: Method, request_type: type[Any], limiter: InflightLimit,
              observer: RequestObserver | None) -> Callable[[bytes, grpc.ServicerContext], bytes]:
    parse = request_type.FromString

    def call(data: bytes, context: grpc.ServicerContext) -> bytes:
        started = time.perf_counter()
        try:
            limiter.acquire()
        except ServingError as err:
            context.abort(grpc_status(err.code), truncate(err.message))
        model = ""
        try:
            try:
                request = parse(data)
            except DecodeError:
                raise internal(f"Failed to parse the {request_type.__name__}") from None
            if observer is not None:
                model = request.model_spec.name
            response = serialized(method(request, context))
        except ServingError as err:
            error = err
        except Exception as exc:  # never UNKNOWN with a traceback to the client, never a crash
            log.exception("gRPC %s failed", api)
            error = as_serving_error(exc)
        else:
            if observer is not None:
                observer(model, api, StatusCode.OK, time.perf_counter() - started)
            return response
        finally:
            limiter.release()
        if observer is not None:
            observer(model, api, error.code, time.perf_counter() - started)
        context.abort(grpc_status(error.code), truncate(error.message))
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover

    return call


def channel_options(max_message_bytes: int, reuse_port: bool = False) -> list[tuple[str, int]]:
    """The server's channel arguments: message size limits both ways, and ``SO_REUSEPORT`` only
    when ``reuse_port`` (several worker processes share one port)."""
    return [("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.so_reuseport", 1 if reuse_port else 0)]


class GrpcServer:
    """A started sync ``grpc.server`` plus its health servicer.

    ``stop`` is a coroutine (the server's IO loop awaits it beside REST's cleanup); it never
    blocks the loop. The pool the server runs calls on belongs to the caller and is not shut down
    here.
    """

    def __init__(self, server: grpc.Server, health: Any) -> None:
        self.server = server
        self._health = health

    async def stop(self, grace: float | None) -> None:
        """Refuse new calls at once, give calls in flight up to ``grace`` seconds (None: cancel
        them now), then cancel what is left; returns once gRPC has shut down."""
        self._health.enter_graceful_shutdown()  # Watch streams see NOT_SERVING
        done = self.server.stop(grace)
        while not done.is_set():  # a threading.Event: look, don't block the loop
            await asyncio.sleep(STOP_POLL_SECONDS)


async def start_grpc_server(service: ServingService, executor: ThreadPoolExecutor, host: str,
                            port: int | None, *, max_message_bytes: int,
                            reload: ReloadHandler | None = None,
                            observer: RequestObserver | None = None, auth_token: str = "",
                            limiter: InflightLimit | None = None, unix_socket: str = "",
                            profiler: bool = False, reuse_port: bool = False
                            ) -> tuple[GrpcServer, int]:
    """Start a sync ``grpc.server`` whose calls run on ``executor`` (the predict pool); returns
    (server, bound port). A coroutine so the IO loop can call it; it does not use the loop.

    ``auth_token`` (nbserve): every call needs the metadata ``authorization: Bearer <token>``
    (the health service is exempt on a loopback ``host``). ``limiter`` bounds the RPCs in flight,
    shared with REST (UNAVAILABLE beyond it); its limit also caps the gRPC calls open at once,
    running or waiting for a pool thread, health Watch streams included (gRPC refuses more with
    RESOURCE_EXHAUSTED), so no queue in front of the pool grows without bound. Raises OSError
    naming the address when it cannot bind. ``unix_socket`` (issue 14, an absolute path claimed
    by ``nbserve.transport.unix_socket``): also listen on ``unix:<path>``; with ``port`` None
    gRPC listens there only (the bound port returned is then 0). ``profiler``: also serve
    ``tensorflow.ProfilerService`` (``nbserve.transport.profiler``).
    ``reuse_port``: bind with ``SO_REUSEPORT`` (worker processes sharing the port).
    """
    limiter = limiter or InflightLimit(0)
    interceptors = [grpc_auth_interceptor(auth_token, host)] if auth_token else []
    server = grpc.server(executor, interceptors=interceptors,
                         options=channel_options(max_message_bytes, reuse_port),
                         maximum_concurrent_rpcs=limiter.limit if limiter.limit > 0 else None)
    try:
        server.add_registered_method_handlers(PREDICTION_SERVICE, raw_handlers(
            PredictionServicer(service).methods(), limiter, observer))
        server.add_registered_method_handlers(MODEL_SERVICE, raw_handlers(
            ModelServicer(service, reload).methods(), limiter, None))
        health_servicer = add_standard_services(server, profiler)
        bound = 0
        if port is not None:
            bound = _listen(server, f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        if unix_socket:
            _listen(server, grpc_address(unix_socket))
        server.start()
    except BaseException:
        server.stop(None)
        raise
    return GrpcServer(server, health_servicer), bound


def add_standard_services(server: Any, profiler: bool) -> Any:
    """Register grpcio's health service (every ``HEALTH_NAMES`` SERVING), server reflection and,
    when ``profiler``, ``tensorflow.ProfilerService`` with ``server`` (a ``grpc.Server``, or
    anything with its ``add_*_handlers`` methods); returns the health servicer."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in HEALTH_NAMES:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if profiler:
        from nbserve.transport.profiler import profiler_handler

        server.add_generic_rpc_handlers((profiler_handler(),))
    reflection.enable_server_reflection(
        (PREDICTION_SERVICE, MODEL_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    return health_servicer


def _listen(server: grpc.Server, address: str) -> int:
    """``add_insecure_port`` with an OSError naming the address when it cannot bind."""
    try:
        bound = int(server.add_insecure_port(address))
    except RuntimeError as exc:
        raise OSError(f"cannot bind gRPC to {address}: {exc}") from None
    if not bound:
        raise OSError(f"cannot bind gRPC to {address}")
    return bound
