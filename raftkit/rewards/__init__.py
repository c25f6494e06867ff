"""Rewards: the contract, the plugin registry and the one scoring path every algorithm shares.

- ``stack``: the reward contract and ``RewardStack``, which scores a batch with the configured rewards
  and filters (``RewardSpec`` parses a spec, ``Scores`` is what comes back);
- ``info``: what a reward function declares (``@reward``, ``@filter``, typed parameters);
- ``registry``, ``hookspecs``: which rewards the installed plugins register (entry points, pluggy hooks);
- ``refs``: plain functions as rewards (``--reward file.py:fn``, ``--reward package.module:fn``);
- ``filter_ranking``: where a filter hit puts a sample's total;
- ``builtin``: the built-in rewards and filters, registered by entry point like any plugin's.

A plugin needs only this package: ``from raftkit.rewards import Ge, completion_text, hookimpl, reward``.
"""

from raftkit.rewards.hookspecs import hookimpl
from raftkit.rewards.info import (
    ALLOW_NON_FINITE,
    CONTRACT_KWARGS,
    Ge,
    Gt,
    Le,
    Lt,
    Param,
    RegistryError,
    RewardInfo,
    filter,
    info_for,
    reward,
)
from raftkit.rewards.registry import Registry, load_registry, plugin_manager
from raftkit.rewards.stack import (
    DEFAULT_TIMEOUT,
    STACK_ARGUMENTS,
    RewardError,
    RewardSpec,
    RewardStack,
    Scores,
    completion_text,
)

__all__ = [
    "ALLOW_NON_FINITE",
    "CONTRACT_KWARGS",
    "DEFAULT_TIMEOUT",
    "STACK_ARGUMENTS",
    "Ge",
    "Gt",
    "Le",
    "Lt",
    "Param",
    "Registry",
    "RegistryError",
    "RewardError",
    "RewardInfo",
    "RewardSpec",
    "RewardStack",
    "Scores",
    "completion_text",
    "filter",
    "hookimpl",
    "info_for",
    "load_registry",
    "plugin_manager",
    "reward",
]
