"""In-process floors and the codec micro-benchmark (runs in .venv; prints one JSON object).

``python -m bench.floor [--seconds S]``:

- ``servable``: per workload, the median time of ``SavedModelServable.run`` (nbserve's loader) and
  of the bare session callable the peers use, on the prepared inputs;
- ``codec``: nbserve's JSON codec (``json_tensor``) decoding a Predict body of the (c) array and
  encoding a Predict response of it, versus ``orjson`` (``loads`` + ``numpy.asarray``;
  ``dumps(..., OPT_SERIALIZE_NUMPY)``) and the standard ``json``; and the gRPC path:
  ``tensor_content`` encode (``to_tensor_proto`` + ``SerializeToString``) and decode
  (``PredictRequest.FromString`` + ``from_tensor_proto``) versus ``tf.make_tensor_proto`` and a
  bare ``tobytes``/``frombuffer``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any, Callable

import numpy as np

from bench.config import DATA


def timeit(fn: Callable[[], Any], seconds: float, min_runs: int = 3, max_runs: int = 100_000) -> float:
    """Median seconds per call of ``fn`` over about ``seconds`` (one untimed call first)."""
    fn()
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def servable_floor(manifest: dict, seconds: float) -> dict:
    from bench.servers.session_model import load
    from nbserve.servables.saved_model import SavedModelLoader

    out = {}
    for workload, info in manifest["workloads"].items():
        array = np.load(DATA / f"{workload}.input.npy")
        loader = SavedModelLoader(info["version_dir"], device="cpu")
        loader.load()
        servable = loader.servable()
        signature = servable.signatures["serving_default"]
        alias = sorted(signature.inputs)[0]
        bare = load(info["version_dir"])
        out[workload] = {
            "servable_run_ms": 1000 * timeit(lambda: servable.run(signature, {alias: array}),
                                             seconds),
            "session_callable_ms": 1000 * timeit(lambda: bare(array), seconds),
        }
        loader.unload()
    return out


def codec_bench(seconds: float) -> dict:
    from nbserve.codec import json_tensor
    from nbserve.servables.signature import Signature, TensorInfo

    array = np.load(DATA / "c.input.npy")
    body = (DATA / "c.tfs.json").read_bytes()
    signature = Signature("serving_default", inputs={"x": TensorInfo("x:0", "DT_FLOAT", (-1, 224, 224, 3))},
                          outputs={"y": TensorInfo("y:0", "DT_FLOAT", (-1, 224, 224, 3))})

    def nb_decode():
        request = json_tensor.read_predict_body(json_tensor.parse_json(body), body)
        return json_tensor.decode_inputs(request, signature)["x"]

    def nb_encode():
        return json_tensor.encode_predict_response({"y": array}, "row", signature)

    decoded = nb_decode()
    assert decoded.dtype == np.float32 and np.array_equal(decoded, array), "nbserve decode differs"
    result: dict[str, Any] = {
        "array_shape": list(array.shape), "body_bytes": len(body),
        "nbserve_decode_ms": 1000 * timeit(nb_decode, seconds),
        "nbserve_encode_ms": 1000 * timeit(nb_encode, seconds),
        "nbserve_encode_bytes": len(nb_encode()),
        "json_decode_ms": 1000 * timeit(
            lambda: np.asarray(json.loads(body)["instances"], dtype=np.float32), seconds),
        "json_encode_ms": 1000 * timeit(
            lambda: json.dumps({"predictions": array.tolist()}).encode(), seconds),
    }
    try:
        import orjson

        result["orjson_decode_ms"] = 1000 * timeit(
            lambda: np.asarray(orjson.loads(body)["instances"], dtype=np.float32), seconds)
        result["orjson_encode_ms"] = 1000 * timeit(
            lambda: orjson.dumps({"predictions": array}, option=orjson.OPT_SERIALIZE_NUMPY), seconds)
        result["orjson_encode_tolist_ms"] = 1000 * timeit(
            lambda: orjson.dumps({"predictions": array.tolist()}), seconds)
        result["orjson_version"] = orjson.__version__
    except ImportError:
        result["orjson_missing"] = True
    result.update(grpc_codec_bench(array, seconds))
    return result


def grpc_codec_bench(array: np.ndarray, seconds: float) -> dict:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from nbserve.codec.tensors import from_tensor_proto, to_tensor_proto

    def encode() -> bytes:
        response = predict_pb2.PredictResponse()
        response.outputs["y"].CopyFrom(to_tensor_proto(array))
        return response.SerializeToString()

    wire = encode()

    def decode() -> np.ndarray:
        return from_tensor_proto(predict_pb2.PredictResponse.FromString(wire).outputs["y"])

    assert np.array_equal(decode(), array), "nbserve tensor_content round trip differs"
    return {
        "grpc_encode_ms": 1000 * timeit(encode, seconds),
        "grpc_decode_ms": 1000 * timeit(decode, seconds),
        "tf_make_tensor_proto_ms": 1000 * timeit(lambda: tf.make_tensor_proto(array), seconds),
        "tobytes_ms": 1000 * timeit(array.tobytes, seconds),
        "frombuffer_copy_ms": 1000 * timeit(
            lambda: np.frombuffer(wire, dtype=np.uint8).copy(), seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    manifest = json.loads((DATA / "manifest.json").read_text())
    result = {"servable": servable_floor(manifest, args.seconds),
              "codec": codec_bench(args.seconds)}
    print("BENCH_JSON " + json.dumps(result))


if __name__ == "__main__":
    main()
