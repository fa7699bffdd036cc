"""TF Serving's gRPC API on grpc.aio (spec §2), over the transport-neutral ServingService.

Uses the generated stubs of ``tensorflow-serving-api`` (no hand-written protos): the servicers
subclass ``PredictionServiceServicer`` and ``ModelServiceServicer`` so stock clients work
unchanged. Also registers the standard ``grpc.health.v1.Health`` service and server reflection.
Work runs in the predict pool, never on the event loop; every ServingError becomes the gRPC
status with the same canonical code and TF Serving's text (truncated as TF Serving does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from nbserve.codec.input_proto import serialized_examples
from nbserve.codec.proto_predict import ProtoPredictCodec, fill_model_spec
from nbserve.errors import ServingError, StatusCode, as_serving_error, invalid_argument
from nbserve.service import ModelSpec, ServingService
from nbserve.transport.admission import InflightLimit
from nbserve.transport.auth import grpc_auth_interceptor
from nbserve.transport.offload import run_in_pool
from nbserve.transport.status_map import grpc_status
from nbserve.transport.unix_socket import grpc_address

log = logging.getLogger("nbserve.grpc")

MAX_MESSAGE_CHARS = 1024
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"

# (model name, API, status code, seconds): called after every inference RPC (metrics).
RequestObserver = Callable[[str, str, StatusCode, float], None]
# ModelServerConfig proto -> None; raises ServingError (the server's reload).
ReloadHandler = Callable[[Any], None]


def truncate(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[:MAX_MESSAGE_CHARS] + "...TRUNCATED"


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


def fill_regression(result: Any, values: Any) -> None:
    for value in values.reshape(-1):
        result.regressions.add().value = float(value)


class _Base:
    _limiter = InflightLimit(0)  # start_grpc_server sets the server's shared limit

    def __init__(self, service: ServingService, executor: Executor,
                 observer: RequestObserver | None) -> None:
        self.service = service
        self._executor = executor
        self._observer = observer

    async def _call(self, context: Any, api: str, fn: Callable[[], Any], model: str = "") -> Any:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            self._limiter.acquire()
        except ServingError as err:
            await context.abort(grpc_status(err.code), truncate(err.message))
        try:
            result = await run_in_pool(self._executor, fn)
        except ServingError as err:
            self._observe(model, api, err.code, loop.time() - started)
            await context.abort(grpc_status(err.code), truncate(err.message))
        except Exception as exc:  # never UNKNOWN with a traceback to the client, never a crash
            log.exception("gRPC %s failed", api)
            error = as_serving_error(exc)
            await context.abort(grpc_status(error.code), truncate(error.message))
        else:
            self._observe(model, api, StatusCode.OK, loop.time() - started)
            return result
        finally:
            self._limiter.release()

    def _observe(self, model: str, api: str, code: StatusCode, seconds: float) -> None:
        if self._observer is not None and api in ("Predict", "Classify", "Regress"):
            self._observer(model, api, code, seconds)


class PredictionServicer(
        _Base, prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    """``tensorflow.serving.PredictionService``."""

    def __init__(self, service: ServingService, executor: Executor,
                 observer: RequestObserver | None = None,
                 tensor_content_outputs: bool = False) -> None:
        super().__init__(service, executor, observer)
        self._tensor_content = tensor_content_outputs

    async def Predict(self, request: Any, context: Any) -> Any:
        return await self._call(context, "Predict", lambda: self._predict(request, context),
                                request.model_spec.name)

    def _predict(self, request: Any, context: Any) -> Any:
        spec = spec_from_proto(request)
        remaining = context.time_remaining() if context is not None else None
        timeout_ms = int(remaining * 1000) if remaining else None
        codec = ProtoPredictCodec(request, predict_pb2.PredictResponse, self._tensor_content)
        return self.service.predict(spec, codec, timeout_ms=timeout_ms)

    async def Classify(self, request: Any, context: Any) -> Any:
        return await self._call(context, "Classify", lambda: self._classify(request),
                                request.model_spec.name)

    def _classify(self, request: Any) -> Any:
        spec = spec_from_proto(request)
        result = self.service.classify(spec, serialized_examples(request.input))
        response = classification_pb2.ClassificationResponse()
        fill_model_spec(response.model_spec, spec.name, result.id.version, result.signature_key)
        fill_classification(response.result, result.classes, result.scores)
        return response

    async def Regress(self, request: Any, context: Any) -> Any:
        return await self._call(context, "Regress", lambda: self._regress(request),
                                request.model_spec.name)

    def _regress(self, request: Any) -> Any:
        spec = spec_from_proto(request)
        result = self.service.regress(spec, serialized_examples(request.input))
        response = regression_pb2.RegressionResponse()
        fill_model_spec(response.model_spec, spec.name, result.id.version, result.signature_key)
        fill_regression(response.result, result.values)
        return response

    async def MultiInference(self, request: Any, context: Any) -> Any:
        return await self._call(context, "MultiInference", lambda: self._multi(request))

    def _multi(self, request: Any) -> Any:
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

    async def GetModelMetadata(self, request: Any, context: Any) -> Any:
        return await self._call(context, "GetModelMetadata", lambda: self._metadata(request))

    def _metadata(self, request: Any) -> Any:
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


class ModelServicer(_Base, model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    """``tensorflow.serving.ModelService``: status and config reload."""

    def __init__(self, service: ServingService, executor: Executor,
                 reload: ReloadHandler | None = None) -> None:
        super().__init__(service, executor, None)
        self._reload = reload

    async def GetModelStatus(self, request: Any, context: Any) -> Any:
        return await self._call(context, "GetModelStatus", lambda: self._status(request))

    def _status(self, request: Any) -> Any:
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

    async def HandleReloadConfigRequest(self, request: Any, context: Any) -> Any:
        return await self._call(context, "HandleReloadConfigRequest",
                                lambda: self._reload_config(request))

    def _reload_config(self, request: Any) -> Any:
        if self._reload is None:
            raise ServingError(StatusCode.UNIMPLEMENTED, "Config reload is not enabled")
        self._reload(request.config)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = 0
        return response


def channel_options(max_message_bytes: int, reuse_port: bool = False) -> list[tuple[str, int]]:
    return [("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.so_reuseport", 1 if reuse_port else 0)]


async def start_grpc_server(service: ServingService, executor: Executor, host: str,
                            port: int | None, *, max_message_bytes: int,
                            reload: ReloadHandler | None = None,
                            observer: RequestObserver | None = None, auth_token: str = "",
                            limiter: InflightLimit | None = None, unix_socket: str = "",
                            profiler: bool = False, reuse_port: bool = False) -> tuple[Any, int]:
    """Start a grpc.aio server on the running loop; returns (server, bound port).

    ``auth_token`` (nbserve): every call needs the metadata ``authorization: Bearer <token>``
    (the health service is exempt on a loopback ``host``). ``limiter`` bounds the RPCs in flight.
    Raises OSError naming the port when it cannot bind. ``unix_socket`` (issue 14, an absolute
    path claimed by ``nbserve.transport.unix_socket``): also listen on ``unix:<path>``; with
    ``port`` None gRPC listens there only (the bound port returned is then 0). ``profiler``:
    also serve ``tensorflow.ProfilerService`` (``nbserve.transport.profiler``).
    """
    from grpc_health.v1 import (
        health,
        health_pb2,
        health_pb2_grpc,
    )
    from grpc_reflection.v1alpha import reflection

    interceptors = [grpc_auth_interceptor(auth_token, host)] if auth_token else []
    server = grpc.aio.server(options=channel_options(max_message_bytes, reuse_port),
                             interceptors=interceptors)
    servicers = (PredictionServicer(service, executor, observer),
                 ModelServicer(service, executor, reload))
    for servicer in servicers:
        servicer._limiter = limiter or InflightLimit(0)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicers[0], server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicers[1], server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", PREDICTION_SERVICE, MODEL_SERVICE, "PredictionService", "ModelService"):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if profiler:
        from nbserve.transport.profiler import profiler_handler

        server.add_generic_rpc_handlers((profiler_handler(),))
    reflection.enable_server_reflection(
        (PREDICTION_SERVICE, MODEL_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = 0
    if port is not None:
        bound = _listen(server, f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    if unix_socket:
        _listen(server, grpc_address(unix_socket))
    await server.start()
    return server, bound


def _listen(server: Any, address: str) -> int:
    """``add_insecure_port`` with an OSError naming the address when it cannot bind."""
    try:
        bound = int(server.add_insecure_port(address))
    except RuntimeError as exc:
        raise OSError(f"cannot bind gRPC to {address}: {exc}") from None
    if not bound:
        raise OSError(f"cannot bind gRPC to {address}")
    return bound
