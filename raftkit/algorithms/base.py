"""What the loop needs from a training algorithm, and what an update returns.

The loop is the same for both and data flows one way through it::

    batch -> algorithm.sample(sampler, batch) -> rollouts -> stack.score_rollouts -> scores
          -> algorithm.update(batch, rollouts, scores) -> StepResult -> sampler.sync(policy.weights())

An algorithm owns its policy and optimiser. How it samples is its own business (RAFT may add an
exploration hint to some samples; GRPO samples on-policy), which keeps mode flags out of the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from raftkit.policy import Policy
from raftkit.rewards import Scores
from raftkit.rollouts import Batch, Rollout


@dataclass
class StepResult:
    """What one update produced, for the run directory."""

    metrics: dict[str, float] = field(default_factory=dict)  # e.g. loss, kl, clip fraction, n_selected
    per_sample: list[dict[str, Any]] = field(default_factory=list)  # merged into each rollout's record
    selected: list[dict[str, Any]] | None = None  # RAFT's training set, written to selected.jsonl


class Algorithm(Protocol):
    name: str
    policy: Policy

    def sample(self, sampler: Any, batch: Batch, iteration: int) -> list[Rollout]:
        """Draw this iteration's rollouts (k per prompt) from ``sampler``."""
        ...

    def update(self, batch: Batch, rollouts: list[Rollout], scores: Scores, iteration: int) -> StepResult:
        """Train the policy on the scored rollouts."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Optimiser / scheduler state to checkpoint (the policy weights are saved separately)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ...
