"""The REST URL grammar (spec §1.2) as a pure function: every case TF Serving tests."""

import pytest

from nbserve.errors import ServingError, StatusCode
from nbserve.transport.rest_urls import RestRoute, parse_route


@pytest.mark.parametrize("method,path,expected", [
    ("GET", "/v1/models/m", RestRoute("status", "m")),
    ("GET", "/v1/models/m/versions/12", RestRoute("status", "m", 12)),
    ("GET", "/v1/models/m/labels/stable", RestRoute("status", "m", None, "stable")),
    ("GET", "/v1/models/m/metadata", RestRoute("metadata", "m")),
    ("GET", "/v1/models/m/versions/3/metadata", RestRoute("metadata", "m", 3)),
    ("GET", "/v1/models/m/labels/x/metadata", RestRoute("metadata", "m", None, "x")),
    ("GET", "/V1/MODELS/m/METADATA", RestRoute("status", "m")),
    ("GET", "/v1/models", RestRoute("list")),
    ("POST", "/v1/models/m:predict", RestRoute("predict", "m")),
    ("POST", "/v1/models/m/versions/00123:classify", RestRoute("classify", "m", 123)),
    ("POST", "/v1/models/m/labels/canary:regress", RestRoute("regress", "m", None, "canary")),
    ("POST", "/V1/Models/m:predict", RestRoute("predict", "m")),
    ("POST",
     "/v1/models/modelname%21%23%24%25%26%27%28%29%2A%2B%2C%2F%3A%3B%3D%3F%40%5B%5D:predict",
     RestRoute("predict", "modelname!#$%&'()*+,/:;=?@[]")),
])
def test_valid_routes(method, path, expected):
    assert parse_route(method, path) == expected


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/foo"), ("POST", "/v1/foo"), ("POST", "/v1/models"),
    ("GET", "/v1/models/debug/model_name"), ("GET", "/v1/models/foo:predict"),
    ("GET", "/v1/models/foo/version/50:predict"), ("POST", "/v1/models/foo/version/50:predict"),
    ("POST", "/v1/models/foo/versions/HELLO:regress"), ("POST", "/v1/models/foo/metadata"),
    ("POST", "/v1/models/foo/label/some_label:regress"),
    ("POST", "/v1/models/foo/versions/50/labels/some_label:regress"),
    ("POST", "/v1/models/foo/versions/some_label:regress"),
    ("POST", "/v1/models/m:Predict"), ("POST", "/v1/models/m:predict?x=1"),
    ("GET", "/v1/models/m/"), ("PUT", "/v1/models/m"), ("DELETE", "/v1/models/m"),
])
def test_malformed_routes(method, path):
    with pytest.raises(ServingError) as info:
        parse_route(method, path)
    assert info.value.code == StatusCode.INVALID_ARGUMENT
    assert info.value.message == f"Malformed request: {method} {path}"


def test_version_overflow():
    with pytest.raises(ServingError) as info:
        parse_route("GET", "/v1/models/m/versions/18446744073709551615")
    assert info.value.message == "Failed to convert version: 18446744073709551615 to numeric."
