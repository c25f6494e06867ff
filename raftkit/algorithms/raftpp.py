"""RAFT++ (Xiong et al. 2025, "A Minimalist Approach to LLM Reasoning", arXiv 2504.11343).

RAFT selects each prompt's best samples and fine-tunes on them. RAFT++ keeps the selection (the same
``local``/``top`` ranking, answer gate and filters as ``raft``) but trains with the clipped,
importance-sampled step of PPO: advantage 1 on every selected sample, 0 elsewhere, so the loss is
``-min(r, clip(r, 1-ε, 1+ε_high))`` per selected token with r = π_θ/π_old, averaged over the selected
tokens, for μ steps per batch. At the first step r = 1 and this is RAFT's SFT gradient; on later steps the
clip stops pushing a token whose probability has already risen by ε, which is what keeps RAFT++ from
over-fitting one batch. Hinted samples are imitated, as RAFT imitates them (no proposal weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from raftkit.algorithms.policy_gradient import PolicyGradient, PolicyGradientConfig, Targets
from raftkit.algorithms.raft import Floor, empty_groups, exclusions, select_local, select_top
from raftkit.rewards import Scores
from raftkit.rollouts import Batch, Rollout


@dataclass
class RAFTppConfig(PolicyGradientConfig):
    """RAFT++'s settings: RAFT's selection and the shared clipped policy-gradient step."""

    ranking: Literal["local", "top"] = "local"
    """local: the best samples of each prompt; top: the best 1/k of the whole batch."""
    keep_per_prompt: int = 1
    """Samples kept per prompt with --ranking local."""
    top_fraction: float = 0.0
    """Share of all samples kept with --ranking top (0: 1/k)."""
    num_iterations: int = 4
    """Passes over each batch of samples (μ); above 1 the ratio moves away from 1 and clipping acts."""
    explore_hint: str = ""
    """Text appended to the prompt for exploration samples ('auto': built from the rewards); '' (default):
    none, every sample is the policy's own, as the paper's on-policy algorithm."""
    min_total: float | None = None
    """Never select a sample whose total is below this (1 with a 0/1 verifier: "correct only"). None: only
    the samples at the lowest total the run has seen are never selected."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.keep_per_prompt < 1:
            raise ValueError(f"keep_per_prompt must be >= 1, got {self.keep_per_prompt}")
        if not 0 <= self.top_fraction <= 1:
            raise ValueError(f"top_fraction must be between 0 and 1, got {self.top_fraction}")


class RAFTpp(PolicyGradient):
    """RAFT++: RAFT's selection, trained with clipped importance-sampled steps (advantage 1 on the kept)."""

    name = "raftpp"
    Config = RAFTppConfig
    default_lr = 3e-5  # as RAFT: the step is RAFT's SFT gradient until the clip acts
    default_prompts = 32

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.floor = Floor()  # samples at the lowest total are never selected (raft.Floor)

    def targets(self, batch: Batch, rollouts: list[Rollout], scores: Scores) -> Targets:
        cfg = self.config
        self.floor.update(scores)
        excluded, misses = exclusions(rollouts, batch, scores, cfg, self.floor)
        usable = set(self.trainable(rollouts, scores))
        excluded = [e or i not in usable for i, e in enumerate(excluded)]
        if cfg.ranking == "top":
            chosen = select_top(scores.total, excluded, cfg.top_fraction or 1 / self.k)
        else:
            groups = [r.prompt_index for r in rollouts]
            chosen = select_local(scores.total, groups, excluded, cfg.keep_per_prompt)
        chosen = [i for i in chosen if not excluded[i]]  # select_top keeps at least one, even if excluded
        advantages = torch.zeros(len(rollouts))
        advantages[chosen] = 1.0
        metrics: dict[str, Any] = {
            "n_selected": float(len(chosen)),
            "n_empty_prompts": float(empty_groups([r.prompt_index for r in rollouts], excluded)),
            "answer_miss/rate": sum(misses) / max(len(misses), 1),
            "selected/hinted_share": sum(rollouts[i].hinted for i in chosen) / max(len(chosen), 1),
        }
        picked = set(chosen)
        per_sample = {i: {"selected": i in picked} for i in range(len(rollouts))}
        return Targets(advantages, chosen, sequences=len(chosen), metrics=metrics, per_sample=per_sample)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.floor.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.floor.load_state_dict(state)
