"""Errors that teach: what ``Server.predict`` adds to TF Serving's error text in a notebook.

The wire never changes: REST and gRPC clients get TF Serving's exact texts. In the notebook,
``Server.predict`` raises ``PredictError``, a ``ServingError`` with the same code and
``message`` (TF Serving's text, what a client would see) plus ``context``: what nbserve knows
that helps fix it. ``str(err)`` is the message followed by the context.

- a wrong input name, dtype or shape: the signature's expectation next to what was sent
  (``input 'feats' expects float32 shape (-1, 4); got float32 (1, 2)``);
- an unknown model: the models this server serves;
- a stopped server: that it is stopped (and by which server it was replaced) and how to start one.

Pure functions over plain values (``SignatureInfo``, arrays); numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nbserve.errors import ServingError, StatusCode
from nbserve.status import SignatureInfo, TensorSpec, format_shape

_NUMPY_NAMES = {"DT_FLOAT": "float32", "DT_DOUBLE": "float64", "DT_HALF": "float16",
                "DT_INT8": "int8", "DT_INT16": "int16", "DT_INT32": "int32", "DT_INT64": "int64",
                "DT_UINT8": "uint8", "DT_UINT16": "uint16", "DT_UINT32": "uint32",
                "DT_UINT64": "uint64", "DT_BOOL": "bool", "DT_STRING": "string"}


class PredictError(ServingError):
    """A ServingError from ``Server.predict`` with nbserve's explanation.

    ``code`` and ``message`` are TF Serving's (``err == ServingError(code, message)`` holds);
    ``context`` is the explanation (may be empty)."""

    def __init__(self, code: StatusCode, message: str, context: str = "") -> None:
        super().__init__(code, message)
        self.context = context

    def __str__(self) -> str:
        return f"{self.message}\n{self.context}" if self.context else self.message

    def __repr__(self) -> str:
        return f"PredictError({self.code.name}, {self.message!r}, context={self.context!r})"

    @staticmethod
    def wrap(error: ServingError, context: str) -> PredictError:
        """``error`` with ``context`` added (the traceback is the caller's)."""
        return PredictError(error.code, error.message, context)


def sent_description(value: Any) -> str:
    """``float32 (1, 2)``: what was sent for one input."""
    try:
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
    except (ValueError, TypeError):
        return type(value).__name__
    kind = "string" if array.dtype.kind in "OSU" else array.dtype.name
    return f"{kind} {format_shape(array.shape)}"


def _dtype_name(spec: TensorSpec) -> str:
    return _NUMPY_NAMES.get(spec.dtype, spec.dtype)


def _shape_fits(spec: TensorSpec, shape: Sequence[int]) -> bool:
    if spec.shape is None:
        return True
    return len(spec.shape) == len(shape) and all(
        want < 0 or want == got for want, got in zip(spec.shape, shape, strict=True))


def _dtype_fits(spec: TensorSpec, array: np.ndarray) -> bool:
    if spec.dtype == "DT_STRING":
        return array.dtype.kind in "OSU"
    want = _NUMPY_NAMES.get(spec.dtype)
    if want is None or array.dtype.kind in "OSU":
        return want is None
    if array.dtype.name == want:
        return True
    # Server.predict casts array-likes to the signature's dtype: numbers fit numbers
    return array.dtype.kind in "biuf" and want != "bool"


def input_mismatches(signature: SignatureInfo, inputs: Any) -> list[str]:
    """One line per input that does not fit ``signature`` (name, dtype, rank or a known
    dimension), each with the expectation next to what was sent; [] when all fit."""
    expected = signature.inputs
    if not isinstance(inputs, Mapping):
        if len(expected) != 1:
            names = ", ".join(f"'{a}' ({s.describe()})" for a, s in expected.items())
            return [f"signature '{signature.key}' takes {len(expected)} inputs, by name: "
                    f"{names}; got one unnamed value ({sent_description(inputs)}). Pass a dict."]
        inputs = {next(iter(expected)): inputs}
    lines = []
    for alias in inputs:
        if alias not in expected:
            names = ", ".join(f"'{a}'" for a in expected) or "none"
            lines.append(f"input '{alias}' is not in signature '{signature.key}' (its inputs: "
                         f"{names})")
    for alias, spec in expected.items():
        if alias not in inputs:
            lines.append(f"input '{alias}' ({spec.describe()}) is missing")
            continue
        try:
            array = np.asarray(inputs[alias])
        except (ValueError, TypeError):
            lines.append(f"input '{alias}' expects {spec.describe()}; got a ragged or mixed "
                         "value that is not one tensor")
            continue
        dtype_fits = _dtype_fits(spec, array)
        if not (_shape_fits(spec, array.shape) and dtype_fits):
            # a list of numbers is cast to the signature's dtype: show what was fed
            cast = dtype_fits and not isinstance(inputs[alias], np.ndarray)
            sent = (f"{_dtype_name(spec)} {format_shape(array.shape)}" if cast
                    else sent_description(array))
            lines.append(f"input '{alias}' expects {_dtype_name(spec)} shape "
                         f"{format_shape(spec.shape) if spec.shape is not None else '(any)'}; "
                         f"got {sent}")
    return lines


def explain_inputs(error: ServingError, signature: SignatureInfo | None, inputs: Any
                   ) -> ServingError:
    """``error`` with the input mismatches added, when there are any (else ``error``)."""
    if signature is None:
        return error
    lines = input_mismatches(signature, inputs)
    if not lines:
        return error
    return PredictError.wrap(error, "\n".join(lines))


def unknown_model(error: ServingError, name: str, served: Sequence[str]) -> PredictError:
    """``error`` for a model this server does not serve, with the ones it serves."""
    if served:
        listing = ", ".join(f"'{n}'" for n in served)
        return PredictError.wrap(error, f"There is no model '{name}' on this server; it serves "
                                        f"{listing}.")
    return PredictError.wrap(error, "This server serves no model yet.")


def stopped(source: str, replaced_by: str | None) -> PredictError:
    """The error of a call on a stopped server: UNAVAILABLE, and how to start one."""
    if replaced_by:
        why = f"This server was replaced by {replaced_by}; use that one (or the new cell's srv)."
    else:
        start = f"%tfserve start {source}" if source else "%tfserve start PATH"
        why = (f"Start it again: srv = nbserve.serve({source!r}) or srv = {start}."
               if source else f"Start a server: srv = nbserve.serve(PATH) or srv = {start}.")
    return PredictError(StatusCode.UNAVAILABLE, "The server is stopped.", why)
