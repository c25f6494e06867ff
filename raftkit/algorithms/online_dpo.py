"""Online DPO as an Algorithm for raftkit's loop: pairs picked from the policy's own samples by the rewards.

Per prompt the sampler draws k completions (as GRPO). After scoring, the prompt's best and worst eligible
samples by ``scores.total`` form a pair (chosen, rejected); a sample that was dropped, that a filter hit, that
no reward scored, or that is empty is not eligible, and a prompt whose eligible samples all tie gives no
pair. One DPO step (``raftkit.algorithms.dpo``) is taken on the iteration's pairs, with the frozen starting
model as the reference. Every pair is written to the iteration's selected.jsonl (``pair``: chosen /
rejected, ``pair_id``), and each rollout record says which side of a pair it was.

This is the reward-model variant of Guo et al. 2024, "Direct Language Model Alignment from Online AI
Feedback", and of TRL's OnlineDPOTrainer with a reward function as the judge (TRL draws two samples per
prompt; with k > 2 the extremes give the clearest preference).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from raftkit.algorithms.base import StepResult
from raftkit.algorithms.dpo import DPOUpdate
from raftkit.algorithms.sft import Example
from raftkit.rewards import Scores
from raftkit.rollouts import Batch, Rollout
from raftkit.sampling.sampler import SamplingParams


@dataclass
class OnlineDPOConfig:
    """Online DPO's own settings (lr, k, temperature, ... are in the common AlignConfig)."""

    beta: float = 0.1
    """DPO's β: the strength of the pull towards the starting model (must be > 0)."""
    max_grad_norm: float = 1.0
    """Clip the gradient to this global norm (0: no clipping)."""
    micro_batch_size: int = 16
    """Pairs per forward/backward pass; gradients are accumulated over all of an iteration's pairs."""

    def __post_init__(self) -> None:
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be a finite number > 0 for DPO, got {self.beta}")
        if self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
        if self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")


def eligible(rollouts: Sequence[Rollout], scores: Scores) -> list[bool]:
    """Samples that may be either side of a pair: not dropped, no filter hit, scored by some reward, and with
    prompt and completion tokens."""
    unscorable, degenerate = scores.unscorable, scores.degenerate
    return [
        not scores.dropped[i] and not degenerate[i] and not unscorable[i]
        and bool(r.completion_ids) and bool(r.prompt_ids)
        for i, r in enumerate(rollouts)
    ]


def select_pairs(rollouts: Sequence[Rollout], scores: Scores) -> list[tuple[int, int]]:
    """(chosen, rejected) rollout indices: per prompt its best and worst eligible sample by ``total``; ties
    go to the earlier sample, and a prompt whose eligible samples all tie (or has fewer than two) gives none.

    >>> from raftkit.rewards import Scores
    >>> rs = [Rollout(p, "q", "a", [1], [], prompt_ids=[9]) for p in (0, 0, 0, 1, 1)]
    >>> select_pairs(rs, Scores({}, {}, {}, [1.0, 3.0, 2.0, 5.0, 5.0], [False] * 5))
    [(1, 0)]
    """
    ok = eligible(rollouts, scores)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(rollouts):
        if ok[i]:
            groups[r.prompt_index].append(i)
    pairs = []
    for members in groups.values():
        best = max(members, key=lambda i: (scores.total[i], -i))
        worst = min(members, key=lambda i: (scores.total[i], i))
        if scores.total[best] > scores.total[worst]:
            pairs.append((best, worst))
    return pairs


def rollout_example(rollout: Rollout, eos_id: int | None) -> Example:
    """The rollout's exact token ids; EOS appended where it ended by itself (as ``sft.make_example``)."""
    ids = list(rollout.completion_ids)
    ended = rollout.finish_reason in ("stop", "truncated")
    if ended and eos_id is not None and (not ids or ids[-1] != eos_id):
        ids.append(eos_id)
    return Example(list(rollout.prompt_ids), ids)


class OnlineDPO:
    """Online DPO: per prompt the best and worst of its k samples form a pair; a DPO step on the pairs."""

    name = "online_dpo"
    Config = OnlineDPOConfig
    default_lr = 1e-6  # DPO's usual scale (TRL: 5e-7 to 1e-6); the summed log-probs make big gradients
    default_prompts = 16

    def __init__(self, policy: Any, config: OnlineDPOConfig, *, lr: float, total_steps: int, k: int,
                 sampling: SamplingParams | None = None, seed: int = 0, rewards: Sequence[Any] = ()):
        """``total_steps``: the run's iterations (one optimiser step each); ``rewards``: unused (no hints)."""
        if k < 2:
            raise ValueError(f"{self.name} needs k >= 2 completions per prompt to form a pair, got k={k}")
        self.policy, self.config, self.k, self.seed = policy, config, k, seed
        self.sampling = sampling or SamplingParams()
        self.dpo = DPOUpdate(policy, beta=config.beta, lr=lr, max_grad_norm=config.max_grad_norm,
                             micro_batch_size=config.micro_batch_size)

    def sample(self, sampler: Any, batch: Batch, iteration: int) -> list[Rollout]:
        """k completions of each prompt from the current weights (on-policy, no hints)."""
        return sampler.generate(batch.prompts, self.k, self.sampling)

    def update(self, batch: Batch, rollouts: list[Rollout], scores: Scores, iteration: int) -> StepResult:
        pairs = select_pairs(rollouts, scores)
        eos = self.policy.tokenizer.eos_token_id
        examples = [(rollout_example(rollouts[c], eos), rollout_example(rollouts[r], eos)) for c, r in pairs]
        metrics: dict[str, float] = {
            "n_pairs": float(len(pairs)),
            "no_pair_prompts": float(len({r.prompt_index for r in rollouts}) - len(pairs)),
            "pairs/score_gap": (sum(scores.total[c] - scores.total[r] for c, r in pairs) / len(pairs)
                                if pairs else 0.0),
        }
        metrics.update(self.dpo.step(examples))  # no pairs: no step
        per_sample: list[dict[str, Any]] = [{"selected": False} for _ in rollouts]
        selected: list[dict[str, Any]] = []
        for n, (c, r) in enumerate(pairs):
            per_sample[c] = {"selected": True, "pair": "chosen", "pair_id": n}
            per_sample[r] = {"selected": False, "pair": "rejected", "pair_id": n}
            selected += [{"index": c, "pair": "chosen", "pair_id": n, "partner": r},
                         {"index": r, "pair": "rejected", "pair_id": n, "partner": c}]
        return StepResult(metrics=metrics, per_sample=per_sample, selected=selected)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.dpo.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "optimizer" in state:
            self.dpo.optimizer.load_state_dict(state["optimizer"])
