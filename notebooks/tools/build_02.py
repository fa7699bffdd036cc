"""Builds notebooks/02_versions_labels_config.ipynb. Usage: python notebooks/tools/build_02.py && jupyter nbconvert --to notebook --execute --inplace notebooks/02_versions_labels_config.ipynb && python notebooks/tools/build_02.py --strip"""

import sys

from nbtools import build, cell_makers

cells, md, code = cell_makers()

md("""# Versions, labels and model config files

TF Serving's production setup in a notebook: **several models from one config file**, version
**labels** `stable`/`canary`, a **config reload** over gRPC, and the stock
`tensorflow-serving-api` gRPC client. The very same config file runs unchanged on
`tensorflow_model_server --model_config_file=...`.""")

code("""import os, shutil, tempfile
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # keep TensorFlow's C++ start-up lines out of the cells
import tensorflow as tf
import nbserve
from nbserve.config_file import model_server_config_to_text
from nbserve.options import ModelConfig, VersionPolicy

workdir = tempfile.mkdtemp(prefix="nbserve-02-")""")

md("""## Export two models: `half_plus_two` in two versions, and `half_plus_three`

`nbserve.export` writes each version atomically (hidden temporary folder, then a rename to its
number), so a running server never sees half a model.""")

code("""class Affine(tf.Module):
    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = tf.Variable(a), tf.Variable(b)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def __call__(self, x):
        return {"y": self.a * x + self.b}

def export(module, name):
    return nbserve.export(module, os.path.join(workdir, name),
                          signatures={"serving_default": module.__call__})

print(export(Affine(0.5, 2.0), "half_plus_two"))   # version 1: y = 0.5 x + 2
print(export(Affine(0.5, 2.5), "half_plus_two"))   # version 2: y = 0.5 x + 2.5 (the canary)
print(export(Affine(0.5, 3.0), "half_plus_three"))""")

md("""## Write the config file

`specific { versions: 1 versions: 2 }` keeps both versions of `half_plus_two` loaded; the labels
name them. `model_server_config_to_text` writes TF Serving's text format.""")

code("""models = [
    ModelConfig("half_plus_two", os.path.join(workdir, "half_plus_two"),
                version_policy=VersionPolicy.specific(1, 2),
                version_labels={"stable": 1, "canary": 2}),
    ModelConfig("half_plus_three", os.path.join(workdir, "half_plus_three")),
]
config_path = os.path.join(workdir, "models.config")
with open(config_path, "w") as f:
    f.write(model_server_config_to_text(models))
print(open(config_path).read().replace(workdir, "WORKDIR"))""")

md("""## Serve it

`nbserve.serve` takes the config file like `--model_config_file`; port `0` picks free ports.""")

code("""srv = nbserve.serve(config_path, port=0, rest_api_port=0, model_config_file_poll_wait_seconds=1)
for name, version in [("half_plus_two", 1), ("half_plus_two", 2), ("half_plus_three", None)]:
    srv.wait_until_available(name, version, timeout=60)
for name, versions in srv.status().items():
    print(name, [(v["version"], v["state"]) for v in versions])""")

md("""## REST by label and by version""")

code("""import requests

def rest_predict(path, instances):
    reply = requests.post(f"{srv.rest_url}/v1/models/{path}:predict", json={"instances": instances})
    return reply.status_code, reply.json()

print(rest_predict("half_plus_two/labels/stable", [1.0, 2.0]))
print(rest_predict("half_plus_two/labels/canary", [1.0, 2.0]))
print(rest_predict("half_plus_two/versions/1", [1.0, 2.0]))
print(rest_predict("half_plus_two/labels/nightly", [1.0]))   # TF Serving's error text""")

md("""## gRPC with the stock client

Exactly the code you would ship against TF Serving.""")

code("""import grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

channel = grpc.insecure_channel(srv.grpc_target)
stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
request = predict_pb2.PredictRequest()
request.model_spec.name = "half_plus_two"
request.model_spec.version_label = "canary"
request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0, 2.0], dtype=tf.float32))
response = stub.Predict(request, timeout=10)
print(tf.make_ndarray(response.outputs["y"]), "from version", response.model_spec.version.value)""")

md("""## Reload: promote the canary, drop `half_plus_three`

`HandleReloadConfigRequest` replaces the whole config, as in TF Serving: models that are not in the
new config unload (their versions stay listed as `END`).""")

code("""from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc
from nbserve.config_file import model_server_config_to_proto

promoted = [ModelConfig("half_plus_two", os.path.join(workdir, "half_plus_two"),
                        version_policy=VersionPolicy.specific(1, 2),
                        version_labels={"stable": 2, "canary": 2})]
reload = model_management_pb2.ReloadConfigRequest()
reload.config.CopyFrom(model_server_config_to_proto(promoted))
# write the same config to the file too, so the 1 s file poll agrees with the RPC
with open(config_path, "w") as f:
    f.write(model_server_config_to_text(promoted))
model_stub = model_service_pb2_grpc.ModelServiceStub(channel)
print(model_stub.HandleReloadConfigRequest(reload, timeout=60).status)""")

code("""import time
deadline = time.time() + 30
while time.time() < deadline and srv.status("half_plus_three")["half_plus_three"][0]["state"] != "END":
    time.sleep(0.1)
print(rest_predict("half_plus_two/labels/stable", [2.0]))
print(rest_predict("half_plus_three", [2.0]))
for name, versions in srv.status().items():
    print(name, [(v["version"], v["state"]) for v in versions])""")

md("""## Clean up""")

code("""channel.close()
srv.stop()
shutil.rmtree(workdir)""")

PATH = "notebooks/02_versions_labels_config.ipynb"

if __name__ == "__main__":
    build(cells, PATH, sys.argv[1:])
