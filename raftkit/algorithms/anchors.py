"""Anchors: where RAFT has nothing to imitate, imitate what is closest to the starting model.

RAFT learns only from what it selects. A prompt whose samples all miss the answer or hit a filter
contributes nothing, so nothing holds the model's behaviour there: on the bundled set, the emoji habit
learnt on English questions the model answers reached the Japanese ones it cannot answer, as emoji floods
and loops on top of its Japanese (docs/raft.md). An anchor is such a prompt's clean, unhinted sample with
the smallest log π/π_ref, trained on beside the selected ones: a pull toward the starting model exactly
where the reward gives no direction, made of the policy's own samples.

Anchors are capped at a share of the selected samples: they cost training time, and every anchor also
pulls against what the selected samples teach (the emoji), so the cap sets the balance.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

from raftkit.rollouts import Rollout


def candidates(
    rollouts: Sequence[Rollout], blocked: Sequence[bool], served: Collection[int], limit: int
) -> dict[int, list[int]]:
    """The anchor candidates of at most ``limit`` prompts, in batch order: for each prompt not in
    ``served`` (the prompts that had a sample RAFT could select), the indices of its unhinted samples that
    are not ``blocked`` (dropped or hit by a filter). Hinted samples never anchor: they answer another
    prompt than the one they would be trained on.

    >>> rs = [Rollout(g, "q", "a", [1], [0.0], hinted=h) for g, h in [(0, 0), (0, 1), (1, 0), (1, 0), (2, 0)]]
    >>> candidates(rs, [False, False, True, False, False], served={2}, limit=5)
    {0: [0], 1: [3]}
    """
    if len(rollouts) != len(blocked):
        raise ValueError("rollouts and blocked must have one entry per sample")
    found: dict[int, list[int]] = {}
    for i, r in enumerate(rollouts):
        if r.prompt_index not in served and not r.hinted and not blocked[i]:
            found.setdefault(r.prompt_index, []).append(i)
    return dict(list(found.items())[: max(limit, 0)])


def limit(n_selected: int, share: float) -> int:
    """How many anchors ``share`` allows beside ``n_selected`` selected samples (rounded up; none if none
    were selected: an iteration that imitates nothing else need not hold anything in place).

    >>> limit(11, 0.5), limit(11, 1.0), limit(0, 0.5), limit(11, 0.0)
    (6, 11, 0, 0)
    """
    return math.ceil(n_selected * share - 1e-9)


def pick(found: Mapping[int, Sequence[int]], log_ratios: Mapping[int, float]) -> list[int]:
    """Each prompt's candidate with the smallest log π/π_ref (ties to the earlier sample), ascending.

    >>> pick({0: [0, 1], 3: [6, 7]}, {0: 2.5, 1: -0.5, 6: 0.0, 7: 0.0})
    [1, 6]
    """
    return sorted(min(members, key=lambda i: (log_ratios[i], i)) for members in found.values())
