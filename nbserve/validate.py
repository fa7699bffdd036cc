"""Is this export servable by TF Serving? ``python -m nbserve.validate PATH``.

``validate(path)`` reads a model base folder (numeric version folders inside) or one version folder
and returns a list of ``Finding``s, most severe first. It reads the SavedModel protocol buffer
only: nothing is loaded or run, so a model that would crash a server can be checked safely.

What TF Serving's ModelServer needs, and what is checked:

* version folders named by a number (``base/1``, ``base/00000123``); other names are ignored;
* ``saved_model.pb`` (or ``.pbtxt``) that parses, and a MetaGraph whose tag set is exactly the
  requested one (``serve``; ``--saved_model_tags``): TF's loader matches the whole set;
* ``variables/variables.index`` when the graph restores variables;
* at least one signature with outputs (inputs too, or a warning), ``serving_default`` (requests
  that name no signature use it), dense tensors (``name`` encoding: Predict feeds tensors by name,
  not ``coo_sparse``/``composite_tensor``), and dtypes a request can carry;
* no Python-only ops (``PyFunc``, ``PyFuncStateless``, ``EagerPyFunc`` from ``tf.py_function``/
  ``tf.numpy_function``): the ModelServer has no Python interpreter, so they fail at run time;
* no op this TensorFlow does not know (a custom op needs to be linked into the ModelServer).
* ``model.tflite`` when present (served with ``--prefer_tflite_model``): a TFLite flatbuffer, and
  whether it stores SignatureDefs (without them TF Serving names aliases after tensors); a version
  folder holding only ``model.tflite`` is servable with that flag only.

Severities: ``error`` (TF Serving cannot load it, or every call fails), ``warning`` (it loads but
some requests fail or need care), ``info`` (facts worth knowing, such as the TensorFlow version
that wrote it: serve it with ``tensorflow/serving`` of that version or newer).

Reads the SavedModel with TensorFlow's generated protocol buffer classes (importing them loads the
TensorFlow package); the unknown-op check asks TensorFlow's op registry. Pure and thread-safe.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from nbserve.servables.signature import DT_ENUM, DT_TO_NUMPY
from nbserve.sources.filesystem import parse_version

ERROR, WARNING, INFO = "error", "warning", "info"
_RANK = {ERROR: 0, WARNING: 1, INFO: 2}

#: Ops whose kernels call back into the Python interpreter that created them.
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
#: Signature keys TF Serving treats as internal (the SavedModel init op), not as endpoints.
_INTERNAL_SIGNATURE_PREFIX = "__"
_DT_NAMES = {number: name for name, number in DT_ENUM.items()}
#: dtypes that cannot be fed or fetched through a request at all.
_TFLITE_FILE = "model.tflite"
_UNSERVABLE_DTYPES = frozenset({"DT_INVALID", "DT_RESOURCE", "DT_VARIANT"})


@dataclass(frozen=True)
class Finding:
    """One observation: ``severity`` (error, warning, info), a short ``code``, the ``message``
    and the ``path`` of the version folder (or base folder) it is about."""

    severity: str
    code: str
    message: str
    path: str = ""

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.severity.upper()} [{self.code}] {where}{self.message}"


def errors(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that make an export unservable."""
    return [f for f in findings if f.severity == ERROR]


def is_servable(findings: Iterable[Finding]) -> bool:
    """True when no finding is an error."""
    return not errors(findings)


def validate(path: str | os.PathLike[str], tags: Sequence[str] = ("serve",)) -> list[Finding]:
    """Check a model base folder (every numeric version folder in it) or one version folder.

    A folder holding ``saved_model.pb``/``.pbtxt`` is a version folder; anything else is taken as
    a base folder. Returns the findings sorted by severity (errors first), then by path.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        return [Finding(ERROR, "not-found", "no such folder", path)]
    if _saved_model_file(path) or os.path.isfile(os.path.join(path, _TFLITE_FILE)):
        findings = validate_saved_model(path, tags)
        if parse_version(os.path.basename(path)) is None:
            findings.append(Finding(
                WARNING, "version-name",
                "TF Serving loads only version folders named by a number: put this folder at "
                "<model base path>/<N> and point --model_base_path (or base_path) at its parent",
                path))
        return _sorted(findings)
    found: list[Finding] = []
    versions = []
    for name in sorted(os.listdir(path)):
        child = os.path.join(path, name)
        if name.startswith(".") or not os.path.isdir(child):
            continue  # hidden (e.g. nbserve.export's .tmp-export-*) or plain files
        if parse_version(name) is None:
            found.append(Finding(INFO, "ignored-folder",
                                    f"{name!r} is not a version number; TF Serving ignores it",
                                    child))
        else:
            versions.append(child)
    if not versions:
        found.append(Finding(ERROR, "no-versions",
                                "no version folder (a folder named by a number holding "
                                "saved_model.pb); TF Serving would serve nothing", path))
    for child in versions:
        found.extend(validate_saved_model(child, tags))
    return _sorted(found)


def validate_saved_model(path: str | os.PathLike[str],
                         tags: Sequence[str] = ("serve",)) -> list[Finding]:
    """Check one version folder (a SavedModel directory); unsorted findings."""
    path = os.path.abspath(os.fspath(path))
    model_file = _saved_model_file(path)
    tflite = _check_tflite(path)
    if model_file is None and tflite:
        return [*tflite, Finding(WARNING, "tflite-only",
                                 "only model.tflite in this version folder: servable with "
                                 "--prefer_tflite_model=true only", path)]
    if model_file is None:
        return [Finding(ERROR, "no-saved-model",
                        "no saved_model.pb or saved_model.pbtxt in this version folder", path)]
    from google.protobuf.message import DecodeError
    from google.protobuf.text_format import ParseError

    try:
        saved_model = _read_saved_model(model_file)
    except (DecodeError, ParseError, UnicodeDecodeError, OSError) as exc:
        # binary or text-format syntax, a .pbtxt that is not UTF-8, or a file that cannot be read
        return [Finding(ERROR, "unreadable", f"{os.path.basename(model_file)} does not parse: "
                        f"{exc}", path)]
    wanted = set(tags)
    tag_sets = [sorted(mg.meta_info_def.tags) for mg in saved_model.meta_graphs]
    meta_graph = next((mg for mg in saved_model.meta_graphs
                       if set(mg.meta_info_def.tags) == wanted), None)
    if meta_graph is None:
        return [Finding(ERROR, "no-serve-tag",
                        f"no MetaGraph tagged exactly {sorted(wanted)} (TF Serving's "
                        f"--saved_model_tags); the MetaGraphs are tagged {tag_sets}", path)]
    findings = tflite + _check_signatures(meta_graph, path)
    findings += _check_ops(meta_graph, path)
    findings += _check_variables(meta_graph, path)
    version = meta_graph.meta_info_def.tensorflow_version
    if version:
        findings.append(Finding(INFO, "tensorflow-version",
                                f"written by TensorFlow {version}; serve it with "
                                f"tensorflow/serving:{version} or newer", path))
    return findings


def _check_tflite(path: str) -> list[Finding]:
    """Findings about ``model.tflite`` (served with ``--prefer_tflite_model``); [] without one.
    Reads the flatbuffer only: TF Serving takes SignatureDefs from its metadata, else it names
    the inputs and outputs after the interpreter's tensors."""
    model_path = os.path.join(path, _TFLITE_FILE)
    if not os.path.isfile(model_path):
        return []
    from nbserve.errors import ServingError
    from nbserve.servables.tflite_signatures import metadata_signature_defs

    with open(model_path, "rb") as f:
        data = f.read()
    if data[4:8] != b"TFL3":
        return [Finding(ERROR, "tflite-unreadable", "model.tflite is not a TFLite flatbuffer "
                        "(no TFL3 identifier)", path)]
    try:
        defs = metadata_signature_defs(data)
    except ServingError as exc:
        return [Finding(ERROR, "tflite-signatures", exc.message, path)]
    if not defs:
        return [Finding(WARNING, "tflite-no-signature-defs",
                        "model.tflite stores no SignatureDefs: TF Serving serves one "
                        "'serving_default' whose aliases are its tensor names (nbserve.export("
                        "..., tflite=True) stores them)", path)]
    return [Finding(INFO, "tflite", "model.tflite is served instead of the SavedModel with "
                    f"--prefer_tflite_model=true; signatures {sorted(defs)}", path)]


def _saved_model_file(path: str) -> str | None:
    for name in ("saved_model.pb", "saved_model.pbtxt"):
        candidate = os.path.join(path, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def _read_saved_model(model_file: str) -> Any:
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(model_file, "rb") as f:
        data = f.read()
    if model_file.endswith(".pbtxt"):
        text_format.Parse(data.decode("utf-8"), saved_model)
    else:
        saved_model.ParseFromString(data)
    return saved_model


def _check_signatures(meta_graph: Any, path: str) -> list[Finding]:
    findings: list[Finding] = []
    keys = [k for k in sorted(meta_graph.signature_def)
            if not k.startswith(_INTERNAL_SIGNATURE_PREFIX)]
    if not keys:
        return [Finding(ERROR, "no-signatures",
                        "no SignatureDef: TF Serving has nothing to call (export with "
                        "signatures=..., or a Keras model)", path)]
    if "serving_default" not in keys:
        findings.append(Finding(WARNING, "no-default-signature",
                                f"no 'serving_default' signature: every request must name one of "
                                f"{keys} (signature_name)", path))
    for key in keys:
        signature = meta_graph.signature_def[key]
        if not signature.outputs:
            findings.append(Finding(ERROR, "no-outputs", f"signature {key!r} has no outputs",
                                    path))
        if not signature.inputs:
            findings.append(Finding(WARNING, "no-inputs",
                                    f"signature {key!r} has no inputs; check that this is "
                                    "intended", path))
        for kind, tensors in (("input", signature.inputs), ("output", signature.outputs)):
            for alias in sorted(tensors):
                findings.extend(_check_tensor(key, kind, alias, tensors[alias], path))
    return findings


def _check_tensor(key: str, kind: str, alias: str, info: Any, path: str) -> list[Finding]:
    where = f"signature {key!r} {kind} {alias!r}"
    encoding = info.WhichOneof("encoding")
    if encoding != "name":
        return [Finding(ERROR, "encoding",
                        f"{where} is a {encoding or 'tensor without a name'} tensor; TF Serving "
                        "feeds and fetches dense tensors by name only (convert sparse or ragged "
                        "tensors to dense in the serving function)", path)]
    dtype = _dtype_name(info.dtype)
    if dtype in _UNSERVABLE_DTYPES or dtype not in DT_ENUM:
        return [Finding(ERROR, "dtype", f"{where} has dtype {dtype}, which no request can carry",
                        path)]
    if dtype not in DT_TO_NUMPY:
        return [Finding(WARNING, "dtype",
                        f"{where} has dtype {dtype}: gRPC TensorProtos can carry it, nbserve's "
                        "REST JSON cannot", path)]
    return []


def _dtype_name(number: int) -> str:
    """types.proto's name; a reference dtype (``DT_X_REF`` = DT_X + 100, TF1 variables) is
    fetched as its value, so it counts as ``DT_X``."""
    if number > 100:
        number -= 100
    return _DT_NAMES.get(number, f"enum {number}")


def _check_ops(meta_graph: Any, path: str) -> list[Finding]:
    """Python-only and unknown ops, in the graph and in every function of its library."""
    where: dict[str, set[str]] = {}
    graph = meta_graph.graph_def
    for node in graph.node:
        where.setdefault(node.op, set()).add("the graph")
    for function in graph.library.function:
        for node in function.node_def:
            where.setdefault(node.op, set()).add(f"function {function.signature.name}")
    function_names = {f.signature.name for f in graph.library.function}
    findings: list[Finding] = []
    for op in sorted(PYTHON_OPS & where.keys()):
        findings.append(Finding(
            ERROR, "python-op",
            f"op {op} (tf.py_function / tf.numpy_function) in {_places(where[op])}: it calls back "
            "into Python, which TF Serving's ModelServer does not have; write it with TensorFlow "
            "ops", path))
    unknown = sorted(op for op in where.keys() - PYTHON_OPS - function_names
                     if not _op_registered(op))
    for op in unknown:
        findings.append(Finding(
            ERROR, "unknown-op",
            f"op {op} in {_places(where[op])} is not a TensorFlow op (a custom op?): the "
            "ModelServer must be built with it linked in", path))
    return findings


def _places(places: set[str]) -> str:
    ordered = sorted(places)
    return ", ".join(ordered[:3]) + (f" and {len(ordered) - 3} more" if len(ordered) > 3 else "")


def _op_registered(op: str) -> bool:
    from tensorflow.python.framework import op_def_registry

    return op_def_registry.get(op) is not None


def _check_variables(meta_graph: Any, path: str) -> list[Finding]:
    if not meta_graph.saver_def.filename_tensor_name:
        return []
    if os.path.isfile(os.path.join(path, "variables", "variables.index")):
        return []
    return [Finding(ERROR, "variables-missing",
                    "the graph restores variables but variables/variables.index is missing "
                    "(copy the whole version folder)", path)]


def _sorted(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (_RANK.get(f.severity, 3), f.path))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nbserve.validate PATH...``: print the findings; exit 1 if any is an error."""
    parser = argparse.ArgumentParser(
        prog="python -m nbserve.validate",
        description="Check that exports are servable by TF Serving (and nbserve).")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a model base folder (numeric version folders) or a version folder")
    parser.add_argument("--saved_model_tags", default="serve",
                        help="comma-separated MetaGraph tags, as the servers' flag "
                             "(default: serve)")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    args = parser.parse_args(argv)
    tags = tuple(t for t in args.saved_model_tags.split(",") if t)
    findings = [f for path in args.paths for f in validate(path, tags)]
    if args.json:
        print(json.dumps([asdict(f) for f in findings], indent=2))
    else:
        for finding in findings:
            print(finding)
        bad = len(errors(findings))
        print(f"{'NOT servable' if bad else 'servable'} by TF Serving: {bad} error(s), "
              f"{sum(f.severity == WARNING for f in findings)} warning(s)")
    return 1 if errors(findings) else 0


if __name__ == "__main__":
    sys.exit(main())
