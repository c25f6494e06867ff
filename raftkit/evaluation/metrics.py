"""Held-out evaluation: what a model does on prompts it never trained on, measured beside the rewards.

A reward going up is not success: a model can max out an emoji reward by answering in emoji strings.
So every evaluation measures the *task* with numbers that do not come from the training rewards:

- answer accuracy, the built-in ``answer_match`` reward over the dataset's accepted answers;
- the share of degenerate completions, by every built-in filter (not only those the run trained with);
- distinct-2 and mean length;

and, beside them, each configured reward with the share of samples where it is positive. ``alarm``
compares a trained model's evaluation with its base model's and says plainly when the rewards rose while
the task got worse. ``raftkit align`` (before/after) and ``raftkit eval`` both use this module.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from raftkit.datasets import ANSWER_COLUMN
from raftkit.rewards import RewardSpec, RewardStack
from raftkit.rollouts import Batch
from raftkit.text import distinct_n

ANSWER_REWARD = "answer_match"
# The alarm's thresholds: a relative fall in accuracy, and a degenerate share, beyond which a trained
# model is called wrecked whatever its rewards say.
ACCURACY_DROP = 0.10
DEGENERATE_SHARE = 0.05


def eval_stack(rewards: Sequence[Any], filters: Sequence[Any], timeout: float = 60.0) -> RewardStack:
    """The stack an evaluation scores with: the given rewards plus ``answer_match``, and every default
    filter plus the given ones (a filter the run configured keeps its parameters)."""
    from raftkit.config import DEFAULT_FILTERS
    from raftkit.rewards import load_registry

    # Only what is installed: RAFTKIT_LOAD_PLUGINS may have left the built-ins out.
    installed = load_registry().rewards
    specs = [RewardSpec.coerce(r) for r in rewards]
    if ANSWER_REWARD not in {s.name for s in specs} and ANSWER_REWARD in installed:
        specs.append(RewardSpec(ANSWER_REWARD))
    given = [RewardSpec.coerce(f) for f in filters]
    names = {s.name for s in given}
    defaults = [RewardSpec(n) for n in DEFAULT_FILTERS if n not in names and n in installed]
    return RewardStack.build(specs, [*given, *defaults], timeout=timeout)


def with_answer_column(batch: Batch, column: str) -> Batch:
    """The batch with ``column`` handed to rewards as ``answers`` (what ``answer_match`` reads)."""
    if column == ANSWER_COLUMN or column not in batch.columns:
        return batch
    columns = {k: v for k, v in batch.columns.items() if k != ANSWER_COLUMN}
    columns[ANSWER_COLUMN] = batch.columns[column]
    return Batch(batch.prompts, columns, batch.indices)


def evaluate(
    sampler: Any,
    batch: Batch,
    stack: RewardStack,
    *,
    samples: int,
    temperature: float,
    max_new_tokens: int,
    top_p: float = 1.0,
    state: Any = None,
) -> dict[str, Any]:
    """Sample ``samples`` completions per prompt from the plain prompt (no hint) and summarise them.

    ``stack`` should come from ``eval_stack`` so that accuracy and degeneracy are measured; a reward
    named ``answer_match`` becomes ``accuracy`` (None where no prompt has answers), reported beside the
    reward, never inside it. ``total`` is the training metric ``reward`` (raftkit.runs.metrics), here over
    the held-out samples: the weighted sum of the other rewards. Rewards get TRL's ``trainer_state``
    (``state``; a fresh one when None), ``log_extra`` and ``log_metric``; what they log goes to ``logged``.
    """
    from raftkit.runs.metrics import reward_metrics, weighted_sums
    from raftkit.runs.reward_log import RewardLog, trainer_state
    from raftkit.sampling.sampler import SamplingParams

    start = time.perf_counter()
    if temperature <= 0:
        samples = 1  # greedy: every sample would be the same
    params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    rollouts = sampler.generate(batch.prompts, samples, params)
    log = RewardLog(len(rollouts))
    state = state if state is not None else trainer_state(0, 0, 0.0)
    scores = stack.score_rollouts(rollouts, batch, log.context(state))
    n = len(rollouts)
    rewards = {k: v for k, v in scores.rewards.items() if k != ANSWER_REWARD}
    weights = {k: scores.weights.get(k, 1.0) for k in rewards}
    reward = reward_metrics(rewards, weights)["reward"]
    per_sample = weighted_sums(rewards, weights) or [None] * n
    correct = scores.rewards.get(ANSWER_REWARD, [None] * n)
    degenerate = scores.degenerate
    out: dict[str, Any] = {
        "prompts": len(batch),
        "samples": n,
        "temperature": temperature,
        "max_new_tokens": max_new_tokens,
        "accuracy": _mean([c for c in correct if c is not None]),
        "answered_samples": sum(c is not None for c in correct),
        "rewards": {name: _mean([v for v in values if v is not None]) for name, values in rewards.items()},
        "positive": {
            name: _mean([v > 0 for v in values if v is not None]) for name, values in rewards.items()
        },
        "total": None if math.isnan(reward) else reward,
        "filters": {name: _mean([h > 0 for h in hits]) for name, hits in scores.hits.items()},
        "degenerate": _mean(degenerate),
        "distinct_2": distinct_n([r.completion for r in rollouts], 2),
        "length_chars": _mean([len(r.completion) for r in rollouts]),
        "examples": [],
    }
    first: dict[int, int] = {}
    for i, r in enumerate(rollouts):
        first.setdefault(r.prompt_index, i)
    for p, i in first.items():
        out["examples"].append(
            {
                "prompt_index": p,
                "row": batch.indices[p] if p < len(batch.indices) else None,
                "prompt": prompt_text(batch.prompts[p]),
                "completion": rollouts[i].completion,
                "correct": correct[i],
                "degenerate": degenerate[i],
                "total": per_sample[i],
            }
        )
    if log.values:
        out["logged"] = log.metrics()
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def compare(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """after - before for every number both have."""
    delta: dict[str, Any] = {}
    for group in ("rewards", "positive", "filters"):
        delta[group] = {}
        for name, b in before.get(group, {}).items():
            a = after.get(group, {}).get(name)
            if a is not None and b is not None:
                delta[group][name] = a - b
    for key in ("accuracy", "total", "degenerate", "distinct_2", "length_chars"):
        if before.get(key) is not None and after.get(key) is not None:
            delta[key] = after[key] - before[key]
    return delta


def alarm(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """Plain sentences saying why a trained model looks wrecked; empty when nothing is wrong.

    Fires when answer accuracy fell by more than ``ACCURACY_DROP`` relative to the base model, or when
    more than ``DEGENERATE_SHARE`` of the completions are degenerate (any built-in filter hit them).
    """
    found = []
    acc_a = after.get("accuracy")
    acc_b = (before or {}).get("accuracy")
    if acc_a is not None and acc_b and acc_a < acc_b * (1 - ACCURACY_DROP):
        after_rewards = after.get("rewards", {})
        rose = [
            name for name, b in (before or {}).get("rewards", {}).items()
            if b is not None and after_rewards.get(name) is not None and after_rewards[name] > b
        ]
        why = f" while {', '.join(rose)} rose" if rose else ""
        found.append(
            f"answer accuracy fell from {acc_b:.0%} to {acc_a:.0%} "
            f"({(acc_a - acc_b) / acc_b:+.0%} relative){why}: the model answers worse than the base model"
        )
    deg = after.get("degenerate")
    if deg is not None and deg > DEGENERATE_SHARE:
        hit = sorted(
            ((rate, name) for name, rate in after.get("filters", {}).items() if rate), reverse=True
        )
        named = ", ".join(f"{name} {rate:.0%}" for rate, name in hit[:4])
        found.append(
            f"{deg:.0%} of the completions are degenerate (over {DEGENERATE_SHARE:.0%}; {named}): "
            "read the examples before trusting the rewards"
        )
    return found


def prompt_text(prompt: Any) -> str:
    """The last user turn of chat messages, or the text prompt itself."""
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
        return str(users[-1] if users else prompt[-1].get("content", ""))
    return str(prompt)


def _mean(values: list[Any]) -> float | None:
    return float(sum(values) / len(values)) if values else None
