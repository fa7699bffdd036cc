"""TF Serving's text-proto config files -> nbserve option records (and back, for the model config).

Three files, read as TF Serving reads them (``protobuf::TextFormat``: ``#`` comments, optional ``:``
before a message, optional ``,``/``;`` separators, unknown fields and repeated singular fields
rejected):

* ``--model_config_file``: ``tensorflow.serving.ModelServerConfig`` (the generated class from
  ``tensorflow-serving-api``) -> ``tuple[ModelConfig, ...]``, validated with TF Serving's texts;
* ``--batching_parameters_file``: ``tensorflow.serving.BatchingParameters`` -> ``BatchingOptions``;
* ``--monitoring_config_file``: ``tensorflow.serving.MonitoringConfig`` -> ``(enable, path)``.

The last two messages are not shipped in ``tensorflow-serving-api``; this module builds their
descriptors at import time (in a private descriptor pool), so they are parsed by the real
text-format parser with its real errors. Every error is a ServingError: syntax errors are
INVALID_ARGUMENT ``Error parsing text-format <message> from <source>: line L, column C: <detail>``,
unreadable files carry the file name (NOT_FOUND for a missing one).

nbserve differs from TF Serving in one deliberate way: a relative ``base_path`` is resolved
against ``base_dir`` (the config file's folder when the file is loaded with
``load_model_server_config``); TF Serving rejects it, and so does this module when ``base_dir`` is
None.

Pure functions, thread-safe; no TensorFlow import.
"""

from __future__ import annotations

import errno
import os
import re
import warnings
from collections.abc import Iterable
from typing import Any, TypeAlias, TypeVar

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from google.protobuf.message import Message
from tensorflow_serving.config import model_server_config_pb2

from nbserve.errors import ServingError, StatusCode
from nbserve.options import BatchingOptions, ModelConfig, VersionPolicy

ModelServerConfig = model_server_config_pb2.ModelServerConfig
# tensorflow-serving-api's generated classes carry no types: a ModelServerConfig (or one of its
# nested messages) is Any to mypy. The alias names what the value is.
ModelServerConfigProto: TypeAlias = Any
MessageT = TypeVar("MessageT", bound=Message)

TENSORFLOW_PLATFORM = "tensorflow"
SUPPORTED_PLATFORMS = frozenset({TENSORFLOW_PLATFORM})
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath

CUSTOM_CONFIG_NOT_SUPPORTED = ("ServerModelConfig type not supported by HandleReloadConfigRequest. "
                               "Only ModelConfigList is currently supported")


# --------------------------------------------------------------------------------------------------
# ModelServerConfig


def parse_model_server_config(text: str, *, source: str = "<string>",
                              base_dir: str | None = None) -> tuple[ModelConfig, ...] | None:
    """Parse and validate a ModelServerConfig text proto.

    Returns None when the text holds no config at all (empty, or only comments: TF Serving starts
    with no models, "Taking no action for empty config", but refuses to *reload* to it), and ``()``
    for an empty ``model_config_list {}`` (valid; it unloads every model). ``source`` names the
    text in parse errors. Relative base paths are resolved against ``base_dir``, or rejected when
    it is None. Raises ServingError(INVALID_ARGUMENT) on syntax or validation errors (see
    ``model_configs_from_proto``).
    """
    proto = _parse_text(text, ModelServerConfig(), source)
    if proto.WhichOneof("config") is None:
        return None
    return model_configs_from_proto(proto, base_dir=base_dir)


def load_model_server_config(path: str | os.PathLike[str]) -> tuple[ModelConfig, ...] | None:
    """Read and parse a ``--model_config_file``; relative base paths resolve against its folder.

    Same results and errors as ``parse_model_server_config``; a file that cannot be read raises
    ServingError naming it (NOT_FOUND when it does not exist).
    """
    path = os.fspath(path)
    return parse_model_server_config(_read(path), source=path,
                                     base_dir=os.path.dirname(os.path.abspath(path)))


def model_configs_from_proto(proto: ModelServerConfigProto, *,
                             base_dir: str | None = None) -> tuple[ModelConfig, ...]:
    """Validate a parsed ModelServerConfig and convert its ``model_config_list``.

    Shared by the config file and ``HandleReloadConfigRequest``. Checks, in TF Serving's order, each
    raising ServingError(INVALID_ARGUMENT) with TF Serving's text:

    * no ``model_config_list`` (a ``custom_model_config``, or nothing set):
      ``ServerModelConfig type not supported by HandleReloadConfigRequest. ...``;
    * a name listed twice: ``Illegal to list model <m> multiple times in config list``;
    * a relative base path (with ``base_dir`` None, or an empty one):
      ``Expected model <m> to have an absolute path or URI; got base_path()=<p>``;
    * the platform (``model_platform``, or the deprecated ``model_type``): missing, both set, or not
      ``tensorflow`` (``Model <m> requests unsupported platform <p>``).

    Version policy: ``latest {num_versions: N}`` (0 behaves as 1), ``all {}``,
    ``specific {versions}``, unset -> latest 1. ``version_labels`` become a dict.
    ``logging_config`` is ignored.
    """
    if proto.WhichOneof("config") != "model_config_list":
        raise _invalid(CUSTOM_CONFIG_NOT_SUPPORTED)
    entries = list(proto.model_config_list.config)
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise _invalid(f"Illegal to list model {entry.name} multiple times in config list")
        seen.add(entry.name)
    base_paths = [_base_path(entry, base_dir) for entry in entries]
    return tuple(
        ModelConfig(name=entry.name, base_path=base_path, model_platform=_platform(entry),
                    version_policy=_version_policy(entry),
                    version_labels=dict(entry.version_labels))
        for entry, base_path in zip(entries, base_paths, strict=False))


def model_server_config_to_proto(models: Iterable[ModelConfig]) -> ModelServerConfigProto:
    """The ModelServerConfig (a ``model_config_list``) listing ``models``, in order.

    A default policy (latest 1) is left out; labels are written sorted by name.
    """
    proto = ModelServerConfig()
    config_list = proto.model_config_list
    config_list.SetInParent()
    for model in models:
        entry = config_list.config.add(name=model.name, base_path=model.base_path,
                                       model_platform=model.model_platform)
        policy = model.version_policy
        choice = entry.model_version_policy
        if policy.kind == "all":
            choice.all.SetInParent()
        elif policy.kind == "specific":
            choice.specific.SetInParent()
            choice.specific.versions.extend(policy.versions)
        elif policy != VersionPolicy():
            choice.latest.num_versions = policy.num_versions
        for label in sorted(model.version_labels):
            entry.version_labels[label] = int(model.version_labels[label])
    return proto


def model_server_config_to_text(models: Iterable[ModelConfig]) -> str:
    """A ``--model_config_file`` for ``models`` that TF Serving and nbserve both read back."""
    return text_format.MessageToString(model_server_config_to_proto(models))


def _base_path(entry: ModelServerConfigProto, base_dir: str | None) -> str:
    path: str = entry.base_path
    if "://" in path or os.path.isabs(path):
        return path
    if base_dir is None or not path:
        raise _invalid(f"Expected model {entry.name} to have an absolute path or URI; "
                       f"got base_path()={path}")
    return os.path.normpath(os.path.join(os.path.abspath(base_dir), path))


def _platform(entry: ModelServerConfigProto) -> str:
    if entry.model_type != model_server_config_pb2.MODEL_TYPE_UNSPECIFIED:
        if entry.model_platform:
            raise _invalid("Illegal setting both ModelServerConfig::model_type (deprecated) and "
                           "ModelServerConfig::model_platform.")
        if entry.model_type != model_server_config_pb2.TENSORFLOW:
            raise _invalid(
                f"ModelServerConfig::model_type choice {entry.model_type} not supported.")
        platform = TENSORFLOW_PLATFORM
    elif not entry.model_platform:
        raise _invalid("Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                       f"ModelServerConfig::model_platform, model name is {entry.name}")
    else:
        platform = entry.model_platform
    if platform not in SUPPORTED_PLATFORMS:
        raise _invalid(f"Model {entry.name} requests unsupported platform {platform}")
    return platform


def _version_policy(entry: ModelServerConfigProto) -> VersionPolicy:
    policy = entry.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy.all()
    if choice == "specific":
        return VersionPolicy.specific(*policy.specific.versions)
    if choice == "latest":
        return VersionPolicy.latest(max(1, policy.latest.num_versions))
    return VersionPolicy()


# --------------------------------------------------------------------------------------------------
# BatchingParameters and MonitoringConfig (messages not shipped in tensorflow-serving-api)

_WRAPPERS = "google/protobuf/wrappers.proto"
_F = descriptor_pb2.FieldDescriptorProto


def _build_messages() -> tuple[type[Any], type[Any]]:
    """BatchingParameters (``session_bundle_config.proto``) and MonitoringConfig, by descriptor.

    Field names and types are TF Serving's; only text format is used here, so field numbers matter
    only for uniqueness.
    """
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file = descriptor_pb2.FileDescriptorProto(name="nbserve/tensorflow_serving_configs.proto",
                                              package="tensorflow.serving", syntax="proto3",
                                              dependency=[_WRAPPERS])

    def add(message: descriptor_pb2.DescriptorProto, name: str, number: int,
            kind: descriptor_pb2.FieldDescriptorProto.Type.ValueType, type_name: str | None = None,
            repeated: bool = False) -> None:
        message.field.add(name=name, number=number, type=kind, type_name=type_name,
                          label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)

    int64_value, string_value, bool_value = (
        ".google.protobuf.Int64Value", ".google.protobuf.StringValue", ".google.protobuf.BoolValue")
    batching = file.message_type.add(name="BatchingParameters")
    add(batching, "max_batch_size", 1, _F.TYPE_MESSAGE, int64_value)
    add(batching, "batch_timeout_micros", 2, _F.TYPE_MESSAGE, int64_value)
    add(batching, "max_enqueued_batches", 3, _F.TYPE_MESSAGE, int64_value)
    add(batching, "num_batch_threads", 4, _F.TYPE_MESSAGE, int64_value)
    add(batching, "thread_pool_name", 5, _F.TYPE_MESSAGE, string_value)
    add(batching, "allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True)
    add(batching, "pad_variable_length_inputs", 7, _F.TYPE_BOOL)
    add(batching, "enable_large_batch_splitting", 8, _F.TYPE_MESSAGE, bool_value)
    add(batching, "max_execution_batch_size", 9, _F.TYPE_MESSAGE, int64_value)

    prometheus = file.message_type.add(name="PrometheusConfig")
    add(prometheus, "enable", 1, _F.TYPE_BOOL)
    add(prometheus, "path", 2, _F.TYPE_STRING)
    monitoring = file.message_type.add(name="MonitoringConfig")
    add(monitoring, "prometheus_config", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig")

    pool.Add(file)

    # Classes made from descriptors at run time: no static fields, so Any to mypy.
    def message_class(name: str) -> type[Any]:
        return message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))

    return message_class("BatchingParameters"), message_class("MonitoringConfig")


BatchingParameters, MonitoringConfig = _build_messages()


def parse_batching_parameters(text: str, *, source: str = "<string>") -> BatchingOptions:
    """Parse and validate a BatchingParameters text proto (``--batching_parameters_file``).

    Omitted fields keep BatchingOptions' defaults (TF's shared batch scheduler's). Validation, all
    INVALID_ARGUMENT: ``max_batch_size``, ``max_enqueued_batches``, ``num_batch_threads`` and
    ``max_execution_batch_size`` must be positive and ``batch_timeout_micros`` non-negative when
    given (``<field> must be positive; was <n>``); ``allowed_batch_sizes`` must increase
    (``allowed_batch_sizes entries must be monotonically increasing``) and end at the batch size
    limit (``Last entry in allowed_batch_sizes must match max_batch_size; last entry was <a>;
    expected <b>``; the limit is ``max_execution_batch_size`` when ``enable_large_batch_splitting``
    is on, as in TF Serving). ``thread_pool_name``, ``enable_large_batch_splitting`` and
    ``max_execution_batch_size`` are kept (an omitted ``max_execution_batch_size`` is None:
    ``max_batch_size``).
    """
    proto = _parse_text(text, BatchingParameters(), source)
    defaults = BatchingOptions()

    def wrapped(name: str, default: int, minimum: int) -> int:
        if not proto.HasField(name):
            return default
        value: int = getattr(proto, name).value
        if value < minimum:
            kind = "positive" if minimum else "non-negative"
            raise _invalid(f"{name} must be {kind}; was {value}")
        return value

    max_batch_size = wrapped("max_batch_size", defaults.max_batch_size, 1)
    options = BatchingOptions(
        max_batch_size=max_batch_size,
        batch_timeout_micros=wrapped("batch_timeout_micros", defaults.batch_timeout_micros, 0),
        max_enqueued_batches=wrapped("max_enqueued_batches", defaults.max_enqueued_batches, 1),
        num_batch_threads=wrapped("num_batch_threads", defaults.num_batch_threads, 1),
        allowed_batch_sizes=tuple(proto.allowed_batch_sizes),
        pad_variable_length_inputs=proto.pad_variable_length_inputs,
        thread_pool_name=proto.thread_pool_name.value or defaults.thread_pool_name,
        enable_large_batch_splitting=proto.enable_large_batch_splitting.value,
        max_execution_batch_size=wrapped("max_execution_batch_size", 0, 1) or None,
    )
    limit = max_batch_size
    execution_limit = options.max_execution_batch_size or max_batch_size
    if proto.enable_large_batch_splitting.value:
        limit = execution_limit
    _check_allowed_batch_sizes(options.allowed_batch_sizes, limit)
    return options


def _check_allowed_batch_sizes(sizes: tuple[int, ...], limit: int) -> None:
    if not sizes:
        return
    previous = 0
    for size in sizes:
        if size <= previous:
            raise _invalid("allowed_batch_sizes entries must be monotonically increasing")
        previous = size
    if sizes[-1] != limit:
        raise _invalid("Last entry in allowed_batch_sizes must match max_batch_size; "
                       f"last entry was {sizes[-1]}; expected {limit}")


def load_batching_parameters(path: str | os.PathLike[str]) -> BatchingOptions:
    """Read and parse a ``--batching_parameters_file`` (errors as ``load_model_server_config``)."""
    path = os.fspath(path)
    return parse_batching_parameters(_read(path), source=path)


def parse_monitoring_config(text: str, *, source: str = "<string>") -> tuple[bool, str]:
    """``(enable, path)`` from a MonitoringConfig text proto (``--monitoring_config_file``).

    ``prometheus_config { enable: true path: "..." }``; an empty or missing path is TF Serving's
    ``/monitoring/prometheus/metrics``. An empty file disables the endpoint.
    """
    proto = _parse_text(text, MonitoringConfig(), source)
    prometheus = proto.prometheus_config
    return prometheus.enable, prometheus.path or DEFAULT_PROMETHEUS_PATH


def load_monitoring_config(path: str | os.PathLike[str]) -> tuple[bool, str]:
    """Read and parse a ``--monitoring_config_file`` (errors as ``load_model_server_config``)."""
    path = os.fspath(path)
    return parse_monitoring_config(_read(path), source=path)


# --------------------------------------------------------------------------------------------------
# shared helpers

_LOCATION = re.compile(r"^\d+(?::\d+)? : ")
_ERRNO_CODES = {errno.ENOENT: StatusCode.NOT_FOUND, errno.EACCES: StatusCode.PERMISSION_DENIED,
                errno.EPERM: StatusCode.PERMISSION_DENIED}


def _invalid(message: str) -> ServingError:
    return ServingError(StatusCode.INVALID_ARGUMENT, message)


def _parse_text(text: str, message: MessageT, source: str) -> MessageT:
    """``text_format.Parse``; its errors become INVALID_ARGUMENT naming source, line and column.
    An invalid escape in a string (``"\\e"``), which protobuf's Python parser only warns about,
    is an error here, as in TF Serving's C++ parser."""
    prefix = f"Error parsing text-format {message.DESCRIPTOR.full_name} from {source}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            return text_format.Parse(text, message)
    except text_format.ParseError as exc:
        detail = _LOCATION.sub("", str(exc))
        line, column = exc.GetLine(), exc.GetColumn()
        where = "" if line is None else (
            f"line {line}: " if column is None else f"line {line}, column {column}: ")
        raise _invalid(f"{prefix}: {where}{detail}") from exc
    except (ValueError, TypeError, DeprecationWarning) as exc:
        raise _invalid(f"{prefix}: {exc}") from exc


def _read(path: str) -> str:
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        code = _ERRNO_CODES.get(exc.errno or 0, StatusCode.FAILED_PRECONDITION)
        raise ServingError(code, f"{path}; {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(f"Error reading {path}: not UTF-8 text ({exc.reason} at byte "
                       f"{exc.start})") from exc
