"""Plain functions as rewards: `--reward FILE.py:fn[:k=v][*w]` and `--reward package.module:fn`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import inline_plugin

from raftkit.cli import main
from raftkit.rewards import RegistryError, RewardSpec, RewardStack, refs, reward

REWARDS = '''
def closeness(completions, *, target: int = 5, **kwargs):
    """1.0 at the target length."""
    return [1.0 / (1 + abs(len(c) - target)) for c in completions]

VALUE = 3
'''

# Straight from TRL's GRPOTrainer documentation, unchanged.
TRL_FILE = '''
import re

def reward_len(completions, **kwargs):
    return [-abs(20 - len(completion)) for completion in completions]

def format_reward_func(completions, **kwargs):
    """Reward function that checks if the completion has a specific format."""
    pattern = r"^<think>.*?</think><answer>.*?</answer>$"
    matches = [re.match(pattern, content) for content in completions]
    return [1.0 if match else 0.0 for match in matches]
'''


def _score(*args: str, rows: list[dict]) -> list[dict]:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    result = CliRunner().invoke(main, ["score", *args, "--input", "-", "--json"], input=text)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_a_reward_file_through_raftkit_score(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(REWARDS)
    rows = _score("-r", f"{path}:closeness:target=2*3", "--filter", "stray_hash",
                  rows=[{"prompt": "p", "completion": "ab"}, {"prompt": "p", "completion": "abcd"}])
    assert [r["closeness"] for r in rows] == [1.0, pytest.approx(1 / 3)]  # logged by the function's name
    assert rows[0]["total"] == 3.0


def test_a_trl_reward_file_is_used_unchanged(tmp_path):
    path = tmp_path / "trl_rewards.py"
    path.write_text(TRL_FILE)
    rows = _score("-r", f"{path}:reward_len", "-r", f"{path}:format_reward_func",
                  rows=[{"prompt": "p", "completion": "<think>x</think><answer>4</answer>"}])
    assert rows[0]["reward_len"] == -abs(20 - 34)
    assert rows[0]["format_reward_func"] == 1.0


def test_a_relative_path_and_a_dotted_module(tmp_path, monkeypatch):
    pkg = tmp_path / "proj_rewards_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "rules.py").write_text(REWARDS)
    (tmp_path / "local.py").write_text(REWARDS)
    monkeypatch.chdir(tmp_path)
    stack = RewardStack.build(["proj_rewards_pkg.rules:closeness:target=1", "./local.py:closeness"], [])
    # The same function name twice: labels fall back to the whole spec to keep the keys apart.
    assert [e.label for e in stack.entries] == ["proj_rewards_pkg.rules:closeness:target=1",
                                                 "./local.py:closeness"]
    assert stack.score(["p"], ["a"]).total == [1.0 + 1 / 5]


@pytest.mark.parametrize(("spec", "message"), [
    ("{d}/missing.py:fn", "{d}/missing.py: no such file"),
    ("{d}/r.py:nope", "--reward {d}/r.py:nope: {d}/r.py has no function 'nope' (functions there: closeness)"),
    ("{d}/r.py:VALUE", "'VALUE' in {d}/r.py is not a function (int)"),
    ("{d}/broken.py:fn", "--reward {d}/broken.py:fn: importing {d}/broken.py failed: ZeroDivisionError"),
    ("raftkit_no_such_module.sub:fn", "--reward raftkit_no_such_module.sub:fn: no module named"),
    ("{d}/r.py:closeness:target=far", "reward '{d}/r.py:closeness': parameter 'target' expects int"),
    ("{d}/r.py:closeness:size=3", "reward '{d}/r.py:closeness' has no parameter 'size' (parameters: target)"),
    ("{d}/r.py", "name it: '{d}/r.py:FUNCTION'"),
])
def test_errors_name_the_file_and_the_function(tmp_path, spec, message):
    (tmp_path / "r.py").write_text(REWARDS)
    (tmp_path / "broken.py").write_text("x = 1 / 0\n")
    with pytest.raises(RegistryError) as info:
        RewardStack.build([spec.format(d=tmp_path)], [])
    assert message.format(d=tmp_path) in str(info.value)


def test_the_reference_rule_and_qualified_plugin_names():
    assert refs.is_reference("rewards.py:fn")
    assert refs.is_reference("dir/rewards:fn")
    assert refs.is_reference("my_pkg.rewards:fn")
    assert not refs.is_reference("raftkit-shout:shout")  # a plugin label
    assert not refs.is_reference("emoji")
    spec = RewardSpec.parse("a/b.py:fn:k=1,j=x:y*2")
    assert (spec.name, spec.params, spec.weight) == ("a/b.py:fn", {"k": "1", "j": "x:y"}, 2.0)

    @reward(name="refs_probe")
    def probe(completions, **kwargs):
        return [1.0] * len(completions)

    with inline_plugin(probe, name="refs-probe-plugin"):
        stack = RewardStack.build(["refs-probe-plugin:refs_probe"], [])
    assert stack.entries[0].info.fn is probe


def test_a_function_object_resolves_to_itself_without_rerunning_its_file():
    def local_reward(completions, **kwargs):
        return [0.5] * len(completions)

    ref = refs.register(local_reward)
    assert ref.endswith("test_reward_refs.py:local_reward")
    stack = RewardStack.build([ref], [])
    assert stack.entries[0].info.fn is local_reward and stack.entries[0].label == "local_reward"
    with pytest.raises(RegistryError, match="give it a name"):
        refs.register(lambda completions, **kw: [0.0])


def test_a_file_shared_by_two_specs_runs_once(tmp_path):
    path = tmp_path / "counted.py"
    path.write_text(textwrap.dedent('''
        import builtins
        builtins.raftkit_refs_loads = getattr(builtins, "raftkit_refs_loads", 0) + 1
        def a(completions, **kwargs):
            return [1.0] * len(completions)
        def b(completions, **kwargs):
            return [2.0] * len(completions)
    '''))
    import builtins

    RewardStack.build([f"{path}:a", f"{path}:b"], [])
    RewardStack.build([f"{path}:a"], [])
    assert builtins.raftkit_refs_loads == 1
    del builtins.raftkit_refs_loads


# --------------------------------------------------------------------------- objects and factories


class Overlong:
    """A callable reward object, as trl.rewards builds them: -1 past ``limit`` tokens, else 0."""

    __name__ = "overlong_reward"  # what TRL logs it under

    def __init__(self, limit: int, penalty: float = -1.0):
        self.limit, self.penalty = limit, penalty

    def __call__(self, completion_ids, **kwargs):
        return [self.penalty if len(ids) > self.limit else 0.0 for ids in completion_ids]


class Opaque:
    def __init__(self):
        self.lookup = {1: object()}  # no JSON: cannot be written to config.yaml

    def __call__(self, completions, **kwargs):
        return [0.0] * len(completions)


def make_scaled(factor: float):
    """A factory returning a closure: usable in this process, not recordable."""
    def scaled(completions, **kwargs):
        return [factor * len(c) for c in completions]
    return scaled


def test_callable_objects_are_recorded_by_class_and_arguments():
    short, long = Overlong(2), Overlong(5, penalty=-2.0)
    specs = [refs.register(short, resumable=True), refs.register(long, resumable=True)]
    name = specs[0]["name"]  # this test module is no package: named by its file
    assert name == f"{Path(__file__).resolve()}:Overlong"
    assert specs == [{"name": name, "params": {"limit": 2, "penalty": -1.0}},
                     {"name": name, "params": {"limit": 5, "penalty": -2.0}}]
    # What a later process reads from config.yaml: the class is imported, the object built again.
    refs._live.clear()
    stack = RewardStack.build(specs, [])
    ids = [[1, 2, 3], [1, 2, 3, 4, 5, 6]]
    scores = stack.score(["p", "p"], ["abc", "abcdef"], completion_ids=ids)
    assert list(scores.rewards.values()) == [[-1.0, -1.0], [0.0, -2.0]]  # two rewards, apart
    # Logged under TRL's name for them, told apart by their arguments.
    assert list(scores.rewards) == ["overlong_reward:limit=2,penalty=-1.0",
                                    "overlong_reward:limit=5,penalty=-2.0"]
    # One instance: logged under the name TRL gives it.
    assert RewardStack.build([specs[0]], []).entries[0].label == "overlong_reward"


def test_a_factory_reference_takes_its_arguments_as_parameters():
    stack = RewardStack.build([f"{__file__}:make_scaled:factor=2"], [])
    assert stack.score(["p"], ["abc"]).total == [6.0]
    assert stack.entries[0].label == "make_scaled"
    with pytest.raises(RegistryError, match="needs parameter\\(s\\) factor"):
        RewardStack.build([f"{__file__}:make_scaled"], [])


def test_what_cannot_be_recorded_is_refused_for_a_run_with_how_to_fix_it():
    closure = make_scaled(2.0)
    with pytest.raises(RegistryError, match=r"'scaled' was made inside make_scaled\(\).*module level"):
        refs.register(closure, resumable=True)
    ref = refs.register(closure)  # scoring in this process needs no record
    assert RewardStack.build([ref], []).score(["p"], ["ab"]).total == [4.0]
    with pytest.raises(RegistryError, match="object Opaque cannot be recorded: its attributes are not plain"):
        refs.register(Opaque(), resumable=True)
    with pytest.raises(RegistryError, match=r"'Overlong\.__call__' is a method bound to an object"):
        refs.register(Overlong(3).__call__, resumable=True)
    with pytest.raises(RegistryError, match="a class defined inside a function"):
        refs.register(type("Local", (Opaque,), {"__qualname__": "f.<locals>.Local"})(), resumable=True)


def near(completions, *, target: int = 5, **kwargs):
    return [float(len(c) == target) for c in completions]


def test_a_partial_is_recorded_as_its_function_and_parameters():
    import functools

    spec = refs.register(functools.partial(near, target=2), resumable=True)
    assert spec == {"name": f"{Path(__file__).resolve()}:near", "params": {"target": 2}}
    assert RewardStack.build([spec], []).score(["p", "p"], ["ab", "abc"]).total == [1.0, 0.0]
    with pytest.raises(RegistryError, match="binds positional arguments"):
        refs.register(functools.partial(near, ["x"]), resumable=True)
