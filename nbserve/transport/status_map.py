"""The only two translation tables: canonical StatusCode -> HTTP status, and -> gRPC status."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from nbserve.errors import StatusCode

if TYPE_CHECKING:
    import grpc

HTTP_STATUS: dict[StatusCode, int] = {
    StatusCode.OK: 200,
    StatusCode.CANCELLED: 499,
    StatusCode.UNKNOWN: 500,
    StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.DEADLINE_EXCEEDED: 504,
    StatusCode.NOT_FOUND: 404,
    StatusCode.ALREADY_EXISTS: 409,
    StatusCode.PERMISSION_DENIED: 403,
    StatusCode.RESOURCE_EXHAUSTED: 429,
    StatusCode.FAILED_PRECONDITION: 400,
    StatusCode.ABORTED: 409,
    StatusCode.OUT_OF_RANGE: 400,
    StatusCode.UNIMPLEMENTED: 501,
    StatusCode.INTERNAL: 500,
    StatusCode.UNAVAILABLE: 503,
    StatusCode.DATA_LOSS: 500,
    StatusCode.UNAUTHENTICATED: 401,
}


def http_status(code: StatusCode) -> int:
    return HTTP_STATUS[code]


def grpc_status(code: StatusCode) -> grpc.StatusCode:
    """The grpc.StatusCode with the same canonical number (imports grpc lazily)."""
    return _grpc_by_number()[int(code)]


@functools.cache
def _grpc_by_number() -> dict[int, grpc.StatusCode]:
    import grpc

    return {member.value[0]: member for member in grpc.StatusCode}
