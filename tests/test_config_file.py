"""Config files: ModelServerConfig, BatchingParameters, MonitoringConfig (spec §4.1-4.3)."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorflow_serving.config import model_server_config_pb2

from nbserve import config_file
from nbserve.config_file import (
    load_batching_parameters,
    load_model_server_config,
    load_monitoring_config,
    model_configs_from_proto,
    model_server_config_to_proto,
    model_server_config_to_text,
    parse_batching_parameters,
    parse_model_server_config,
    parse_monitoring_config,
)
from nbserve.errors import ServingError, StatusCode
from nbserve.options import BatchingOptions, ModelConfig, VersionPolicy

PARSE_PREFIX = "Error parsing text-format tensorflow.serving.ModelServerConfig from "


def invalid(call, *args, **kwargs) -> str:
    """Run ``call``; it must raise INVALID_ARGUMENT. Returns the message."""
    with pytest.raises(ServingError) as info:
        call(*args, **kwargs)
    assert info.value.code == StatusCode.INVALID_ARGUMENT, info.value
    return info.value.message


def one_model(body: str) -> str:
    return "model_config_list {\n  config {\n" + body + "\n  }\n}\n"


# --- TF Serving's own test files ------------------------------------------------------------------


@pytest.mark.tfs_testdata
def test_good_model_config_lists_both_models(tfs_testdata, tmp_path):
    two = str(tfs_testdata / "saved_model_half_plus_two_cpu")
    three = str(tfs_testdata / "saved_model_half_plus_three")
    text = (tfs_testdata / "good_model_config.txt").read_text()
    text = text.replace("${TEST_HALF_PLUS_TWO_DIR}", two)
    text = text.replace("${TEST_HALF_PLUS_THREE_DIR}", three)
    expected = (ModelConfig("half_plus_two", two), ModelConfig("half_plus_three", three))
    assert parse_model_server_config(text) == expected
    path = tmp_path / "models.config"
    path.write_text(text)
    assert load_model_server_config(path) == expected


@pytest.mark.tfs_testdata
def test_bad_model_config_is_a_parse_error_naming_the_file(tfs_testdata):
    path = tfs_testdata / "bad_model_config.txt"
    message = invalid(load_model_server_config, path)
    assert message.startswith(f"{PARSE_PREFIX}{path}: line 1, column 1: ")
    assert '"improperly"' in message


@pytest.mark.tfs_testdata
def test_batching_config_file(tfs_testdata):
    assert load_batching_parameters(tfs_testdata / "batching_config.txt") == BatchingOptions(
        max_batch_size=128, batch_timeout_micros=0, max_enqueued_batches=1_000_000,
        num_batch_threads=8)


@pytest.mark.tfs_testdata
def test_monitoring_config_file(tfs_testdata):
    assert load_monitoring_config(tfs_testdata / "monitoring_config.txt") == (
        True, "/monitoring/prometheus/metrics")


# --- ModelServerConfig: parsing -------------------------------------------------------------------

SPEC_EXAMPLE = """
# models.config
model_config_list {
  config {
    name: "half_plus_two"
    base_path: "/models/saved_model_half_plus_two_cpu"
    model_platform: "tensorflow"
  }
  config {
    name: "two"
    base_path: "/models/saved_model_half_plus_two_2_versions"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 124 versions: 123 } }
    version_labels { key: "stable" value: 123 }
    version_labels { key: "canary" value: 124 }
  }
  config {
    name: "three"
    base_path: "gs://bucket/saved_model_half_plus_three"
    model_platform: "tensorflow"
    model_version_policy { latest { num_versions: 2 } }
  }
  config {
    name: "every"
    base_path: "/models/every"
    model_platform: "tensorflow"
    model_version_policy { all {} }
  }
}
"""


def test_spec_example_policies_and_labels():
    models = parse_model_server_config(SPEC_EXAMPLE)
    assert [m.name for m in models] == ["half_plus_two", "two", "three", "every"]
    assert models[0].version_policy == VersionPolicy.latest(1)
    assert models[1].version_policy == VersionPolicy.specific(123, 124)
    assert models[1].version_policy.versions == (123, 124)
    assert models[1].version_labels == {"stable": 123, "canary": 124}
    assert models[2].version_policy == VersionPolicy.latest(2)
    assert models[2].base_path == "gs://bucket/saved_model_half_plus_three"  # URIs are kept
    assert models[3].version_policy == VersionPolicy.all()
    assert all(m.model_platform == "tensorflow" for m in models)


@pytest.mark.parametrize("policy, expected", [
    ("", VersionPolicy.latest(1)),
    ("model_version_policy { latest { num_versions: 0 } }", VersionPolicy.latest(1)),
    ("model_version_policy { latest {} }", VersionPolicy.latest(1)),
    ("model_version_policy: { latest: { num_versions: 3 } }", VersionPolicy.latest(3)),
    ("model_version_policy { all {} }", VersionPolicy.all()),
    ("model_version_policy { specific { versions: 7 versions: 2 versions: 7 } }",
     VersionPolicy.specific(2, 7)),
])
def test_version_policies(policy, expected):
    text = one_model(f'name: "m" base_path: "/m" model_platform: "tensorflow" {policy}')
    (model,) = parse_model_server_config(text)
    assert model.version_policy == expected


def test_empty_config_is_none_and_an_empty_list_is_no_models():
    assert parse_model_server_config("") is None
    assert parse_model_server_config("  # only a comment\n\n") is None
    assert parse_model_server_config("model_config_list {}") == ()
    assert parse_model_server_config("model_config_list: { }") == ()


def test_tf_servings_punctuation_is_accepted():
    text = ('model_config_list: { config: { name: "a", base_path: "/a", '
            'model_platform: "tensorflow" },'
            ' config < name: "b"; base_path: "/b"; model_platform: "tensorflow" > }')
    assert [m.name for m in parse_model_server_config(text)] == ["a", "b"]


@pytest.mark.parametrize("text, line, token, detail", [
    ("improperly formatted file", 1, "improperly", 'has no field named "improperly"'),
    (one_model('    nam: "x"'), 3, "nam", 'has no field named "nam"'),
    (one_model('    name: "x"\n    base_path: 12'), 4, "12", "Expected string"),
    (one_model('    name: "a"\n    name: "b"'), 4, '"b"', 'should not have multiple "name" fields'),
    ('\n\nmodel_config_list { config { model_version_policy { newest {} } } }', 3, "newest",
     'no field named "newest"'),
    ("model_config_list {\n  config {\n", 2, None, "Expected"),  # reported at the last token
])
def test_parse_errors_name_the_source_line_and_column(text, line, token, detail):
    message = invalid(parse_model_server_config, text, source="/cfg/models.config")
    pattern = re.escape(PARSE_PREFIX) + r"/cfg/models\.config: line (\d+), column (\d+): (.*)"
    match = re.fullmatch(pattern, message, re.S)
    assert match, message
    assert int(match.group(1)) == line
    if token is not None:  # 1-based column of the offending token
        assert int(match.group(2)) == text.splitlines()[line - 1].index(token) + 1
    assert detail in match.group(3)


def test_default_source_name():
    assert invalid(parse_model_server_config, "x: 1").startswith(PARSE_PREFIX + "<string>: line 1")


# --- ModelServerConfig: validation (TF Serving's texts) -------------------------------------------


def test_duplicate_model_names():
    text = ('model_config_list { config { name: "m" base_path: "/a" model_platform: "tensorflow" }'
            ' config { name: "m" base_path: "/b" model_platform: "tensorflow" } }')
    assert invalid(parse_model_server_config, text) == (
        "Illegal to list model m multiple times in config list")


def test_missing_platform():
    text = one_model('name: "m" base_path: "/m"')
    assert invalid(parse_model_server_config, text) == (
        "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
        "ModelServerConfig::model_platform, model name is m")


def test_unsupported_platform():
    text = one_model('name: "m" base_path: "/m" model_platform: "pytorch"')
    assert invalid(parse_model_server_config, text) == (
        "Model m requests unsupported platform pytorch")


def test_deprecated_model_type():
    (model,) = parse_model_server_config(
        one_model('name: "m" base_path: "/m" model_type: TENSORFLOW'))
    assert model.model_platform == "tensorflow"
    both = one_model(
        'name: "m" base_path: "/m" model_type: TENSORFLOW model_platform: "tensorflow"')
    assert invalid(parse_model_server_config, both) == (
        "Illegal setting both ModelServerConfig::model_type (deprecated) and "
        "ModelServerConfig::model_platform.")
    other = one_model('name: "m" base_path: "/m" model_type: OTHER')
    assert invalid(parse_model_server_config, other) == (
        "ModelServerConfig::model_type choice 2 not supported.")


def test_custom_model_config_and_an_unset_config_are_not_supported():
    expected = ("ServerModelConfig type not supported by HandleReloadConfigRequest. "
                "Only ModelConfigList is currently supported")
    text = 'custom_model_config { type_url: "type.googleapis.com/x.Y" }'
    assert invalid(parse_model_server_config, text) == expected
    empty = model_server_config_pb2.ModelServerConfig()
    assert invalid(model_configs_from_proto, empty) == expected


def test_relative_base_paths_are_rejected_without_a_base_dir():
    text = one_model('name: "m" base_path: "models/m" model_platform: "tensorflow"')
    assert invalid(parse_model_server_config, text) == (
        "Expected model m to have an absolute path or URI; got base_path()=models/m")
    empty = one_model('name: "e" model_platform: "tensorflow"')
    assert invalid(parse_model_server_config, empty, base_dir="/srv") == (
        "Expected model e to have an absolute path or URI; got base_path()=")


def test_relative_base_paths_resolve_against_base_dir(tmp_path):
    text = one_model('name: "m" base_path: "../models/m" model_platform: "tensorflow"')
    (model,) = parse_model_server_config(text, base_dir=str(tmp_path / "conf"))
    assert model.base_path == str(tmp_path / "models" / "m")
    (relative_dir,) = parse_model_server_config(text, base_dir="conf")
    assert relative_dir.base_path == os.path.join(os.getcwd(), "models", "m")


def test_load_resolves_relative_paths_against_the_config_files_folder(tmp_path):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "models.config"
    path.write_text(one_model('name: "m" base_path: "export/m" model_platform: "tensorflow"'))
    (model,) = load_model_server_config(str(path))
    assert model.base_path == str(tmp_path / "conf" / "export" / "m")


def test_validation_order_names_then_paths_then_platforms():
    dup_and_relative = ('model_config_list { config { name: "m" base_path: "rel" }'
                        ' config { name: "m" base_path: "/b" } }')
    assert "multiple times" in invalid(parse_model_server_config, dup_and_relative)
    relative_and_no_platform = ('model_config_list { config { name: "a" base_path: "/a" }'
                                ' config { name: "b" base_path: "rel" '
                                'model_platform: "tensorflow" } }')
    assert "absolute path" in invalid(parse_model_server_config, relative_and_no_platform)


def test_model_configs_from_proto_serves_the_reload_rpc():
    proto = model_server_config_pb2.ModelServerConfig()
    entry = proto.model_config_list.config.add(name="m", base_path="/m",
                                               model_platform="tensorflow")
    entry.version_labels["stable"] = 3
    assert model_configs_from_proto(proto) == (
        ModelConfig("m", "/m", version_labels={"stable": 3}),)


# --- files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("load", [load_model_server_config, load_batching_parameters,
                                  load_monitoring_config])
def test_missing_file_is_not_found_naming_it(load, tmp_path):
    path = tmp_path / "missing.config"
    with pytest.raises(ServingError) as info:
        load(path)
    assert info.value.code == StatusCode.NOT_FOUND
    assert str(path) in info.value.message


def test_unreadable_files_name_the_path(tmp_path):
    with pytest.raises(ServingError) as info:
        load_model_server_config(tmp_path)
    assert str(tmp_path) in info.value.message
    binary = tmp_path / "models.config"
    binary.write_bytes(b"\xff\xfe\x00")
    assert str(binary) in invalid(load_model_server_config, binary)


def test_empty_file_loads_as_none(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("")
    assert load_model_server_config(path) is None


# --- writing --------------------------------------------------------------------------------------


def test_to_text_round_trips_the_spec_example():
    models = parse_model_server_config(SPEC_EXAMPLE)
    text = model_server_config_to_text(models)
    assert parse_model_server_config(text) == models
    assert 'version_labels {\n      key: "canary"' in text  # labels sorted by name
    assert "latest" not in text.split('name: "two"')[0]  # the default policy is left out


def test_to_text_of_no_models_is_an_empty_list():
    text = model_server_config_to_text(())
    assert parse_model_server_config(text) == ()


def test_to_proto_equals_the_parsed_proto():
    from google.protobuf import text_format
    models = parse_model_server_config(SPEC_EXAMPLE)
    parsed = text_format.Parse(model_server_config_to_text(models),
                               model_server_config_pb2.ModelServerConfig())
    assert model_server_config_to_proto(models) == parsed


names = st.text("abcdefghijklmnopqrstuvwxyz_0123456789-", min_size=1, max_size=12)
policies = st.one_of(
    st.integers(1, 5).map(VersionPolicy.latest),
    st.just(VersionPolicy.all()),
    st.lists(st.integers(0, 2**40), max_size=4).map(lambda v: VersionPolicy.specific(*v)))
model_configs = st.builds(
    ModelConfig, name=names,
    base_path=st.one_of(names.map(lambda n: "/models/" + n), names.map(lambda n: "s3://b/" + n),
                        st.text(min_size=1, max_size=10).map(lambda n: "/x/" + n)),
    version_policy=policies,
    version_labels=st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 2**40),
                                   max_size=3))


@settings(max_examples=60, deadline=None)
@given(st.lists(model_configs, max_size=4, unique_by=lambda m: m.name))
def test_property_to_text_then_parse_is_identity(models):
    assert parse_model_server_config(model_server_config_to_text(models)) == tuple(models)


# --- BatchingParameters ---------------------------------------------------------------------------

SPEC_BATCHING = """
max_batch_size { value: 32 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 4 }
allowed_batch_sizes: 8
allowed_batch_sizes: 32
pad_variable_length_inputs: true
"""


def test_spec_batching_example():
    assert parse_batching_parameters(SPEC_BATCHING) == BatchingOptions(
        max_batch_size=32, batch_timeout_micros=2000, max_enqueued_batches=100, num_batch_threads=4,
        allowed_batch_sizes=(8, 32), pad_variable_length_inputs=True)


def test_omitted_batching_fields_keep_the_defaults():
    assert parse_batching_parameters("") == BatchingOptions()
    assert parse_batching_parameters("max_batch_size: < value: 7 >") == BatchingOptions(
        max_batch_size=7)


def test_fields_batching_options_lacks_are_accepted():
    text = ('max_batch_size { value: 64 } thread_pool_name { value: "pool" }\n'
            "enable_large_batch_splitting { value: true } max_execution_batch_size { value: 16 }\n"
            "allowed_batch_sizes: [4, 16]")
    options = parse_batching_parameters(text)
    assert options.max_batch_size == 64 and options.allowed_batch_sizes == (4, 16)


def test_last_allowed_batch_size_must_match_max_batch_size():
    text = "max_batch_size { value: 128 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 64"
    assert invalid(parse_batching_parameters, text) == (
        "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 64; "
        "expected 128")
    default_max = "allowed_batch_sizes: 8"
    assert invalid(parse_batching_parameters, default_max).endswith(
        "last entry was 8; expected 1000")
    splitting = ("max_batch_size { value: 64 } enable_large_batch_splitting { value: true }\n"
                 "max_execution_batch_size { value: 16 } allowed_batch_sizes: [4, 64]")
    assert invalid(parse_batching_parameters, splitting).endswith("last entry was 64; expected 16")


@pytest.mark.parametrize("sizes", ["[8, 8]", "[16, 8]", "[0, 8]", "[-4, 8]"])
def test_allowed_batch_sizes_must_increase_from_a_positive_size(sizes):
    text = f"max_batch_size {{ value: 8 }} allowed_batch_sizes: {sizes}"
    assert invalid(parse_batching_parameters, text) == (
        "allowed_batch_sizes entries must be monotonically increasing")


@pytest.mark.parametrize("field, value, expected", [
    ("max_batch_size", 0, "max_batch_size must be positive; was 0"),
    ("max_batch_size", -3, "max_batch_size must be positive; was -3"),
    ("num_batch_threads", 0, "num_batch_threads must be positive; was 0"),
    ("max_enqueued_batches", 0, "max_enqueued_batches must be positive; was 0"),
    ("batch_timeout_micros", -1, "batch_timeout_micros must be non-negative; was -1"),
    ("max_execution_batch_size", 0, "max_execution_batch_size must be positive; was 0"),
])
def test_batching_values_must_be_in_range(field, value, expected):
    assert invalid(parse_batching_parameters, f"{field} {{ value: {value} }}") == expected


@pytest.mark.parametrize("text, line, detail", [
    ("max_batch_size: 128", 1, "Expected"),  # wrapped fields need { value: N }
    ("\nmax_batch_size { value: 1 }\nmax_batch_sise { value: 1 }", 3,
     'no field named "max_batch_sise"'),
    ("allowed_batch_sizes: 1.5", 1, "integer"),
])
def test_batching_parse_errors(text, line, detail):
    message = invalid(parse_batching_parameters, text, source="batch.txt")
    prefix = ("Error parsing text-format tensorflow.serving.BatchingParameters from batch.txt: "
              f"line {line}, ")
    assert message.startswith(prefix), message
    assert detail in message


# --- MonitoringConfig -----------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ('prometheus_config { enable: true path: "/metrics" }', (True, "/metrics")),
    ("prometheus_config { enable: true }", (True, "/monitoring/prometheus/metrics")),
    ('prometheus_config { enable: true path: "" }', (True, "/monitoring/prometheus/metrics")),
    ("prometheus_config { enable: false }", (False, "/monitoring/prometheus/metrics")),
    ("", (False, "/monitoring/prometheus/metrics")),
])
def test_monitoring_config(text, expected):
    assert parse_monitoring_config(text) == expected


def test_monitoring_parse_error():
    text = "prometheus_config {\n  enabled: true\n}"
    message = invalid(parse_monitoring_config, text, source="m.txt")
    assert message.startswith("Error parsing text-format tensorflow.serving.MonitoringConfig from "
                              "m.txt: line 2, column 3: ")


def test_config_file_does_not_import_tensorflow():
    import subprocess
    import sys
    code = "import sys, nbserve.config_file; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert config_file.DEFAULT_PROMETHEUS_PATH == "/monitoring/prometheus/metrics"


def test_an_invalid_escape_in_a_string_is_a_parse_error_not_a_warning():
    text = 'model_config_list { config { name: "a\\e" base_path: "/m" } }'
    with pytest.raises(ServingError) as err:
        parse_model_server_config(text, source="x.config", base_dir="/")
    assert err.value.code == StatusCode.INVALID_ARGUMENT
    assert "x.config" in err.value.message and "invalid escape sequence" in err.value.message
