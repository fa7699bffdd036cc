"""TF Serving's float formatting for REST responses and messages (spec §1.8).

``format_float`` formats one float32 or double; ``float_texts`` a whole array, vectorised, to the
very same texts; ``float32_json`` a whole float32 array as nested JSON arrays, compiled.

The compiled path rests on one fact: where TF Serving's text of a float32 is in fixed notation
(``-4 <= exponent < precision``), it is a decimal of at most 9 significant digits, and the double
nearest to that decimal prints, in orjson's shortest round-trip form, as the very same characters
(no other decimal of <= 15 digits rounds to that double; orjson writes fixed notation from 1e-5 to
1e16 with ``.0`` after integers, as §1.8 does). ``fixed_decimals`` finds those doubles with numpy
(``%g``'s six digits where they round-trip to the float32, else ``%.9g``'s nine), in double
arithmetic whose error is bounded; a value within that error of a rounding tie, a value printed in
exponent notation, NaN and the infinities are left to the exact formatter.

Pure numpy (and orjson): thread-safe, no I/O, no TensorFlow.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import cast

import numpy as np
import orjson

__all__ = ["COMPILED_MIN", "fixed_decimals", "float32_json", "float_texts", "format_float"]


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
    return cast(np.float32, single)


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
    text = "%g" % number  # noqa: UP031 - C's printf format is the spec; ~2x faster than format()
    if double:
        if float(text) != number:
            text = "%.17g" % number  # noqa: UP031
    elif _float32_of_decimal(text) != single:
        text = "%.9g" % number  # noqa: UP031
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
    return cast(np.ndarray, usable & in_range & (distance > threshold * (1 + 1e-9) + slack))


def float_texts(array: np.ndarray, double: bool = False) -> list[str]:
    """Every element of a float32 (or, ``double=True``, float64) array in the §1.8 format, flat
    in C order. Vectorised: float32 through ``fixed_decimals`` and orjson; doubles (and the
    float32 values ``fixed_decimals`` leaves) by ``%g``, verified by parsing back, where it may
    round-trip, else ``%.17g``/``%.9g``; NaN and infinities are the bare tokens.
    """
    with np.errstate(all="ignore"):
        if double:
            return _float_texts(array, double)
        flat = np.ascontiguousarray(array, dtype=np.float32).ravel()
        if flat.size <= COMPILED_MIN:
            return _float_texts(flat, double)
        decimals, special = fixed_decimals(flat)
        texts = orjson.dumps(decimals, option=orjson.OPT_SERIALIZE_NUMPY).decode()[1:-1].split(",")
        where = np.flatnonzero(special)
        for index, text in zip(where.tolist(), _float_texts(flat[where], False), strict=True):
            texts[index] = text
        return texts


COMPILED_MIN = 16  # up to this many values the per-value path is as fast as numpy's set-up


def float32_json(array: np.ndarray) -> bytes:
    """A float32 array as JSON text: nested arrays of its values in the §1.8 format (a bare
    value for a 0-d array), byte for byte what ``float_texts`` + nesting would write."""
    shaped = np.ascontiguousarray(array, dtype=np.float32)
    with np.errstate(all="ignore"):
        decimals, special = fixed_decimals(shaped.ravel())
        text = orjson.dumps(decimals.reshape(shaped.shape), option=orjson.OPT_SERIALIZE_NUMPY)
        where = np.flatnonzero(special)
        if not where.size:
            return text
        parts = text.split(b"null")  # NaN writes null; no other null can occur in the text
        exact = _float_texts(shaped.ravel()[where], False)
    pieces = [parts[0]]
    for index, piece in enumerate(parts[1:]):
        pieces.append(exact[index].encode())
        pieces.append(piece)
    return b"".join(pieces)


def _binade_tables() -> tuple[np.ndarray, ...]:
    """Per float32 binade and side of the power of ten it may hold: lookup tables.

    Index ``2 * b + above`` (``b`` the exponent field, ``above`` whether the value reaches the
    binade's power of ten). The binade [2**(b-127), 2**(b-126)) holds at most one power of ten
    (``_NEXT_TEN[b]``), so the decimal exponent is ``floor(log10(2**(b-127))) + above``.
    Returns (next power of ten at ``2 * b``, decimal exponent, fixed-path candidate,
    10**(8-e), half the float32 gap scaled by 10**(5-e)).
    """
    next_ten = np.full(512, np.inf)
    exponent = np.zeros(512, dtype=np.int8)
    candidate = np.zeros(512, dtype=bool)
    scale9 = np.ones(512)
    half6 = np.ones(512)
    for b in range(1, 255):
        start = Fraction(2) ** (b - 127)
        low = math.floor((b - 127) * math.log10(2))
        while Fraction(10) ** (low + 1) <= start:
            low += 1
        while Fraction(10) ** low > start:
            low -= 1
        next_ten[2 * b] = float(f"1e{low + 1}")  # no float32 lies between it and 10**(low+1)
        for above in (0, 1):
            e = low + above
            index = 2 * b + above
            exponent[index] = max(-128, min(127, e))
            candidate[index] = -5 <= e <= 8
            if candidate[index]:
                scale9[index] = float(f"1e{8 - e}")  # exact: 0 <= 8 - e <= 13
                half6[index] = 2.0 ** (b - 150) * float(f"1e{5 - e}") / 2
    return next_ten, exponent, candidate, scale9, half6


_NEXT_TEN, _EXPONENT, _CANDIDATE, _SCALE9, _HALF6 = _binade_tables()
# Divisors 10**(digits - 1 - x) for the fixed texts, at index 16 * short + x + 5 (x in [-5, 9]).
_DIVISORS = np.array([float(f"1e{max(0, (6 if short else 9) - 1 - (k - 5))}")
                      for short in (0, 1) for k in range(16)])


def fixed_decimals(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a flat float32 array: ``(decimals, special)``.

    Where ``special`` is False, ``decimals`` holds the double nearest to the §1.8 text of that
    value (±0 for zeros), and that text is in fixed notation. ``special`` marks NaN, ±inf, values
    printed in exponent notation and those within the arithmetic's error bound of a rounding tie;
    ``decimals`` is NaN there. Error bounds: ``y9`` (the value times the exact power of ten that
    gives it 9 integer digits) is off by at most 6e-8, ``y6 = y9 / 1000`` by 1.2e-10.
    """
    with np.errstate(all="ignore"):  # NaN, inf and zeros go through the arithmetic too
        if values.size <= _CHUNK:
            return _fixed_decimals(values)
        decimals = np.empty(values.size, dtype=np.float64)
        special = np.empty(values.size, dtype=bool)
        for start in range(0, values.size, _CHUNK):
            stop = start + _CHUNK
            decimals[start:stop], special[start:stop] = _fixed_decimals(values[start:stop])
        return decimals, special


# Values per pass of ``_fixed_decimals`` over a large array: its two dozen temporaries then stay
# in the CPU's cache instead of going to memory and back once each (half the time on 1.2M values).
_CHUNK = 1 << 16


def _fixed_decimals(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # In place where it can: each fresh temporary of a big array costs page faults.
    bits = values.view(np.uint32)
    index = np.right_shift(bits, 23).astype(np.intp)
    index &= 0xFF
    index <<= 1
    a = np.absolute(values, dtype=np.float64)
    scratch = _NEXT_TEN.take(index)
    index += a >= scratch
    y9 = np.multiply(a, _SCALE9.take(index, out=scratch), out=scratch)
    n9 = np.rint(y9)
    y6 = np.divide(y9, 1000.0, out=a)
    n6 = np.rint(y6)
    # Does %g's 6-digit decimal n6 * 10**(e-5) parse back (strtof) to the float32? Iff it lies
    # within half the gap to the neighbouring float32 (the gap below a power of two is half).
    delta = np.subtract(n6, y6, out=y6)
    half = _HALF6.take(index)
    narrow = delta < 0
    narrow &= (bits & 0x7FFFFF) == 0
    half[narrow] *= 0.5
    distance = np.absolute(delta, out=delta)
    short = distance < half
    unsure = distance > 0.5 - 1e-7  # a tie in %g's rounding
    edge = np.absolute(np.subtract(distance, half, out=half), out=half)
    unsure |= edge < 1e-9  # on the edge of round-tripping
    tie9 = np.absolute(np.subtract(y9, n9, out=y9), out=y9) > 0.5 - 1e-6
    tie9 &= ~short
    unsure |= tie9  # a tie in %.9g's rounding
    n = n9
    np.copyto(n, n6, where=short)
    carry = n >= 1e6  # 999999.5 -> 1e+06: one more decimal exponent
    carry &= short | (n >= 1e9)
    n[carry] /= 10
    x = _EXPONENT.take(index)  # int8
    x += carry.view(np.int8)
    short_bytes = short.view(np.int8)
    fixed = x >= -4
    fixed &= x + 3 * short_bytes <= 8  # exponent < 6 (short) or < 9 (long)
    special = _CANDIDATE.take(index)
    special &= fixed
    special &= ~unsure
    special |= (bits & 0x7FFFFFFF) == 0  # ±0: written as is
    np.logical_not(special, out=special)
    x[special] = 0
    x += 5
    x += short_bytes << 4
    decimals = np.divide(n, _DIVISORS.take(x, out=distance), out=n)
    np.negative(decimals, out=decimals, where=np.signbit(values))
    decimals[special] = np.nan
    return decimals, special


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
    return cast(list[str], result.tolist())


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
    texts = ["%g" % n for n in numbers]  # noqa: UP031 - ~2.5x faster than f"{n:g}"
    if double:
        same = np.array(texts, dtype=np.float64) == values
    else:
        same = _float32_of_decimals(texts) == singles
    for j in np.flatnonzero(~same).tolist():
        texts[j] = ("%.17g" if double else "%.9g") % numbers[j]
    return _with_point(texts)
