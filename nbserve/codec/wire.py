"""Protobuf's wire format, the two pieces nbserve writes by hand: varints and length-delimited
fields. Used by the gRPC tensor codec (``tensors``) and the JSON Example writer
(``json_examples``); pure Python, no imports, so the JSON codec stays light."""

from __future__ import annotations

__all__ = ["field", "varint"]

_SMALL_VARINTS = [bytes((value,)) for value in range(0x80)]


def varint(value: int) -> bytes:
    """An integer as a protobuf varint (a negative one as its 64-bit two's complement, as an
    ``int64`` field holds it)."""
    if 0 <= value < 0x80:
        return _SMALL_VARINTS[value]
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """Field ``number`` holding ``payload`` (wire type 2)."""
    return varint((number << 3) | 2) + varint(len(payload)) + payload
