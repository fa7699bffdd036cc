"""Builds notebooks/03_panel.ipynb (then execute it with nbconvert --execute --inplace)."""

import sys

import nbformat as nbf
from nbtools import cell_makers

cells, md, code = cell_makers()

md("""# Watch and steer versions: the widget panel

`nbserve.widgets.ServerPanel` is a live panel built from standard ipywidgets (no extra front-end
bundle): per model a table of versions with their state in TF Serving's words and plain ones
(`END · unloaded (replaced by 2)`), device, load time and the traffic of the last minute with a
sparkline, updated live; a **version picker**; **load / unload** buttons (a disabled one says why);
**labels**; a **request builder** generated from the serving signature; and **compare** two
versions. `%tfserve panel` shows the same panel.

Everything it does goes through the server's public API (`set_version_policy`, `load_version`,
`set_label`, `example_request`, `compare`...): picking a version makes the model's version
policy `specific` for it, so the manager loads it and unloads the others, and REST/gRPC status
show the change, not only the widget.""")

code("""# NBVAL_IGNORE_OUTPUT
import json, os, shutil, tempfile, urllib.request
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # keep TensorFlow's C++ start-up lines out of the cells
import tensorflow as tf
import nbserve
from nbserve.widgets import ServerPanel

workdir = tempfile.mkdtemp(prefix="nbserve-03-")""")

md("""## A model, served

Version 1 computes `y = x`; version 2, exported below while the server runs, computes `y = 2x`,
so a prediction tells which version answered.""")

code("""class Affine(tf.Module):
    def __init__(self, a):
        super().__init__()
        self.a = tf.Variable(a)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def __call__(self, x):
        return {"y": self.a * x}

def export(a):
    m = Affine(a)
    return nbserve.export(m, base, signatures={"serving_default": m.__call__})

base = os.path.join(workdir, "affine")
print("exported version", export(1.0))""")

code("""srv = nbserve.serve(base, port=0, rest_api_port=0)  # free ports; the latest version serves
print("serving version", srv.wait_until_available("affine", timeout=60))

def rest_status():
    with urllib.request.urlopen(f"{srv.rest_url}/v1/models/affine", timeout=10) as r:
        return {e["version"]: e["state"] for e in json.load(r)["model_version_status"]}

def rest_predict(xs):
    req = urllib.request.Request(f"{srv.rest_url}/v1/models/affine:predict",
                                 data=json.dumps({"instances": xs}).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)

print(rest_status(), rest_predict([1.0, 2.0]))""")

md("""## The panel

It follows the server live. The cell below displays it (its output is a widget view).""")

code("""# NBVAL_IGNORE_OUTPUT
panel = ServerPanel(srv)
panel""")

md("""Export version 2: the panel follows on its own (version 2 LOADING, then AVAILABLE, then
version 1 UNLOADING and END). `wait_settled` blocks until the manager has applied the policy.""")

code("""print("exported version", export(2.0))
print(panel.wait_settled(timeout=60))
print(rest_status(), rest_predict([1.0, 2.0]))""")

md("""Each widget is a public attribute, so the panel can also be driven from code (which is what
this notebook does, so that it runs unattended). The picker lists, in plain words, the newest
version, every version, each version on disk or ever seen, and every label:""")

code("""view = panel.model_view("affine")
print(view.picker.options)
print([(r.version, r.state, r.serving) for r in view.rows])""")

md("""## Pick the older version

Choosing *version 1* sets the model's version policy to `specific 1`: the manager loads version 1,
then unloads version 2.""")

code("""view.picker.value = "version:1"   # what choosing "version 1" in the dropdown does
print(panel.wait_settled(timeout=60))
print(srv.model("affine").policy)
print(rest_status(), rest_predict([1.0, 2.0]))""")

md("""## Load and unload

*load* adds a version to the versions served, *unload* removes one. The panel keeps at least one
version loaded: the last one's unload button is disabled (stop the server instead).""")

code("""view.load_buttons[2].click()     # version 2 beside version 1
panel.wait_settled(timeout=60)
print(view.picker.value, rest_status())
view.unload_buttons[1].click()   # only version 2 is left
panel.wait_settled(timeout=60)
print(view.picker.value, rest_status(), "unload of the last one disabled:",
      view.unload_buttons[2].disabled)""")

md("""## Build a request, compare two versions

The request builder has a field per input of the serving signature (its dtype and shape beside
it), prefilled with a valid example. *Send* runs exactly the code that *copy as* shows, over REST
or gRPC. *Compare* sends the same inputs to two loaded versions and shows the outputs side by
side with the largest absolute difference: the check to make before moving a `stable` label.""")

code("""view.load_buttons[1].click()     # versions 1 and 2 side by side
panel.wait_settled(timeout=60)
print(list(view.fields), view.fields["x"].value)
view.fields["x"].value = "[1.0, 2.0, 5.0]"
view.protocol.value = "REST"
view.send_button.click()
print(view.result_ok, view.result_text.strip())
view.copy_as.value = "curl"
print("curl" in view.code.value and "1.0, 2.0, 5.0" in view.code.value)
view.compare_a.value, view.compare_b.value = 1, 2
view.compare_button.click()
print(dict(view.comparison.max_abs_diff))""")

md("""## Back to latest

*the newest version* serves the latest version again (TF Serving's `latest { num_versions: 1 }`),
and version 1 is unloaded.""")

code("""view.picker.value = "latest"
panel.wait_settled(timeout=60)
print(srv.model("affine").policy, rest_status(), rest_predict([1.0, 2.0]))""")

md("""## Stop

*Stop* calls `srv.stop()`: the ports close and the panel turns into the launcher (model path,
name, ports, device, Start), filled in with this server's settings. `ServerPanel()` with no
running server shows that launcher too.""")

code("""panel.stop_button.click()
print(srv.running, panel.server is None, panel.launcher.name.value,
      panel.launcher.rest_port.value == str(srv.rest_port))
shutil.rmtree(workdir)""")

nb = nbf.v4.new_notebook(cells=cells)
nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
               "language_info": {"name": "python"}}
nbf.write(nb, sys.argv[1])
