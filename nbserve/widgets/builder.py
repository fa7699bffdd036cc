"""Pure parts of the panel's request builder and compare action (no widgets, no server).

- :func:`input_fields`: one field per signature input (alias, "float32 shape (-1, 3)", the
  prefilled JSON text of ``Server.example_inputs``);
- :func:`parse_inputs`: the fields' texts back to values (JSON), with an error that names the
  field;
- :func:`comparison_html`: two versions' outputs side by side with the largest absolute
  difference per output.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from nbserve.status import Comparison, SignatureInfo, TensorSpec

_DTYPES = {"DT_FLOAT": "float32", "DT_DOUBLE": "float64", "DT_HALF": "float16",
           "DT_STRING": "string (bytes)", "DT_BOOL": "bool"}


def describe_spec(spec: TensorSpec) -> str:
    """``float32 shape (-1, 3)`` (-1: any size), ``int64 of any shape``."""
    dtype = _DTYPES.get(spec.dtype) or (spec.dtype[3:].lower() if spec.dtype.startswith("DT_")
                                        else spec.dtype)
    if spec.shape is None:
        return f"{dtype} of any shape"
    dims = ", ".join(str(d) for d in spec.shape)
    return f"{dtype} shape ({dims}{',' if len(spec.shape) == 1 else ''})"


@dataclass(frozen=True)
class Field:
    """One input of the request builder: its alias, its dtype/shape text, its JSON text."""

    alias: str
    describe: str
    text: str


def input_fields(signature: SignatureInfo, examples: Mapping[str, Any]) -> list[Field]:
    """A field per input of ``signature`` (model order), prefilled with ``examples[alias]``."""
    return [Field(alias, describe_spec(spec), to_text(examples.get(alias)))
            for alias, spec in signature.inputs.items()]


def to_text(value: Any) -> str:
    """An example value as the JSON a user edits (numpy arrays and bytes made plain)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    return json.dumps(_plain(value))


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def parse_inputs(texts: Mapping[str, str]) -> dict[str, Any]:
    """alias -> the value its field's JSON text holds. ValueError naming the field otherwise."""
    values = {}
    for alias, text in texts.items():
        try:
            values[alias] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"input {alias!r}: not JSON ({exc.msg} at column {exc.colno})"
                             ) from None
    return values


def _array_text(value: Any, limit: int = 400) -> str:
    text = json.dumps(_plain(value.tolist() if hasattr(value, "tolist") else value))
    return text if len(text) <= limit else text[:limit] + " \u2026"


def comparison_html(result: Comparison) -> str:
    """A table: output alias | version a | version b | largest absolute difference."""
    esc = html.escape
    a, b = result.versions
    cell = "padding:2px 8px;text-align:left;vertical-align:top;font-family:monospace"
    rows = []
    for alias, diff in result.max_abs_diff.items():
        left = result.outputs.get(a, {}).get(alias)
        right = result.outputs.get(b, {}).get(alias)
        colour = "#1a7f37" if diff == 0 else "#9a6700"
        rows.append(f"<tr data-output='{esc(alias)}'><td style='{cell}'>{esc(alias)}</td>"
                    f"<td style='{cell}'>{esc(_array_text(left))}</td>"
                    f"<td style='{cell}'>{esc(_array_text(right))}</td>"
                    f"<td style='{cell};color:{colour}'>{diff:.6g}</td></tr>")
    head = "".join(f"<th style='{cell}'>{h}</th>" for h in
                   ("output", f"version {a}", f"version {b}", "largest |difference|"))
    return (f"<table class='nbserve-compare' style='border-collapse:collapse'><thead><tr>{head}"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")
