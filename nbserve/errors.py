"""The canonical status codes and the one exception type every layer raises.

``StatusCode`` mirrors ``tensorflow.error.Code`` (the numbers are the gRPC / absl numbers), so a
transport turns a ``ServingError`` into its own status through one table
(``nbserve.transport.status_map``) and the message reaches the client verbatim, in TF Serving's
words.
"""

from __future__ import annotations

import enum


class StatusCode(enum.IntEnum):
    """The 17 canonical status codes (``tensorflow/core/protobuf/error_codes.proto``)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class ServingError(Exception):
    """An error with a canonical code and the message a client sees.

    ``str(err)`` is the bare message (no code prefix), as TF Serving puts it in ``{"error": ...}``.
    """

    def __init__(self, code: StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = StatusCode(code)
        self.message = message

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ServingError) and other.code == self.code
                and other.message == self.message)

    def __hash__(self) -> int:
        return hash((self.code, self.message))

    def with_prefix(self) -> str:
        """``CODE: message``, the form TF Serving uses when it nests one status in another."""
        return f"{self.code.name}: {self.message}"


def invalid_argument(message: str) -> ServingError:
    return ServingError(StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(StatusCode.FAILED_PRECONDITION, message)


def internal(message: str) -> ServingError:
    return ServingError(StatusCode.INTERNAL, message)


def as_serving_error(exc: BaseException) -> ServingError:
    """Any exception as a ServingError; unknown exceptions become UNKNOWN with their text."""
    if isinstance(exc, ServingError):
        return exc
    return ServingError(StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}")
