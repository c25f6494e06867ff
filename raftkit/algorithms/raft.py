"""RAFT (reward-ranked fine-tuning): sample k per prompt, keep the best, fine-tune on them, repeat.

Two rankings (Dong et al. 2023): ``local`` keeps the best ``keep_per_prompt`` of each prompt's k samples,
which is right when rewards of different prompts are not comparable; ``top`` ranks all b*k samples together
and keeps the best ``1/k`` of them. Both are pure functions below, tested on hand-made scores.

RAFT can only select what the sampler proposes, and the bundled model almost never writes an emoji on its
own (0.16% of samples). RAFT fine-tunes on selected samples and does not need them to come from the
current policy, so a share of the k samples is drawn from a *proposal*: the prompt with an exploration
hint appended (" Use emojis."). Those samples are marked ``hinted``; they are scored, selected, trained
and evaluated against the original, unhinted prompt, so the model learns to do unasked what the hint asked.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from raftkit import distributed
from raftkit.algorithms.base import StepResult
from raftkit.algorithms.explore import hinted_count, resolve_hint, sample_with_hint
from raftkit.datasets import ANSWER_COLUMN
from raftkit.options import ConfigError, at_least
from raftkit.rollouts import Batch, Rollout


@dataclass
class RaftConfig:
    """RAFT's own settings (the shared ones, such as lr and k, are in AlignConfig)."""

    ranking: Literal["local", "top"] = "local"
    """local: the best samples of each prompt; top: the best 1/k of the whole batch."""
    keep_per_prompt: int = 1
    """Samples kept per prompt with --ranking local."""
    top_fraction: float = 0.0
    """Share of all samples kept with --ranking top (0: 1/k)."""
    rank_beta: float = 0.03
    """Rank by reward − rank_beta · log(π/π_ref) of the whole completion (the RAFT paper's KL-regularised
    reward): among samples of similar reward, prefer those the policy has not drifted to. 0: reward only."""
    keep_answers: bool | None = None
    """Where a prompt has accepted answers (the answer column), select only samples that contain one:
    RAFT imitates what it selects, and a sample that lost the answer must not win. Unset: on where every
    reward is a built-in style reward (emoji, length), off where a reward of your own decides."""
    min_total: float | None = None
    """Never select (or anchor) a sample whose total is below this, e.g. 1 with a 0/1 verifier for the RAFT++
    paper's "correct only". None: no floor beyond the one RAFT always keeps (a sample at the lowest total the
    run has seen earned nothing and is never imitated)."""
    anchor_share: float = 1.0
    """Anchors per selected sample: prompts with nothing to select train on their clean, unhinted sample
    closest to the starting model (smallest log π/π_ref), at most this share of the selected count, so the
    model keeps its starting behaviour where the reward gives no direction (docs/raft.md). 0: none."""
    explore_hint: str = "auto"
    """Text appended to the prompt for the exploration samples; 'auto' builds it from the rewards
    (length: 'Answer in one short sentence.', emoji: 'Use emojis 😊.'), '' turns exploration off."""
    explore_share: float = 0.5
    """Share of each prompt's k samples drawn with the exploration hint."""
    explore_prefill: bool = True
    """Each hinted sample continues the first sentence of one of the prompt's own samples under the hint, so
    the hint adds to the policy's answer instead of replacing it (explore.continue_own)."""
    epochs_per_iteration: int = 2
    """Passes over the selected samples per iteration."""
    micro_batch_size: int = 8
    """Sequences per forward/backward pass."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimiser step."""
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    """Learning-rate schedule over the whole run (after warmup)."""
    warmup_ratio: float = 0.0
    """Share of the run spent warming the learning rate up linearly from 0."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient-norm clipping (0: off)."""

    def __post_init__(self) -> None:
        for name in (
            "keep_per_prompt",
            "epochs_per_iteration",
            "micro_batch_size",
            "gradient_accumulation_steps",
        ):
            at_least(self, name, 1)
        at_least(self, "rank_beta", 0)
        for name, value in (
            ("top_fraction", self.top_fraction),
            ("anchor_share", self.anchor_share),
            ("explore_share", self.explore_share),
            ("warmup_ratio", self.warmup_ratio),
        ):
            if not 0 <= value <= 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be between 0 and 1, got {value}")


# --------------------------------------------------------------------------- selection (pure)


def select_local(
    totals: Sequence[float], groups: Sequence[int], dropped: Sequence[bool], m: int = 1
) -> list[int]:
    """Indices of the best ``m`` samples of each group (prompt), ascending.

    Ties go to the earlier sample; dropped samples are never selected, so a group whose samples are all
    dropped contributes nothing.

    >>> select_local([0.1, 0.9, 0.5, 0.5], [0, 0, 1, 1], [False, False, False, False])
    [1, 2]
    """
    if not len(totals) == len(groups) == len(dropped):
        raise ValueError("totals, groups and dropped must have one entry per sample")
    by_group: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        if not dropped[i]:
            by_group.setdefault(g, []).append(i)
    chosen: list[int] = []
    for members in by_group.values():
        chosen.extend(sorted(members, key=lambda i: (-totals[i], i))[:m])
    return sorted(chosen)


def ineligible(scores: Any) -> list[bool]:
    """Samples RAFT must never train on: dropped ones, and any a filter hit.

    RAFT imitates what it selects, so a degenerate sample is never "the best" of its prompt, even when
    every sample of that prompt was penalised (the penalty only orders samples; it cannot make imitating
    one safe). The prompt then contributes nothing. GRPO, which also learns from bad samples, uses the
    penalty as a negative reward instead.
    """
    return [dropped or hit for dropped, hit in zip(scores.dropped, scores.degenerate, strict=True)]


def answer_misses(rollouts: Sequence[Rollout], batch: Batch) -> list[bool]:
    """True for each sample whose prompt has accepted answers (the ``answers`` column) and that contains
    none of them, by the registered ``answer_match`` reward. A prompt without answers has no misses.

    A prompt whose samples all miss then contributes nothing, like one whose samples all hit a filter:
    measured on the bundled set, letting such prompts through (where the model cannot answer, keep its
    best-scored sample) trained on its emoji-studded Japanese gibberish, which spread to every answer.
    """
    from raftkit.rewards import load_registry

    answers = batch.columns.get(ANSWER_COLUMN)
    info = load_registry().rewards.get("answer_match")  # absent if RAFTKIT_LOAD_PLUGINS left it out
    if answers is None or info is None:
        return [False] * len(rollouts)
    match = info.fn
    found = match([r.completion for r in rollouts], answers=[answers[r.prompt_index] for r in rollouts])
    return [v == 0.0 for v in found]


STYLE_REWARDS = ("emoji", "length")
"""Built-in rewards that judge how an answer is written, not whether it is right."""


def keeps_answers_by_default(rewards: Sequence[Any]) -> bool:
    """Whether a run gates on the answer column when ``keep_answers`` is unset: only where every reward is a
    style reward. A reward of the user's own is the objective, and a gate on an ``answers`` column it may
    use for something else (or only for evaluation) would add a second one: with a JSON-format verifier,
    GRPO's gate pushed up plain-text answers that named the answer and the run stopped writing JSON.

    >>> keeps_answers_by_default(["emoji", "length:target=30"]), keeps_answers_by_default(["math_verify"])
    (True, False)
    """
    from raftkit.rewards import RewardSpec

    names = [RewardSpec.coerce(r).name for r in rewards]
    return bool(names) and all(name in STYLE_REWARDS for name in names)


@dataclass
class Floor:
    """The lowest total the rewards give, learnt from the run's clean samples: a sample at it earned nothing.

    A value counts as the floor once at least two clean samples (scored by some reward, hit by no filter)
    share it as the lowest total seen: the 0 of a 0/1 verifier, the bottom of a clipped reward. A continuous
    reward's single lowest sample sets no floor. Without it, local ranking keeps each prompt's best sample
    even when every sample of the prompt is wrong, and RAFT imitates wrong answers.
    """

    value: float | None = None  # the lowest clean total seen
    ties: int = 0  # how many clean samples had it

    def update(self, scores: Any) -> None:
        """Take in a batch's clean totals, over every process (degenerate samples sit below the clean ones
        by construction, so they must not set what "earned nothing" means)."""
        clean = [t for t, bad, none in zip(scores.total, scores.degenerate, scores.unscorable, strict=True)
                 if not bad and not none]
        clean = distributed.all_gather_flat(clean)[0]
        if not clean:
            return
        low = min(clean)
        if self.value is None or low < self.value:
            self.value, self.ties = low, 0
        if low == self.value:
            self.ties += clean.count(low)

    def earned_nothing(self, totals: Sequence[float], min_total: float | None = None) -> list[bool]:
        """Samples RAFT must not imitate for their score: at or below the floor, or below ``min_total``.

        >>> floor = Floor(0.0, ties=5)
        >>> floor.earned_nothing([0.0, 1.0, 0.0, 0.5])
        [True, False, True, False]
        >>> floor.earned_nothing([0.0, 1.0, 0.5], min_total=1.0)
        [True, False, True]
        >>> Floor(0.0, ties=1).earned_nothing([0.0, 1.0])
        [False, False]
        """
        active = self.value is not None and self.ties >= 2
        return [(active and t <= self.value) or (min_total is not None and t < min_total) for t in totals]

    def state_dict(self) -> dict[str, Any]:
        return {"floor": self.value, "floor_ties": self.ties}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value, self.ties = state.get("floor"), state.get("floor_ties", 0)


def exclusions(
    rollouts: Sequence[Rollout], batch: Batch, scores: Any, config: Any, floor: Floor | None = None
) -> tuple[list[bool], list[bool]]:
    """(samples RAFT must not select, the answer misses among them).

    Excluded: what ``ineligible`` excludes, samples no reward scored (their total of 0 says nothing), those
    that earned nothing (``Floor``, ``config.min_total``), and, with ``keep_answers``, the ``answer_misses``.
    """
    misses = answer_misses(rollouts, batch) if config.keep_answers is not False else [False] * len(rollouts)
    nothing = (floor or Floor()).earned_nothing(scores.total, config.min_total)
    flags = zip(ineligible(scores), scores.unscorable, nothing, misses, strict=True)
    return [any(f) for f in flags], misses


def contested(groups: Sequence[int], excluded: Sequence[bool], keep: int) -> list[int]:
    """Indices whose KL penalty can change local ranking's choice: the selectable samples of groups with
    more than ``keep`` of them (a group with ``keep`` or fewer keeps them all, whatever their ratios).

    >>> contested([0, 0, 0, 1, 1, 2], [False, False, True, False, True, False], keep=1)
    [0, 1]
    """
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        if not excluded[i]:
            members.setdefault(g, []).append(i)
    return sorted(i for found in members.values() if len(found) > keep for i in found)


def select_top(totals: Sequence[float], dropped: Sequence[bool], fraction: float) -> list[int]:
    """Indices of the best ``round(fraction * n)`` of all n samples (at least one), ascending.

    The count is taken over all samples, as RAFT's "top 1/k of b*k" keeps b; dropped samples are never
    selected, so fewer are kept when fewer are eligible. Ties go to the earlier sample.

    >>> select_top([0.2, 0.9, 0.9, 0.1], [False, False, False, False], 0.5)
    [1, 2]
    """
    if len(totals) != len(dropped):
        raise ValueError("totals and dropped must have one entry per sample")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    n_keep = max(1, round(fraction * len(totals))) if totals else 0
    eligible = sorted((i for i in range(len(totals)) if not dropped[i]), key=lambda i: (-totals[i], i))
    return sorted(eligible[:n_keep])


def empty_groups(groups: Sequence[int], dropped: Sequence[bool]) -> int:
    """How many groups have every sample dropped (they contribute nothing to training)."""
    alive: dict[int, bool] = {}
    for g, d in zip(groups, dropped, strict=True):
        alive[g] = alive.get(g, False) or not d
    return sum(not a for a in alive.values())


# --------------------------------------------------------------------------- the algorithm


class RAFT:
    """RAFT: the best samples of each prompt (or batch), fine-tuned on with SFT."""

    name = "raft"
    Config = RaftConfig
    default_lr = 3e-5  # supervised steps on the selected samples
    default_prompts = 32  # it trains only on samples that keep the answer: a few per batch on the bundled set

    def __init__(
        self,
        policy: Any,
        config: RaftConfig,
        *,
        lr: float,
        total_steps: int,
        k: int,
        sampling: Any,
        seed: int = 0,
        rewards: Sequence[str] = (),
    ):
        self.policy, self.config = policy, config
        self.lr, self.total_steps, self.k, self.sampling, self.seed = lr, total_steps, k, sampling, seed
        self.hint = resolve_hint(config.explore_hint, rewards)
        self.n_hinted = hinted_count(k, config.explore_share) if self.hint else 0
        self.skipped: list[int] = []
        self.floor = Floor()
        self.moved = False  # has the policy taken a step? Until then π = π_ref and every log-ratio is 0
        self._optimizer = None
        self._reference: Any = None  # the starting model, loaded at the first KL-regularised ranking
        self.progress = None  # set by the loop: a callable(done, total) for the training progress bar

    # 1. sample: k - h plain samples and h hinted ones per prompt, regrouped prompt-major (see explore.py)
    def sample(self, sampler: Any, batch: Batch, iteration: int) -> list[Rollout]:
        sampled = sample_with_hint(sampler, batch, self.k, self.n_hinted, self.hint, self.sampling,
                                   self.config.explore_prefill)
        self.skipped = sampled.skipped
        return sampled.rollouts

    def select(
        self, rollouts: Sequence[Rollout], totals: Sequence[float], dropped: Sequence[bool]
    ) -> list[int]:
        if self.config.ranking == "top":
            fraction = self.config.top_fraction or 1 / self.k
            # Several processes: rank every rank's samples together, then keep this rank's winners.
            pairs, offset = distributed.all_gather_flat(list(zip(totals, dropped, strict=True)))
            chosen = select_top([t for t, _ in pairs], [d for _, d in pairs], fraction)
            return [i - offset for i in chosen if offset <= i < offset + len(totals)]
        return select_local(totals, [r.prompt_index for r in rollouts], dropped, self.config.keep_per_prompt)

    # 2. update: select, then fine-tune on original prompt + selected completion
    def update(self, batch: Batch, rollouts: list[Rollout], scores: Any, iteration: int) -> StepResult:
        from raftkit.algorithms import sft

        self.floor.update(scores)
        excluded, misses = exclusions(rollouts, batch, scores, self.config, self.floor)
        totals, rank_metrics = list(scores.total), {}
        if self.config.rank_beta > 0:
            start = time.perf_counter()
            totals, rank_metrics = self.regularise(rollouts, totals, excluded)
            rank_metrics["time/log_ratios"] = time.perf_counter() - start
        chosen = self.select(rollouts, totals, excluded)
        if self.config.rank_beta > 0:  # what the penalty changed, under the configured ranking
            unpenalised = set(self.select(rollouts, scores.total, excluded))
            rank_metrics["rank/changed_prompts"] = len(unpenalised.symmetric_difference(chosen)) / 2
        # Never anchored either: unscored samples and those that earned nothing.
        nothing = self.floor.earned_nothing(scores.total, self.config.min_total)
        blocked = [any(f) for f in zip(ineligible(scores), nothing, scores.unscorable, strict=True)]
        anchored = self.anchors(rollouts, blocked, excluded, len(chosen))
        trained = sorted([*chosen, *anchored])
        optimizer = self.optimizer()
        examples = [
            sft.make_example(
                self.policy.tokenizer,
                rollouts[i].prompt,
                rollouts[i].completion_ids,
                rollouts[i].finish_reason,
            )
            for i in trained
        ]
        c = self.config
        everyone = distributed.all_gather_flat(examples)[0]  # every rank's selection, split again per step
        train = sft.train(
            self.policy,
            everyone,
            lr=self.lr,
            epochs=c.epochs_per_iteration,
            micro_batch_size=c.micro_batch_size,
            gradient_accumulation_steps=c.gradient_accumulation_steps,
            weight_decay=c.weight_decay,
            max_grad_norm=c.max_grad_norm,
            schedule=sft.Schedule(c.lr_schedule, c.warmup_ratio, iteration - 1, self.total_steps),
            seed=self.seed * 100003 + iteration,
            progress=self.progress,
            optimizer=optimizer,
        )
        self.moved = self.moved or bool(everyone)
        picked, anchor_set = set(chosen), set(anchored)
        metrics = {
            "n_selected": len(chosen),
            "n_anchors": len(anchored),
            "n_earned_nothing": sum(nothing),
            "n_empty_prompts": empty_groups([r.prompt_index for r in rollouts], excluded),
            "n_skipped_prompts": len(self.skipped),
            "answer_miss/rate": sum(misses) / len(misses) if misses else 0.0,
            "selected/hinted_share": (sum(rollouts[i].hinted for i in chosen) / len(chosen))
            if chosen
            else 0.0,
            **rank_metrics,
            **train,
        }
        return StepResult(
            metrics=metrics,
            per_sample=[
                {"selected": i in picked, **({"anchor": True} if i in anchor_set else {})}
                for i in range(len(rollouts))
            ],
            selected=[  # everything trained on; anchors marked
                {"index": i, "train_tokens": len(examples[j].completion_ids), "anchor": i in anchor_set}
                for j, i in enumerate(trained)
            ],
        )

    def anchors(
        self, rollouts: Sequence[Rollout], blocked: Sequence[bool], excluded: Sequence[bool], n_selected: int
    ) -> list[int]:
        """The anchors of this batch (anchors.py): for prompts with no selectable sample, the clean unhinted
        sample with the smallest log π/π_ref, at most anchor_share × n_selected of them. (With --ranking top
        a prompt whose samples merely ranked low is not anchored: it had something to select.)"""
        from raftkit.algorithms import anchors

        served = {r.prompt_index for r, out in zip(rollouts, excluded, strict=True) if not out}
        found = anchors.candidates(
            rollouts, blocked, served, anchors.limit(n_selected, self.config.anchor_share)
        )
        flat = [i for members in found.values() if len(members) > 1 for i in members]  # one needs no ratio
        ratios = dict(zip(flat, self.log_ratios(rollouts, flat), strict=True))
        return anchors.pick(found, {i: ratios.get(i, 0.0) for members in found.values() for i in members})

    def regularise(
        self, rollouts: Sequence[Rollout], totals: list[float], excluded: Sequence[bool]
    ) -> tuple[list[float], dict[str, float]]:
        """Totals minus rank_beta · log(π/π_ref), computed only where the penalty can change the choice:
        never while the policy is still the starting model (every ratio is 0), and under local ranking only
        for prompts with more selectable samples than it keeps. Returns the mean log-ratio and how many
        samples the pass scored (``rank/n_scored``)."""
        from raftkit.algorithms import kl_ranking

        if self.config.ranking == "local":
            ranked = contested([r.prompt_index for r in rollouts], excluded, self.config.keep_per_prompt)
        else:
            ranked = [i for i in range(len(rollouts)) if not excluded[i]]
        found = self.log_ratios(rollouts, ranked)
        ratios: list[float | None] = [None] * len(rollouts)
        for i, r in zip(ranked, found, strict=True):
            ratios[i] = r
        adjusted = kl_ranking.regularised(totals, ratios, self.config.rank_beta)
        return adjusted, {"rank/log_ratio": sum(found) / len(found) if found else 0.0,
                          "rank/n_scored": float(len(ranked) if self.moved else 0)}

    def log_ratios(self, rollouts: Sequence[Rollout], indices: Sequence[int]) -> list[float]:
        """log π/π_ref of each indexed sample under its original prompt (the starting model loaded once);
        all 0 without a forward pass while the policy has not moved from the starting model."""
        from raftkit.algorithms import kl_ranking, sft
        from raftkit.algorithms.dpo import load_reference

        if not self.moved or not indices:
            return [0.0] * len(indices)
        if self._reference is None and not self.policy.lora_r:
            self._reference = load_reference(self.policy)
        tok = self.policy.tokenizer
        examples = [
            sft.make_example(tok, rollouts[i].prompt, rollouts[i].completion_ids, rollouts[i].finish_reason)
            for i in indices
        ]
        return kl_ranking.log_ratios(self.policy, self._reference, examples, self.config.micro_batch_size)

    def optimizer(self) -> Any:
        """The AdamW of every iteration, made once: kept for its memory, its state reset each iteration."""
        from raftkit.algorithms import sft

        if self._optimizer is None:
            self._optimizer = sft.make_optimizer(
                self.policy.trainable_parameters(), self.lr, self.config.weight_decay
            )
        return self._optimizer

    def state_dict(self) -> dict[str, Any]:
        # A fresh AdamW per iteration (RAFT is repeated SFT on a new selection, as LMFlow runs it): the
        # learning-rate schedule is a function of the iteration, so there is no optimiser state to keep.
        # Carrying the moments over was measured: it drifted faster (docs/raft.md).
        return {"hint": self.hint, "moved": self.moved, **self.floor.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.floor.load_state_dict(state)
        self.moved = state.get("moved", True)  # a checkpoint from before these were kept: it had moved
