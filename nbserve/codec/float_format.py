"""TF Serving's float formatting for REST responses and messages (spec §1.8).

``format_float`` formats one float32 or double; ``float_texts`` a whole array, vectorised, to the
very same texts. Pure numpy: thread-safe, no I/O, no TensorFlow.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import cast

import numpy as np

__all__ = ["float_texts", "format_float"]


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
