"""REST JSON for model status and metadata (spec §1.4, §1.5), byte-shape as TF Serving prints it.

Status uses the proto3 JSON names forced by ``json_name`` (snake_case), int64 as strings, enum
names, default values printed. Metadata renders the ``SignatureDefMap`` proto with the original
proto field names and default values, doubly nested under ``signature_def``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from nbserve.errors import StatusCode


def version_status_dict(version: int, state_name: str, error_code: StatusCode | None = None,
                        error_message: str = "") -> dict[str, Any]:
    """One ``ModelVersionStatus`` entry."""
    return {
        "version": str(version),
        "state": state_name,
        "status": {
            "error_code": (error_code or StatusCode.OK).name,
            "error_message": error_message,
        },
    }


def model_status_json(entries: Iterable[dict[str, Any]]) -> bytes:
    """``GetModelStatusResponse`` as JSON; entries must already be sorted by version descending."""
    return json.dumps({"model_version_status": list(entries)}, indent=1).encode()


def signature_def_map_dict(signature_def_map: Any) -> dict[str, Any]:
    """A ``SignatureDefMap`` proto as a dict with TF Serving's field naming and defaults."""
    from google.protobuf import json_format

    return json_format.MessageToDict(signature_def_map, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def model_metadata_json(name: str, version: int, signature_def_map: Any) -> bytes:
    """``GetModelMetadataResponse`` as TF Serving's REST API prints it."""
    doc = {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": signature_def_map_dict(signature_def_map)},
    }
    return json.dumps(doc, indent=1).encode()


def error_json(message: str) -> bytes:
    """``{"error": "<message>"}``: the body of every REST error."""
    return json.dumps({"error": message}).encode()
