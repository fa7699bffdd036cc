"""Atomic, versioned export of a model from the kernel: ``nbserve.export(model, base_path)``.

The SavedModel is written under a hidden temporary name inside ``base_path`` (``.tmp-export-*``,
not a number, so no source ever takes it) and renamed to the version number once complete; a
running server therefore never sees a half-written version. Works for Keras models, ``tf.Module``
objects and ``tf.function``s (a concrete input signature is needed for the latter).

An interrupt (Ctrl-C, a notebook's stop button) that arrives while a version is being written
takes effect once that version is published or cleaned up: stopping TensorFlow halfway through
``tf.saved_model.save`` could leave its state half-changed in a kernel that goes on.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

from nbserve.interrupts import interrupts_deferred
from nbserve.sources.filesystem import parse_version


def next_version(base_path: str) -> int:
    """One more than the highest numeric version folder under ``base_path`` (1 if none)."""
    try:
        versions = [v for v in (parse_version(n) for n in os.listdir(base_path)) if v is not None]
    except FileNotFoundError:
        versions = []
    return max(versions, default=0) + 1


def export(model: Any, base_path: str, version: int | None = None,
           signatures: Any = None, warmup: Any = None, tflite: bool = False) -> int:
    """Write ``model`` as SavedModel version ``version`` (default: the next one) under
    ``base_path``, atomically; return the version number.

    ``signatures`` is passed to ``tf.saved_model.save`` (a concrete function, or a dict of
    signature key -> concrete function). A Keras model gets its default serving signature.
    ``warmup`` is example inputs for ``serving_default``, written as predict requests to
    ``assets.extra/tf_serving_warmup_requests`` (replayed at load, so the first request is not the
    slow one): a dict alias -> array-like, a list of such dicts (one record each), or one
    array-like for a single-input signature; arrays are cast to the signature's input dtypes.
    ``tflite=True`` also writes ``model.tflite`` beside ``saved_model.pb``, converted from the
    exported SavedModel with ``tf.lite.TFLiteConverter`` (its signatures keep their keys and
    aliases; a single one is also stored where TF Serving's TFLite session reads SignatureDefs),
    inside the same atomic publish; a server started with ``prefer_tflite_model``
    (``%tfserve start PATH --tflite``) serves it, any other serves the SavedModel.
    Raises FileExistsError if that version folder exists already, and ValueError when the model
    cannot be converted to TFLite (nothing is published then).
    """
    import tensorflow as tf

    from nbserve.servables.saved_model import quiet_tensorflow_logger

    quiet_tensorflow_logger()
    base_path = os.path.abspath(os.path.expanduser(base_path))
    os.makedirs(base_path, exist_ok=True)
    version = next_version(base_path) if version is None else int(version)
    final = os.path.join(base_path, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"Version folder {final} exists already; pick another version")
    with interrupts_deferred():
        tmp = tempfile.mkdtemp(prefix=".tmp-export-", dir=base_path)
        try:
            target = os.path.join(tmp, "model")
            if _is_keras(model) and signatures is None and hasattr(model, "export"):
                model.export(target, verbose=False)
            else:
                tf.saved_model.save(_trackable(model), target,
                                    signatures=_signatures(model, signatures))
            if warmup is not None:
                _write_warmup(target, warmup)
            if tflite:
                write_tflite(target)
            os.rename(target, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return version


def write_tflite(export_dir: str) -> str:
    """Convert the SavedModel at ``export_dir`` to ``export_dir/model.tflite``; return its path.
    Raises ValueError with the converter's reason when TFLite cannot express the model."""
    import tensorflow as tf

    from nbserve.servables.tflite import TFLITE_FILE, with_tf_serving_signatures

    try:
        converted = tf.lite.TFLiteConverter.from_saved_model(export_dir).convert()
    except Exception as exc:
        raise ValueError(f"Cannot convert the SavedModel at {export_dir} to TFLite: "
                         f"{exc}") from exc
    path = os.path.join(export_dir, TFLITE_FILE)
    with open(path, "wb") as file:
        file.write(with_tf_serving_signatures(converted))
    return path


def _is_keras(model: Any) -> bool:
    return any(cls.__module__.startswith(("keras", "tf_keras")) for cls in type(model).__mro__)


def _trackable(model: Any) -> Any:
    import tensorflow as tf

    if isinstance(model, tf.Module) or _is_keras(model):
        return model
    module = tf.Module()
    module.f = model  # a tf.function: keep it alive in a Module
    return module


def _signatures(model: Any, signatures: Any) -> Any:
    import tensorflow as tf

    if signatures is not None:
        if isinstance(signatures, Mapping):
            return {k: _concrete(v) for k, v in signatures.items()}
        return _concrete(signatures)
    if isinstance(model, tf.types.experimental.GenericFunction):
        return model.get_concrete_function()
    return None


def _concrete(fn: Any) -> Any:
    import tensorflow as tf

    if isinstance(fn, tf.types.experimental.GenericFunction):
        return fn.get_concrete_function()
    return fn


def _write_warmup(export_dir: str, warmup: Any) -> int:
    """Write ``warmup`` (see ``export``) as predict records for ``serving_default``."""
    from nbserve.servables.warmup import predict_request, write_warmup_file

    dtypes = _serving_input_dtypes(export_dir)
    if isinstance(warmup, Mapping):
        examples = [warmup]
    elif isinstance(warmup, (list, tuple)) and warmup and all(
            isinstance(item, Mapping) for item in warmup):
        examples = list(warmup)
    else:
        if len(dtypes) != 1:
            raise ValueError("warmup must be a dict alias -> array (or a list of them): "
                             f"serving_default has inputs {sorted(dtypes)}")
        examples = [{next(iter(dtypes)): warmup}]
    return write_warmup_file(export_dir, [predict_request(example, dtypes=dtypes)
                                          for example in examples])


def _serving_input_dtypes(export_dir: str, tag: str = "serve",
                          key: str = "serving_default") -> dict[str, Any]:
    """Input alias -> numpy dtype of signature ``key`` in the SavedModel at ``export_dir``."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    from nbserve.servables.signature import DT_TO_NUMPY

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as file:
        saved_model.ParseFromString(file.read())
    for meta_graph in saved_model.meta_graphs:
        if tag in meta_graph.meta_info_def.tags and key in meta_graph.signature_def:
            inputs = meta_graph.signature_def[key].inputs
            return {alias: DT_TO_NUMPY.get(types_pb2.DataType.Name(info.dtype))
                    for alias, info in inputs.items()}
    raise ValueError(f"warmup needs a {key!r} signature; the export has none")
