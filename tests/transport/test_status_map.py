"""The two wire tables of transport/status_map.py, walked for every canonical StatusCode.

HTTP: TF Serving's ``ToHTTPStatusCode`` (model_servers/http_server.cc; spec §1.9), written out
here independently of the table under test. gRPC: the same canonical number and name.
"""

from __future__ import annotations

import grpc
import pytest

from nbserve.errors import StatusCode
from nbserve.transport.status_map import grpc_status, http_status

SPEC_HTTP = {  # spec §1.9, row by row
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501, "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


def test_every_canonical_code_is_in_the_spec_table():
    assert sorted(code.name for code in StatusCode) == sorted(SPEC_HTTP)
    assert len(StatusCode) == 17


@pytest.mark.parametrize("code", list(StatusCode), ids=lambda c: c.name)
def test_http_table(code: StatusCode):
    assert http_status(code) == SPEC_HTTP[code.name]


@pytest.mark.parametrize("code", list(StatusCode), ids=lambda c: c.name)
def test_grpc_table(code: StatusCode):
    status = grpc_status(code)
    assert isinstance(status, grpc.StatusCode)
    assert status.value[0] == int(code)
    assert status.name == code.name


def test_grpc_table_is_one_to_one():
    assert len({grpc_status(code) for code in StatusCode}) == len(StatusCode) == len(grpc.StatusCode)
