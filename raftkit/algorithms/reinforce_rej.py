"""Reinforce-Rej (Xiong et al. 2025, "A Minimalist Approach to LLM Reasoning", arXiv 2504.11343).

REINFORCE with the group mean as baseline, ``A = r - mean(group)`` (no std scaling), and *rejection* of
every prompt whose samples all scored the same: such a group has no signal, and unlike GRPO (which keeps
it with advantage 0 in the loss's normaliser, diluting the others) Reinforce-Rej leaves it out of the batch
entirely. The paper finds this matches GRPO on math reasoning; the filtering, not the std, does the work.
The update is the shared clipped policy-gradient step (``policy_gradient``) with no KL term by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from raftkit.algorithms.grpo import GRPO, GRPOConfig
from raftkit.algorithms.policy_gradient import Targets
from raftkit.rewards import Scores
from raftkit.rollouts import Batch, Rollout


@dataclass
class ReinforceRejConfig(GRPOConfig):
    """Reinforce-Rej's settings: GRPO's, with no std scaling and no KL term by default."""

    beta: float = 0.0
    """KL weight towards the starting model (k3 estimator per token); 0 skips the reference model."""
    scale_rewards: Literal["group", "batch", "none"] = "none"
    """Advantage scaling: divide by the group's reward std, the batch's, or not at all (Dr. GRPO)."""
    # GRPO's sampling and update defaults were measured for GRPO; Reinforce-Rej keeps the ones it was
    # measured with (docs/algorithms.md). The help texts are GRPOConfig's.
    mini_batches: int = 1
    warmup_ratio: float = 0.0
    explore_prefill: bool = False
    truncated_neutral: bool = False


class ReinforceRej(GRPO):
    """Reinforce-Rej: group-mean baseline, prompts whose samples all tie rejected from the batch."""

    name = "reinforce_rej"
    Config = ReinforceRejConfig
    default_lr = 1e-5
    default_prompts = 16

    def targets(self, batch: Batch, rollouts: list[Rollout], scores: Scores) -> Targets:
        target = super().targets(batch, rollouts, scores)
        rejected = tied_prompts(rollouts, scores, self.misses(batch, rollouts, scores))
        target.in_loss = [i for i in target.in_loss if rollouts[i].prompt_index not in rejected]
        # The normaliser counts only the prompts kept: the rejected ones are not part of the batch.
        target.sequences = sum(rollouts[i].prompt_index not in rejected for i in range(len(rollouts)))
        target.metrics["rejected_prompts"] = float(len(rejected))
        return target


def tied_prompts(rollouts: list[Rollout], scores: Scores, misses: list[bool] | None = None) -> set[int]:
    """Prompts whose scorable samples all have the same total (or fewer than two such samples). With
    ``misses`` (the answer gate's: True where a sample lost its prompt's answer), samples tie only when
    they also agree on keeping the answer, since the gate gives those that keep it the advantage.

    >>> from raftkit.rewards import Scores
    >>> rs = [Rollout(p, "x", "", [], []) for p in (0, 0, 1, 1)]
    >>> scores = Scores({"r": [1.0, 1.0, 0.0, 1.0]}, {"r": 1.0}, {}, [1, 1, 0, 1], [False] * 4)
    >>> sorted(tied_prompts(rs, scores)), sorted(tied_prompts(rs, scores, [False, True, False, False]))
    ([0], [])
    """
    totals: dict[int, set[tuple[float, bool]]] = {}
    counts: dict[int, int] = {}
    unscorable = scores.unscorable
    for i, r in enumerate(rollouts):
        totals.setdefault(r.prompt_index, set())
        counts.setdefault(r.prompt_index, 0)
        if not scores.dropped[i] and not unscorable[i]:
            totals[r.prompt_index].add((scores.total[i], bool(misses and misses[i])))
            counts[r.prompt_index] += 1
    return {p for p, values in totals.items() if len(values) <= 1 or counts[p] < 2}
