"""GRPO: group-relative policy optimisation, as an Algorithm for raftkit's loop.

Per prompt the sampler draws k completions (a group). Each completion's advantage is its reward minus the
group mean, scaled by a std (``losses.group_advantages``); the shared policy-gradient update
(``policy_gradient``) pushes the policy up on completions that beat their group and down on the others,
with PPO's clipped ratio and a k3 KL penalty towards the frozen starting model.

**Exploration, on by default, adaptive.** A group carries signal only if its rewards differ, and the
bundled model writes an emoji in about 1 sample of 600: on `--reward emoji` every group of the policy's own
samples is flat, and plain GRPO learns nothing. So a share of each prompt's samples is drawn with a hint
("Use emojis 😊.", ``explore``) and trained as completions of the plain prompt. The share follows the
outcome: each iteration it is ``explore_share`` times the share of the policy's own samples that earned
nothing on a reward the hint brought signal on (remembered across iterations), so the hint fades out as the
policy earns the reward itself, and comes back if it loses it again.
docs/grpo.md gives the weights of hinted tokens and the bias they bring.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from raftkit import distributed
from raftkit.algorithms.explore import hinted_count, resolve_hint
from raftkit.algorithms.losses import SCALES, group_advantages
from raftkit.algorithms.policy_gradient import (
    PolicyGradient,
    PolicyGradientConfig,
    Targets,
)
from raftkit.algorithms.raft import answer_misses
from raftkit.datasets import ANSWER_COLUMN
from raftkit.rewards import Scores
from raftkit.rollouts import Batch, Rollout


@dataclass
class GRPOConfig(PolicyGradientConfig):
    """GRPO's own settings (lr, temperature, max_new_tokens, LoRA, ... are in the common AlignConfig)."""

    beta: float = 0.0
    """KL weight towards the starting model (k3 estimator per token); 0 skips the reference model."""
    # Measured defaults (docs/results.md, "GRPO"); the help texts are the base's.
    mini_batches: int = 4
    warmup_ratio: float = 0.125  # the first of 8 iterations; at full lr it flooded seed 2 with emojis
    explore_prefill: bool = True
    truncated_neutral: bool = True
    """A completion cut by max_new_tokens is never pushed up (a positive advantage becomes 0) but may go
    down: an unfinished answer is no example of how to answer, while a cut-off miss or flood is still one
    of what not to do. Its tokens stay in the loss normaliser."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """Advantage scaling: divide by the group's reward std, the batch's, or not at all (Dr. GRPO)."""
    explore_adaptive: bool = True
    """Fade the hinted share with the outcome: each iteration draws explore_share x (share of the policy's
    own samples that earned nothing, or were degenerate, on a reward where hinted ones differed); off:
    always explore_share."""
    explore_is_cap: float = 1.0
    """Cap c of the hinted tokens' importance weight min(max(π_old(y|x) / μ(y|x+hint), floor), c)."""
    explore_is_floor: float = 1.0
    """Floor of the hinted tokens' importance weight. floor = cap = 1 (default) trains hinted tokens as the
    policy's own (biased towards the hint, see docs/grpo.md); 0 is plain truncated importance sampling."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scale_rewards not in SCALES:
            raise ValueError(f"scale_rewards must be one of {', '.join(SCALES)}, got {self.scale_rewards!r}")
        if not 0 <= self.explore_is_floor <= self.explore_is_cap or self.explore_is_cap <= 0:
            raise ValueError("need 0 <= explore_is_floor <= explore_is_cap and explore_is_cap > 0, got "
                             f"floor {self.explore_is_floor}, cap {self.explore_is_cap}")


def reward_groups(rollouts: list[Rollout], scores: Scores) -> tuple[Tensor, list[list[int]]]:
    """Rewards as ``[groups, width]`` (NaN where a sample is dropped, unscorable or missing) and each
    group's rollout indices. Dropped and unscorable samples (``Scores.unscorable``) stay out of the group
    statistics, as in TRL 1.16."""
    members: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(rollouts):
        members[r.prompt_index].append(i)
    groups = list(members.values())
    unscorable = scores.unscorable
    totals = [float("nan") if scores.dropped[i] or unscorable[i] else scores.total[i]
              for i in range(len(rollouts))]
    return grouped(totals, groups, float("nan"), torch.float64), groups


def grouped(values: list[Any], groups: list[list[int]], fill: Any, dtype: torch.dtype) -> Tensor:
    """Per-rollout values laid out as ``[groups, width]`` (width: the largest group), ``fill`` where a group
    is shorter; ``scatter`` is its inverse."""
    width = max((len(g) for g in groups), default=0)
    out = torch.full((len(groups), width), fill, dtype=dtype)
    for g, idx in enumerate(groups):
        out[g, : len(idx)] = torch.tensor([values[i] for i in idx], dtype=dtype)
    return out


def answer_gated_advantages(rewards: Tensor, misses: Tensor, scale: str = "group",
                            degenerate: Tensor | None = None) -> Tensor:
    """GRPO's advantages under the answer gate, for rewards ``[b, k]`` (NaN: outside the group),
    ``misses`` (bool ``[b, k]``: the sample lost its prompt's accepted answer) and ``degenerate`` (bool
    ``[b, k]``: a filter hit the sample).

    Where some sample of the group keeps the answer, two group advantages, added: keeping the answer (1 for
    a sample that answers, 0 for a miss) against the group, and the rewards *among the samples that answer*
    (misses left out, advantage 0 there). A miss is pushed down for losing the answer and never up for its
    rewards; a sample that answers and carries an emoji beats one that answers without. With no misses it
    is plain ``group_advantages``.

    Where every sample misses, the rewards teach nothing, but the group's floods and loops are still the
    policy's to unlearn: a degenerate sample gets its advantage for not being clean (1 clean, 0 degenerate,
    against the group), which is negative, and every other sample 0.

    >>> r = torch.tensor([[3.0, 1.0, 0.0, -2.0], [2.0, -1.0, 0.0, 0.0]])
    >>> miss = torch.tensor([[True, False, False, True], [True] * 4])
    >>> bad = torch.tensor([[False] * 4, [False, True, False, False]])
    >>> [[round(a, 3) for a in row] for row in answer_gated_advantages(r, miss, "none", bad).tolist()]
    [[-0.5, 1.0, 0.0, -0.5], [0.0, -0.75, 0.0, 0.0]]
    """
    outside = torch.isnan(rewards)
    kept = torch.where(outside, rewards, (~misses).to(rewards.dtype))
    among = torch.where(misses, torch.full_like(rewards, float("nan")), rewards)
    gated = group_advantages(kept, scale) + group_advantages(among, scale)
    if degenerate is None:
        return gated
    answered = (~misses & ~outside).any(dim=1, keepdim=True)
    clean = torch.where(outside, rewards, (~degenerate).to(rewards.dtype))
    return torch.where(answered, gated, group_advantages(clean, scale).clamp(max=0.0))


def scatter(values: Tensor, groups: list[list[int]], n: int) -> Tensor:
    """Per-rollout values [n] from per-group ones [groups, width]."""
    out = torch.zeros(n)
    for g, idx in enumerate(groups):
        for j, i in enumerate(idx):
            out[i] = values[g, j]
    return out


def hint_floors(rollouts: list[Rollout], scores: Scores, floors: dict[str, float]) -> dict[str, float]:
    """The rewards the hint brings signal on (those on which the batch's hinted samples differ), each with
    the lowest value it has given: ``floors``, remembered from earlier iterations, joined with this batch's.

    >>> from raftkit.rewards import Scores
    >>> rs = [Rollout(0, "p", "", [], []), Rollout(0, "p", "", [], [], hinted=True)] * 2
    >>> emoji = [0.0, 1.0, 0.0, 2.0]
    >>> scores = Scores({"emoji": emoji}, {"emoji": 1.0}, {}, emoji, [False] * 4)
    >>> hint_floors(rs, scores, {}), hint_floors(rs, scores, {"emoji": -1.0, "length": 0.5})
    ({'emoji': 0.0}, {'emoji': -1.0, 'length': 0.5})
    """
    hinted = [i for i in range(len(rollouts)) if rollouts[i].hinted and not scores.dropped[i]]
    out = dict(floors)
    for name, values in scores.rewards.items():
        seen = [v for v in values if v is not None]
        if name in out and seen:
            out[name] = min(out[name], *seen)
        elif len({values[i] for i in hinted if values[i] is not None}) >= 2:
            out[name] = min(seen)
    return out


def unearned_share(rollouts: list[Rollout], scores: Scores, floors: dict[str, float]) -> float:
    """How much the policy still needs the hint: over the rewards in ``floors`` (``hint_floors``), the
    largest share of the policy's own, unhinted samples that earn nothing on it (no more than its lowest
    value so far) or that a filter hit (a flood of emojis has not found the emoji reward). 1.0 when there
    are no own samples; 0.0 with no such rewards.

    >>> from raftkit.rewards import Scores
    >>> rs = [Rollout(0, "p", "", [], []) for _ in range(4)] + [Rollout(0, "p", "", [], [], hinted=True)] * 2
    >>> emoji = [0.0, 0.0, 0.0, 1.0, 1.0, 2.0]  # one own sample of four earns it
    >>> scores = Scores({"emoji": emoji}, {"emoji": 1.0}, {}, emoji, [False] * 6)
    >>> unearned_share(rs, scores, {"emoji": 0.0})
    0.75
    """
    own = [i for i, r in enumerate(rollouts) if not r.hinted and not scores.dropped[i]]
    if not own:
        return 1.0
    degenerate = scores.degenerate
    shares = [0.0]
    for name, floor in floors.items():
        values = scores.rewards.get(name)
        if values is None:
            continue
        earned = sum(values[i] is not None and values[i] > floor and not degenerate[i] for i in own)
        shares.append(1 - earned / len(own))
    return max(shares)


class GRPO(PolicyGradient):
    """GRPO: group-relative advantages, clipped policy-gradient steps, KL to the starting model."""

    name = "grpo"
    Config = GRPOConfig
    default_lr = 3e-5
    explore_lr = 1e-4
    default_prompts = 32

    @classmethod
    def lr_for(cls, rewards: list[Any], config: GRPOConfig) -> float:
        """The learning rate of a run that does not set one: 3e-5, or 1e-4 where the run explores with a
        hint. Both are measured (docs/results.md): on a verifier task 1e-4 collapsed the policy within five
        iterations while 3e-5 learnt; on the emoji demonstration, where the hinted samples carry nearly all
        of the signal, 3e-5 learnt no emoji in 8 iterations."""
        hint = resolve_hint(config.explore_hint, rewards)
        return cls.explore_lr if hint and config.explore_share > 0 else cls.default_lr

    @classmethod
    def lr_note(cls) -> str:
        """What ``lr_for`` may choose besides ``default_lr``, for help and docs ('' where nothing)."""
        rate = f"{cls.explore_lr:.0e}".replace("e-0", "e-")  # 1e-4, as the --lr help writes it
        return "" if cls.explore_lr == cls.default_lr else f"{rate} where it explores with a hint"

    def __init__(self, policy: Any, config: GRPOConfig, *, k: int, **kwargs: Any):
        if k < 2:
            raise ValueError(f"{self.name} needs k >= 2 completions per prompt to form a group baseline, "
                             f"got k={k}")
        super().__init__(policy, config, k=k, **kwargs)
        self.max_hinted = self.n_hinted  # the adaptive share starts here and never exceeds it
        # The rewards the hint brings, with their lowest values: remembered so that the hint comes back if
        # the policy loses a reward after the hint has faded out.
        self.floors: dict[str, float] = {}
        if self.n_hinted and config.explore_adaptive:
            self.explore_note = ("at first: the policy alone rarely earns these rewards, so its groups carry "
                                 "no signal; it fades as the policy's own samples earn them, and comes "
                                 "back if they stop; --explore-hint '' turns it off")

    def proposal_bounds(self) -> tuple[float, float]:
        return self.config.explore_is_cap, self.config.explore_is_floor

    def targets(self, batch: Batch, rollouts: list[Rollout], scores: Scores) -> Targets:
        misses = self.misses(batch, rollouts, scores)
        rewards, groups = reward_groups(rollouts, scores)
        degenerate = scores.degenerate
        missed, flagged = (grouped(flags, groups, False, torch.bool) for flags in (misses, degenerate))
        gated = self.group_advantages(rewards, missed, flagged)
        flat = (gated == 0).all(dim=1)  # no signal in the group: neither the answers nor the rewards differ
        advantages = scatter(gated, groups, len(rollouts))
        # A hinted sample shows the policy what to do; it is never pushed down. Under the plain prompt its
        # tokens are already unlikely, and pushing them lower unlearns what the hint brought (docs/grpo.md).
        advantages[torch.tensor([r.hinted for r in rollouts], dtype=torch.bool) & (advantages < 0)] = 0.0
        neutral = torch.zeros(len(rollouts), dtype=torch.bool)
        if self.config.truncated_neutral:
            cut = torch.tensor([r.truncated for r in rollouts], dtype=torch.bool)
            # Down but never up: left neutral, cut-off misses carried no signal, and once most samples
            # ran to the limit nothing taught the policy to stop (seed 2 flooded; docs/grpo.md).
            neutral = cut & (advantages > 0)
            advantages[neutral] = 0.0
        metrics = {
            "truncated_neutral_n": float(neutral.sum()),
            "frac_reward_zero_std": float(flat.float().mean()) if len(flat) else 0.0,
            "zero_adv_groups_n": float(flat.sum()),
            "answer_miss/rate": sum(misses) / max(len(misses), 1),
            "explore/hinted_k": float(self.n_hinted),
        }
        if self.max_hinted:
            # Over the whole batch (all ranks), so every rank draws the same hinted share next time.
            everyone = distributed.gather_scored(rollouts, scores, len(batch), to_all=True)
            self.floors = hint_floors(*everyone, self.floors)
            unearned = unearned_share(*everyone, self.floors)
            metrics["explore/unearned"] = unearned
            if self.config.explore_adaptive:  # next iteration's share follows this one's outcome
                share = self.config.explore_share * unearned
                self.n_hinted = min(self.max_hinted, hinted_count(self.k, share))
        in_loss = self.trainable(rollouts, scores)
        return Targets(advantages, in_loss, sequences=len(rollouts), metrics=metrics)

    def group_advantages(self, rewards: Tensor, misses: Tensor, degenerate: Tensor) -> Tensor:
        """Advantages ``[b, k]`` of rewards ``[b, k]`` (NaN: outside the group) under the answer gate; a
        subclass changes the estimator here, before hinted and cut-off samples are clamped."""
        return answer_gated_advantages(rewards, misses, self.config.scale_rewards, degenerate)

    def misses(self, batch: Batch, rollouts: list[Rollout], scores: Scores) -> list[bool]:
        """The answer gate's misses (none without ``keep_answers``): samples whose prompt has accepted
        answers and that contain none of them, or that a filter hit. A degenerate sample has not kept the
        answer even if it names it ("Cairo. 🐝🐝🐝🐝🐝…"): counted as an answer, the gate pushed such floods
        up against the group's misses."""
        if self.config.keep_answers is False:
            return [False] * len(rollouts)
        misses = answer_misses(rollouts, batch)
        answers = batch.columns.get(ANSWER_COLUMN)
        if answers is None:
            return misses
        return [m or (h and bool(answers[r.prompt_index]))
                for m, h, r in zip(misses, scores.degenerate, rollouts, strict=True)]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "n_hinted": self.n_hinted, "hint_floors": self.floors}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.n_hinted = state.get("n_hinted", self.n_hinted)
        # Checkpoints before hint_floors kept the names only; their floors come from the next batch.
        old = {name: math.inf for name in state.get("hint_signal", ())}
        self.floors = dict(state.get("hint_floors", old or self.floors))
