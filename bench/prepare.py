"""Export the benchmark models and write every request body (runs in .venv, imports TensorFlow).

``python -m bench.prepare`` writes, idempotently:

- ``.cache/bench-models/{half_plus_two,cnn,large}/<version>/``: (a) TF Serving's
  ``saved_model_half_plus_two_cpu`` (linked from ``$NBSERVE_TFS_TESTDATA`` when present, else an
  equivalent ``y = 0.5 x + 2`` exported here); (b) a small CNN on ``[N,64,64,3]`` floats with
  random weights (3 strided 3x3 convolutions 32/64/128 channels, global average pool, dense 10);
  (c) ``y = reduce_mean(x, axis=-1)`` on ``[N,224,224,3]`` so the codec dominates.
- ``.cache/bench-models-warmup/cnn/1``: the same CNN with a warmup file, when
  ``nbserve.export`` takes ``warmup=`` (else nothing; the report marks the row TODO).
- ``.cache/bench-data/<workload>.{tfs.json,v2.json,grpc.bin,expected.npy,input.npy}``,
  ``models.config`` (ModelServerConfig for nbserve) and ``manifest.json``.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil

import numpy as np

from bench.config import DATA, MODELS, WORKLOADS, tfs_testdata

WARMUP_MODELS = MODELS.parent / "bench-models-warmup"
SEED = 6
FORMAT_VERSION = 3  # bump when payloads or models change


def _round4(array: np.ndarray) -> np.ndarray:
    """Values with short decimal texts (like real JSON clients send), as float32."""
    return np.round(array.astype(np.float64), 4).astype(np.float32)


def inputs_for(workload: str) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    if workload == "a":
        return np.array([1.0], dtype=np.float32)
    if workload == "b":
        return _round4(rng.random((1, 64, 64, 3)))
    return _round4(rng.random((8, 224, 224, 3)))


def _export_half_plus_two(base: str) -> None:
    import tensorflow as tf

    class HalfPlusTwo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": 0.5 * x + 2.0}

    module = HalfPlusTwo()
    tf.saved_model.save(module, os.path.join(base, "1"),
                        signatures={"serving_default": module.serve})


def _cnn_module():
    import tensorflow as tf

    rng = np.random.default_rng(SEED)

    def weight(*shape):
        fan_in = int(np.prod(shape[:-1]))
        return tf.Variable(rng.normal(0, 1 / np.sqrt(fan_in), shape).astype(np.float32))

    class SmallCnn(tf.Module):
        def __init__(self):
            super().__init__()
            self.k1, self.k2 = weight(3, 3, 3, 32), weight(3, 3, 32, 64)
            self.k3 = weight(3, 3, 64, 128)
            self.w, self.b = weight(128, 10), tf.Variable(np.zeros(10, np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 64, 64, 3], tf.float32, name="x")])
        def serve(self, x):
            h = x
            for k in (self.k1, self.k2, self.k3):
                h = tf.nn.relu(tf.nn.conv2d(h, k, strides=2, padding="SAME"))
            h = tf.reduce_mean(h, axis=[1, 2])
            return {"y": tf.nn.softmax(tf.matmul(h, self.w) + self.b)}

    return SmallCnn()


def _export_cnn(base: str, warmup: bool = False) -> str:
    import nbserve

    module = _cnn_module()
    kwargs = {}
    if warmup:
        kwargs["warmup"] = [{"x": inputs_for("b")}]
    version = nbserve.export(module, base, version=1, signatures={"serving_default": module.serve},
                             **kwargs)
    return os.path.join(base, str(version))


def _export_large(base: str) -> None:
    import tensorflow as tf

    class Large(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.reduce_mean(x, axis=-1)}

    module = Large()
    tf.saved_model.save(module, os.path.join(base, "1"),
                        signatures={"serving_default": module.serve})


def export_supports_warmup() -> bool:
    import nbserve

    return "warmup" in inspect.signature(nbserve.export).parameters


def _version_dir(base: str) -> str:
    versions = sorted((e for e in os.listdir(base) if e.isdigit()), key=int)
    return os.path.join(base, versions[-1])


def export_models() -> dict[str, str]:
    """Export (or link) the three models; returns workload -> version folder."""
    MODELS.mkdir(parents=True, exist_ok=True)
    out = {}
    for workload, name in WORKLOADS.items():
        base = MODELS / name
        if not base.exists():
            if workload == "a":
                src = tfs_testdata() / "saved_model_half_plus_two_cpu"
                if src.is_dir():
                    os.symlink(src, base)
                else:
                    _export_half_plus_two(str(base))
            elif workload == "b":
                _export_cnn(str(base))
            else:
                _export_large(str(base))
        out[workload] = _version_dir(str(base))
    return out


def export_warmup_model() -> str | None:
    """The CNN with a warmup file, or None when ``nbserve.export`` has no ``warmup``."""
    if not export_supports_warmup():
        return None
    base = WARMUP_MODELS / "cnn"
    if not base.exists():
        try:
            return _export_cnn(str(base), warmup=True)
        except Exception as exc:  # noqa: BLE001 - an API we guessed wrong: say so in the report
            shutil.rmtree(base, ignore_errors=True)
            return f"error: {type(exc).__name__}: {exc}"
    return _version_dir(str(base))


def _short(array: np.ndarray) -> np.ndarray:
    """The float32 values as the short decimals they came from (4 places)."""
    return np.round(array.astype(np.float64), 4)


def tfs_body(array: np.ndarray) -> bytes:
    return json.dumps({"instances": _short(array).tolist()}).encode()


def v2_body(array: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "x", "shape": list(array.shape), "datatype": "FP32",
                                   "data": _short(array).ravel().tolist()}]}).encode()


def grpc_body(name: str, array: np.ndarray) -> bytes:
    from tensorflow_serving.apis import predict_pb2

    from nbserve.codec.tensors import to_tensor_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "serving_default"
    request.inputs["x"].CopyFrom(to_tensor_proto(array))
    return request.SerializeToString()


def write_config(version_dirs: dict[str, str]) -> None:
    entries = "".join(
        f'  config {{ name: "{WORKLOADS[w]}" base_path: "{os.path.dirname(d)}" '
        f'model_platform: "tensorflow" }}\n' for w, d in sorted(version_dirs.items()))
    (DATA / "models.config").write_text("model_config_list {\n" + entries + "}\n")


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    manifest_path = DATA / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") == FORMAT_VERSION and (
                manifest.get("warmup_model") or not export_supports_warmup()):
            print("bench.prepare: up to date")
            return
    version_dirs = export_models()
    warm = export_warmup_model()
    from bench.servers.session_model import load

    workloads = {}
    for workload, version_dir in version_dirs.items():
        name = WORKLOADS[workload]
        array = inputs_for(workload)
        expected = load(version_dir)(array)
        np.save(DATA / f"{workload}.input.npy", array)
        np.save(DATA / f"{workload}.expected.npy", expected)
        (DATA / f"{workload}.tfs.json").write_bytes(tfs_body(array))
        (DATA / f"{workload}.v2.json").write_bytes(v2_body(array))
        (DATA / f"{workload}.grpc.bin").write_bytes(grpc_body(name, array))
        workloads[workload] = {"name": name, "version_dir": version_dir,
                               "input_shape": list(array.shape),
                               "output_shape": list(expected.shape),
                               "tfs_bytes": (DATA / f"{workload}.tfs.json").stat().st_size}
    write_config(version_dirs)
    manifest = {"format": FORMAT_VERSION, "workloads": workloads, "warmup_model": warm}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    print("bench.prepare: wrote", manifest_path)


if __name__ == "__main__":
    main()
