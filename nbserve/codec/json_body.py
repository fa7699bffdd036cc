"""TF Serving's REST request body conventions (spec §1.3): the checks every body gets.

``check_object_and_signature`` (steps 2-3, shared by predict/classify/regress), the Predict body's
``instances``/``inputs`` keys (``predict_payload``), the signature's input map (step 6) and
``{"b64": ...}`` objects. Pure functions: thread-safe, no I/O, no TensorFlow.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Any, Literal

from nbserve.codec.rapidjson import json_value_to_string, utf8_bytes
from nbserve.errors import ServingError, invalid_argument
from nbserve.servables.signature import Signature

__all__ = [
    "PredictBody",
    "b64_decode",
    "check_input_map",
    "check_object_and_signature",
    "is_b64_object",
    "may_hold_bools",
    "predict_payload",
    "read_predict_body",
]


def is_b64_object(value: Any) -> bool:
    """``{"b64": "<string>"}``: an object with exactly the one key ``b64`` holding a string."""
    return type(value) is dict and len(value) == 1 and type(value.get("b64")) is str


_B64_SPACE = b" \t\n\v\f\r"
_B64_DATA = re.compile(rb"[A-Za-z0-9+/]*")


def b64_decode(text: str) -> bytes | None:
    """``absl::Base64Unescape``: standard alphabet, whitespace skipped, padding ('=' or '.')
    optional but, when present, exactly right. ``None`` when the input is not valid."""
    data = utf8_bytes(text).translate(None, _B64_SPACE)
    match = _B64_DATA.match(data)
    assert match is not None  # the pattern matches the empty string
    end = match.end()
    tail = data[end:]  # after the first pad character only pads (and whitespace) may follow
    if tail.strip(b"=.") or end % 4 == 1:
        return None
    quantum = end % 4
    if tail and len(tail) != (4 - quantum) % 4:
        return None
    padded = data[:end] + b"=" * ((4 - quantum) % 4)
    try:
        return binascii.a2b_base64(padded)
    except binascii.Error:  # pragma: no cover - the checks above make this unreachable
        return None


def _format_error(doc: Any, text: str) -> ServingError:
    return invalid_argument(f"JSON Value: {json_value_to_string(doc)} {text}")


def check_object_and_signature(doc: Any) -> tuple[str, bool]:
    """§1.3 checks 2-3 shared by predict/classify/regress: the document is an object and its
    ``signature_name``, if any, a string. Returns (name or ``serving_default``, name given)."""
    if type(doc) is not dict:
        raise _format_error(doc, "Is not object")
    name = doc.get("signature_name")
    if "signature_name" in doc and type(name) is not str:
        raise _format_error(
            doc, "not formatted correctly. 'signature_name' key must be a string value.")
    return (name or "serving_default"), bool(name)


@dataclass(frozen=True)
class PredictBody:
    """A Predict request body after the key checks.

    ``data`` is the ``instances`` list (row format) or the ``inputs`` value (columnar).
    ``explicit_signature`` is False when the body named no signature (TF Serving then says
    ``DEFAULT`` in ``Failed to get input map for signature``). ``maybe_bools`` is False only when
    the raw body has no ``true``/``false`` token (it lets numeric decoding skip a type scan).
    """

    signature_name: str = "serving_default"
    format: Literal["row", "columnar"] = "row"
    data: Any = None
    explicit_signature: bool = True
    maybe_bools: bool = True


def may_hold_bools(raw: bytes | bytearray | None) -> bool:
    """False only when ``raw`` (the body) surely holds no ``true``/``false`` token."""
    if not isinstance(raw, (bytes, bytearray)):
        return True
    data = bytes(raw) if isinstance(raw, bytearray) else raw
    # Substring search is slow on big bodies; a numeric body has few 'u' or 'l' bytes (in its
    # keys), so look at each of those: is it the 'u' of a true or the 'l' of a false?
    for byte, word, offset in ((0x75, b"true", 2), (0x6C, b"false", 2)):
        seen = 0
        position = data.find(byte)
        while position >= 0:
            if data.startswith(word, position - offset) or seen == 64:
                return True  # a token (or too many bytes to look at: maybe one)
            seen += 1
            position = data.find(byte, position + 1)
    return False


def read_predict_body(doc: Any, raw: bytes | None = None) -> PredictBody:
    """Checks 2-3 of §1.3 and the ``instances``/``inputs`` key checks on a parsed body, at once.

    (TF Serving makes the key checks after the model and signature lookup:
    ``nbserve.codec.json_predict.JsonPredictCodec`` keeps that order.) Raises
    ServingError(INVALID_ARGUMENT).
    """
    name, explicit = check_object_and_signature(doc)
    fmt, data = predict_payload(doc)
    return PredictBody(name, fmt, data, explicit, may_hold_bools(raw))


def predict_payload(doc: dict[str, Any]) -> tuple[Literal["row", "columnar"], Any]:
    """The ``instances``/``inputs`` key checks on a body object: (format, payload)."""
    if "instances" in doc:
        if "inputs" in doc:
            raise _format_error(doc, "Not formatted correctly expecting only one of 'inputs' or "
                                     "'instances' keys to exist ")
        instances = doc["instances"]
        if type(instances) is not list:
            raise _format_error(doc, "Expecting 'instances' to be an list/array")
        if not instances:
            raise _format_error(doc, "No values in 'instances' array")
        return "row", instances
    if "inputs" in doc:
        return "columnar", doc["inputs"]
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def check_input_map(signature: Signature, signature_name: str, explicit: bool) -> None:
    """Step 6 of §1.3: the signature has at least one input, else TF Serving's
    ``Failed to get input map for signature: <name or DEFAULT>``."""
    if not signature.inputs:
        raise invalid_argument(
            f"Failed to get input map for signature: {signature_name if explicit else 'DEFAULT'}")
