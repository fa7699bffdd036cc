"""The floor a user could write in 20 lines: aiohttp + json + the session callable.

``python bare_aiohttp.py --port P --model NAME=VERSION_DIR ...`` serves
``POST /v1/models/NAME:predict`` with ``{"instances": [...]}`` -> ``{"predictions": [...]}``. No
lifecycle, no versions, no TF Serving codec; the model runs in the default thread pool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import numpy as np
from aiohttp import web

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from session_model import load, parse_models


def make_app(models: dict) -> web.Application:
    async def predict(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        run = models[name]
        body = json.loads(await request.read())
        inputs = np.asarray(body["instances"], dtype=np.float32)
        outputs = await asyncio.get_running_loop().run_in_executor(None, run, inputs)
        return web.json_response({"predictions": outputs.tolist()})

    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/v1/models/{name}:predict", predict)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", action="append", default=[])
    args = parser.parse_args()
    models = {name: load(path) for name, path in parse_models(args.model).items()}
    web.run_app(make_app(models), host="127.0.0.1", port=args.port, access_log=None,
                print=None)


if __name__ == "__main__":
    main()
