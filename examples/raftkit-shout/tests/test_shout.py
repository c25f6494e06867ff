"""The example plugin's own tests: the reward itself, and that raftkit finds it through its entry point."""

import math

import pytest

from raftkit import RewardStack, load_registry
from raftkit.rewards import RegistryError
from raftkit_shout import shout


def test_caps_share_of_upper_case_letters():
    # "HELLO there": 5 of 10 letters are upper case; digits and spaces do not count.
    assert shout(["HELLO there", "quiet 123", "ABC!"]) == [0.5, 0.0, 1.0]


def test_caps_does_not_apply_without_cased_letters():
    assert shout(["日本語です", "", "123"]) == [None, None, None]


def test_bang_mode_is_capped():
    assert shout(["Wow!", "Wow!!!!!!", "すごい！！"], mode="bang", max_bangs=2) == [0.5, 1.0, 1.0]


def test_chat_completions():
    assert shout([[{"role": "assistant", "content": "LOUD"}]]) == [1.0]


def test_registered_through_the_entry_point():
    info = load_registry().get("shout")
    assert info.plugin.split(":")[0] == "raftkit-shout"
    assert info.params["mode"].default == "caps" and info.params["max_bangs"].type is int


def test_parameters_are_validated():
    with pytest.raises(RegistryError, match="mode"):
        RewardStack.build(["shout:mode=whisper"])


def test_in_a_stack_none_is_left_out_of_the_total():
    scores = RewardStack.build(["shout*2", "length:target=4"]).score(["q", "q"], ["LOUD", "静か"])
    assert scores.rewards["shout"] == [1.0, None]
    assert scores.total == [3.0, pytest.approx(math.exp(-0.3))]  # 2*1 + exp(0); None + exp(-0.15*2)


def test_docstring_examples_hold():
    import doctest

    import raftkit_shout

    result = doctest.testmod(raftkit_shout)
    assert result.failed == 0 and result.attempted > 0
