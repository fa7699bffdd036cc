"""nbserve.export: Keras models, tf.Modules and tf.functions, versioned and atomic."""

from __future__ import annotations

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import nbserve  # noqa: E402
from nbserve.exporter import next_version  # noqa: E402
from tests.models import Affine  # noqa: E402


def keras_model(weight: float, bias: float):
    inputs = tf.keras.Input(shape=(1,), name="x")
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(inputs))
    model.layers[-1].set_weights([np.array([[weight]]), np.array([bias])])
    return model


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Three exports made once: keras (v1, v2), module (v1 and explicit v7), function (v1)."""
    root = tmp_path_factory.mktemp("exports")
    made = {
        "keras": [nbserve.export(keras_model(2.0, 1.0), str(root / "keras")),
                  nbserve.export(keras_model(3.0, 0.0), str(root / "keras"))],
        "module": [],
        "function": [],
    }
    module = Affine(0.5, 2.0)
    made["module"].append(nbserve.export(module, str(root / "module"),
                                         signatures={"serving_default": module.__call__}))
    made["module"].append(nbserve.export(module, str(root / "module"), version=7,
                                         signatures=module.__call__))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def double(x):
        return {"z": 2.0 * x}

    made["function"].append(nbserve.export(double, str(root / "function")))
    return root, made


@pytest.fixture(scope="module")
def server(exports):
    root, _ = exports
    models = tuple(nbserve.ModelConfig(n, str(root / n),
                                       version_policy=nbserve.VersionPolicy.all())
                   for n in ("keras", "module", "function"))
    srv = nbserve.Server(nbserve.ServerOptions(models=models, grpc_port=None, rest_api_port=None,
                                               file_system_poll_wait_seconds=0.2)).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_versions_are_numbered_and_only_numeric_folders_remain(exports):
    root, made = exports
    assert made == {"keras": [1, 2], "module": [1, 7], "function": [1]}
    assert sorted(os.listdir(root / "keras")) == ["1", "2"]  # no temporary folder left
    assert sorted(os.listdir(root / "module")) == ["1", "7"]
    assert next_version(str(root / "module")) == 8
    for version in ("1", "2"):
        assert os.path.isfile(root / "keras" / version / "saved_model.pb")


def test_an_existing_version_is_an_error(exports):
    root, _ = exports
    with pytest.raises(FileExistsError, match="exists already"):
        nbserve.export(Affine(1.0, 1.0), str(root / "module"), version=7)
    assert sorted(os.listdir(root / "module")) == ["1", "7"]


def test_no_version_folder_is_visible_until_complete(tmp_path, monkeypatch):
    seen = []
    real_save = tf.saved_model.save

    def spying_save(obj, target, signatures=None, **kw):
        real_save(obj, target, signatures=signatures, **kw)
        seen.append((sorted(os.listdir(tmp_path / "m")), os.path.relpath(target, tmp_path)))

    monkeypatch.setattr(tf.saved_model, "save", spying_save)
    module = Affine(1.0, 0.0)
    assert nbserve.export(module, str(tmp_path / "m"), signatures=module.__call__) == 1
    (entries, target), = seen
    assert len(entries) == 1 and entries[0].startswith(".")  # only the hidden temporary folder
    assert target.startswith(os.path.join("m", "."))
    assert sorted(os.listdir(tmp_path / "m")) == ["1"]


def test_exports_serve_through_server_predict(server):
    for name in ("keras", "module", "function"):
        server.wait_until_available(name, timeout=60)
    server.wait_until_available("keras", version=1, timeout=60)
    server.wait_until_available("module", version=7, timeout=60)
    keras_v1 = server.predict("keras", [[1.0], [2.0]], version=1)
    keras_v2 = server.predict("keras", [[1.0], [2.0]], version=2)
    assert next(iter(keras_v1.values())).tolist() == [[3.0], [5.0]]
    assert next(iter(keras_v2.values())).tolist() == [[3.0], [6.0]]
    assert server.predict("module", [2.0], version=1)["y"].tolist() == [3.0]
    assert server.predict("module", [2.0], version=7)["y"].tolist() == [3.0]
    assert server.predict("function", [1.5, -1.0])["z"].tolist() == [3.0, -2.0]
