"""Per-iteration metrics common to every algorithm, and the rollout records of the run directory.

Keys are flat and grouped by prefix (``reward/<name>/...``, ``filter/<name>/rate``, ``length/...``,
``time/...``) so readers can group them without a fixed list; docs/run-directory.md lists them all.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

from raftkit.evaluate import ANSWER_COLUMN
from raftkit.rewards import Scores
from raftkit.rollouts import Batch, Rollout
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


def iteration_metrics(
    rollouts: Sequence[Rollout], scores: Scores, selected: Sequence[bool] | None = None
) -> dict[str, float]:
    """Reward, length, diversity and filter metrics of one iteration's samples.

    ``selected`` (RAFT) adds ``selected_mean`` per reward; hinted samples (RAFT's exploration) add
    ``policy_mean``: the mean over the samples the policy drew from the plain prompt, which is the honest
    measure of progress when hinted samples are in the batch.
    """
    n = len(rollouts)
    out: dict[str, float] = {"n_samples": n, "n_prompts": len({r.prompt_index for r in rollouts})}
    hinted = [r.hinted for r in rollouts]
    any_hinted = any(hinted)
    series: dict[str, list[float | None]] = {**scores.rewards, "total": list(scores.total)}
    for name, values in series.items():
        present = [v for v in values if v is not None]
        m, s = mean_std(present)
        out[f"reward/{name}/mean"], out[f"reward/{name}/std"] = m, s
        if selected is not None:
            out[f"reward/{name}/selected_mean"] = _mean(
                [v for v, sel in zip(values, selected, strict=True) if sel and v is not None]
            )
        if any_hinted:
            out[f"reward/{name}/policy_mean"] = _mean(
                [v for v, h in zip(values, hinted, strict=True) if not h and v is not None]
            )
    completions = [r.completion for r in rollouts]
    out["length/chars_mean"] = _mean([len(c) for c in completions])
    out["length/tokens_mean"] = _mean([len(r.completion_ids) for r in rollouts])
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
    out["truncated/rate"] = _mean([r.truncated for r in rollouts])
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
    """One line per iteration: rewards (of the policy's own samples where hinted), length, diversity."""
    parts = [f"it {iteration}/{iterations}"]
    for name in [*rewards, "total"]:
        value = m.get(f"reward/{name}/policy_mean", m.get(f"reward/{name}/mean"))
        sel = m.get(f"reward/{name}/selected_mean")
        if value is not None:
            parts.append(
                f"{name} {value:.3f}"
                + (f" (sel {sel:.3f})" if sel is not None and not math.isnan(sel) else "")
            )
    parts.append(f"len {m.get('length/chars_mean', math.nan):.0f}ch")
    parts.append(f"d2 {m.get('distinct_2', math.nan):.2f}")
    if m.get("loss") is not None:  # None: nothing was trained on (e.g. no sample was eligible)
        parts.append(f"loss {m['loss']:.3f}")
    if m.get("kl") is not None:
        parts.append(f"kl {m['kl']:.4f}")
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
