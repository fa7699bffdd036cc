"""A rapidjson-compatible reader and value printer: how TF Serving's REST layer sees JSON.

Spec: ``tfserving.md`` §1.3, §1.9 (TF Serving parses bodies with rapidjson).

``parse_json(body)`` follows rapidjson's ``kParseNanAndInfFlag`` rules: ``NaN``, ``Inf``,
``Infinity``, ``-Inf``, ``-Infinity`` (and ``-NaN``) are numbers; parsing stops after the first
complete value; malformed input fails with rapidjson's message and byte offset. Integer tokens
within [-2**63, 2**64) come back as ``int``, other integers as the double rapidjson holds
(``as_double``), decimal tokens as ``float`` (dtype checks and tf.Example kinds depend on it),
strings as ``str`` (bytes that are not UTF-8 survive as ``surrogateescape`` code points:
``utf8_bytes`` gives the original bytes back), objects as ``dict`` in which, as with rapidjson's
``FindMember``, the first of duplicate keys wins.

Three readers, tried in turn, give the same document: ``fast_reader.fast_parse`` (orjson; it
declines every body where it might differ, see there), then ``parse_json_exact``: first
``json.JSONDecoder``, and only for a document it rejects (or one with ``Inf``/``-NaN`` tokens, a
BOM, non-UTF-8 bytes or UTF-16 surrogate escapes) the exact, slower byte-level parser.
Deviation: a number literal beyond the double range (``1e400``) becomes ±inf on the
``JSONDecoder`` path where rapidjson reports ``Number too big to be stored in double.``.

``json_value_to_string`` renders a parsed value the way TF Serving quotes it in messages
(``JSON Value: <v> ...``): rapidjson's ``PrettyWriter`` (4-space indent, ``"key": value``), a
top-level decimal in the §1.8 format, and, as in TF Serving, text cut short at a nested NaN/inf.

Pure functions: thread-safe, no I/O, no TensorFlow. Errors are ServingError(INVALID_ARGUMENT).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, AnyStr

from nbserve.codec.fast_reader import UNDECIDED, fast_parse
from nbserve.codec.float_format import format_float
from nbserve.errors import ServingError, invalid_argument

__all__ = [
    "INT64_END",
    "INT64_MIN",
    "UINT64_END",
    "as_double",
    "is_rj_integer",
    "json_type_name",
    "json_value_to_string",
    "parse_json",
    "parse_json_exact",
    "utf8_bytes",
]

INT64_MIN = -(1 << 63)
INT64_END = 1 << 63
UINT64_END = 1 << 64


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


def is_rj_integer(value: Any) -> bool:
    """Whether rapidjson holds this number as an integer (it keeps int64/uint64, else double)."""
    return type(value) is int and INT64_MIN <= value < UINT64_END


def as_double(value: Any) -> float:
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


def _rj_integer(token: str) -> int | float:
    """An integer token as rapidjson holds it: int64/uint64, else a double."""
    if len(token) > 21:  # beyond 64 bits for sure (and maybe past int()'s digit limit)
        return float(token)
    value = int(token)
    return value if INT64_MIN <= value < UINT64_END else float(value)


_DECODER = json.JSONDecoder(object_pairs_hook=_first_wins, parse_int=_rj_integer)
_WS_TEXT = re.compile(r"[ \t\n\r]*")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _span_end(pattern: re.Pattern[AnyStr], text: AnyStr, pos: int) -> int:
    """Where ``pattern`` (one that matches the empty string too) stops matching from ``pos``."""
    match = pattern.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _body_bytes(body: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8", "surrogateescape")
    return bytes(body)


def parse_json(body: bytes | bytearray | memoryview | str) -> Any:
    """Parse a request body as TF Serving does (see the module docstring). Raises ServingError."""
    body = _body_bytes(body)
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    value = fast_parse(body)
    if value is not UNDECIDED:
        return value
    return parse_json_exact(body)


def parse_json_exact(body: bytes | bytearray | memoryview | str) -> Any:
    """``parse_json`` without the orjson fast path: the reference the fast path must agree with.
    """
    body = _body_bytes(body)
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    if body[0] == 0xEF or (b"\\u" in body and _SURROGATE_ESCAPE.search(body)):
        return _ExactParser(body).parse()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _ExactParser(body).parse()
    blank = _WS_TEXT.match(text)
    start = blank.end() if blank is not None else 0
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
        pos = _span_end(_WS_BYTES, self.data, pos)
        if self.peek(pos) == 0:
            raise _parse_error("empty", pos)
        try:
            value, _ = self.value(pos)
        except RecursionError:
            raise _parse_error("depth", pos) from None
        return value

    def skip_ws(self, pos: int) -> int:
        return _span_end(_WS_BYTES, self.data, pos)

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
            end = _span_end(_PLAIN_STRING, data, pos)
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
                integer = _rj_integer(token.decode("ascii"))
                if type(integer) is float and math.isinf(integer):
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
        number = float(token) if decimal else _rj_integer(token.decode("ascii"))
        if math.isinf(number):
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
    return _NAMED_ESCAPES.get(char) or f"\\u{ord(char):04X}"


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
    elif is_rj_integer(value):
        out.append(str(value))
    else:
        number = as_double(value)
        if math.isnan(number) or math.isinf(number):
            raise _Truncated
        out.append(_rj_double(number))


_FLOAT_RANGE = 3.4028234e38  # rapidjson's Value::IsFloat() bound


def json_value_to_string(value: Any) -> str:
    """TF Serving's ``JsonValueToString`` of a parsed value (see the module docstring)."""
    if type(value) is float or (type(value) is int and not is_rj_integer(value)):
        number = as_double(value)
        if -_FLOAT_RANGE <= number <= _FLOAT_RANGE:
            return format_float(number)
        return format_float(number, double=True)
    out: list[str] = []
    try:
        _write_pretty(value, 0, out)
    except _Truncated:
        pass
    return "".join(out)
