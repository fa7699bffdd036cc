"""Builds notebooks/06_console.ipynb. Usage: python notebooks/tools/build_06.py &&
jupyter nbconvert --to notebook --execute --inplace notebooks/06_console.ipynb &&
python notebooks/tools/build_06.py --strip"""

import sys

import nbformat as nbf
from nbtools import build

PATH = "notebooks/06_console.ipynb"
cells = []


def md(text):
    cells.append(nbf.v4.new_markdown_cell(text))


def code(text):
    cells.append(nbf.v4.new_code_cell(text))


md("""# The notebook console

What a first session looks like, mistakes included: a SavedModel saved in the wrong place and the
hint that says so, a start cell run twice, requests built from the model's own signature and run
as they are, traffic moving from version 1 to version 2 under load, two versions compared, and a
`stable` label moved once the check passes. Everything goes through `nbserve.Server`'s notebook
API (`srv.models()`, `srv.signature()`, `srv.example_request()`, `srv.traffic()`,
`srv.compare()`, `srv.set_label()`).""")

code("""import os, shutil, subprocess, tempfile, threading, time
import numpy as np
import requests
import tensorflow as tf
import nbserve

workdir = tempfile.mkdtemp(prefix="nbserve-06-")
os.chdir(workdir)
%load_ext nbserve""")

md("""## A model with a `(None, 4)` input

`score = feats @ w`: version 1 has `w = 1`, version 2 `w = 1.5`, so each answer tells which version
served it.""")

code("""class Scorer(tf.Module):
    def __init__(self, scale):
        super().__init__()
        self.w = tf.Variable(tf.fill([4, 1], scale))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="feats")])
    def __call__(self, feats):
        return {"score": tf.matmul(feats, self.w)}

v1, v2 = Scorer(1.0), Scorer(1.5)""")

md("""## The commonest mistake: saving straight into the base path

TF Serving (and nbserve) serve *numbered version folders* under a model's base path. Saving with
`tf.saved_model.save(model, "export")` puts `saved_model.pb` in `export/` itself, so the server
waits for a version forever. The model's status says why, with the fix.""")

code("""# NBVAL_IGNORE_OUTPUT
tf.saved_model.save(v1, "export", signatures=v1.__call__)   # the mistake: no export/1
srv = %tfserve start ./export --port 0 --rest_api_port 0""")

code("""(model,) = srv.models()
print(model.versions)
print(model.hint)
assert model.hint.startswith("Did you forget to name your leaf directory as a number (eg. '/1/')?")""")

md("""The fix: move the files into `export/1` (or export with `nbserve.export(model, "export")`,
which writes the next numbered version atomically). The server picks the version up by itself.""")

code("""os.makedirs("export/.moving")
for name in os.listdir("export"):
    if not name.startswith("."):
        shutil.move(os.path.join("export", name), "export/.moving")
os.rename("export/.moving", "export/1")   # a version appears at once, complete
print(srv.wait_for("export", 1, timeout=60))
print(srv.models()[0].versions[0].state, srv.models()[0].hint)""")

md("""## Re-running the start cell

Running the start cell again replaces the server it started before, and says so in the new cell
("Replaced the server started from ./export at ...: REST :..., gRPC :... (stopped)"); the old
server's live display says it was replaced, and using it tells you to use the new one.""")

code("""first = srv""")

code("""# NBVAL_IGNORE_OUTPUT
srv = %tfserve start ./export --port 0 --rest_api_port 0""")

code("""assert first.replaced_by is srv and not first.running and srv.running
try:
    first.predict("export", [[1.0, 2.0, 3.0, 4.0]])
except nbserve.ServingError as err:
    print(err.message)
srv.wait_for("export", 1, timeout=60)""")

md("""## Requests built from the signature

`srv.signature()` reads the served version's inputs and outputs; `srv.example_request()` writes
client code for exactly those (names, dtypes, shapes; row format for one input), for REST with
`curl` or `requests` and for gRPC. Each snippet below is run as it is.""")

code("""sig = srv.signature("export")
print({alias: spec.describe() for alias, spec in sig.inputs.items()})
print({alias: spec.describe() for alias, spec in sig.outputs.items()})""")

code("""curl = srv.example_request("export", "rest", "curl")
print(curl.replace(srv.rest_url, "http://127.0.0.1:PORT"))
print(subprocess.run(["bash", "-c", curl], capture_output=True, text=True, check=True).stdout)""")

code("""grpc_code = srv.example_request("export", "grpc", "python")
print(grpc_code.replace(srv.grpc_target, "127.0.0.1:PORT"))
namespace: dict = {}
exec(grpc_code, namespace)
response = namespace["response"]
assert response.outputs["score"].float_val == [4.0]""")

md("""A wrong request gets TF Serving's exact error on the wire; in the notebook, `srv.predict`
adds the signature's expectation next to what was sent.""")

code("""try:
    srv.predict("export", [[1.0, 2.0]])
except nbserve.ServingError as err:
    print(err.context)""")

md("""## Traffic moves from version 1 to version 2

A small load runs in a thread while version 2 is exported. `srv.traffic()` counts requests,
errors and p50 / p99 latency per version over the last minute (with the requests of each second),
and shows the answers moving to version 2 (the policy is `latest 1`: version 1 unloads once
version 2 is AVAILABLE, with no failed request). The counts and timings vary from run to run, so
that cell's output is not compared.""")

code("""# NBVAL_IGNORE_OUTPUT
stop_load = threading.Event()
answers = []

def load():
    with requests.Session() as session:
        while not stop_load.is_set():
            r = session.post(f"{srv.rest_url}/v1/models/export:predict",
                             json={"instances": [[1.0, 1.0, 1.0, 1.0]]}, timeout=10)
            answers.append(r.json()["predictions"][0][0] if r.ok else r.text)

loader = threading.Thread(target=load)
loader.start()
while len(answers) < 50:
    time.sleep(0.05)
print("exported version", nbserve.export(v2, "export", signatures=v2.__call__))
srv.wait_for("export", 2, timeout=60)
srv.wait_for("export", 1, state="END", timeout=60)
count = len(answers)
while len(answers) < count + 50:
    time.sleep(0.05)
stop_load.set()
loader.join()

traffic = {t.version: t for t in srv.traffic("export")}
assert traffic[1].requests >= 50 and traffic[2].requests >= 50
assert set(answers) == {4.0, 6.0} and traffic[2].errors == 0  # no request failed
print("answers:", sorted(set(answers)), "then only", answers[-1])
for t in traffic.values():
    print(f"version {t.version}: {t.requests} requests, {t.errors} errors, "
          f"p50 {t.p50_ms:.2f} ms, p99 {t.p99_ms:.2f} ms, last 5 s {t.per_second[-5:]}")""")

md("""## Compare before moving a label

Serve both versions, send the same request to each and look at the largest difference; then
point the `stable` label at the version you trust, and move it once the check passes.""")

code("""srv.set_version_policy("export", "all")
srv.wait_for("export", 1, timeout=60)
srv.set_label("export", "stable", 1)
x = [[1.0, 2.0, 3.0, 4.0]]
print("stable answers", srv.predict("export", x, label="stable")["score"].tolist())
result = srv.compare("export", x, versions=(1, 2))
print(result.outputs[1]["score"].tolist(), result.outputs[2]["score"].tolist(), result.max_abs_diff)
assert result.max_abs_diff == {"score": 5.0}""")

code("""srv.set_label("export", "stable", 2)
print(srv.models()[0].labels, srv.predict("export", x, label="stable")["score"].tolist())
assert srv.predict("export", x, label="stable")["score"].tolist() == [[15.0]]""")

md("""## Clean up""")

code("""%tfserve stop
os.chdir("/")
shutil.rmtree(workdir)""")

build(cells, PATH, sys.argv[1:])
