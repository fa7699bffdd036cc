"""The public surface stays small and deliberate (DESIGN.md practice 14)."""

import nbserve


def test_public_names():
    assert set(nbserve.__all__) == {
        "Server", "ServerOptions", "ModelConfig", "VersionPolicy", "BatchingOptions",
        "ServingError", "StatusCode",
        "ModelStatus", "VersionStatus", "SignatureInfo", "TensorSpec", "VersionTraffic",
        "Comparison", "StateChange",
        "serve", "export", "__version__"}
    for name in nbserve.__all__:
        assert getattr(nbserve, name) is not None


def test_export_is_the_function_not_a_module():
    import nbserve.exporter  # importing the module must not shadow nbserve.export

    assert callable(nbserve.export) and nbserve.export is nbserve.exporter.export
