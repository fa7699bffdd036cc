"""The compiled fast path of ``rapidjson.parse_json``: orjson, where it decides as TF Serving does.

``fast_parse(data)`` returns the parsed document, or ``UNDECIDED`` when orjson's answer might
differ from the exact reader's (``rapidjson.parse_json_exact``); the caller then runs that one.
The rules, each a case where orjson and rapidjson part ways:

* orjson rejects the body (malformed JSON, ``NaN``/``Inf`` tokens, trailing bytes after the root
  value, a UTF-8 BOM, bytes that are not UTF-8, lone surrogate escapes, numbers beyond the double
  range, nesting past its limit): ``UNDECIDED``; the exact reader finds rapidjson's value or
  error.
* Duplicate keys (orjson keeps the last, rapidjson's ``FindMember`` the first): the document's
  object members are counted and must equal the ``:`` bytes of the body. A ``:`` inside a string
  makes the counts differ too, which only costs the slow path.
* Nesting deeper than ``MAX_DEPTH`` (the exact reader's limit depends on the Python stack):
  ``UNDECIDED``. A body that might nest that deep (over 4 KiB, or with more brackets than
  ``MAX_DEPTH``) is parsed inside ``_WRAP`` extra one-element arrays, so that orjson's own depth
  limit (``ORJSON_DEPTH``) refuses it; unwrapping checks the body was exactly one value.
* Integers outside [-2**63, 2**64): orjson gives the double rapidjson holds (as
  ``rapidjson.as_double``); the exact reader does the same, so nothing to check.

Numbers: orjson's doubles are correctly rounded, as Python's ``float`` (tests check both on
random and hard decimal strings). Pure functions: thread-safe, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import orjson

__all__ = ["MAX_DEPTH", "UNDECIDED", "count_byte", "fast_parse"]

UNDECIDED: Final = object()  # fast_parse's "ask the exact reader"

ORJSON_DEPTH = 1024  # orjson's recursion limit: documents nested deeper are rejected
MAX_DEPTH = 512  # the deepest nesting the fast path accepts (the exact reader manages it too)
_WRAP = ORJSON_DEPTH - MAX_DEPTH
_OPEN = b"[" * _WRAP
_CLOSE = b"]" * _WRAP


_SMALL = 4096  # bytes: a body this short is counted with bytes.count, and maybe not wrapped


def fast_parse(data: bytes) -> Any:
    """``data`` (a non-empty body) parsed by orjson, or ``UNDECIDED`` (see the module doc)."""
    braces = count_byte(data, 0x7B)  # {
    try:
        if len(data) <= _SMALL and braces + data.count(b"[") <= MAX_DEPTH:  # cannot nest deeper
            value = orjson.loads(data)
        else:
            value = _unwrap(orjson.loads(_OPEN + data + _CLOSE))
    except orjson.JSONDecodeError:
        return UNDECIDED
    if braces and value is not UNDECIDED and \
            _member_count(value, braces) != count_byte(data, 0x3A):  # :
        return UNDECIDED
    return value


def count_byte(data: bytes, byte: int, rare: int = 64) -> int:
    """How many ``byte`` bytes ``data`` holds. Fast for bytes that occur rarely (memchr hops
    between them), as ``{``, ``:`` or ``u`` in a numeric body; ``bytes.count`` past ``rare``."""
    if len(data) <= _SMALL:
        return data.count(byte)
    found = 0
    position = data.find(byte)
    while position >= 0:
        found += 1
        if found > rare:
            return found + data.count(byte, position + 1)
        position = data.find(byte, position + 1)
    return found


def _unwrap(value: Any) -> Any:
    """The body's value inside the ``_WRAP`` one-element arrays around it; ``UNDECIDED`` when
    the body was not exactly one value (blank, or brackets that close the wrapping early)."""
    for _ in range(_WRAP):
        if type(value) is not list or len(value) != 1:
            return UNDECIDED
        value = value[0]
    return value


def _member_count(doc: Any, braces: int) -> int:
    """The members of all objects in ``doc``; stops once ``braces`` objects were seen (there can
    be no more objects than ``{`` bytes), so a tensor beside the objects is never walked."""
    members = seen = 0
    objects = [doc] if type(doc) is dict else []
    lists = [doc] if type(doc) is list else []
    while True:
        while objects:
            obj = objects.pop()
            seen += 1
            members += len(obj)
            if seen == braces:
                return members
            _containers(obj.values(), objects, lists)
        if not lists:
            return members
        _containers(lists.pop(), objects, lists)


def _containers(values: Iterable[Any], objects: list[Any], lists: list[Any]) -> None:
    """Append each of ``values`` that is an object to ``objects``, each array to ``lists``."""
    for value in values:
        kind = type(value)
        if kind is dict:
            objects.append(value)
        elif kind is list:
            lists.append(value)
