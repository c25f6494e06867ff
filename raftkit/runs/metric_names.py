"""Metric names: TRL's GRPOTrainer names where the quantity is the same, and the one table that reads runs
recorded under raftkit's older names.

Everything that reads a run's metrics (``raftkit inspect``, ``raftkit report``, the Python API, ``--resume``)
passes each record through ``canonical``, so a ``metrics.jsonl`` written before the renames reads exactly like
a new one. Nothing on disk is rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Old name -> new name. A pattern's ``{}`` is the reward's name (it may hold '/' of its own). Where two old
# keys map to one new key the first listed wins: ``policy_mean`` (the policy's own samples) was the honest
# number of a run with exploration hints, and is what the new ``reward`` means.
ALIASES: tuple[tuple[str, str], ...] = (
    ("reward/total/policy_mean", "reward"),
    ("reward/total/mean", "reward"),
    ("reward/total/std", "reward_std"),
    ("reward/total/selected_mean", "selected/reward"),
    ("reward/{}/policy_mean", "rewards/{}/mean"),
    ("reward/{}/mean", "rewards/{}/mean"),
    ("reward/{}/std", "rewards/{}/std"),
    ("reward/{}/selected_mean", "selected/rewards/{}/mean"),
    ("truncated/rate", "completions/clipped_ratio"),
    ("truncated_share", "completions/clipped_ratio"),
    ("length/tokens_mean", "completions/mean_length"),
    ("completion_tokens", "completions/mean_length"),
    ("clip_frac_low", "clip_ratio/low_mean"),
    ("clip_frac_high", "clip_ratio/high_mean"),
    ("clip_frac", "clip_ratio/region_mean"),
    ("lr", "learning_rate"),
    ("zero_adv_groups", "frac_reward_zero_std"),
)

_PATTERNS = [(re.compile("^" + re.escape(old).replace(r"\{\}", "(.+)") + "$"), new) for old, new in ALIASES]


def new_name(key: str) -> str | None:
    """The current name of an old metric key, or None when ``key`` is not an old name.

    >>> new_name("reward/total/mean"), new_name("reward/length:target=10/std"), new_name("kl")
    ('reward', 'rewards/length:target=10/std', None)
    """
    for pattern, new in _PATTERNS:  # the explicit "total" rows come before the per-reward patterns
        if m := pattern.match(key):
            return new.replace("{}", m.group(1)) if m.groups() else new
    return None


def _rank(key: str) -> int:
    """The position of ``key``'s alias row (lower wins when two old keys give one new key)."""
    for i, (pattern, _) in enumerate(_PATTERNS):
        if pattern.match(key):
            return i
    return len(_PATTERNS)


def canonical(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with every old key under its current name, in the record's order. A key already under a
    current name is kept as it is; of two old keys for one new key the one listed first in ALIASES wins."""
    out: dict[str, Any] = {}
    source: dict[str, int] = {}  # new key -> rank of the old key it came from (-1: written under it)
    for key, value in record.items():
        new = new_name(key)
        if new is None:
            out[key], source[key] = value, -1
            continue
        rank = _rank(key)
        if new not in source or rank < source[new]:
            out[new], source[new] = value, rank
    return out


# ---- the reward keys, by (name, statistic); "total" is the weighted total of all rewards

REWARD_STATS = ("mean", "std", "selected_mean", "explore_mean", "explore_std")


def reward_key(name: str, stat: str) -> str:
    """The metric key of one reward statistic (``name`` "total": the weighted total).

    >>> reward_key("total", "mean"), reward_key("emoji", "explore_mean")
    ('reward', 'explore/rewards/emoji/mean')
    """
    if name == "total":
        return {"mean": "reward", "std": "reward_std", "selected_mean": "selected/reward",
                "explore_mean": "explore/reward", "explore_std": "explore/reward_std"}[stat]
    return {"mean": f"rewards/{name}/mean", "std": f"rewards/{name}/std",
            "selected_mean": f"selected/rewards/{name}/mean", "explore_mean": f"explore/rewards/{name}/mean",
            "explore_std": f"explore/rewards/{name}/std"}[stat]


_TOTAL_KEYS = {reward_key("total", s): s for s in REWARD_STATS}
_REWARD_KEY = re.compile(r"^(selected/|explore/)?rewards/(.+)/(mean|std)$")


def parse_reward_key(key: str) -> tuple[str, str] | None:
    """(reward name, statistic) of a reward metric key, or None for any other key.

    >>> parse_reward_key("selected/rewards/a/b/mean"), parse_reward_key("reward_std"), parse_reward_key("kl")
    (('a/b', 'selected_mean'), ('total', 'std'), None)
    """
    if key in _TOTAL_KEYS:
        return "total", _TOTAL_KEYS[key]
    m = _REWARD_KEY.match(key)
    if m is None:
        return None
    where, name, stat = m.groups()
    if where == "selected/":
        return (name, "selected_mean") if stat == "mean" else None
    return name, (f"explore_{stat}" if where == "explore/" else stat)
