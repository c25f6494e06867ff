"""The plugin registry: discovery, crediting, failures, names, parameters, spec strings."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import Annotated, Literal

import pytest
from conftest import inline_plugin

from raftkit import reward
from raftkit.rewards import RegistryError, RewardSpec, RewardStack, info_for, load_registry, plugin_manager

ROOT = Path(__file__).resolve().parents[1]
BUILTIN_PLUGINS = ("raftkit:rules", "raftkit:filters", "raftkit:neural")




@pytest.fixture
def fresh_plugin_manager():
    """A plugin manager rebuilt for this test (entry points / environment patched), and again after it."""
    plugin_manager.cache_clear()
    yield
    plugin_manager.cache_clear()


# --------------------------------------------------------------------------- discovery


def test_builtins_register_through_entry_points_and_are_credited():
    registry = load_registry()
    assert registry.get("emoji").plugin == "raftkit:rules"
    assert registry.get("stray_hash").plugin == "raftkit:filters"
    assert registry.get("reward_model").plugin == "raftkit:neural"
    assert registry.get("stray_hash").kind == "filter" and registry.get("similarity").kind == "neural"
    assert not registry.failures


def test_inline_plugin_is_registered_then_removed():
    @reward(name="inline_one", description="For the test.")
    def inline_one(completions, **kwargs):
        return [1.0] * len(completions)

    with inline_plugin(inline_one):
        info = load_registry().get("inline_one")
        assert info.plugin == "inline-test" and info.description == "For the test."
    with pytest.raises(RegistryError, match="unknown reward"):
        load_registry().get("inline_one")


def test_plain_trl_function_registers_as_is():
    def reward_len(completions, **kwargs):
        """Closer to 20 characters is better."""
        return [-abs(20 - len(c)) for c in completions]

    with inline_plugin(reward_len):
        info = load_registry().get("reward_len")
    assert (info.kind, info.params, info.description) == ("rule", {}, "Closer to 20 characters is better.")


def test_a_name_taken_twice_is_a_plugin_failure_and_the_first_keeps_it():
    @reward(name="emoji")
    def my_emoji(completions, **kwargs):
        return [0.0] * len(completions)

    with inline_plugin(my_emoji):
        registry = load_registry()
    assert registry.get("emoji").plugin == "raftkit:rules"
    assert "already registered" in registry.failures["inline-test"]


def test_a_plugin_registering_one_name_twice_is_a_failure():
    def twice(completions, **kwargs):
        return [0.0] * len(completions)

    with inline_plugin(twice, twice):
        registry = load_registry()
    assert "twice more than once" in registry.failures["inline-test"]
    assert "twice" not in registry.rewards


def test_unknown_name_lists_available_and_closest():
    with pytest.raises(RegistryError) as err:
        load_registry().get("emoj")
    msg = str(err.value)
    assert "Did you mean 'emoji'?" in msg
    assert "length" in msg and "stray_hash" in msg  # the available names


def test_plugin_whose_hook_raises_is_reported_and_does_not_break_others():
    def broken_hook(register):
        raise RuntimeError("database unreachable")

    with inline_plugin(name="broken-hook", hook=broken_hook):
        registry = load_registry()
    assert registry.failures["broken-hook"] == "RuntimeError: database unreachable"
    assert "emoji" in registry.rewards  # the others still load


def test_unnamed_function_is_a_plugin_failure():
    with inline_plugin(lambda completions, **kw: [0.0] * len(completions), name="lambda-plugin"):
        registry = load_registry()
    assert "give it a name" in registry.failures["lambda-plugin"]


def test_broken_entry_point_is_reported_and_others_load(monkeypatch, fresh_plugin_manager):
    real = importlib.metadata.entry_points(group="raftkit")
    broken = importlib.metadata.EntryPoint(name="broken", value="raftkit_no_such_module_xyz", group="raftkit")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [broken, *real])
    registry = load_registry()
    assert "ModuleNotFoundError" in registry.failures["broken"]
    assert "raftkit_no_such_module_xyz" in registry.failures["broken"]
    assert {"emoji", "stray_hash", "shout"} <= set(registry.rewards)
    with pytest.raises(RegistryError, match="failed to load: broken"):
        registry.get("nope")


@pytest.mark.parametrize(
    ("allow", "present", "absent"),
    [
        ("rules", {"emoji", "length"}, {"stray_hash", "shout", "similarity"}),
        ("filters,raftkit-shout", {"stray_hash", "shout"}, {"emoji", "similarity"}),
        ("", set(), {"emoji", "stray_hash", "shout"}),
    ],
)
def test_load_plugins_env_restricts_loading(monkeypatch, fresh_plugin_manager, allow, present, absent):
    monkeypatch.setenv("RAFTKIT_LOAD_PLUGINS", allow)
    names = set(load_registry().rewards)
    assert present <= names and not (absent & names)


# --------------------------------------------------------------------------- parameters


def _check_even(value: int) -> None:
    if value % 2:
        raise ValueError("must be even")


@reward(name="typed")
def typed(
    completions,
    *,
    size: int = 3,
    scale: float = 0.5,
    loud: bool = False,
    mode: Literal["a", "b"] = "a",
    even: Annotated[int, _check_even] = 2,
    label: str | None = None,
    needed: str,
    **kwargs,
):
    return [0.0] * len(completions)


def test_declared_parameters_and_their_types():
    params = info_for(typed).params
    assert list(params) == ["size", "scale", "loud", "mode", "even", "label", "needed"]
    assert params["needed"].required and not params["size"].required
    assert params["mode"].type_name == "a|b" and params["even"].type_name == "int"
    assert (
        params["size"].describe() == "size: int = 3"
        and params["needed"].describe() == "needed: str (required)"
    )


def test_contract_arguments_are_not_parameters():
    def f(completions, *, completion_ids=None, trainer_state=None, n: int = 2, **kwargs):
        return [0.0] * len(completions)

    assert list(info_for(f).params) == ["n"]


def test_parameters_parse_from_cli_strings():
    got = info_for(typed).parse_params(
        {
            "size": "7",
            "scale": "1e-2",
            "loud": "yes",
            "mode": "b",
            "even": "4",
            "label": "none",
            "needed": "x",
        }
    )
    assert got == {
        "size": 7,
        "scale": 0.01,
        "loud": True,
        "mode": "b",
        "even": 4,
        "label": None,
        "needed": "x",
    }


def test_parameters_from_config_values_keep_their_types():
    got = info_for(typed).parse_params({"size": 7, "scale": 2, "loud": False, "needed": "x"})
    assert got == {"size": 7, "scale": 2.0, "loud": False, "needed": "x"}
    assert isinstance(got["scale"], float)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"size": "three", "needed": "x"}, r"'size' expects int, got 'three'"),
        ({"size": 2.5, "needed": "x"}, r"'size' expects int.*whole number"),
        ({"loud": "maybe", "needed": "x"}, r"'loud' expects bool.*true or false"),
        ({"mode": "c", "needed": "x"}, r"'mode' expects a\|b.*choose one of a, b"),
        ({"even": "3", "needed": "x"}, r"'even' = '3' is not valid: must be even"),
        ({"sise": "3", "needed": "x"}, r"no parameter 'sise' \(parameters: size, scale"),
        ({}, r"needs parameter\(s\) needed: str \(required\); e\.g\. --reward typed:needed=\.\.\."),
    ],
)
def test_bad_parameters_get_clear_errors(raw, message):
    with pytest.raises(RegistryError, match=message):
        info_for(typed).parse_params(raw)


def test_builtin_parameters_validated_when_the_stack_is_built():
    with pytest.raises(RegistryError, match=r"reward 'format': parameter 'pattern'.*not a regular expr"):
        RewardStack.build(["format:pattern=(unclosed"])
    with pytest.raises(RegistryError, match="reward_model' needs parameter"):
        RewardStack.build(["reward_model"])
    with pytest.raises(RegistryError, match="'stray_hash' is a filter: pass it with --filter"):
        RewardStack.build(["stray_hash"])
    with pytest.raises(RegistryError, match="'emoji' is a reward, not a filter"):
        RewardStack.build([], ["emoji"])
    with pytest.raises(RegistryError, match="action must be penalty or drop"):
        RewardStack.build([], ["stray_hash:action=ignore"])


# --------------------------------------------------------------------------- spec strings


@pytest.mark.parametrize(
    ("text", "name", "params", "weight"),
    [
        ("emoji", "emoji", {}, 1.0),
        ("length:target=30,alpha=0.15", "length", {"target": "30", "alpha": "0.15"}, 1.0),
        ("emoji:max=4*2", "emoji", {"max": "4"}, 2.0),
        ("repetition*-0.5", "repetition", {}, -0.5),
        ("length * 1e-1", "length", {}, 0.1),
        ("keyword:words=paris,france,lyon", "keyword", {"words": "paris,france,lyon"}, 1.0),
        ("keyword:words=a|b, whole_words=true", "keyword", {"words": "a|b", "whole_words": "true"}, 1.0),
    ],
)
def test_spec_strings(text, name, params, weight):
    spec = RewardSpec.parse(text)
    assert (spec.name, spec.params, spec.weight) == (name, params, weight)


@pytest.mark.parametrize(
    ("text", "message"), [(":max=3", "missing the reward name"), ("length:=3", "expected key=value")]
)
def test_bad_spec_strings(text, message):
    with pytest.raises(RegistryError, match=message):
        RewardSpec.parse(text)


def test_spec_from_config_mapping():
    spec = RewardSpec.coerce({"name": "length", "params": {"target": 50}, "weight": 0.5})
    assert (spec.name, spec.params, spec.weight) == ("length", {"target": 50}, 0.5)
    assert str(spec) == "length:target=50*0.5"
    with pytest.raises(RegistryError, match="cannot read a reward"):
        RewardSpec.coerce(42)


def test_same_reward_twice_gets_distinct_labels():
    stack = RewardStack.build(["length:target=10", "length:target=50"])
    assert [e.label for e in stack.entries] == ["length:target=10", "length:target=50"]
    assert [e.fn.__name__ for e in stack.entries] == ["length:target=10", "length:target=50"]
    with pytest.raises(RegistryError, match="configured twice"):
        RewardStack.build(["emoji", "emoji*2"])


# --------------------------------------------------------------------------- meta-test


def test_every_builtin_has_a_test_and_a_docs_section():
    """Like datasette's hook meta-test: a built-in without tests or docs fails here."""
    docs = (ROOT / "docs" / "builtins.md").read_text(encoding="utf-8")
    tests = "\n".join(
        (ROOT / "tests" / f).read_text(encoding="utf-8")
        for f in ("test_builtin_rewards.py", "test_filters.py", "test_neural_rewards.py",
                  "test_answer_match.py")
    )
    builtins = [r for r in load_registry().rewards.values() if r.plugin in BUILTIN_PLUGINS]
    assert len(builtins) >= 13
    missing_docs = [r.name for r in builtins if not re.search(rf"^##+ `{r.name}`", docs, re.M)]
    missing_tests = [r.name for r in builtins if not re.search(rf"^def test_{r.name}\w*\(", tests, re.M)]

    def section(name: str) -> str:
        parts = re.split(rf"^##+ `{name}`", docs, maxsplit=1, flags=re.M)
        return re.split(r"\n#{2,} ", parts[-1], maxsplit=1)[0] if len(parts) == 2 else ""

    undocumented_params = [
        f"{r.name}.{p}" for r in builtins for p in r.params if f"`{p}`" not in section(r.name)
    ]
    assert not missing_docs, f"no section in docs/builtins.md for {missing_docs}"
    assert not missing_tests, f"no test_<name> test for {missing_tests}"
    assert not undocumented_params, f"parameters missing from docs/builtins.md: {undocumented_params}"


def test_every_hook_is_documented_for_plugin_authors():
    from pathlib import Path

    from raftkit.rewards import hookspecs

    hooks = [name for name, fn in vars(hookspecs).items()
             if callable(fn) and hasattr(fn, "raftkit_spec")]
    assert hooks, "no hook specifications found"
    text = (Path(__file__).parents[1] / "docs" / "writing-plugins.md").read_text(encoding="utf-8")
    assert [h for h in hooks if f"{h}(" not in text] == []
