"""The codecs and the service never load TensorFlow (REST can answer before TF is imported)."""

from __future__ import annotations

import subprocess
import sys


def test_codecs_and_service_import_without_tensorflow():
    code = ("import sys\n"
            "import nbserve.core, nbserve.service, nbserve.codec.json_tensor\n"
            "import nbserve.codec.json_predict, nbserve.codec.python_predict\n"
            "import nbserve.codec.proto_predict, nbserve.codec.tensors, nbserve.batching\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in\n"
            "                ('tensorflow', 'tensorflow_serving'))\n"
            "print(loaded)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"
