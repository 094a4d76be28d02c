"""Per-model configuration: server flags as defaults, config.json over them, version policies."""

import json
from pathlib import Path

import pytest

from service.contract import InputLimits
from service.errors import InvalidModelConfigError
from service.model_config import ModelConfig, ServingOptions, VersionPolicy, read_model_config
from service.settings import ServeSettings


@pytest.fixture
def settings(tmp_path: Path) -> ServeSettings:
    return ServeSettings(model_repository=tmp_path, max_batch_size=32, max_delay_ms=2.0, threads=1,
                         allow_non_finite=True)


def test_server_flags_are_the_defaults_of_every_model(settings: ServeSettings) -> None:
    config = ModelConfig.for_model(settings)
    assert (config.max_batch_size, config.max_delay_ms, config.threads) == (32, 2.0, 1)
    assert config.limits == InputLimits(max_batch_size=32, allow_non_finite=True)
    assert config.version_policy == VersionPolicy(latest=1)
    assert config.warmup_sizes == (1, 32)
    assert set(ServingOptions.model_fields) <= set(ServeSettings.model_fields)  # one declaration


def test_config_file_wins_for_its_model(settings: ServeSettings, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"max_batch_size": 8, "instances": 2, "warmup": [4],
                                "version_policy": {"specific": [1, 3]}, "default_version": 3}))
    config = read_model_config(path, settings)
    assert (config.max_batch_size, config.instances, config.warmup_sizes) == (8, 2, (4,))
    assert config.max_delay_ms == 2.0  # not in the file: the server's flag
    assert config.limits.max_batch_size == 8
    assert config.default_version == 3
    assert config.public()["version_policy"] == {"specific": [1, 3]}


def test_missing_config_file_means_server_defaults(settings: ServeSettings, tmp_path: Path) -> None:
    assert read_model_config(tmp_path / "config.json", settings) == ModelConfig.for_model(settings)


def test_override_replaces_the_file(settings: ServeSettings, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"max_batch_size": 8}))
    assert read_model_config(path, settings, override={"instances": 3}).max_batch_size == 32


@pytest.mark.parametrize(("values", "fragments"), [
    ({"max_batch_sise": 8}, ["max_batch_sise", "Extra inputs are not permitted"]),
    ({"max_batch_size": 0, "instances": "many"}, ["max_batch_size", "instances"]),
    ({"version_policy": {"latest": 1, "all": True}}, ['exactly one of "latest", "all", "specific"']),
    ({"version_policy": {"newest": 2}}, ["newest"]),
    ({"version_policy": {"all": False}}, ["version_policy.all"]),
    ({"warmup": [1, 64]}, ["warmup batch sizes must be between 1 and max_batch_size 32", "[64]"]),
    ({"device": "tpu"}, ["device"]),
    ({"labels": {"a/b": 1}}, ["labels.a/b", "String should match pattern"]),
    ({"labels": {"prod": 0}}, ["labels.prod", "greater than or equal to 1"]),
    ({"labels": {"prod": "2"}, "default_version": 1}, ["labels.prod", "valid integer", "'2'"]),
    ({"labels": {"prod": True}}, ["labels.prod", "valid integer"]),
    ({"labels": {"prod": 1.5}}, ["labels.prod", "valid integer"]),
    ({"labels": ["stable"]}, ["labels", "valid dictionary"]),
])
def test_bad_config_lists_every_problem(settings: ServeSettings, values: dict, fragments: list[str]) -> None:
    with pytest.raises(InvalidModelConfigError) as info:
        ModelConfig.for_model(settings, values)
    assert info.value.status_code == 400
    for fragment in fragments:
        assert fragment in info.value.message


def test_labels_map_names_to_versions_and_are_shown(settings: ServeSettings) -> None:
    config = ModelConfig.for_model(settings, {"labels": {"stable": 1, "canary-2": 2, "prod_3": 3}})
    assert config.labels == {"stable": 1, "canary-2": 2, "prod_3": 3}
    assert config.public()["labels"] == {"stable": 1, "canary-2": 2, "prod_3": 3}
    assert "labels" not in ModelConfig.for_model(settings).public()  # none configured: not shown


def test_config_file_that_is_not_json_is_refused(settings: ServeSettings, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{max_batch_size: 8")
    with pytest.raises(InvalidModelConfigError, match="not readable JSON"):
        read_model_config(path, settings)
    path.write_text("[1, 2]")
    with pytest.raises(InvalidModelConfigError, match="expected a JSON object, received list"):
        read_model_config(path, settings)


@pytest.mark.parametrize(("policy", "expected"), [
    ({"latest": 1}, ["10"]),
    ({"latest": 2}, ["3", "10"]),
    ({"latest": 9}, ["1", "3", "10"]),
    ({"all": True}, ["1", "3", "10"]),
    ({"specific": [3, 1, 7]}, ["1", "3"]),
])
def test_version_policy_selects_numerically(policy: dict, expected: list[str]) -> None:
    assert VersionPolicy.model_validate(policy).select(["10", "3", "1"]) == expected
