"""Builds notebooks/08_isolated_server.ipynb. Usage: python notebooks/tools/build_08.py && jupyter nbconvert --to notebook --execute --inplace notebooks/08_isolated_server.ipynb && python notebooks/tools/build_08.py --strip"""

import sys

from nbtools import build, cell_makers

cells, md, code = cell_makers()

md("""# A server that can crash without taking your kernel along

`%tfserve start PATH` runs the model server inside the kernel: fast to start and to call, but
whatever kills the server (out of memory on a large model, a crashing op in an untrusted export)
kills the kernel too, and every variable in it. `--isolate` runs the same server in a **child
process**, driven through the same `Server` API. Here we kill that child with `kill -9` and watch
the kernel carry on, then restart the server on the same ports.

Prefer `--isolate` for large models, exports you did not write, and long training cells next to
a server. It costs a few seconds of start-up (a fresh Python importing TensorFlow) and a local
round trip per in-process `srv.predict` call; REST and gRPC clients talk to the child directly.""")

code("""import os, signal, tempfile, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # keep TensorFlow's C++ start-up lines out of the cells
import requests
import tensorflow as tf
import nbserve
%load_ext nbserve

class HalfPlusTwo(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, x):
        return {"y": x / 2 + 2}

base = os.path.join(tempfile.mkdtemp(prefix="nbserve-08-"), "half_plus_two")
nbserve.export(HalfPlusTwo(), base)
precious = "a variable that took an hour to compute"  # lives in the kernel""")

md("""## Start it isolated

The same magic, plus `--isolate`. `srv.pid` is the child's process id, not the kernel's.""")

code("""# NBVAL_IGNORE_OUTPUT
srv = %tfserve start {base} --isolate --port 0 --rest_api_port 0""")

code("""srv.wait_until_available("half_plus_two", timeout=120)
print("child process:", srv.pid != os.getpid())
print("in-process:", srv.predict("half_plus_two", [1.0, 2.0, 5.0])["y"].tolist())
print("REST:", requests.post(f"{srv.rest_url}/v1/models/half_plus_two:predict",
                             json={"instances": [1.0, 2.0, 5.0]}).json())""")

md("""## Kill the child

`kill -9` stands for anything that ends a process at once: the kernel's out-of-memory killer,
a segfault in an op. The kernel notices the child is gone, says how it died, and lives on.""")

code("""rest_port, grpc_port = srv.rest_port, srv.grpc_port
os.kill(srv.pid, signal.SIGKILL)
deadline = time.monotonic() + 30
while srv.death is None and time.monotonic() < deadline:
    time.sleep(0.05)
print(srv.death.description)
print("the kernel lives on:", precious)""")

code("""try:
    srv.predict("half_plus_two", [1.0])
except nbserve.ServingError as err:
    print(err.code.name, "-", err.message.splitlines()[0].split(":")[0])""")

md("""## Restart on the same ports

`srv.restart()` starts a new child with the same options, on the ports the old one had, so
clients (and the snippets you copied) keep working.""")

code("""srv.restart()
srv.wait_until_available("half_plus_two", timeout=120)
print("same ports:", (srv.rest_port, srv.grpc_port) == (rest_port, grpc_port))
print("REST:", requests.post(f"{srv.rest_url}/v1/models/half_plus_two:predict",
                             json={"instances": [1.0, 2.0, 5.0]}).json())""")

code("""%tfserve stop""")

build(cells, "notebooks/08_isolated_server.ipynb", sys.argv[1:])
