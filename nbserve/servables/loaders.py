"""Which kind of servable a version folder becomes: ``loader_factory(options)``.

The source adapter between the file-system source and the manager (TF Serving's
``SavedModelBundleSourceAdapter`` with ``prefer_tflite_model``): per version folder, a
``TfLiteLoader`` when ``options.prefer_tflite_model`` is set and the folder holds
``model.tflite``, else a ``SavedModelLoader`` (so a folder without ``model.tflite`` falls back to
its SavedModel). Constructing a loader is cheap: TensorFlow is imported by ``load()`` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbserve.core.loader import LoaderFactory
from nbserve.options import ServerOptions
from nbserve.servables.saved_model import SavedModelLoader
from nbserve.servables.tflite import TfLiteLoader, has_tflite_model


class KindSavedModelLoader(SavedModelLoader):
    """A ``SavedModelLoader`` whose ``detail()`` also says ``"kind": "saved_model"``."""

    def detail(self) -> Mapping[str, Any]:
        return {"kind": "saved_model", **super().detail()}


def session_config(options: ServerOptions) -> Any:
    """The TF ``ConfigProto`` every SavedModel version's session starts from (thread settings)."""
    from tensorflow.core.protobuf import config_pb2

    return config_pb2.ConfigProto(
        inter_op_parallelism_threads=options.tensorflow_inter_op_parallelism,
        intra_op_parallelism_threads=options.tensorflow_intra_op_parallelism)


def loader_factory(options: ServerOptions) -> LoaderFactory:
    """``(servable_id, version folder) -> Loader`` for ``options`` (see the module doc)."""

    def make(servable_id: Any, path: str) -> Any:
        if options.prefer_tflite_model and has_tflite_model(path):
            return TfLiteLoader(path, num_pools=options.num_tflite_pools,
                                num_interpreters_per_pool=options.num_tflite_interpreters_per_pool,
                                enable_warmup=options.enable_model_warmup,
                                warmup_iterations=options.num_request_iterations_for_warmup)
        return KindSavedModelLoader(
            path, tags=options.saved_model_tags, device=options.device,
            session_config=session_config(options),
            gpu_memory_fraction=options.per_process_gpu_memory_fraction,
            enable_warmup=options.enable_model_warmup,
            warmup_iterations=options.num_request_iterations_for_warmup)

    return make
