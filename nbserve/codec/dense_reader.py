"""The compiled path for a Predict body that is one dense numeric tensor: bytes to ndarray.

Most REST clients send ``{"instances": <nested list of numbers>}`` or ``{"inputs": ...}``,
maybe with a ``signature_name``. For such a body a generic parse builds one Python float per
element and one list per row, and the decoder then walks them again; on an image batch that is
most of the request's time. ``read_dense_body(data)`` instead parses the body with simdjson (a
validating, strict RFC 8259 reader) and copies the tensor's numbers straight into a float64
array, or returns None; the caller then takes the general path (``rapidjson.parse_json`` and
``json_tensor.decode_tensors``), which gives every error and every other kind of body.

It returns a ``DenseBody`` only where the general path provably yields the same tensor:

* the body is an object whose keys are exactly one of ``instances``/``inputs`` plus, maybe,
  ``signature_name`` holding a string (no duplicate keys: rapidjson keeps the first, and an
  error text quotes the whole document, so anything else goes the general way);
* the tensor is a non-empty array, nested to the same depth everywhere and rectangular: the
  body's bytes from its first ``[`` to its last ``]``, with number bytes and whitespace
  removed, must be exactly the bracket-and-comma skeleton of one rectangular shape (which also
  proves those bytes are the tensor itself, since they hold no quote);
* every leaf is a JSON number that simdjson reads; its double is what rapidjson holds
  (both round correctly; ``-0`` is the integer 0 in both; integers past 64 bits, numbers past
  the double range and ``NaN``/``Infinity`` tokens make simdjson refuse, so they go the general
  way).

The caller casts the doubles to the signature's dtype, as rapidjson's ``GetFloat()`` does with
``(float)GetDouble()``. Pure functions: thread-safe (one simdjson parser per call), no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import simdjson

__all__ = ["MAX_RANK", "DenseBody", "dense_shape", "read_dense_body"]

MAX_RANK = 32  # deeper tensors take the general path (its depth limits and errors)
_KEYS = ("instances", "inputs")
_NOT_SKELETON = b"0123456789.eE+- \t\n\r"  # number bytes and JSON whitespace
_OPENING = frozenset(b"{ \t\n\r")  # a body that starts otherwise (a BOM...) goes the general way


@dataclass(frozen=True)
class DenseBody:
    """A Predict body holding one dense numeric tensor.

    ``values``: the tensor as float64, in its nested shape. ``format``: ``row`` for
    ``instances``, ``columnar`` for ``inputs``. ``signature_name``/``explicit_signature``: as
    ``json_body.check_object_and_signature`` gives them.
    """

    values: np.ndarray
    format: Literal["row", "columnar"]
    signature_name: str = "serving_default"
    explicit_signature: bool = False


def read_dense_body(data: bytes) -> DenseBody | None:
    """``data`` as a ``DenseBody``, or None where the general path must decide (module doc)."""
    if not data or data[0] not in _OPENING:
        return None
    try:
        doc = simdjson.Parser().parse(data)
    except (ValueError, RuntimeError, TypeError):
        return None
    if not isinstance(doc, simdjson.Object):
        return None
    keys = list(doc.keys())
    if len(set(keys)) != len(keys) or not 1 <= len(keys) <= 2:
        return None
    tensor_keys = [key for key in keys if key in _KEYS]
    if len(tensor_keys) != 1 or (len(keys) == 2 and "signature_name" not in keys):
        return None
    name = doc.get("signature_name", "")
    array = doc[tensor_keys[0]]
    if type(name) is not str or not isinstance(array, simdjson.Array):
        return None
    shape = _tensor_shape(data)
    if shape is None:
        return None
    try:
        flat = np.frombuffer(array.as_buffer(of_type="d"), dtype=np.float64)
    except (ValueError, TypeError, RuntimeError):
        return None
    if flat.size != math.prod(shape):
        return None
    fmt: Literal["row", "columnar"] = "row" if tensor_keys[0] == "instances" else "columnar"
    return DenseBody(flat.reshape(shape), fmt, name or "serving_default", bool(name))


def _tensor_shape(data: bytes) -> tuple[int, ...] | None:
    """The rectangular shape of the bytes from the first ``[`` to the last ``]``, or None."""
    skeleton = data.translate(None, _NOT_SKELETON)
    first, last = skeleton.find(b"["), skeleton.rfind(b"]")
    if first < 0 or last < first:
        return None
    return dense_shape(skeleton[first:last + 1])


def dense_shape(skeleton: bytes) -> tuple[int, ...] | None:
    """The shape whose nested-list skeleton (``[``, ``]`` and ``,`` only) is ``skeleton``.

    ``[[,,],[,,]]`` is (2, 3). None when ``skeleton`` is no rectangular array's, or when its
    rank is past ``MAX_RANK``. (An empty list's skeleton ``[]`` reads as one element; the caller
    counts the numbers.)
    """
    rank = len(skeleton) - len(skeleton.lstrip(b"["))
    if not 1 <= rank <= MAX_RANK:
        return None
    sizes: list[int] = []
    block = 0  # the length of one element's skeleton at the level below (0: a number)
    for level in range(rank - 1, -1, -1):
        closing = rank - level
        end = skeleton.find(b"]" * closing)
        if end < 0:
            return None
        length = end + closing - level  # the first list at this level: "[" + n blocks + "]"
        count, rest = divmod(length - 1, block + 1)
        if rest or count < 1:
            return None
        sizes.append(count)
        block = length
    shape = tuple(reversed(sizes))
    return shape if _skeleton(shape) == skeleton else None


def _skeleton(shape: tuple[int, ...]) -> bytes:
    """The nested-list skeleton of a rectangular array of ``shape`` (see ``dense_shape``)."""
    block = b""
    for size in reversed(shape):
        block = b"[" + b",".join([block] * size) + b"]"
    return block
