"""Per-iteration metrics common to every algorithm, and the rollout records of the run directory.

Keys follow TRL's GRPOTrainer where the quantity is the same (``reward``, ``reward_std``,
``rewards/<name>/mean``, ``completions/clipped_ratio``, ``completions/mean_length``, ...); raftkit's own
keep their prefixes (``filter/<name>/rate``, ``length/...``, ``selected/...``, ``explore/...``,
``time/...``). docs/run-directory.md lists them all; ``raftkit.runs.metric_names`` reads older runs.

``reward`` is defined here once, by ``reward_metrics``: the mean over the policy's own samples (those drawn
from the plain prompt, not the exploration-hinted ones) of the weighted sum of the rewards that apply, as
TRL computes it. The terminal line, metrics.jsonl, the trackers, the report and ``raftkit inspect`` all
show this number; the held-out evaluation computes its ``total`` with the same function.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from raftkit.datasets import ANSWER_COLUMN
from raftkit.rewards import Scores
from raftkit.rollouts import Batch, Rollout
from raftkit.runs.metric_names import reward_key
from raftkit.runs.numfmt import fmt
from raftkit.text import distinct_n


def peak_rss_gib() -> float | None:
    """The process's largest resident memory so far, in GiB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 30) if sys.platform == "darwin" else peak / (1 << 20)  # bytes there, KiB on Linux


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation; NaN for an empty list.

    >>> mean_std([1.0, 3.0])
    (2.0, 1.0)
    """
    if not values:
        return math.nan, math.nan
    m = sum(values) / len(values)
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def weighted_sums(rewards: Mapping[str, Sequence[float | None]], weights: Mapping[str, float]
                  ) -> list[float | None]:
    """Per sample, the weighted sum of the rewards that apply; None where none applies (TRL leaves such
    samples out of its ``reward``). Filter verdicts are not in it: they are reported as filter rates.

    >>> weighted_sums({"a": [1.0, None, None], "b": [2.0, 1.0, None]}, {"a": 1.0, "b": 0.5})
    [2.0, 0.5, None]
    """
    n = len(next(iter(rewards.values()), []))
    out: list[float | None] = []
    for i in range(n):
        applied = [weights.get(k, 1.0) * v[i] for k, v in rewards.items() if v[i] is not None]
        out.append(float(sum(applied)) if applied else None)
    return out


def reward_metrics(rewards: Mapping[str, Sequence[float | None]], weights: Mapping[str, float],
                   keep: Sequence[bool] | None = None, stats: tuple[str, str] = ("mean", "std")
                   ) -> dict[str, float]:
    """``reward``, ``reward_std``, ``rewards/<name>/mean`` and ``rewards/<name>/std`` over the samples
    ``keep`` marks (all when None); ``stats`` names the keys (see ``metric_names.reward_key``), e.g.
    ``("explore_mean", "explore_std")`` for the hinted samples. None values are left out of every mean."""
    sums = weighted_sums(rewards, weights)
    keep = list(keep) if keep is not None else [True] * len(sums)
    sums = sums or [None] * len(keep)  # no rewards at all: nothing applies
    out: dict[str, float] = {}
    totals = [t for t, k in zip(sums, keep, strict=True) if k and t is not None]
    m, s = mean_std(totals)
    out[reward_key("total", stats[0])] = m
    if stats[1]:
        out[reward_key("total", stats[1])] = s
    for name, values in rewards.items():
        m, s = mean_std([v for v, k in zip(values, keep, strict=True) if k and v is not None])
        out[reward_key(name, stats[0])] = m
        if stats[1]:
            out[reward_key(name, stats[1])] = s
    return out


def iteration_metrics(
    rollouts: Sequence[Rollout], scores: Scores, selected: Sequence[bool] | None = None
) -> dict[str, float]:
    """Reward, completion, diversity and filter metrics of one iteration's samples.

    The reward metrics are over the policy's own samples (``reward_metrics``); hinted samples (exploration)
    get theirs under ``explore/``, and ``selected`` (RAFT's training set) adds ``selected/reward`` and
    ``selected/rewards/<name>/mean``. Completion, diversity and filter metrics are over every sample.
    """
    n = len(rollouts)
    out: dict[str, float] = {"n_samples": n, "n_prompts": len({r.prompt_index for r in rollouts})}
    hinted = [r.hinted for r in rollouts]
    out.update(reward_metrics(scores.rewards, scores.weights, [not h for h in hinted]))
    if any(hinted):
        out.update(reward_metrics(scores.rewards, scores.weights, hinted, ("explore_mean", "explore_std")))
    if selected is not None:
        out.update(reward_metrics(scores.rewards, scores.weights, selected, ("selected_mean", "")))
    lengths = [len(r.completion_ids) for r in rollouts]
    out["completions/mean_length"] = _mean(lengths)
    out["completions/min_length"] = float(min(lengths)) if lengths else math.nan
    out["completions/max_length"] = float(max(lengths)) if lengths else math.nan
    out["completions/clipped_ratio"] = _mean([r.truncated for r in rollouts])
    completions = [r.completion for r in rollouts]
    out["length/chars_mean"] = _mean([len(c) for c in completions])
    if selected is not None:
        out["length/selected_chars_mean"] = _mean(
            [len(c) for c, sel in zip(completions, selected, strict=True) if sel]
        )
    out["distinct_1"] = distinct_n(completions, 1)
    out["distinct_2"] = distinct_n(completions, 2)
    for name, hits in scores.hits.items():
        out[f"filter/{name}/rate"] = _mean([h > 0 for h in hits])
        if selected is not None:
            out[f"filter/{name}/selected_rate"] = _mean(
                [h > 0 for h, sel in zip(hits, selected, strict=True) if sel]
            )
    if scores.hits:
        out["filter/any/rate"] = _mean(scores.degenerate)
    out["dropped/rate"] = _mean(list(scores.dropped))
    out["hinted/share"] = _mean(hinted)
    return out


def rollout_records(
    iteration: int,
    batch: Batch,
    rollouts: Sequence[Rollout],
    scores: Scores | None,
    per_sample: Sequence[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One JSON record per sample for rollouts.jsonl (``scores`` None: a crashed iteration, unscored)."""
    seen: dict[int, int] = {}
    records = []
    for i, r in enumerate(rollouts):
        sample = seen.get(r.prompt_index, 0)
        seen[r.prompt_index] = sample + 1
        rec: dict[str, Any] = {
            "iteration": iteration,
            "prompt_index": r.prompt_index,
            "row": batch.indices[r.prompt_index] if r.prompt_index < len(batch.indices) else None,
            "sample": sample,
            "prompt": r.prompt,
            "completion": r.completion,
        }
        if ANSWER_COLUMN in batch.columns:  # the accepted answers, to read a completion against
            rec["answers"] = batch.columns[ANSWER_COLUMN][r.prompt_index]
        if scores is not None:
            rec.update(scores.sample(i))
        rec.update(
            {
                "selected": False,
                "hinted": r.hinted,
                "truncated": r.truncated,
                "finish_reason": r.finish_reason,
                "n_tokens": len(r.completion_ids),
            }
        )
        if r.hinted and r.sample_prompt is not None:
            rec["sample_prompt"] = r.sample_prompt
        if per_sample is not None and i < len(per_sample):
            rec.update(per_sample[i])
        records.append(rec)
    return records


def summary_line(iteration: int, iterations: int, m: dict[str, Any], rewards: Sequence[str]) -> str:
    """One line per iteration: ``reward`` (the policy's own samples, as metrics.jsonl records it), each
    reward, length, diversity."""
    parts = [f"it {iteration}/{iterations}"]
    for name in ["total", *rewards]:
        value = m.get(reward_key(name, "mean"))
        sel = m.get(reward_key(name, "selected_mean"))
        if value is not None:
            parts.append(
                f"{'reward' if name == 'total' else name} {fmt(value)}"
                + (f" (sel {fmt(sel)})" if sel is not None and not math.isnan(sel) else "")
            )
    parts.append(f"len {m.get('length/chars_mean', math.nan):.0f}ch")
    parts.append(f"d2 {m.get('distinct_2', math.nan):.2f}")
    if m.get("loss") is not None:  # None: nothing was trained on (e.g. no sample was eligible)
        parts.append(f"loss {fmt(m['loss'])}")
    if m.get("kl") is not None:
        parts.append(f"kl {fmt(m['kl'], 4)}")
    hits = [
        f"{k.split('/')[1]} {v:.0%}"
        for k, v in m.items()
        if k.startswith("filter/")
        and k.endswith("/rate")
        and not k.endswith("selected_rate")
        and k != "filter/any/rate"
        and v
    ]
    if hits:
        parts.append("filters: " + ", ".join(hits))
    parts.append(f"{m.get('time/iteration', 0):.0f}s")
    return " | ".join(parts)


def closing_line(root: Any, m: Mapping[str, Any] | None = None) -> str:
    """The run's last line: what the per-iteration line's short names mean (those the last metrics ``m``
    carry; None: the last line of ROOT/metrics.jsonl), then the commands that read the run."""
    if m is None:
        from raftkit.runs.rundir import read_jsonl

        path = Path(root) / "metrics.jsonl"
        m = next(iter(reversed(list(read_jsonl(path, [])))), {}) if path.exists() else {}
    names = ["reward = weighted reward of the policy's own samples"]
    if any(k.startswith("selected/") for k in m):
        names.append("sel = reward of the samples selected for training")
    names += ["len = mean characters per completion", "d2 = distinct-2 (share of distinct word pairs)"]
    if m.get("kl") is not None:
        names.append("kl = KL to the reference model")
    if any(k.startswith("filter/") for k in m):
        names.append("filters = share of samples a filter hit")
    names.append("Ns = seconds per iteration")
    return (f"{'; '.join(names)}. Next: raftkit inspect {root} · raftkit report {root} · "
            f"raftkit eval {root}")
