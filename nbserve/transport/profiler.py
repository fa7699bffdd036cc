"""``tensorflow.ProfilerService`` on the gRPC port (TF Serving's ``--enable_profiler``, default on).

TF Serving registers TSL's profiler service on its gRPC server, so TensorBoard's "Capture profile"
and ``tf.profiler.experimental.client.trace("grpc://host:8500", logdir, duration_ms)`` profile a
live server. nbserve does the same in Python on its gRPC server: ``Profile`` runs one
TensorFlow profiler session (``nbserve.profiling.Capture``) for ``duration_ms`` (ended early by
``Terminate`` for the same session id, or by the client cancelling), then, as TSL's service,
writes ``<repository_root>/<session_id>/<host_name>.xplane.pb`` (the client's logdir: the client
and server share a file system, as with TF Serving) or, with ``emit_xspace``, returns the XSpace in
the response. ``empty_trace`` tells the client whether anything was recorded (it retries if not).
``Monitor`` is UNIMPLEMENTED, as in TSL.

TensorFlow's pip package ships no Python module for ``profiler_service.proto``, so the messages
this service needs are described here, field numbers as in ``tsl/profiler/protobuf/
profiler_service.proto``, in a private descriptor pool (nothing clashes with a real copy loaded
later); the options and XSpace types are TensorFlow's own.
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from nbserve.errors import ServingError

log = logging.getLogger("nbserve.profiler")

SERVICE = "tensorflow.ProfilerService"
_FILE = "nbserve/tsl_profiler_service.proto"
_F = descriptor_pb2.FieldDescriptorProto

# message -> (field name, number, type, label, message type name)
_FIELDS: dict[str, list[tuple[str, int, int, int, str]]] = {
    "ProfileToolData": [("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
                        ("data", 2, _F.TYPE_BYTES, _F.LABEL_OPTIONAL, "")],
    "ProfileRequest": [("duration_ms", 1, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, ""),
                       ("max_events", 2, _F.TYPE_UINT64, _F.LABEL_OPTIONAL, ""),
                       ("tools", 3, _F.TYPE_STRING, _F.LABEL_REPEATED, ""),
                       ("opts", 4, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL,
                        ".tensorflow.ProfileOptions"),
                       ("repository_root", 5, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
                       ("session_id", 6, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
                       ("host_name", 7, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
                       ("emit_xspace", 9, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, "")],
    "ProfileResponse": [("tool_data", 6, _F.TYPE_MESSAGE, _F.LABEL_REPEATED,
                         ".tensorflow.ProfileToolData"),
                        ("empty_trace", 7, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
                        ("xspace", 8, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL,
                         ".tensorflow.profiler.XSpace")],
    "TerminateRequest": [("session_id", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, "")],
    "TerminateResponse": [],
    "MonitorRequest": [("duration_ms", 1, _F.TYPE_UINT32, _F.LABEL_OPTIONAL, ""),
                       ("monitoring_level", 2, _F.TYPE_INT32, _F.LABEL_OPTIONAL, ""),
                       ("timestamp", 3, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, "")],
    "MonitorResponse": [("data", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, "")],
}


@functools.cache
def messages() -> dict[str, Any]:
    """The message classes by short name (``ProfileRequest``, ...), built once."""
    from tensorflow.tsl.profiler.protobuf import (
        profiler_options_pb2,
        xplane_pb2,
    )

    pool = descriptor_pool.DescriptorPool()
    for module in (profiler_options_pb2, xplane_pb2):
        for dependency in module.DESCRIPTOR.dependencies:
            _add_file(pool, dependency)
        _add_file(pool, module.DESCRIPTOR)
    proto = descriptor_pb2.FileDescriptorProto(
        name=_FILE, package="tensorflow", syntax="proto3",
        dependency=[profiler_options_pb2.DESCRIPTOR.name, xplane_pb2.DESCRIPTOR.name])
    for name, fields in _FIELDS.items():
        message = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = message.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.{name}"))
            for name in _FIELDS}


def _add_file(pool: descriptor_pool.DescriptorPool, file: Any) -> None:
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    try:
        pool.FindFileByName(proto.name)
    except KeyError:
        pool.Add(proto)


def tracer_levels(request: Any) -> dict[str, int]:
    """The request's tracer levels (ProfileOptions), TensorFlow's defaults when it sends none."""
    from nbserve.profiling import DEFAULT_TRACERS

    if not request.HasField("opts"):
        return dict(DEFAULT_TRACERS)
    opts = request.opts
    return {"host_tracer_level": opts.host_tracer_level,
            "device_tracer_level": opts.device_tracer_level,
            "python_tracer_level": opts.python_tracer_level}


class ProfilerServicer:
    """``Profile``, ``Terminate`` and ``Monitor`` of ``tensorflow.ProfilerService``.

    Methods run on the gRPC server's pool threads; ``Profile`` holds its thread for the
    profile's duration (TensorFlow allows one profiler session per process, so at most one
    thread waits at a time). Thread-safe.
    """

    def __init__(self) -> None:
        self._stops: dict[str, threading.Event] = {}

    def Profile(self, request: Any, context: grpc.ServicerContext) -> Any:  # gRPC's method names
        from nbserve.profiling import Capture

        duration_ms = (request.opts.duration_ms if request.HasField("opts") else 0) or (
            request.duration_ms)
        try:
            capture = Capture(tracer_levels(request))
        except ServingError as err:
            context.abort(grpc.StatusCode.INTERNAL, err.message)
        stop = self._stops.setdefault(request.session_id, threading.Event())
        context.add_callback(stop.set)  # the call ends early: cancelled, or the server stops
        try:
            stop.wait(duration_ms / 1000.0)
        finally:
            self._stops.pop(request.session_id, None)
        if not context.is_active():  # the client went away: end the session, keep nothing
            capture.collect()
            context.abort(grpc.StatusCode.CANCELLED, "The profile was cancelled")
        try:
            return self._finish(capture, request)
        except OSError as exc:
            context.abort(grpc.StatusCode.INTERNAL,
                          f"Cannot save the profile: {exc.strerror or exc}")

    @staticmethod
    def _finish(capture: Any, request: Any) -> Any:
        """Collect the XSpace; save it to the repository, or put it in the response."""
        from nbserve.profiling import is_empty, save_xspace

        xspace = capture.collect()
        response = messages()["ProfileResponse"](empty_trace=is_empty(xspace))
        if request.emit_xspace:
            response.xspace.ParseFromString(xspace)
        else:
            path = save_xspace(request.repository_root, request.session_id,
                               request.host_name or socket.gethostname(), xspace)
            log.info("Profile %s saved to %s", request.session_id, path)
        return response

    def Terminate(self, request: Any, context: grpc.ServicerContext) -> Any:
        stop = self._stops.get(request.session_id)
        if stop is not None:
            stop.set()
        return messages()["TerminateResponse"]()

    def Monitor(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "unimplemented.")


def profiler_handler(servicer: ProfilerServicer | None = None) -> grpc.GenericRpcHandler:
    """The generic handler that serves ``tensorflow.ProfilerService`` on a sync gRPC server."""
    servicer = servicer or ProfilerServicer()
    types = messages()

    def unary(method: Any, request: str, response: str) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(
            method, request_deserializer=types[request].FromString,
            response_serializer=types[response].SerializeToString)

    return grpc.method_handlers_generic_handler(SERVICE, {
        "Profile": unary(servicer.Profile, "ProfileRequest", "ProfileResponse"),
        "Terminate": unary(servicer.Terminate, "TerminateRequest", "TerminateResponse"),
        "Monitor": unary(servicer.Monitor, "MonitorRequest", "MonitorResponse"),
    })
