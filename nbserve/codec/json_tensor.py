"""TF Serving's REST JSON for Predict: parsing, row/columnar tensors, output and float formatting.

Spec: ``tfserving.md`` §1.3, §1.6, §1.8, §1.9 (``tensorflow_serving/util/json_tensor.cc``).
Every error is ``ServingError`` with TF Serving's text; the code is INVALID_ARGUMENT unless noted.

The request side, in the order the REST layer calls it:

1. ``parse_json(body)`` follows rapidjson's ``kParseNanAndInfFlag`` rules: ``NaN``, ``Inf``,
   ``Infinity``, ``-Inf``, ``-Infinity`` (and ``-NaN``) are numbers; parsing stops after the
   first complete value; malformed input fails with rapidjson's message and byte offset.
   Integer tokens come back as ``int``, decimal tokens as ``float`` (dtype checks and tf.Example
   kinds depend on it), strings as ``str`` (bytes that are not UTF-8 survive as
   ``surrogateescape`` code points: ``utf8_bytes`` gives the original bytes back), objects as
   ``dict`` in which, as with rapidjson's ``FindMember``, the first of duplicate keys wins.
   The fast path is ``json.JSONDecoder``; only a document it rejects (or one with ``Inf``/``-NaN``
   tokens, a BOM, non-UTF-8 bytes or UTF-16 surrogate escapes) goes through the exact, slower
   byte-level parser. Deviation: a number literal beyond the double range (``1e400``) becomes
   ±inf on the fast path where rapidjson reports ``Number too big to be stored in double.``.
2. ``read_predict_body(doc, raw)``: §1.3 checks 2-3 (object, ``signature_name``) and the
   ``instances``/``inputs`` key checks (optionally deferred to step 3, TF Serving's order).
3. ``decode_inputs(body, signature)``: §1.3 checks 6-7, the tensors as numpy arrays. Numeric
   tensors take numpy's bulk conversion when that provably gives the same result, else the
   exact element-wise validator runs (and produces TF Serving's error).

The response side: ``encode_predict_response`` (compact JSON, floats per §1.8 via
``format_float``/``float_texts``; strings that are not UTF-8 are written with U+FFFD in place of
the bad bytes, as JSON text must be UTF-8: name an output ``*_bytes`` to get exact bytes as b64).

``json_value_to_string`` renders a parsed value the way TF Serving quotes it in messages
(``JSON Value: <v> ...``): rapidjson's ``PrettyWriter`` (4-space indent, ``"key": value``), a
top-level decimal in the §1.8 format, and, as in TF Serving, text cut short at a nested NaN/inf.

Everything here is a pure function of its arguments: thread-safe, no I/O, no TensorFlow.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Literal, Mapping

import numpy as np

from nbserve.errors import ServingError, StatusCode, invalid_argument
from nbserve.servables.signature import DT_ENUM, Signature

__all__ = [
    "PredictBody",
    "b64_decode",
    "check_object_and_signature",
    "data_type_string",
    "decode_inputs",
    "encode_predict_response",
    "float_texts",
    "format_float",
    "is_b64_object",
    "json_type_name",
    "json_value_to_string",
    "leaf_texts",
    "nest_texts",
    "parse_json",
    "read_predict_body",
    "utf8_bytes",
]

_INT64_MIN = -(1 << 63)
_INT64_END = 1 << 63
_UINT64_END = 1 << 64
_INT32_MIN = -(1 << 31)
_INT32_END = 1 << 31
_UINT32_END = 1 << 32

# --------------------------------------------------------------------------------------------
# Small shared helpers (also used by json_examples).
# --------------------------------------------------------------------------------------------

_DT_BY_ENUM = {number: name for name, number in DT_ENUM.items()}


def _dtype_enum_name(dtype: Any) -> str:
    """``"DT_FLOAT"`` for ``"DT_FLOAT"``, ``1`` or ``"float"``."""
    if isinstance(dtype, int):
        return _DT_BY_ENUM.get(dtype, "DT_INVALID")
    name = str(dtype)
    return name if name.startswith("DT_") else "DT_" + name.upper()


def data_type_string(dtype: Any) -> str:
    """TF's ``DataTypeString``: ``DT_FLOAT`` -> ``float``, ``DT_HALF`` -> ``half``."""
    return _dtype_enum_name(dtype)[3:].lower()


def json_type_name(value: Any) -> str:
    """rapidjson's type of a parsed value: Null, False, True, Object, Array, String or Number."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _is_rj_integer(value: Any) -> bool:
    """Whether rapidjson holds this number as an integer (it keeps int64/uint64, else double)."""
    return type(value) is int and _INT64_MIN <= value < _UINT64_END


def _as_double(value: Any) -> float:
    """A JSON number as the double rapidjson's ``GetDouble`` returns (huge ints saturate to inf)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def utf8_bytes(text: str) -> bytes:
    """The raw bytes of a parsed JSON string (undoes ``parse_json``'s surrogateescape)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def is_b64_object(value: Any) -> bool:
    """``{"b64": "<string>"}``: an object with exactly the one key ``b64`` holding a string."""
    return type(value) is dict and len(value) == 1 and type(value.get("b64")) is str


_B64_SPACE = b" \t\n\v\f\r"
_B64_DATA = re.compile(rb"[A-Za-z0-9+/]*")


def b64_decode(text: str) -> bytes | None:
    """``absl::Base64Unescape``: standard alphabet, whitespace skipped, padding ('=' or '.')
    optional but, when present, exactly right. ``None`` when the input is not valid."""
    data = utf8_bytes(text).translate(None, _B64_SPACE)
    end = _B64_DATA.match(data).end()
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


# --------------------------------------------------------------------------------------------
# Parsing.
# --------------------------------------------------------------------------------------------

_PARSE_ERROR_TEXT = {
    "empty": "The document is empty.",
    "value": "Invalid value.",
    "name": "Missing a name for object member.",
    "colon": "Missing a colon after a name of object member.",
    "object": "Missing a comma or '}' after an object member.",
    "array": "Missing a comma or ']' after an array element.",
    "hex": "Incorrect hex digit after \\u escape in string.",
    "surrogate": "The surrogate pair in string is invalid.",
    "escape": "Invalid escape character in string.",
    "quote": "Missing a closing quotation mark in string.",
    "encoding": "Invalid encoding in string.",
    "too_big": "Number too big to be stored in double.",
    "fraction": "Miss fraction part in number.",
    "exponent": "Miss exponent in number.",
    "depth": "Document nesting is too deep.",
}


def _parse_error(kind: str, offset: int) -> ServingError:
    return invalid_argument(f"JSON Parse error: {_PARSE_ERROR_TEXT[kind]} at offset: {offset}")


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):  # duplicate keys: rapidjson's FindMember sees the first
        result = {}
        for key, value in pairs:
            result.setdefault(key, value)
    return result


_DECODER = json.JSONDecoder(object_pairs_hook=_first_wins)
_WS_TEXT = re.compile(r"[ \t\n\r]*")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_json(body: bytes | bytearray | memoryview | str) -> Any:
    """Parse a request body as TF Serving does (see the module docstring). Raises ServingError."""
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogateescape")
    else:
        body = bytes(body)
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    if body[0] == 0xEF or (b"\\u" in body and _SURROGATE_ESCAPE.search(body)):
        return _ExactParser(body).parse()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _ExactParser(body).parse()
    start = _WS_TEXT.match(text).end()
    if start == len(text):
        raise _parse_error("empty", len(body))
    try:
        value, _ = _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError):
        return _ExactParser(body).parse()
    return value


_WS_BYTES = re.compile(rb"[ \t\n\r]*")
_PLAIN_STRING = re.compile(rb'[^"\\\x00-\x1f]*')
_SIMPLE_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = {
    ord('"'): b'"', ord("\\"): b"\\", ord("/"): b"/", ord("b"): b"\b", ord("f"): b"\f",
    ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t",
}


class _ExactParser:
    """rapidjson's recursive parser (``kParseNanAndInfFlag``, stop after the root value) over bytes.

    Error offsets are byte offsets into the body, as rapidjson's ``GetErrorOffset``.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def peek(self, pos: int) -> int:
        return self.data[pos] if pos < self.size else 0

    def parse(self) -> Any:
        pos = 0
        for bom in (0xEF, 0xBB, 0xBF):  # rapidjson's UTF-8 stream skips each BOM byte it finds
            if self.peek(pos) == bom:
                pos += 1
        pos = _WS_BYTES.match(self.data, pos).end()
        if self.peek(pos) == 0:
            raise _parse_error("empty", pos)
        try:
            value, _ = self.value(pos)
        except RecursionError:
            raise _parse_error("depth", pos) from None
        return value

    def skip_ws(self, pos: int) -> int:
        return _WS_BYTES.match(self.data, pos).end()

    def value(self, pos: int) -> tuple[Any, int]:
        c = self.peek(pos)
        if c == 0x7B:  # {
            return self.object(pos)
        if c == 0x5B:  # [
            return self.array(pos)
        if c == 0x22:  # "
            return self.string(pos)
        if c == 0x6E:  # n
            return None, self.literal(pos, b"null")
        if c == 0x74:  # t
            return True, self.literal(pos, b"true")
        if c == 0x66:  # f
            return False, self.literal(pos, b"false")
        return self.number(pos)

    def literal(self, pos: int, word: bytes) -> int:
        pos += 1
        for expected in word[1:]:
            if self.peek(pos) != expected:
                raise _parse_error("value", pos)
            pos += 1
        return pos

    def object(self, pos: int) -> tuple[dict[str, Any], int]:
        result: dict[str, Any] = {}
        pos = self.skip_ws(pos + 1)
        if self.peek(pos) == 0x7D:
            return result, pos + 1
        while True:
            if self.peek(pos) != 0x22:
                raise _parse_error("name", pos)
            key, pos = self.string(pos)
            pos = self.skip_ws(pos)
            if self.peek(pos) != 0x3A:
                raise _parse_error("colon", pos)
            pos = self.skip_ws(pos + 1)
            member, pos = self.value(pos)
            result.setdefault(key, member)
            pos = self.skip_ws(pos)
            c = self.peek(pos)
            if c == 0x2C:
                pos = self.skip_ws(pos + 1)
            elif c == 0x7D:
                return result, pos + 1
            else:
                raise _parse_error("object", pos)

    def array(self, pos: int) -> tuple[list[Any], int]:
        result: list[Any] = []
        pos = self.skip_ws(pos + 1)
        if self.peek(pos) == 0x5D:
            return result, pos + 1
        while True:
            element, pos = self.value(pos)
            result.append(element)
            pos = self.skip_ws(pos)
            c = self.peek(pos)
            if c == 0x2C:
                pos = self.skip_ws(pos + 1)
            elif c == 0x5D:
                return result, pos + 1
            else:
                raise _parse_error("array", pos)

    def string(self, pos: int) -> tuple[str, int]:
        data = self.data
        pos += 1
        out = bytearray()
        while True:
            end = _PLAIN_STRING.match(data, pos).end()
            out += data[pos:end]
            pos = end
            c = self.peek(pos)
            if c == 0x22:
                return out.decode("utf-8", "surrogateescape"), pos + 1
            if c == 0x5C:  # backslash
                escape_offset = pos
                e = self.peek(pos + 1)
                if e in _ESCAPES:
                    out += _ESCAPES[e]
                    pos += 2
                elif e == 0x75:  # u
                    codepoint, pos = self.hex4(pos + 2, escape_offset)
                    if 0xD800 <= codepoint <= 0xDFFF:
                        if codepoint > 0xDBFF:
                            raise _parse_error("surrogate", escape_offset)
                        if self.peek(pos) != 0x5C or self.peek(pos + 1) != 0x75:
                            raise _parse_error("surrogate", escape_offset)
                        low, pos = self.hex4(pos + 2, escape_offset)
                        if not 0xDC00 <= low <= 0xDFFF:
                            raise _parse_error("surrogate", escape_offset)
                        codepoint = (((codepoint - 0xD800) << 10) | (low - 0xDC00)) + 0x10000
                    out += chr(codepoint).encode("utf-8")
                else:
                    raise _parse_error("escape", escape_offset)
            elif c == 0:  # end of the body, or a NUL byte
                raise _parse_error("quote", pos)
            else:  # an unescaped control character
                raise _parse_error("encoding", pos)

    def hex4(self, pos: int, escape_offset: int) -> tuple[int, int]:
        digits = self.data[pos:pos + 4]
        if len(digits) < 4 or any(c not in _HEX for c in digits):
            raise _parse_error("hex", escape_offset)
        return int(digits, 16), pos + 4

    def number(self, pos: int) -> tuple[int | float, int]:
        match = _SIMPLE_NUMBER.match(self.data, pos)
        if match is not None and self.peek(match.end()) not in (0x2E, 0x65, 0x45):
            token = match.group()
            if match.group(1) is None and match.group(2) is None:
                integer = int(token)
                if not _INT64_MIN <= integer < _UINT64_END and math.isinf(_as_double(integer)):
                    raise _parse_error("too_big", pos)
                return integer, match.end()
            number = float(token)
            if math.isinf(number):
                raise _parse_error("too_big", pos)
            return number, match.end()
        return self.number_slow(pos)

    def number_slow(self, start: int) -> tuple[int | float, int]:
        pos = start
        minus = self.peek(pos) == 0x2D
        if minus:
            pos += 1
        c = self.peek(pos)
        if c == 0x30:
            pos += 1
        elif 0x31 <= c <= 0x39:
            while 0x30 <= self.peek(pos) <= 0x39:
                pos += 1
        elif c == 0x4E:  # NaN
            if self.peek(pos + 1) == 0x61 and self.peek(pos + 2) == 0x4E:
                return math.nan, pos + 3
            raise _parse_error("value", pos + 1 if self.peek(pos + 1) != 0x61 else pos + 2)
        elif c == 0x49:  # Inf / Infinity
            if self.peek(pos + 1) != 0x6E:
                raise _parse_error("value", pos + 1)
            if self.peek(pos + 2) != 0x66:
                raise _parse_error("value", pos + 2)
            pos += 3
            if self.peek(pos) == 0x69:
                for expected in b"inity":
                    if self.peek(pos) != expected:
                        raise _parse_error("value", pos)
                    pos += 1
            return (-math.inf if minus else math.inf), pos
        else:
            raise _parse_error("value", pos)
        decimal = False
        if self.peek(pos) == 0x2E:
            pos += 1
            if not 0x30 <= self.peek(pos) <= 0x39:
                raise _parse_error("fraction", pos)
            while 0x30 <= self.peek(pos) <= 0x39:
                pos += 1
            decimal = True
        if self.peek(pos) in (0x65, 0x45):
            pos += 1
            if self.peek(pos) in (0x2B, 0x2D):
                pos += 1
            if not 0x30 <= self.peek(pos) <= 0x39:
                raise _parse_error("exponent", pos)
            while 0x30 <= self.peek(pos) <= 0x39:
                pos += 1
            decimal = True
        token = self.data[start:pos]
        number: int | float = float(token) if decimal else int(token)
        if math.isinf(_as_double(number)):
            raise _parse_error("too_big", start)
        return number, pos


# --------------------------------------------------------------------------------------------
# Rendering parsed values the way TF Serving's messages quote them.
# --------------------------------------------------------------------------------------------

_STRING_ESCAPE = re.compile(r'["\\\x00-\x1f]')
_NAMED_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n",
                  "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED_ESCAPES.get(char) or "\\u%04X" % ord(char)


def _rj_string(text: str) -> str:
    """rapidjson ``Writer::String``: quote, backslash and control characters escaped (upper hex)."""
    return '"' + _STRING_ESCAPE.sub(_escape_char, text) + '"'


def _rj_double(value: float) -> str:
    """rapidjson ``Writer::Double`` (shortest digits, ``Prettify``): 1.0, 0.001, 1e21, 1.5e-7."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    k = (int(exp_text) if exp_text else 0) - len(fraction)
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    kk = length + k
    if 0 <= k and kk <= 21:
        text = digits + "0" * k + ".0"
    elif 0 < kk <= 21:
        text = digits[:kk] + "." + digits[kk:]
    elif -6 < kk <= 0:
        text = "0." + "0" * -kk + digits
    elif length == 1:
        text = digits + "e" + str(kk - 1)
    else:
        text = digits[0] + "." + digits[1:] + "e" + str(kk - 1)
    return sign + text


class _Truncated(Exception):
    """rapidjson's writer refuses NaN/Infinity inside a container: the text stops there."""


def _write_pretty(value: Any, depth: int, out: list[str]) -> None:
    kind = type(value)
    if kind is dict:
        if not value:
            out.append("{}")
            return
        out.append("{")
        inner = "    " * (depth + 1)
        first = True
        for key, member in value.items():
            out.append("\n" if first else ",\n")
            first = False
            out.append(inner + _rj_string(key) + ": ")
            _write_pretty(member, depth + 1, out)
        out.append("\n" + "    " * depth + "}")
    elif kind is list:
        if not value:
            out.append("[]")
            return
        out.append("[")
        inner = "    " * (depth + 1)
        first = True
        for element in value:
            out.append(("\n" if first else ",\n") + inner)
            first = False
            _write_pretty(element, depth + 1, out)
        out.append("\n" + "    " * depth + "]")
    elif kind is str:
        out.append(_rj_string(value))
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    elif _is_rj_integer(value):
        out.append(str(value))
    else:
        number = _as_double(value)
        if math.isnan(number) or math.isinf(number):
            raise _Truncated
        out.append(_rj_double(number))


_FLOAT_RANGE = 3.4028234e38  # rapidjson's Value::IsFloat() bound


def json_value_to_string(value: Any) -> str:
    """TF Serving's ``JsonValueToString`` of a parsed value (see the module docstring)."""
    if type(value) is float or (type(value) is int and not _is_rj_integer(value)):
        number = _as_double(value)
        if -_FLOAT_RANGE <= number <= _FLOAT_RANGE:
            return format_float(number)
        return format_float(number, double=True)
    out: list[str] = []
    try:
        _write_pretty(value, 0, out)
    except _Truncated:
        pass
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Float formatting (§1.8).
# --------------------------------------------------------------------------------------------


def _float32_of_decimal(text: str) -> np.float32:
    """The float32 nearest to a decimal string (absl::SimpleAtof), without double rounding."""
    double = float(text)
    single = np.float32(double)
    if np.isfinite(single) and float(single) != double:
        toward = -np.inf if float(single) > double else np.inf
        other = np.nextafter(single, np.float32(toward))
        if (float(single) + float(other)) / 2 == double and Fraction(text) != Fraction(double):
            direction = math.inf if Fraction(text) > Fraction(double) else -math.inf
            single = np.float32(math.nextafter(double, direction))
    return single


def format_float(value: float, double: bool = False) -> str:
    """One float (``double=False``: as float32) or double, in TF Serving's exact §1.8 format.

    NaN/Infinity/-Infinity as bare tokens; else ``%g``, unless that does not parse back to the
    very same value at that precision, then ``%.9g`` (float) / ``%.17g`` (double); ``.0`` is
    appended when there is neither ``.`` nor ``e``.
    """
    number = float(value)
    if not double:
        with np.errstate(over="ignore"):
            single = np.float32(number)
        number = float(single)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "-Infinity" if number < 0 else "Infinity"
    text = "%g" % number
    if double:
        if float(text) != number:
            text = "%.17g" % number
    elif _float32_of_decimal(text) != single:
        text = "%.9g" % number
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _with_point(texts: list[str]) -> list[str]:
    return [t if ("." in t or "e" in t) else t + ".0" for t in texts]


def _float32_of_decimals(texts: list[str]) -> np.ndarray:
    """Vectorised ``_float32_of_decimal``: parse as double, fix the rare double-rounding cases."""
    doubles = np.array(texts, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        singles = doubles.astype(np.float32)
        back = singles.astype(np.float64)
        other = np.nextafter(singles, np.where(back > doubles, np.float32(-np.inf),
                                               np.float32(np.inf)).astype(np.float32))
        midpoint = ((back + other.astype(np.float64)) / 2 == doubles) & (back != doubles)
    for index in np.flatnonzero(midpoint & np.isfinite(singles)).tolist():
        singles[index] = _float32_of_decimal(texts[index])
    return singles


_POWER_OFFSET = 300
_POWERS_OF_TEN = np.array([10.0 ** k for k in range(-_POWER_OFFSET, _POWER_OFFSET + 1)])


def _surely_not_six_digits(values: np.ndarray, spacing: np.ndarray, slack: float) -> np.ndarray:
    """True where ``%g`` (six significant digits) certainly cannot reproduce the value.

    ``values`` are finite doubles (exact), ``spacing`` the gap to the next representable value of
    the target precision. Conservative: False whenever the estimate is not certain.
    """
    magnitude = np.abs(values)
    usable = (magnitude > 1e-290) & (magnitude < 1e290)
    safe = np.where(usable, magnitude, 1.0)
    exponent = np.floor(np.log10(safe)).astype(np.intp)
    scale = _POWERS_OF_TEN[_POWER_OFFSET + 5 - exponent]
    scaled = safe * scale
    distance = np.abs(scaled - np.rint(scaled))
    threshold = spacing * 0.5 * scale
    in_range = (scaled >= 1e5) & (scaled < 1e6)  # else the decimal exponent may be off by one
    return usable & in_range & (distance > threshold * (1 + 1e-9) + slack)


def float_texts(array: np.ndarray, double: bool = False) -> list[str]:
    """Every element of a float32 (or, ``double=True``, float64) array in the §1.8 format, flat
    in C order. Vectorised: ``%g`` is tried (and verified by parsing back) only where it may
    round-trip; NaN and infinities are the bare tokens.
    """
    with np.errstate(all="ignore"):
        return _float_texts(array, double)


_SCALAR_PATH_MAX = 8  # below this many values one-by-one formatting beats the vector set-up


def _float_texts(array: np.ndarray, double: bool) -> list[str]:
    flat = np.ascontiguousarray(array, dtype=np.float64 if double else np.float32).ravel()
    if flat.size <= _SCALAR_PATH_MAX:
        return [format_float(value, double) for value in flat.tolist()]
    values = flat.astype(np.float64)
    finite = np.isfinite(values)
    all_finite = bool(finite.all())
    index = None if all_finite else np.flatnonzero(finite)
    finite_flat = flat if index is None else flat[index]
    finite_values = values if index is None else values[index]
    spacing = np.spacing(np.abs(finite_flat)).astype(np.float64)
    hopeless = _surely_not_six_digits(finite_values, spacing, 1e-8 if double else 1e-9)
    if all_finite and hopeless.all():
        return _long_texts(finite_values, double)
    maybe = np.flatnonzero(~hopeless)
    short = _short_texts(finite_values[maybe], finite_flat[maybe], double)
    if all_finite and maybe.size == flat.size:
        return short
    result = np.empty(flat.size, dtype=object)
    if not all_finite:
        result[np.isnan(values)] = "NaN"
        result[values == np.inf] = "Infinity"
        result[values == -np.inf] = "-Infinity"
    target = np.arange(flat.size) if index is None else index
    _scatter(result, target[maybe], short)
    bad = np.flatnonzero(hopeless)
    _scatter(result, target[bad], _long_texts(finite_values[bad], double))
    return result.tolist()


def _scatter(result: np.ndarray, where: np.ndarray, texts: list[str]) -> None:
    if texts:
        chunk = np.empty(len(texts), dtype=object)
        chunk[:] = texts
        result[where] = chunk


def _long_texts(values: np.ndarray, double: bool) -> list[str]:
    """``%.9g`` / ``%.17g`` texts (+ ``.0`` for the integers those print without a point)."""
    texts = [("%.17g" if double else "%.9g") % n for n in values.tolist()]
    limit = 1e17 if double else 1e9
    whole = np.flatnonzero((values == np.rint(values)) & (np.abs(values) < limit))
    for j in whole.tolist():
        if "." not in texts[j] and "e" not in texts[j]:
            texts[j] += ".0"
    return texts


def _short_texts(values: np.ndarray, singles: np.ndarray, double: bool) -> list[str]:
    """``%g`` texts where they parse back to the same value, else the long form."""
    numbers = values.tolist()
    texts = ["%g" % n for n in numbers]
    if double:
        same = np.array(texts, dtype=np.float64) == values
    else:
        same = _float32_of_decimals(texts) == singles
    for j in np.flatnonzero(~same).tolist():
        texts[j] = ("%.17g" if double else "%.9g") % numbers[j]
    return _with_point(texts)


# --------------------------------------------------------------------------------------------
# The request body.
# --------------------------------------------------------------------------------------------


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
    return not isinstance(raw, (bytes, bytearray)) or b"true" in raw or b"false" in raw


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


# --------------------------------------------------------------------------------------------
# JSON values -> tensors.
# --------------------------------------------------------------------------------------------


def _type_error(value: Any, dtype: str) -> ServingError:
    return invalid_argument(f"JSON Value: {json_value_to_string(value)} Type: "
                            f"{json_type_name(value)} is not of expected type: {dtype}")


def _b64_object_bytes(value: Any) -> bytes:
    if not is_b64_object(value):
        raise invalid_argument(f"JSON Value: {json_value_to_string(value)} "
                               "not formatted correctly for base64 data")
    decoded = b64_decode(value["b64"])
    if decoded is None:
        raise invalid_argument("Unable to base64 decode")
    return decoded


def _ranged_int(low: int, end: int, dtype: str) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if type(value) is int and low <= value < end:
            return value
        raise _type_error(value, dtype)
    return convert


@dataclass(frozen=True)
class _Dtype:
    """How JSON scalars of one signature dtype are checked and stacked."""

    enum_name: str
    name: str
    numpy: Any  # None: conversion unimplemented
    convert: Callable[[Any], Any]
    stack: Callable[[list[Any]], np.ndarray]


def _stack_as(numpy_type: Any, via: Any = None) -> Callable[[list[Any]], np.ndarray]:
    def stack(values: list[Any]) -> np.ndarray:
        with np.errstate(over="ignore"):
            if via is None:
                return np.array(values, dtype=numpy_type)
            return np.array(values, dtype=via).astype(numpy_type)
    return stack


def _stack_strings(values: list[Any]) -> np.ndarray:
    result = np.empty(len(values), dtype=object)
    result[:] = values
    return result


@functools.lru_cache(maxsize=64)  # pure per dtype; building the converters costs ~10 us
def _make_dtype(dtype: Any) -> _Dtype:
    enum_name = _dtype_enum_name(dtype)
    name = data_type_string(enum_name)

    def floating(value: Any) -> float:
        kind = type(value)
        if kind is float:
            return value
        if kind is int:
            return _as_double(value)
        raise _type_error(value, name)

    def boolean(value: Any) -> bool:
        if type(value) is bool:
            return value
        raise _type_error(value, name)

    def string(value: Any) -> bytes:
        if type(value) is str:
            return utf8_bytes(value)
        raise _type_error(value, name)

    def unimplemented(value: Any) -> Any:
        raise ServingError(StatusCode.UNIMPLEMENTED, f"Conversion of JSON Value: "
                           f"{json_value_to_string(value)} to type: {name}")

    table: dict[str, tuple[Any, Callable[[Any], Any], Callable[[list[Any]], np.ndarray]]] = {
        "DT_FLOAT": (np.float32, floating, _stack_as(np.float32, np.float64)),
        "DT_DOUBLE": (np.float64, floating, _stack_as(np.float64)),
        "DT_INT32": (np.int32, _ranged_int(_INT32_MIN, _INT32_END, name), _stack_as(np.int32)),
        "DT_INT16": (np.int16, _ranged_int(_INT32_MIN, _INT32_END, name),
                     _stack_as(np.int16, np.int64)),
        "DT_INT8": (np.int8, _ranged_int(_INT32_MIN, _INT32_END, name),
                    _stack_as(np.int8, np.int64)),
        "DT_UINT8": (np.uint8, _ranged_int(_INT32_MIN, _INT32_END, name),
                     _stack_as(np.uint8, np.int64)),
        "DT_INT64": (np.int64, _ranged_int(_INT64_MIN, _INT64_END, name), _stack_as(np.int64)),
        "DT_UINT32": (np.uint32, _ranged_int(0, _UINT32_END, name), _stack_as(np.uint32)),
        "DT_UINT64": (np.uint64, _ranged_int(0, _UINT64_END, name), _stack_as(np.uint64)),
        "DT_BOOL": (np.bool_, boolean, _stack_as(np.bool_)),
        "DT_STRING": (np.object_, string, _stack_strings),
    }
    if enum_name in table:
        numpy_type, convert, stack = table[enum_name]
        return _Dtype(enum_name, name, numpy_type, convert, stack)
    return _Dtype(enum_name, name, None, unimplemented, _stack_unimplemented(name))


def _stack_unimplemented(name: str) -> Callable[[list[Any]], np.ndarray]:
    def stack(values: list[Any]) -> np.ndarray:  # only reached with zero values
        raise ServingError(StatusCode.UNIMPLEMENTED,
                           f"Conversion of JSON Value: [] to type: {name}")
    return stack


def _dense_shape(value: Any) -> list[int]:
    """GetDenseTensorShape: the nested-list shape read along the first element of each level."""
    shape = []
    while type(value) is list:
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value: Any, level: int, shape: list[int], dtype: _Dtype, out: list[Any]) -> None:
    """FillTensorProto: checks levels/sizes and converts scalars, depth first, into ``out``."""
    rank = len(shape)
    if type(value) is not list:
        if level != rank:
            raise invalid_argument(
                f"JSON Value: {json_value_to_string(value)} found at incorrect level: "
                f"{level + 1} in the JSON DOM. Expected at level: {rank}")
        out.append(_scalar(value, dtype))
        return
    if level >= rank:
        raise invalid_argument(
            f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}")
    if level + 1 == rank:
        convert = dtype.convert
        for element in value:
            kind = type(element)
            if kind is list:
                raise invalid_argument(
                    f"Encountered list at unexpected level: {level + 1} expected < {rank}")
            out.append(_scalar(element, dtype) if kind is dict else convert(element))
        return
    for element in value:
        _fill(element, level + 1, shape, dtype, out)


def _scalar(value: Any, dtype: _Dtype) -> Any:
    if type(value) is dict:
        if dtype.enum_name == "DT_STRING":
            return _b64_object_bytes(value)
        raise _type_error(value, dtype.name)
    return dtype.convert(value)


_MAX_RANK = 64  # numpy's limit (TF's is 254; deeper JSON nesting is refused either way)


def _decode_exact(value: Any, dtype: _Dtype,
                  max_rank: int = _MAX_RANK) -> tuple[list[Any], list[int]]:
    shape = _dense_shape(value)
    if len(shape) > max_rank:
        raise invalid_argument(f"JSON value nested {len(shape)} lists deep: tensors of more than "
                               f"{_MAX_RANK} dimensions are not supported")
    out: list[Any] = []
    _fill(value, 0, shape, dtype, out)
    return out, shape


_NUMERIC_KINDS = {
    "DT_FLOAT": "fiu", "DT_DOUBLE": "fiu", "DT_INT32": "i", "DT_INT16": "i", "DT_INT8": "i",
    "DT_UINT8": "i", "DT_INT64": "i", "DT_UINT32": "iu", "DT_UINT64": "iu", "DT_BOOL": "b",
}
_INT_BOUNDS = {
    "DT_INT32": (_INT32_MIN, _INT32_END), "DT_INT16": (_INT32_MIN, _INT32_END),
    "DT_INT8": (_INT32_MIN, _INT32_END), "DT_UINT8": (_INT32_MIN, _INT32_END),
    "DT_UINT32": (0, _UINT32_END), "DT_UINT64": (0, _UINT64_END),
}


def _decode_fast(value: Any, dtype: _Dtype, maybe_bools: bool) -> np.ndarray | None:
    """numpy's own conversion when it provably gives what ``_decode_exact`` would; else None.

    Valid iff numpy sees a rectangular array of the expected shape whose elements are all JSON
    numbers of an acceptable kind (or all booleans for DT_BOOL) within the dtype's range.
    """
    kinds = _NUMERIC_KINDS.get(dtype.enum_name)
    if kinds is None or type(value) is not list:
        return None
    try:
        array = np.array(value)
    except (ValueError, TypeError, OverflowError):
        return None
    if array.dtype.kind not in kinds or list(array.shape) != _dense_shape(value) or not array.size:
        return None
    if array.dtype.kind != "b" and maybe_bools:
        boxed = np.array(value, dtype=object)
        if bool in set(map(type, boxed.flat)):
            return None
    bounds = _INT_BOUNDS.get(dtype.enum_name)
    if bounds is not None and (int(array.min()) < bounds[0] or int(array.max()) >= bounds[1]):
        return None
    with np.errstate(over="ignore"):
        if dtype.enum_name == "DT_FLOAT" and array.dtype.kind in "iu":
            array = array.astype(np.float64)  # rapidjson: GetFloat() = (float)GetDouble()
        return np.ascontiguousarray(array.astype(dtype.numpy))


def _decode_value(value: Any, dtype: _Dtype, maybe_bools: bool) -> np.ndarray:
    """One JSON value as one tensor (columnar format)."""
    fast = _decode_fast(value, dtype, maybe_bools)
    if fast is not None:
        return fast
    out, shape = _decode_exact(value, dtype)
    return dtype.stack(out).reshape(shape)


def _input_dtypes(signature: Signature) -> dict[str, _Dtype]:
    return {alias: _make_dtype(info.dtype) for alias, info in sorted(signature.inputs.items())}


def decode_inputs(body: PredictBody, signature: Signature) -> dict[str, np.ndarray]:
    """Steps 6-7 of §1.3: the signature's inputs (alias -> ndarray of the signature's dtype;
    DT_STRING as an object array of bytes). Shapes in the signature are not checked (TF Serving
    does not either). Raises ServingError (INVALID_ARGUMENT; UNIMPLEMENTED for dtypes JSON cannot
    express, e.g. half, in the columnar format)."""
    check_input_map(signature, body.signature_name, body.explicit_signature)
    return decode_tensors(body.format, body.data, signature, body.maybe_bools)


def decode_tensors(body_format: Literal["row", "columnar"], data: Any, signature: Signature,
                   maybe_bools: bool = True) -> dict[str, np.ndarray]:
    """Step 7 of §1.3: the ``instances`` list (``row``) or ``inputs`` value (``columnar``) as
    the signature's input tensors. Raises ServingError (see ``decode_inputs``)."""
    dtypes = _input_dtypes(signature)
    try:
        if body_format == "row":
            return _decode_rows(data, dtypes, maybe_bools)
        return _decode_columns(data, dtypes, maybe_bools)
    except RecursionError:
        raise invalid_argument("JSON value nested too deeply") from None


def _decode_columns(value: Any, dtypes: dict[str, _Dtype],
                    maybe_bools: bool) -> dict[str, np.ndarray]:
    if type(value) is not dict or is_b64_object(value):
        if len(dtypes) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map")
        alias, dtype = next(iter(dtypes.items()))
        return {alias: _decode_value(value, dtype, maybe_bools)}
    result = {}
    for alias, dtype in dtypes.items():
        if alias not in value:
            raise invalid_argument(f"Missing named input: {alias} in 'inputs' object.")
        result[alias] = _decode_value(value[alias], dtype, maybe_bools)
    return result


def _is_element_object(value: Any) -> bool:
    return type(value) is dict and not is_b64_object(value)


def _decode_rows(instances: list[Any], dtypes: dict[str, _Dtype],
                 maybe_bools: bool) -> dict[str, np.ndarray]:
    if type(instances[0]) is not dict and len(dtypes) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map")
    objects = _is_element_object(instances[0])
    fast = _decode_rows_fast(instances, dtypes, objects, maybe_bools)
    if fast is not None:
        return fast
    return _decode_rows_exact(instances, dtypes, objects)


def _decode_rows_fast(instances: list[Any], dtypes: dict[str, _Dtype], objects: bool,
                      maybe_bools: bool) -> dict[str, np.ndarray] | None:
    if not objects:
        alias, dtype = next(iter(dtypes.items()))
        array = _decode_fast(instances, dtype, maybe_bools)
        return None if array is None else {alias: array}
    names = dtypes.keys()
    if not all(type(item) is dict and item.keys() == names for item in instances):
        return None
    result = {}
    for alias, dtype in dtypes.items():
        array = _decode_fast([item[alias] for item in instances], dtype, maybe_bools)
        if array is None:
            return None
        result[alias] = array
    return result


class _Stacker:
    """AddInstanceItem: per input, every instance must give the same size and shape."""

    def __init__(self, dtypes: dict[str, _Dtype]) -> None:
        self.dtypes = dtypes
        self.values: dict[str, list[Any]] = {}
        self.shapes: dict[str, list[int]] = {}

    def add(self, alias: str, item: Any) -> None:
        if alias not in self.dtypes:
            raise invalid_argument(f"JSON object: does not have named input: {alias}")
        out, shape = _decode_exact(item, self.dtypes[alias], _MAX_RANK - 1)
        if alias not in self.shapes:
            self.shapes[alias] = shape
            self.values[alias] = out
            return
        expected = self.shapes[alias]
        expected_size = math.prod(expected)
        if expected_size != len(out):
            raise invalid_argument(
                f"Expecting tensor size: {expected_size} but got: {len(out)}")
        if expected != shape:
            raise invalid_argument(f"Expecting shape {_shape_text(expected)} but got: "
                                   f"{_shape_text(shape)}")
        self.values[alias].extend(out)

    def tensors(self, count: int) -> dict[str, np.ndarray]:
        return {alias: self.dtypes[alias].stack(values).reshape([count] + self.shapes[alias])
                for alias, values in self.values.items()}


def _shape_text(shape: list[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _nested(err: ServingError) -> str:
    return err.with_prefix()


def _decode_rows_exact(instances: list[Any], dtypes: dict[str, _Dtype],
                       objects: bool) -> dict[str, np.ndarray]:
    stacker = _Stacker(dtypes)
    names = sorted(dtypes)
    for index, item in enumerate(instances):
        if objects:
            if not _is_element_object(item):
                raise invalid_argument(
                    f"Expecting object but got list at item {index} of input list")
            for key, member in item.items():
                try:
                    stacker.add(key, member)
                except ServingError as err:
                    raise invalid_argument(
                        f"Failed to process element: {index} key: {key} of 'instances' list. "
                        f"Error: {_nested(err)}") from None
            if set(item) != set(names):
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{json_value_to_string(item)} keys must be equal to: {','.join(names)}")
        else:
            if _is_element_object(item):
                raise invalid_argument(
                    f"Expecting value/list but got object at item {index} of input list")
            try:
                stacker.add(names[0], item)
            except ServingError as err:
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. "
                    f"Error: {_nested(err)}") from None
    return stacker.tensors(len(instances))


# --------------------------------------------------------------------------------------------
# Tensors -> JSON.
# --------------------------------------------------------------------------------------------

_encode_string: Callable[[str], str] = getattr(json.encoder, "c_encode_basestring", None) \
    or json.encoder.py_encode_basestring  # type: ignore[attr-defined]


def _json_string(data: Any) -> str:
    """A string tensor element as a JSON string; bytes that are not UTF-8 become U+FFFD."""
    if isinstance(data, bytes):
        text = data.decode("utf-8", "replace")
    elif isinstance(data, str):
        text = data
    else:
        text = bytes(data).decode("utf-8", "replace")
    return _encode_string(text)


def _b64_json(data: Any) -> str:
    raw = data if isinstance(data, bytes) else (
        data.encode("utf-8") if isinstance(data, str) else bytes(data))
    return '{"b64":"' + base64.b64encode(raw).decode("ascii") + '"}'


def _tensor_type_name(array: np.ndarray, declared: Any = None) -> str:
    if declared is not None:
        return data_type_string(declared)
    if array.dtype == np.float16:
        return "half"
    return array.dtype.name


def leaf_texts(alias: str, array: np.ndarray, declared_dtype: Any = None) -> list[str]:
    """Every element of an output tensor as JSON text, flat in C order (§1.6 output rules).

    Raises ServingError ``Failed to write JSON value for tensor type: <type>`` for dtypes JSON
    cannot express (half, uint16, complex, ...) when the tensor has any element.
    """
    dtype = array.dtype
    kind = dtype.kind
    if dtype == np.float32:
        return float_texts(array)
    if dtype == np.float64:
        return float_texts(array, double=True)
    if kind in "iu" and dtype != np.uint16:
        return list(map(str, array.ravel().tolist()))
    if kind == "b":
        return ["true" if v else "false" for v in array.ravel().tolist()]
    if kind in "OSU":
        items = array.ravel().tolist()
        if alias.endswith("_bytes"):
            return list(map(_b64_json, items))
        return list(map(_json_string, items))
    if array.size == 0:
        return []
    raise invalid_argument("Failed to write JSON value for tensor type: "
                           f"{_tensor_type_name(array, declared_dtype)}")


def _empty_nest(dims: tuple[int, ...]) -> str:
    """The text of an all-empty nested array; ``dims`` holds a zero somewhere."""
    if dims[0] == 0:
        return "[]"
    inner = _empty_nest(dims[1:])
    return "[" + ",".join([inner] * dims[0]) + "]"


def nest_texts(leaves: list[str], shape: tuple[int, ...], keep: int) -> list[str]:
    """Wrap flat leaf texts into nested JSON arrays for all but the first ``keep`` dimensions;
    returns one text per index of the kept leading dimensions (one text when ``keep == 0``)."""
    outer = math.prod(shape[:keep])
    inner = shape[keep:]
    if not inner:
        return leaves
    if math.prod(inner) == 0:
        return [_empty_nest(tuple(inner))] * outer
    items = leaves
    for size in reversed(inner):
        if size == 1:
            items = ["[" + item + "]" for item in items]
        else:
            items = ["[" + ",".join(items[i:i + size]) + "]" for i in range(0, len(items), size)]
    return items


def encode_predict_response(outputs: Mapping[str, np.ndarray], body_format: str,
                            signature: Signature | None = None) -> bytes:
    """The Predict response body (compact JSON, UTF-8).

    ``row``: ``{"predictions": [...]}``, one entry per instance (the output's value, or an object of
    all outputs when there are several); ``columnar``: ``{"outputs": value}`` or
    ``{"outputs": {alias: value}}``. ``signature`` only names dtypes in error messages.
    """
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {name: np.asarray(outputs[name]) for name in names}
    declared = {}
    if signature is not None:
        declared = {alias: info.dtype for alias, info in signature.outputs.items()}
    if body_format == "row":
        return _encode_rows(names, arrays, declared)
    if body_format == "columnar":
        texts = {name: nest_texts(leaf_texts(name, arrays[name], declared.get(name)),
                                  arrays[name].shape, 0)[0] for name in names}
        if len(names) == 1:
            body = texts[names[0]]
        else:
            body = "{" + ",".join(_encode_string(n) + ":" + texts[n] for n in names) + "}"
        return ('{"outputs":' + body + "}").encode("utf-8", "replace")
    raise invalid_argument("Invalid request format")


def _encode_rows(names: list[str], arrays: dict[str, np.ndarray],
                 declared: dict[str, Any]) -> bytes:
    batch = -1
    for name in names:
        array = arrays[name]
        if array.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and array.shape[0] != batch:
            raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: "
                                   f"{array.shape[0]} expecting: {batch}")
        batch = array.shape[0]
    rows = {name: nest_texts(leaf_texts(name, arrays[name], declared.get(name)),
                             arrays[name].shape, 1) for name in names}
    if len(names) == 1:
        items = rows[names[0]]
    else:
        keys = {name: _encode_string(name) + ":" for name in names}
        items = ["{" + ",".join(keys[name] + rows[name][i] for name in names) + "}"
                 for i in range(batch)]
    return ('{"predictions":[' + ",".join(items) + "]}").encode("utf-8", "replace")
