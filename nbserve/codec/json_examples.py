"""TF Serving's REST JSON for Classify and Regress: tf.Examples in, results out (spec §1.7).

Request side: ``read_example_body(doc, raw)`` checks a body parsed by ``rapidjson.parse_json``
(object, ``signature_name``, then ``context``, then ``examples``, in TF Serving's order) and builds
each example as a **serialized** ``tf.Example``. Feature kinds are inferred from the JSON values:
integer -> ``int64_list``, decimal -> ``float_list`` (narrowed to float32), string or
``{"b64": ...}`` -> ``bytes_list``, ``true``/``false`` -> ``int64_list`` 1/0. The protos are written
directly in the protobuf wire format (features in document order, packed numeric lists; any
protobuf parser reads them as ``tensorflow.Example``), so no TensorFlow import is needed.

``serialized_inputs(body)`` is what the model's ``inputs`` tensor receives: with a ``context``, each
example is ``context + example`` (protobuf merges the concatenation: context features first, an
example's own feature of the same name wins), as TF Serving's ``InputToSerializedExampleTensor``.

Response side: ``encode_classify_results`` / ``encode_regress_results`` (compact JSON, scores and
values in the §1.8 float format).

Errors are ``ServingError(INVALID_ARGUMENT, ...)`` with TF Serving's texts. Pure and thread-safe.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nbserve.codec.float_format import float_texts
from nbserve.codec.json_tensor import b64_decode, check_object_and_signature, is_b64_object
from nbserve.codec.rapidjson import (
    INT64_END,
    INT64_MIN,
    UINT64_END,
    json_type_name,
    json_value_to_string,
    utf8_bytes,
)
from nbserve.codec.wire import field, varint
from nbserve.errors import ServingError, invalid_argument

__all__ = [
    "ExampleBody",
    "encode_classify_results",
    "encode_regress_results",
    "example_from_json",
    "read_example_body",
    "serialized_inputs",
]

@dataclass(frozen=True)
class ExampleBody:
    """A Classify/Regress body: serialized ``tf.Example`` protos and the optional context.

    ``explicit_signature`` is False when the body named no signature.
    """

    signature_name: str
    examples: list[bytes]
    context: bytes | None = None
    explicit_signature: bool = True


def read_example_body(doc: Any, raw: bytes | None = None) -> ExampleBody:
    """Checks 2-4 of §1.3 for classify/regress on a parsed body. Raises ServingError."""
    del raw  # the parsed document carries everything; kept for symmetry with read_predict_body
    name, explicit = check_object_and_signature(doc)
    context = example_from_json(doc["context"]) if "context" in doc else None
    if "examples" not in doc:
        raise _format_error(doc, "When method is classify, key 'examples' is expected and was "
                                 "not found")
    examples = doc["examples"]
    if type(examples) is not list:
        raise _format_error(doc, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(doc, "'examples' value is an empty array")
    return ExampleBody(name, [example_from_json(e) for e in examples], context, explicit)


def serialized_inputs(body: ExampleBody) -> list[bytes]:
    """The serialized examples the model's ``inputs`` tensor receives (context merged in)."""
    if body.context is None:
        return list(body.examples)
    return [body.context + example for example in body.examples]


def _format_error(doc: Any, text: str) -> ServingError:
    return invalid_argument(f"JSON Value: {json_value_to_string(doc)} {text}")


# --------------------------------------------------------------------------------------------
# JSON object -> serialized tf.Example.
# --------------------------------------------------------------------------------------------


class _Feature:
    """One feature being filled: its kind (``bytes``/``float``/``int64``, None until the first
    value) and values. AddValueToFeature's rules, in its order of checks."""

    __slots__ = ("kind", "name", "values")

    def __init__(self, name: str) -> None:
        self.name = name
        self.kind: str | None = None
        self.values: list[Any] = []

    def _set_kind(self, kind: str) -> None:
        if self.kind is None:
            self.kind = kind
        elif self.kind != kind:
            raise invalid_argument(f"Unexpected element type in feature: {self.name} "
                                   f"expecting type: {self.kind}")

    def _unexpected(self, value: Any) -> ServingError:
        return invalid_argument(f"Feature: {self.name} has element with unexpected JSON type: "
                                f"{json_type_name(value)}")

    def add(self, value: Any) -> None:
        kind = type(value)
        if value is None or kind is list:
            raise self._unexpected(value)
        if kind is bool:
            self._set_kind("int64")
            self.values.append(1 if value else 0)
        elif kind is dict:
            if not is_b64_object(value):
                raise self._unexpected(value)
            self._set_kind("bytes")
            decoded = b64_decode(value["b64"])
            if decoded is None:
                raise invalid_argument("Unable to base64 decode")
            self.values.append(decoded)
        elif kind is str:
            self._set_kind("bytes")
            self.values.append(utf8_bytes(value))
        elif kind is int and INT64_MIN <= value < UINT64_END:
            self._set_kind("int64")
            if value >= INT64_END:
                raise invalid_argument(f"Feature: {self.name} has uint64_t element. "
                                       "Only int64_t is supported.")
            self.values.append(value)
        else:  # a decimal (or an integer beyond 64 bits, which rapidjson holds as a double)
            self._set_kind("float")
            try:
                self.values.append(float(value))
            except OverflowError:
                self.values.append(float("inf") if value > 0 else float("-inf"))

    def serialize(self) -> bytes:
        """A ``tensorflow.Feature`` message (empty when no value was given: kind not set)."""
        if self.kind == "bytes":
            return field(1, b"".join(field(1, v) for v in self.values))
        if self.kind == "float":
            with np.errstate(over="ignore"):
                packed = np.array(self.values, dtype=np.float64).astype("<f4").tobytes()
            return field(2, field(1, packed))
        if self.kind == "int64":
            return field(3, field(1, b"".join(varint(v) for v in self.values)))
        return b""


def example_from_json(value: Any) -> bytes:
    """MakeExampleFromJsonObject: one JSON object as a serialized ``tf.Example``.

    Each member is a feature; its value is one scalar or a flat list of scalars.
    """
    if type(value) is not dict:
        raise invalid_argument(f"Example must be JSON object but got JSON {json_type_name(value)}")
    entries = []
    for name, content in value.items():
        feature = _Feature(name)
        if type(content) is list:
            for element in content:
                feature.add(element)
        else:
            feature.add(content)
        entries.append(field(1, field(1, utf8_bytes(name)) + field(2, feature.serialize())))
    if not entries:
        return b""  # features never set: the empty Example
    return field(1, b"".join(entries))


# --------------------------------------------------------------------------------------------
# Results -> JSON.
# --------------------------------------------------------------------------------------------


def _label_json(label: Any) -> str:
    if isinstance(label, str):
        text = label
    else:
        text = (label if isinstance(label, bytes) else bytes(label)).decode("utf-8", "replace")
    return json.dumps(text, ensure_ascii=False)


def encode_classify_results(classes: np.ndarray | None, scores: np.ndarray | None) -> bytes:
    """``{"results": [[[label, score], ...], ...]}``: one list of pairs per example.

    ``classes`` (strings) and ``scores`` (floats) are ``[batch, num_classes]`` arrays (1-D ones
    are read as one class per example); either may be None: labels are then ``""``, scores 0.
    An empty result (no example) raises ``Cannot convert empty ClassificationResults to JSON``.
    """
    labels = None if classes is None else _matrix(np.asarray(classes))
    values = None if scores is None else _matrix(np.asarray(scores, dtype=np.float32))
    reference = labels if labels is not None else values
    if reference is None or reference.shape[0] == 0:
        raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
    count, width = reference.shape
    label_texts = (['""'] * (count * width) if labels is None
                   else [_label_json(v) for v in labels.ravel().tolist()])
    score_texts = ["0.0"] * (count * width) if values is None else float_texts(values)
    rows = []
    for i in range(count):
        pairs = ("[" + label_texts[j] + "," + score_texts[j] + "]"
                 for j in range(i * width, (i + 1) * width))
        rows.append("[" + ",".join(pairs) + "]")
    return ('{"results":[' + ",".join(rows) + "]}").encode("utf-8", "replace")


def _matrix(array: np.ndarray) -> np.ndarray:
    if array.ndim <= 1:
        return array.reshape(-1, 1)
    return array.reshape(array.shape[0], math.prod(array.shape[1:]))


def encode_regress_results(values: np.ndarray) -> bytes:
    """``{"results": [v1, v2, ...]}`` from a ``[batch]`` or ``[batch, 1]`` float array.

    No value raises ``Cannot convert empty RegressionResults to JSON``.
    """
    flat = np.asarray(values, dtype=np.float32).ravel()
    if flat.size == 0:
        raise invalid_argument("Cannot convert empty RegressionResults to JSON")
    return ('{"results":[' + ",".join(float_texts(flat)) + "]}").encode("utf-8")
