"""Builds notebooks/07_tflite.ipynb. Usage: python notebooks/tools/build_07.py && jupyter nbconvert --to notebook --execute --inplace notebooks/07_tflite.ipynb && python notebooks/tools/build_07.py --strip"""

import sys

from nbtools import build, cell_makers

cells, md, code = cell_makers()

md("""# One model, two runtimes: SavedModel and TFLite

TF Serving can serve a version folder's `model.tflite` instead of its `saved_model.pb`
(`--prefer_tflite_model=true`); nbserve does the same. Here one small Keras model is exported
**both ways in one version folder**, served first as a SavedModel and then as TFLite, and asked
the same questions with **the same client code** over REST and gRPC.""")

code("""import os, shutil, tempfile
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # keep TensorFlow's C++ start-up lines out of the cells
import numpy as np
import tensorflow as tf
import nbserve
%load_ext nbserve

workdir = tempfile.mkdtemp(prefix="nbserve-07-")
base = os.path.join(workdir, "dense")""")

md("""## Export with `tflite=True`

`nbserve.export(model, path, tflite=True)` writes the SavedModel, converts it with
`tf.lite.TFLiteConverter` and puts `model.tflite` beside `saved_model.pb`, all inside the same
atomic publish (a hidden temporary folder renamed to the version number). The model:
`y = features[0] + 10 * features[1] + 0.5`.""")

code("""inputs = tf.keras.Input(shape=(2,), name="features")
model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(inputs))
model.layers[-1].set_weights([np.array([[1.0], [10.0]]), np.array([0.5])])

version = nbserve.export(model, base, tflite=True)
print("version", version, sorted(os.listdir(os.path.join(base, str(version)))))""")

md("""## The client code

Plain REST with `requests`, and the stock `tensorflow-serving-api` gRPC stub: exactly what you
would run against TF Serving. Nothing in it knows which runtime answers.""")

code("""import grpc
import requests
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

ROWS = [[1.0, 2.0], [3.0, 0.0], [0.0, 0.5]]

def ask(srv, name="dense"):
    rest = requests.post(f"{srv.rest_url}/v1/models/{name}:predict",
                         json={"instances": [{"features": row} for row in ROWS]}).json()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["features"].CopyFrom(tf.make_tensor_proto(np.array(ROWS, np.float32)))
    with grpc.insecure_channel(srv.grpc_target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 30)
    grpc_answer = {alias: tf.make_ndarray(t).ravel().tolist() for alias, t in response.outputs.items()}
    kind = srv.status(name)[name][0]["kind"]
    print(f"{kind:>11}: REST {rest}")
    print(f"{kind:>11}: gRPC {grpc_answer}")""")

md("""## Served as a SavedModel

`%tfserve start PATH` serves `saved_model.pb`; the status says which kind of servable each version
is (`kind`).""")

code("""# NBVAL_IGNORE_OUTPUT
srv = %tfserve start {base} --port 0 --rest_api_port 0""")

code("""srv.wait_until_available("dense", timeout=60)
ask(srv)""")

md("""## Served as TFLite

`--tflite` (TF Serving's `--prefer_tflite_model`) serves `model.tflite` where a version folder has
one; a folder without it falls back to its SavedModel. Re-running `%tfserve start` on the same
PATH replaces the earlier server.""")

code("""# NBVAL_IGNORE_OUTPUT
srv = %tfserve start {base} --port 0 --rest_api_port 0 --tflite""")

code("""srv.wait_until_available("dense", timeout=60)
ask(srv)""")

md("""The signatures are the SavedModel's own: the converter keeps each signature's key and aliases
in the `.tflite` file, and GetModelMetadata reports them (the TensorInfo names are the TFLite
interpreter's tensors).""")

code("""metadata = requests.get(f"{srv.rest_url}/v1/models/dense/metadata").json()
signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
for side in ("inputs", "outputs"):
    for alias, info in signature[side].items():
        print(side, alias, info["dtype"], [int(d["size"]) for d in info["tensor_shape"]["dim"]])""")

md("""## Notes

* Concurrency: a TFLite interpreter runs one request at a time, so nbserve keeps
  `num_tflite_pools` x `num_tflite_interpreters_per_pool` interpreters (TF Serving's flags;
  `nbserve.serve(..., num_tflite_pools=4)`) and a request waits for a free one. A new batch size
  resizes the interpreter's input, as TF Serving does.
* TF Serving's TFLite rules apply: SignatureDefs stored in the flatbuffer's metadata first, else
  the converter's signature table, else one `serving_default` built from the interpreter's input
  and output tensors. Request errors read the same as for a SavedModel.
* The same folder runs unchanged on the command line:
  `nbserve-server --model_base_path=PATH --prefer_tflite_model=true`.""")

md("""## Clean up""")

code("""%tfserve stop
shutil.rmtree(workdir)""")

PATH = "notebooks/07_tflite.ipynb"

if __name__ == "__main__":
    build(cells, PATH, sys.argv[1:])
