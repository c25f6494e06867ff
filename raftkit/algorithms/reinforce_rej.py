"""Reinforce-Rej (Xiong et al. 2025, "A Minimalist Approach to LLM Reasoning", arXiv 2504.11343).

REINFORCE on the policy's own samples with *rejection*: every prompt whose samples carry no signal (all
their advantages are 0: the rewards tie, or every sample lost the prompt's answer) leaves the batch
entirely, so unlike GRPO (which keeps such groups in the loss's normaliser, diluting the others) it takes
no share of the step. The advantage is, by default, the authors' (RLHFlow/Minimal-RL,
``compute_reinforce_rej_outcome_advantage``): the raw reward ``A = r`` on groups whose rewards differ;
``advantage: centered`` takes ``A = r - mean(group)`` instead. The paper finds this matches GRPO on math
reasoning; the filtering, not the std, does the work. The update is the shared clipped policy-gradient
step (``policy_gradient``) with no KL term by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

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
    advantage: Literal["reward", "centered"] = "reward"
    """reward: the raw reward r on groups whose rewards differ (the authors' code); centered: r - mean(group).
    Either way a sample that lost its prompt's answer keeps the answer gate's push down."""
    # GRPO's sampling and update defaults were measured for GRPO; Reinforce-Rej keeps the ones it was
    # measured with (docs/algorithms.md). The help texts are GRPOConfig's.
    mini_batches: int = 1
    warmup_ratio: float = 0.0
    explore_prefill: bool = False
    truncated_neutral: bool = False
    explore_hint: str = ""
    """Text appended to the prompt for exploration samples ('auto': built from the rewards); '' (default):
    none, every sample is the policy's own, as the paper's on-policy algorithm."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.advantage not in ("reward", "centered"):
            raise ValueError(f"advantage must be 'reward' or 'centered', got {self.advantage!r}")
        if self.advantage == "reward" and self.scale_rewards != "none":
            raise ValueError(f"scale_rewards {self.scale_rewards!r} divides r - mean(group) by a std: set "
                             "advantage to 'centered' with it (the raw reward is not scaled)")


class ReinforceRej(GRPO):
    """Reinforce-Rej: REINFORCE on the raw (or group-centred) reward; prompts without signal rejected."""

    name = "reinforce_rej"
    Config = ReinforceRejConfig
    default_lr = 1e-5
    default_prompts = 16
    # One learning rate, exploring or not: GRPO's 1e-4 for exploring runs was measured for GRPO's step.
    explore_lr = default_lr

    def group_advantages(self, rewards: Tensor, misses: Tensor, degenerate: Tensor) -> Tensor:
        centred = super().group_advantages(rewards, misses, degenerate)
        if self.config.advantage == "centered":
            return centred
        return raw_reward_advantages(rewards, misses, centred)

    def targets(self, batch: Batch, rollouts: list[Rollout], scores: Scores) -> Targets:
        target = super().targets(batch, rollouts, scores)
        rejected = silent_prompts(rollouts, target.advantages)
        target.in_loss = [i for i in target.in_loss if rollouts[i].prompt_index not in rejected]
        # The normaliser counts only the prompts kept: the rejected ones are not part of the batch.
        target.sequences = sum(rollouts[i].prompt_index not in rejected for i in range(len(rollouts)))
        target.metrics["rejected_prompts"] = float(len(rejected))
        return target


def raw_reward_advantages(rewards: Tensor, misses: Tensor, centred: Tensor) -> Tensor:
    """The authors' advantage for rewards ``[b, k]`` (NaN: outside the group): ``A = r`` in every group with
    signal (its gated, centred advantages ``centred`` are not all 0), 0 elsewhere. A sample that lost its
    prompt's answer (``misses``) keeps its centred advantage (the gate's push down, never up).

    >>> r = torch.tensor([[1.0, -1.0], [1.0, 1.0], [0.5, float("nan")]])
    >>> no = torch.zeros(3, 2, dtype=torch.bool)
    >>> raw_reward_advantages(r, no, torch.tensor([[1.0, -1.0], [0.0, 0.0], [0.0, 0.0]])).tolist()
    [[1.0, -1.0], [0.0, 0.0], [0.0, 0.0]]
    """
    signal = (centred != 0).any(dim=1, keepdim=True)
    raw = torch.where(misses, centred.to(rewards.dtype), torch.nan_to_num(rewards, nan=0.0))
    return torch.where(signal, raw, torch.zeros_like(raw)).to(torch.float32)


def silent_prompts(rollouts: list[Rollout], advantages: Tensor) -> set[int]:
    """Prompts whose samples' final advantages are all 0 (ties, all missed the answer, one scorable sample,
    every sample neutralised): no signal, so Reinforce-Rej rejects them from the batch.

    >>> rs = [Rollout(p, "x", "", [], []) for p in (0, 0, 1, 1)]
    >>> sorted(silent_prompts(rs, torch.tensor([0.0, 0.0, 0.0, -0.5])))
    [0]
    """
    moving = {r.prompt_index for r, a in zip(rollouts, advantages.tolist(), strict=True) if a != 0}
    return {r.prompt_index for r in rollouts} - moving
