"""The evaluation as a person reads it: one table (base beside trained), examples, and the alarm in red.

Task metrics (answer accuracy, degenerate share) come first, the rewards after them: a table whose top
rows are rewards going up reads as success even over a wrecked model.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

N_EXAMPLES = 3


def render(
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    console: Console,
    alarms: list[str] | None = None,
    names: tuple[str, str] = ("base", "trained"),
) -> None:
    """Print the evaluation table, a few examples side by side, and the alarm if there is one.

    Either side may be None (a single model evaluated alone).
    """
    shown = [(name, ev) for name, ev in zip(names, (before, after), strict=True) if ev is not None]
    first = shown[0][1]
    per_prompt = first["samples"] // max(1, first["prompts"])
    table = Table(
        title=f"Held-out evaluation ({first['prompts']} prompts x {per_prompt} samples, "
        f"T={first['temperature']}, {first['max_new_tokens']} new tokens)"
    )
    table.add_column("metric")
    for name, _ in shown:
        table.add_column(name, justify="right")
    both = len(shown) == 2
    if both:
        table.add_column("change", justify="right")

    def row(label: str, key: tuple[str, ...], fmt: str = "{:.3f}", good: int = 0) -> None:
        values = [_get(ev, key) for _, ev in shown]
        cells = [label, *(_fmt(v, fmt) for v in values)]
        if both:
            b, a = values
            change = None if a is None or b is None else a - b
            style = "" if not change or not good else ("green" if change * good > 0 else "red")
            text = _fmt(change, fmt.replace("{:", "{:+"))
            cells.append(f"[{style}]{text}[/{style}]" if style else text)
        table.add_row(*cells)

    row("answer accuracy", ("accuracy",), "{:.1%}", good=+1)
    row("degenerate share", ("degenerate",), "{:.1%}", good=-1)
    for name in first.get("rewards", {}):
        row(f"reward {name}", ("rewards", name), good=+1)
        row(f"  {name} > 0", ("positive", name), "{:.1%}")
    # The training metric `reward` (weighted total of the run's rewards), here over the held-out samples:
    # answer accuracy is its own row above, never inside it.
    row("reward (held-out)", ("total",), good=+1)
    for name in first.get("filters", {}):
        row(f"filter {name}", ("filters", name), "{:.1%}", good=-1)
    row("distinct-2", ("distinct_2",))
    row("length (chars)", ("length_chars",), "{:.1f}")
    console.print(table)
    console.print(
        "[dim]reward (held-out): the weighted total of the run's rewards, defined as the training `reward` "
        "but over these held-out samples, so it differs from any training iteration's value; answer "
        "accuracy is reported beside it, never inside it.[/dim]"
    )

    examples = Table(title="Examples (held-out prompts)", show_lines=True)
    examples.add_column("prompt", ratio=1)
    for name, _ in shown:
        examples.add_column(name, ratio=2)
    by_prompt = [{e["prompt_index"]: e for e in ev.get("examples", [])} for _, ev in shown]
    for e in first.get("examples", [])[:N_EXAMPLES]:
        cells = [e["prompt"]]
        for side in by_prompt:
            ex = side.get(e["prompt_index"], {})
            mark = {1.0: "[green]✓[/green] ", 0.0: "[red]✗[/red] "}.get(ex.get("correct"), "")
            cells.append(mark + _escape(ex.get("completion", "")))
        examples.add_row(*cells)
    console.print(examples)
    if alarms:
        console.print(
            Panel("\n".join(f"• {a}" for a in alarms), title="[bold]reward hacking?[/bold]",
                  border_style="red", style="red")
        )


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _get(ev: dict[str, Any], key: tuple[str, ...]) -> Any:
    value: Any = ev
    for k in key:
        value = value.get(k) if isinstance(value, dict) else None
    return value


def _fmt(value: float | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)
