"""TF Serving's REST URL grammar (spec §1.2), as a pure function from (method, raw path) to a route.

Both patterns match case-insensitively against the raw path *plus query string* (as TF Serving
does); names and labels are percent-decoded after matching; dispatch on the API name is
case-sensitive. Anything under ``/v1/`` that does not match is ``Malformed request``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import unquote

from nbserve.errors import ServingError, invalid_argument

RouteKind = Literal["status", "metadata", "predict", "classify", "regress", "list"]

_INFERENCE = re.compile(
    r"^/v1/models/([^/:]+)(?:/versions/([0-9]+)|/labels/([^/:]+))?:([^/:]+)$", re.IGNORECASE)
_STATUS = re.compile(
    r"^/v1/models(?:/([^/:]+))?(?:/versions/([0-9]+)|/labels/([^/:]+))?(/metadata)?$",
    re.IGNORECASE)
INT64_MAX = 2**63 - 1
INFERENCE_APIS = ("predict", "classify", "regress")


@dataclass(frozen=True)
class RestRoute:
    kind: RouteKind
    name: str = ""
    version: int | None = None
    label: str | None = None


def is_v1(raw_path: str) -> bool:
    return raw_path[:4].lower() == "/v1/" or raw_path.lower() == "/v1"


def malformed(method: str, raw_path: str) -> ServingError:
    return invalid_argument(f"Malformed request: {method} {raw_path}")


def _version(digits: str | None) -> int | None:
    if digits is None:
        return None
    value = int(digits)
    if value > INT64_MAX:
        raise invalid_argument(f"Failed to convert version: {digits} to numeric.")
    return value


def parse_route(method: str, raw_path: str) -> RestRoute:
    """The route for a ``/v1`` request; raises ServingError(INVALID_ARGUMENT) like TF Serving.

    ``GET /v1/models`` is nbserve's list-models extension (TF Serving answers
    ``Missing model name in request.``).
    """
    if method == "POST":
        match = _INFERENCE.match(raw_path)
        if match is None or match.group(4) not in INFERENCE_APIS:
            raise malformed(method, raw_path)
        name, digits, label, api = match.groups()
        kind = cast(RouteKind, api)  # one of INFERENCE_APIS, checked above
        return RestRoute(kind, unquote(name), _version(digits),
                         unquote(label) if label is not None else None)
    if method == "GET":
        match = _STATUS.match(raw_path)
        if match is None:
            raise malformed(method, raw_path)
        name, digits, label, metadata = match.groups()
        if name is None:
            if digits is not None or label is not None or metadata is not None:
                raise malformed(method, raw_path)
            return RestRoute("list")
        status_kind: RouteKind = "metadata" if metadata == "/metadata" else "status"
        return RestRoute(status_kind, unquote(name), _version(digits),
                         unquote(label) if label is not None else None)
    raise malformed(method, raw_path)
