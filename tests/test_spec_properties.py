"""Property tests (hypothesis) of what users type: the reward spec parser and the config loader either
accept the input or refuse it with a message, never with another exception."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftkit.algorithms.raft import RaftConfig
from raftkit.config import AlignConfig, ConfigError, build, check_keys, load_file
from raftkit.options import fields_of
from raftkit.rewards import RegistryError, RewardSpec

# No example database: the tests stay small and leave nothing behind in the working tree.
SETTINGS = settings(max_examples=100, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Text made mostly of the characters the spec syntax gives a meaning to, so the parser's corners are hit.
SPECIAL = st.sampled_from([":", "=", ",", "*", " ", ".", "-", "e", "1", "nan", "inf", "a", "_", "é", "😊"])
TEXT = st.lists(st.one_of(SPECIAL, st.text(max_size=3)), max_size=8).map("".join)
NAMES = st.one_of(st.sampled_from(["emoji", "length", "pkg:emoji", "raftkit:rules:emoji"]), TEXT)
WEIGHTS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.sampled_from(
    ["abc", "", "1e999", "nan", "-0", "2"]))


def spec_text(name: str, params: dict[str, str], weight: object | None) -> str:
    text = name + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")
    return text + (f"*{weight}" if weight is not None else "")


def check_spec(spec: RewardSpec) -> None:
    """A spec that parsed reads back the same from its own text, with a finite weight."""
    assert isinstance(spec, RewardSpec) and spec.name and math.isfinite(spec.weight)
    assert RewardSpec.parse(str(spec)) == spec


@SETTINGS
@given(NAMES, st.dictionaries(TEXT, TEXT, max_size=3), st.one_of(st.none(), WEIGHTS))
def test_parse_gives_a_spec_that_round_trips_or_a_message(name, params, weight):
    try:
        spec = RewardSpec.parse(spec_text(name, params, weight))
    except (RegistryError, ValueError) as e:
        assert str(e)
        return
    check_spec(spec)


@SETTINGS
@given(TEXT)
def test_parse_of_any_text(text):
    try:
        spec = RewardSpec.parse(text)
    except (RegistryError, ValueError) as e:
        assert str(e)
        return
    check_spec(spec)


YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=6,
)
SPEC_KEYS = st.sampled_from(["name", "params", "weight", "parms", "wieght"])
MAPPINGS = st.dictionaries(st.one_of(SPEC_KEYS, TEXT), YAML_VALUES, max_size=4)


@SETTINGS
@given(st.one_of(MAPPINGS, YAML_VALUES))
def test_coerce_of_a_config_value_gives_a_spec_or_a_message(value):
    try:
        spec = RewardSpec.coerce(value)
    except (RegistryError, ValueError) as e:
        assert str(e)
        return
    assert isinstance(spec, RewardSpec) and math.isfinite(spec.weight)


FIELDS = fields_of(AlignConfig, RaftConfig)
KEYS = st.one_of(st.sampled_from(sorted(FIELDS)), st.sampled_from(["iteratons", "reward", "1"]), TEXT,
                 st.integers())
FIELD_VALUES = st.one_of(YAML_VALUES, st.lists(st.one_of(TEXT, MAPPINGS), max_size=3),
                         st.sampled_from([0, -1, 1e999, float("nan"), "none", "grpo", "raft", "hf"]))


def load_build(text: str, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"c{suffix}"
        path.write_text(text, encoding="utf-8")
        values = load_file(path)
    check_keys(values, FIELDS, str(path))
    cfg = build(AlignConfig, values, str(path))
    assert isinstance(cfg, AlignConfig)
    build(RaftConfig, values, str(path))


@SETTINGS
@given(st.dictionaries(KEYS, FIELD_VALUES, max_size=5))
def test_config_mappings_give_a_config_or_a_config_error(values):
    try:
        load_build(yaml.safe_dump(values, allow_unicode=True), ".yaml")
    except ConfigError as e:
        assert str(e)


@SETTINGS
@given(st.dictionaries(st.sampled_from(sorted(FIELDS)), FIELD_VALUES, max_size=4))
def test_only_known_keys_still_give_a_config_or_a_config_error(values):
    try:
        load_build(yaml.safe_dump(values, allow_unicode=True), ".yaml")
    except ConfigError as e:
        assert str(e)


@SETTINGS
@given(st.text(max_size=60), st.sampled_from([".yaml", ".toml"]))
def test_config_files_of_any_text(text, suffix):
    try:
        load_build(text, suffix)
    except ConfigError as e:
        assert str(e)


@pytest.mark.parametrize("text", ["rewards:\n  - {name: length, weight: .nan}\n",
                                  "rewards:\n  - {name: length, params: target=3}\n"])
def test_examples_from_the_issue(text):
    with pytest.raises(ConfigError, match=r"'rewards'\[0\]: reward 'length'"):
        load_build(text, ".yaml")
