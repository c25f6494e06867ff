"""Before/after evaluation: the base and the trained policy on held-out prompts, with the run's reward stack.

The held-out prompts are never trained on. Each prompt gets a few samples at a low temperature (or one
greedy completion), from the plain prompt: no exploration hint, so the numbers say what the model now
does unasked.
"""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from raftkit.rewards import RewardStack
from raftkit.rollouts import Batch
from raftkit.text import distinct_n

N_EXAMPLES = 3


def evaluate(
    sampler: Any,
    batch: Batch,
    stack: RewardStack,
    *,
    samples: int,
    temperature: float,
    max_new_tokens: int,
    top_p: float = 1.0,
) -> dict[str, Any]:
    """Sample ``samples`` completions per held-out prompt and summarise them with the reward stack."""
    from raftkit.sampler import SamplingParams

    start = time.perf_counter()
    if temperature <= 0:
        samples = 1  # greedy: every sample would be the same
    params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    rollouts = sampler.generate(batch.prompts, samples, params)
    scores = stack.score_rollouts(rollouts, batch)
    n = len(rollouts)
    out: dict[str, Any] = {
        "prompts": len(batch),
        "samples": n,
        "temperature": temperature,
        "max_new_tokens": max_new_tokens,
        "rewards": {
            name: _mean([v for v in values if v is not None]) for name, values in scores.rewards.items()
        },
        "total": _mean(scores.total),
        "filters": {name: _mean([h > 0 for h in hits]) for name, hits in scores.hits.items()},
        "distinct_2": distinct_n([r.completion for r in rollouts], 2),
        "length_chars": _mean([len(r.completion) for r in rollouts]),
        "examples": [],
    }
    first: dict[int, int] = {}
    for i, r in enumerate(rollouts):
        first.setdefault(r.prompt_index, i)
    for p, i in list(first.items()):
        out["examples"].append(
            {
                "prompt_index": p,
                "row": batch.indices[p] if p < len(batch.indices) else None,
                "prompt": _prompt_text(batch.prompts[p]),
                "completion": rollouts[i].completion,
                "total": scores.total[i],
            }
        )
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def compare(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """after - before for every number both have (rewards, total, filter rates, distinct-2, length)."""
    delta: dict[str, Any] = {"rewards": {}, "filters": {}}
    for group in ("rewards", "filters"):
        for name, b in before.get(group, {}).items():
            a = after.get(group, {}).get(name)
            if a is not None and b is not None:
                delta[group][name] = a - b
    for key in ("total", "distinct_2", "length_chars"):
        if before.get(key) is not None and after.get(key) is not None:
            delta[key] = after[key] - before[key]
    return delta


def render(before: dict[str, Any], after: dict[str, Any] | None, console: Console) -> None:
    """The before/after table and three example completions side by side."""
    table = Table(
        title=f"Held-out evaluation ({before['prompts']} prompts x "
        f"{before['samples'] // max(1, before['prompts'])} samples, T={before['temperature']})"
    )
    table.add_column("metric")
    table.add_column("base", justify="right")
    if after is not None:
        table.add_column("trained", justify="right")
        table.add_column("change", justify="right")

    def row(label: str, b: float | None, a: float | None, fmt: str = "{:.3f}") -> None:
        cells = [label, _fmt(b, fmt)]
        if after is not None:
            change = None if a is None or b is None else a - b
            cells += [_fmt(a, fmt), _fmt(change, fmt.replace("{:", "{:+"))]
        table.add_row(*cells)

    after_ = after or {}
    for name, b in before["rewards"].items():
        row(f"reward {name}", b, after_.get("rewards", {}).get(name))
    row("reward total", before["total"], after_.get("total"))
    for name, b in before["filters"].items():
        row(f"filter {name} rate", b, after_.get("filters", {}).get(name), "{:.1%}")
    row("distinct-2", before["distinct_2"], after_.get("distinct_2"))
    row("length (chars)", before["length_chars"], after_.get("length_chars"), "{:.1f}")
    console.print(table)
    if after is None:
        return
    examples = Table(title="Examples (held-out prompts)", show_lines=True)
    examples.add_column("prompt", ratio=1)
    examples.add_column("base", ratio=2)
    examples.add_column("trained", ratio=2)
    after_by_prompt = {e["prompt_index"]: e for e in after.get("examples", [])}
    for e in before.get("examples", [])[:N_EXAMPLES]:
        a = after_by_prompt.get(e["prompt_index"], {})
        examples.add_row(e["prompt"], e["completion"], a.get("completion", ""))
    console.print(examples)


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
        return str(users[-1] if users else prompt[-1].get("content", ""))
    return str(prompt)


def _mean(values: list[Any]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def _fmt(value: float | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)
