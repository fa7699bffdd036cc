"""Client code built from a model's serving signature (``Server.example_request``).

Every snippet runs as-is against the server it was made for:

- REST with ``curl`` or Python ``requests``: the row format (``{"instances": [...]}``) when every
  input has a batch dimension (named inputs per row for several inputs), else the columnar
  format (``{"inputs": ...}``); DT_STRING values as ``{"b64": ...}``;
- gRPC in Python: ``grpc.insecure_channel``, ``tf.make_tensor_proto`` per input,
  ``PredictionServiceStub.Predict``, the outputs read back with ``tf.make_ndarray``.

Example values follow the signature: unknown dimensions (-1) become 1, an unknown rank a
scalar; floats are 1.0, integers 1, booleans True, strings ``b"example"``. The auth token, when
the server has one, goes in the ``Authorization: Bearer`` header / gRPC metadata. Pure string
building over ``SignatureInfo`` (numpy only).
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Mapping
from typing import Any

import numpy as np

from nbserve.status import SignatureInfo, TensorSpec

PROTOCOLS = ("rest", "grpc")
LANGUAGES = ("curl", "python")
EXAMPLE_STRING = b"example"

_NUMPY = {"DT_FLOAT": "float32", "DT_DOUBLE": "float64", "DT_HALF": "float16",
          "DT_INT8": "int8", "DT_INT16": "int16", "DT_INT32": "int32", "DT_INT64": "int64",
          "DT_UINT8": "uint8", "DT_UINT16": "uint16", "DT_UINT32": "uint32",
          "DT_UINT64": "uint64", "DT_BOOL": "bool_", "DT_STRING": "object"}


def example_value(spec: TensorSpec) -> Any:
    """One valid example for ``spec``: nested lists of its shape (-1 -> 1), a scalar for an
    unknown rank."""
    if spec.dtype == "DT_STRING":
        leaf: Any = EXAMPLE_STRING
    elif spec.dtype == "DT_BOOL":
        leaf = True
    elif spec.dtype.startswith(("DT_INT", "DT_UINT")):
        leaf = 1
    else:
        leaf = 1.0
    if spec.shape is None:
        return leaf
    return _filled(spec.shape, leaf)


def _filled(shape: tuple[int, ...], leaf: Any) -> Any:
    if not shape:
        return leaf
    return [_filled(shape[1:], leaf) for _ in range(shape[0] if shape[0] > 0 else 1)]


def example_inputs(signature: SignatureInfo) -> dict[str, Any]:
    """Alias -> ``example_value`` for every input of ``signature``."""
    return {alias: example_value(spec) for alias, spec in signature.inputs.items()}


def _batched(spec: TensorSpec) -> bool:
    return spec.shape is not None and len(spec.shape) > 0 and spec.shape[0] == -1


def _as_list(value: Any) -> Any:
    """``value`` as plain nested Python lists / scalars (numpy arrays unpacked)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_as_list(v) for v in value]
    return value


def _json_value(value: Any) -> Any:
    """Plain Python values as REST JSON: bytes become ``{"b64": ...}``."""
    if isinstance(value, (bytes, bytearray)):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def rest_body(signature: SignatureInfo, inputs: Mapping[str, Any] | None = None,
              signature_name: str | None = None) -> dict[str, Any]:
    """The REST Predict body for ``inputs`` (default ``example_inputs``): row format when every
    input is batched and the batches agree, else columnar."""
    values = {a: _as_list(v) for a, v in (inputs or example_inputs(signature)).items()}
    body: dict[str, Any] = {}
    if signature_name and signature_name != "serving_default":
        body["signature_name"] = signature_name
    specs = signature.inputs
    batched = bool(values) and all(a in specs and _batched(specs[a]) for a in values) and all(
        isinstance(v, list) for v in values.values())
    sizes = {len(v) for v in values.values()} if batched else set()
    if batched and len(sizes) == 1:
        if len(values) == 1:
            body["instances"] = _json_value(next(iter(values.values())))
        else:
            rows = next(iter(sizes))
            body["instances"] = [{a: _json_value(v[i]) for a, v in values.items()}
                                 for i in range(rows)]
    elif len(values) == 1 and len(specs) == 1:
        body["inputs"] = _json_value(next(iter(values.values())))
    else:
        body["inputs"] = {a: _json_value(v) for a, v in values.items()}
    return body


def _rest_url(rest_url: str, model: str, version: int | None, label: str | None) -> str:
    target = f"/versions/{version}" if version is not None else (
        f"/labels/{label}" if label else "")
    return f"{rest_url}/v1/models/{model}{target}:predict"


def rest_curl(url: str, body: Mapping[str, Any], token: str = "") -> str:
    """A ``curl`` command that POSTs ``body`` to ``url``."""
    lines = [f"curl -sS --fail-with-body -X POST {shlex.quote(url)}",
             "  -H 'Content-Type: application/json'"]
    if token:
        lines.append(f"  -H {shlex.quote('Authorization: Bearer ' + token)}")
    lines.append(f"  -d {shlex.quote(json.dumps(body))}")
    return " \\\n".join(lines)


def _py(value: Any) -> str:
    """A Python literal for plain JSON-like values."""
    return repr(value)


def rest_python(url: str, body: Mapping[str, Any], token: str = "") -> str:
    """Python ``requests`` code that POSTs ``body`` to ``url`` and prints the answer."""
    key = "predictions" if "instances" in body else "outputs"
    headers = f"\n    headers={{'Authorization': {_py('Bearer ' + token)}}}," if token else ""
    return (
        "import requests\n\n"
        "response = requests.post(\n"
        f"    {_py(url)},\n"
        f"    json={_py(dict(body))},{headers}\n"
        "    timeout=30,\n"
        ")\n"
        "response.raise_for_status()\n"
        f"print(response.json()[{_py(key)}])\n")


def _numpy_literal(value: Any, spec: TensorSpec | None) -> str:
    dtype = _NUMPY.get(spec.dtype) if spec is not None else None
    if dtype is None:
        return f"np.array({_py(value)})"
    if dtype == "object":
        return f"np.array({_py(value)}, dtype=object)"
    return f"np.array({_py(value)}, dtype=np.{dtype})"


def grpc_python(target: str, model: str, signature: SignatureInfo,
                inputs: Mapping[str, Any] | None = None, signature_name: str | None = None,
                token: str = "", version: int | None = None, label: str | None = None) -> str:
    """Python gRPC code (``tensorflow-serving-api``) that sends a PredictRequest and prints
    every output as a numpy array."""
    values = {a: _as_list(v) for a, v in (inputs or example_inputs(signature)).items()}
    lines = [
        "import grpc",
        "import numpy as np",
        "import tensorflow as tf",
        "from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc",
        "",
        f"channel = grpc.insecure_channel({_py(target)})",
        "stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)",
        "request = predict_pb2.PredictRequest()",
        f"request.model_spec.name = {_py(model)}",
    ]
    if signature_name:
        lines.append(f"request.model_spec.signature_name = {_py(signature_name)}")
    if version is not None:
        lines.append(f"request.model_spec.version.value = {int(version)}")
    elif label:
        lines.append(f"request.model_spec.version_label = {_py(label)}")
    for alias, value in values.items():
        literal = _numpy_literal(value, signature.inputs.get(alias))
        lines.append(f"request.inputs[{_py(alias)}].CopyFrom(tf.make_tensor_proto({literal}))")
    metadata = f", metadata=[('authorization', {_py('Bearer ' + token)})]" if token else ""
    lines += [f"response = stub.Predict(request, timeout=30.0{metadata})",
              "for alias, tensor in response.outputs.items():",
              "    print(alias, tf.make_ndarray(tensor))", ""]
    return "\n".join(lines)


def example_request(signature: SignatureInfo, *, model: str, protocol: str = "rest",
                    language: str = "curl", rest_url: str | None = None,
                    grpc_target: str | None = None, inputs: Any = None,
                    token: str = "", version: int | None = None, label: str | None = None
                    ) -> str:
    """The snippet for one protocol / language (see the module docstring). ``inputs``: None
    (an example from the signature), a mapping alias -> value, or one value for a single-input
    signature. Raises ValueError for an unknown combination or a transport the server has
    turned off."""
    if inputs is not None and not isinstance(inputs, Mapping):
        if len(signature.inputs) != 1:
            raise ValueError(f"Signature {signature.key!r} has {len(signature.inputs)} inputs: "
                             "pass a dict alias -> value")
        inputs = {next(iter(signature.inputs)): inputs}
    name = signature.key
    if protocol == "rest":
        if rest_url is None:
            raise ValueError("REST is off on this server; use protocol='grpc'")
        url = _rest_url(rest_url, model, version, label)
        body = rest_body(signature, inputs, name)
        if language == "curl":
            return rest_curl(url, body, token)
        if language == "python":
            return rest_python(url, body, token)
        raise ValueError(f"language must be one of {LANGUAGES}, not {language!r}")
    if protocol == "grpc":
        if grpc_target is None:
            raise ValueError("gRPC is off on this server; use protocol='rest'")
        if language != "python":
            raise ValueError("gRPC snippets are Python (tensorflow-serving-api): "
                             "use language='python'")
        return grpc_python(grpc_target, model, signature, inputs, name, token, version, label)
    raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
