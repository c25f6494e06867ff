"""How `raftkit inspect` draws what it read: the run summary, rollout tables, comparisons, several runs.

Each ``show_*`` prints one view as rich tables, or as one JSON document with ``as_json``; warnings about
unreadable lines go to the error console, so JSON on stdout stays valid.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from raftkit import highlight
from raftkit.runs import numfmt, rolloutview, runview
from raftkit.runs.metric_names import reward_key
from raftkit.runs.rundir import BadLine

# How each kind of degenerate text is coloured in a completion.
HIT_STYLES = {"stray_hash": "bold red", "emoticon_flood": "bold magenta",
              "self_dialogue": "bold yellow on red", "repetition_loop": "underline cyan"}
DEFAULT_HIT_STYLE = "bold red"
STATUS_STYLES = {"finished": "green", "crashed": "bold red", "killed": "red", "stopped": "yellow"}


# --------------------------------------------------------------------------- output helpers

# What a completion must not send to the terminal: C0 controls but newline and tab, DEL, C1 controls
# (0x9b is a CSI on some terminals) and the bidirectional overrides that reorder what is shown.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """``text`` with control characters written out (ESC as ``\\x1b``): a completion or an error message
    from a run folder can then never retitle the window, clear the screen or recolour the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if m[0] <= "\x9f" else f"\\u{ord(m[0]):04x}", text)


def _json(data: Any) -> None:
    # Non-finite floats become null: JSON has no NaN and scripts choke on it.
    # json.dumps escapes C0 controls itself but leaves C1 (e.g. 0x9b, a CSI) and bidi overrides raw.
    text = json.dumps(_clean(data), ensure_ascii=False, indent=2, default=str)
    click.echo(_CONTROL.sub(lambda m: f"\\u{ord(m[0]):04x}", text))


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def warn(err: Console, problems: list[Any], limit: int = 10) -> None:
    for p in problems[:limit]:
        err.print(Text(visible(f"warning: {p}"), style="yellow"))
    if len(problems) > limit:
        err.print(Text(f"warning: … and {len(problems) - limit} more problems like these", style="yellow"))


def _fmt(v: Any, digits: int = 3) -> str:
    return numfmt.fmt(v, digits)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f}%" if v >= 0.1 or v == 0 else f"{100 * v:.1f}%"


# --------------------------------------------------------------------------- the run summary


def show_summary(out: Console, s: runview.RunSummary, as_json: bool, columns: str | None = None) -> None:
    if as_json:
        _json(s.to_json())
        return
    table, dropped = _iterations_table(s, out, columns) if s.metrics else (None, [])  # checks --columns
    style = STATUS_STYLES.get(s.status, "cyan")
    out.print(Text(visible(str(s.root)), style="bold"))
    for key, value in s.config_summary().items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        out.print(Text.assemble((f"  {key:<22}", "dim"), visible(shown)))
    out.print(Text.assemble(("  status                ", "dim"), (visible(s.status_line), style)))
    for m in s.missing:
        out.print(Text(f"  missing: {m}", style="yellow"))
    if not s.metrics:
        out.print(Text("  no iteration has completed yet", style="yellow"))
    else:
        out.print(table)
        if dropped:
            out.print(left_out_note(dropped))
        total = s.series(s.total_key)
        if any(v is not None for v in total):
            sel = s.series(reward_key("total", "selected_mean"))
            seen = [v for v in total if v is not None]
            line = Text.assemble(("reward        ", "bold"), (runview.sparkline(total), "green"),
                                 f"  {_fmt(runview.last_value(total))} "
                                 f"(min {_fmt(min(seen))}, max {_fmt(max(seen))})")
            out.print(line)
            if any(v is not None for v in sel):
                out.print(Text.assemble(("selected      ", "bold"), (runview.sparkline(sel), "blue")))
    if s.partial:
        out.print(Text(f"iteration folder(s) without metrics (in progress or cut short): "
                       f"{', '.join(map(str, s.partial))}", style="yellow"))
    rows = runview.eval_rows(s.eval)
    if rows:
        t = Table(title="evaluation (eval.json)", title_justify="left", show_edge=False)
        t.add_column("metric", overflow="fold")
        t.add_column("before", justify="right", overflow="fold")
        t.add_column("after", justify="right", overflow="fold")
        t.add_column("change", justify="right", overflow="fold")
        for r in rows:
            d = r["delta"]
            t.add_row(visible(r["key"]), _fmt(r["before"]), _fmt(r["after"]),
                      Text(numfmt.fmt(d, sign=True), style="green" if d and d > 0 else
                           "red" if d and d < 0 else ""))
        out.print(t)
    elif s.eval is not None:
        out.print(Text("eval.json present but holds no numbers", style="yellow"))
    alarms = s.eval.get("alarm") if isinstance(s.eval, dict) else None
    if alarms and isinstance(alarms, list):
        out.print(Text("reward hacking? " + " ".join(f"• {a}" for a in alarms), style="bold red"))


@dataclass
class _Col:
    header: str
    cell: Callable[[dict[str, Any]], str]
    rank: int  # what goes first when the table is too wide: the highest rank (0, 1: always kept)
    name: str = ""  # how the note on left-out columns calls it

    def __post_init__(self) -> None:
        self.name = self.name or self.header.replace("\n", " ")


def _iteration_columns(s: runview.RunSummary) -> list[_Col]:
    """Every column the run's metrics can fill, in display order, each ranked by how much it matters:
    iteration, reward, each reward's mean, loss and the degenerate share come first."""
    g = s.groups
    cols: list[_Col] = [_Col("iter", lambda m: str(m["iteration"]), 0)]

    def pair(name: str) -> Callable[[dict[str, Any]], str]:
        # The policy's own samples (metrics.py's reward_metrics), then RAFT's selected ones where recorded.
        stats = g.reward_stats.get(name, [])
        mean_key, sel_key = reward_key(name, "mean"), reward_key(name, "selected_mean")
        if "selected_mean" in stats:
            return lambda m: f"{_fmt(runview.number(m.get(mean_key)))}/{_fmt(runview.number(m.get(sel_key)))}"
        return lambda m: _fmt(runview.number(m.get(mean_key)))

    def raw(key: str, digits: int = 3) -> Callable[[dict[str, Any]], str]:
        # An int count stays an int; a non-number shows as a dash.
        return lambda m: _fmt(m.get(key) if runview.number(m.get(key)) is not None else None, digits)

    any_selected = any("selected_mean" in v for v in g.reward_stats.values())
    suffix = "\n/sel" if any_selected else ""
    if g.has_total:
        cols.append(_Col(f"reward{suffix}", pair("total"), 0, "reward"))
    present = set().union(*(m.keys() for m in s.metrics))
    if "reward_std" in present:
        cols.append(_Col("reward\nstd", raw("reward_std"), 4))
    for name in g.rewards:
        cols.append(_Col(f"{visible(name)}{suffix}", pair(name), 1, visible(name)))
    if "explore/reward" in present:  # the hinted samples, apart from the policy's own
        cols.append(_Col("explore\nreward", raw("explore/reward"), 5))
    if "length/chars_mean" in present or "completions/mean_length" in present:
        def length(m: dict[str, Any]) -> str:
            c = runview.number(m.get("length/chars_mean"))
            k = runview.number(m.get("completions/mean_length"))
            return f"{_fmt(c, 0) if c is not None else '–'}" + (f" ({k:.0f}t)" if k is not None else "")
        cols.append(_Col("length\nchars", length, 3, "length"))
    if "distinct_2" in present:
        cols.append(_Col("dist-2", raw("distinct_2", 2), 4))
    for f in g.filters:
        key = f"filter/{f}/rate"
        # filter/any/rate is the degenerate share (any filter hit): kept; each filter's own rate may go.
        header = "degen\n%" if f == "any" else f"{visible(f)}\nhit %"
        # A filter that never hit says least: it goes before those that did.
        hit = any(runview.number(v) for v in s.series(key))
        cols.append(_Col(header, lambda m, key=key: _pct(runview.number(m.get(key))),
                         1 if f == "any" else 3 if hit else 4,
                         "degenerate share" if f == "any" else f"{visible(f)} hit %"))
    for key, label, rank in (("kl", "kl", 2), ("loss", "loss", 1), ("value_loss", "v loss", 4),
                             ("clip_ratio/region_mean", "clip", 4), ("n_selected", "n sel", 3)):
        if key in present:
            cols.append(_Col(label, raw(key), rank))
    if "time/iteration" in present:
        cols.append(_Col("sec", raw("time/iteration", 1), 5))
    elif "time" in present and len(s.metrics) > 1:
        times = [runview.number(m.get("time")) for m in s.metrics]
        durations = {m["iteration"]: (b - a if a is not None and b is not None else None)
                     for m, a, b in zip(s.metrics[1:], times, times[1:], strict=False)}
        cols.append(_Col("sec", lambda m: "–" if durations.get(m["iteration"]) is None
                         else f"{durations[m['iteration']]:.1f}", 5))
    if not any(f == "any" for f in g.filters) and len(g.filters) == 1:
        for c in cols:  # a single filter's rate is the degenerate share
            if c.header.endswith("hit %"):
                c.rank = 1
    return cols


def _iterations_table(s: runview.RunSummary, out: Console | None = None, columns: str | None = None
                      ) -> tuple[Table, list[str]]:
    """The one-row-per-iteration table, fitted to ``out``'s width: the least important columns are left
    out until it fits (their names are returned); what still does not fit wraps, never cut. ``columns``
    ('all', or names separated by commas, as the left-out line gives them) are kept whatever the width."""
    cols = _iteration_columns(s)
    if columns:
        wanted = {c.strip() for c in columns.split(",")}
        unknown = wanted - {c.name for c in cols} - {"all"}
        if unknown:
            raise runview.InspectError(f"--columns: no column {', '.join(sorted(unknown))} in this run "
                                       f"(columns: all, {', '.join(c.name for c in cols)})")
        for c in cols:
            if "all" in wanted or c.name in wanted:
                c.rank = 0
    cells = {id(c): [c.cell(m) for m in s.metrics] for c in cols}  # each cell computed once
    kept = list(cols)
    if out is not None:
        def width(c: _Col) -> int:
            return max(cell_len(x) for x in [*c.header.split("\n"), *cells[id(c)]])

        # No outer edge or padding: each column but the first adds a separator and two spaces.
        while sum(map(width, kept)) + 3 * (len(kept) - 1) > out.width:
            droppable = [c for c in kept if c.rank > 1]  # 0 and 1: the essentials
            if not droppable:
                break  # the essentials wrap (overflow "fold"): nothing is cut
            kept.remove(max(droppable, key=lambda c: (c.rank, kept.index(c))))  # rightmost least important
    t = Table(show_edge=False, pad_edge=False, header_style="bold")
    for c in kept:
        t.add_column(c.header, justify="right", overflow="fold")
    for i in range(len(s.metrics)):
        t.add_row(*(cells[id(c)][i] for c in kept))
    return t, [c.name for c in cols if c not in kept]


def left_out_note(names: list[str]) -> Text:
    """The line that names columns a narrow terminal left out, and how to see them."""
    return Text(f"left out: {', '.join(names)} (the terminal is too narrow; --columns NAME,... or "
                "--columns all shows them, --json every metric)", style="dim")


# --------------------------------------------------------------------------- rollouts


def highlighted(text: str, width: int | None) -> Text:
    """The completion, folded to ``width`` and with degenerate patterns coloured.

    Folded text shows newlines as ↵ (same length, so match offsets still line up): a self-dialogue turn
    stays visible on one line.
    """
    text = visible(text)
    shown, cut = highlight.fold(text, width) if width else (text, 0)
    t = Text(shown.replace("\n", "↵") if width else shown)
    patterns = highlight.highlight_patterns()
    for start, end, name in highlight.hit_spans(shown, patterns):
        t.stylize(HIT_STYLES.get(name, DEFAULT_HIT_STYLE), start, end)
    if cut:
        t.append(f" [+{cut} chars]", style="dim")
    return t


def _rollouts_table(samples: list[rolloutview.Sample], full: bool, title: str | None = None,
                    algorithm: str | None = None, compact: bool = False) -> Table:
    """One row per sample. ``compact`` (a narrow terminal) puts the prompt above the completion and every
    reward in one column, so the table fits without cutting anything."""
    names = list(dict.fromkeys(n for s in samples for n in s.rewards))
    fnames = list(dict.fromkeys(n for s in samples for n in s.hits))
    # Selection is RAFT's; GRPO records carry selected=false throughout, which says nothing.
    has_sel = any(s.selected for s in samples) or (algorithm == "raft" and any(s.selected is not None
                                                                               for s in samples))
    has_adv = any(s.advantage is not None for s in samples)
    has_hint = any(s.hinted for s in samples)
    t = Table(title=title, title_justify="left", show_lines=True, header_style="bold", expand=False)
    has_text = any(s.prompt or s.completion for s in samples)
    t.add_column("row/k" if any(s.sample is not None for s in samples) else "row", justify="right",
                 style="dim", overflow="fold")
    if has_text and compact:
        t.add_column("prompt ▸ completion", overflow="fold", ratio=1)
    elif has_text:
        t.add_column("prompt", max_width=None if full else 28, overflow="fold")
        t.add_column("completion", overflow="fold", min_width=30, ratio=1)
    if compact and names:
        t.add_column("rewards", justify="right", overflow="fold")
    else:
        for n in names:
            t.add_column(visible(n), justify="right", overflow="fold")
    t.add_column("total", justify="right", style="bold", overflow="fold")
    if fnames:
        t.add_column("hits", justify="left", overflow="fold")
    if has_sel:
        t.add_column("sel", justify="center")
    if has_adv:
        t.add_column("adv", justify="right", overflow="fold")
    if has_hint:
        t.add_column("hint", justify="center")
    for s in samples:
        ident = str(s.row if s.row is not None else s.position)
        ident += f"/{s.sample}" if s.sample is not None else ""
        prompt = visible(s.prompt if full else highlight.fold(s.prompt.replace("\n", " "), 80)[0])
        hits = visible(", ".join(f"{k}×{v}" for k, v in s.hits.items() if v))
        row: list[Any] = [ident]
        if has_text and compact:
            completion = highlighted(s.completion, None if full else 300)
            row.append(Text.assemble((prompt, "dim"), " ▸ ", completion))
        elif has_text:
            row += [Text(prompt), highlighted(s.completion, None if full else 300)]
        if compact and names:
            row.append("\n".join(f"{visible(n)} {_fmt(s.rewards.get(n))}" for n in names))
        else:
            row += [_fmt(s.rewards.get(n)) for n in names]
        total_style = "red" if s.dropped else ""
        row.append(Text(_fmt(s.total) + (" (dropped)" if s.dropped else ""), style=total_style))
        if fnames:
            row.append(Text(hits, style="red") if hits else "")
        if has_sel:
            row.append(Text("✓", style="green") if s.selected else "")
        if has_adv:
            row.append(_fmt(s.advantage))
        if has_hint:
            row.append("h" if s.hinted else "")
        t.add_row(*row)
    return t


def rollouts_table(out: Console, samples: list[rolloutview.Sample], full: bool,
                   algorithm: str | None = None) -> Table:
    """The rollouts table in the layout that fits ``out``'s width: side by side when there is room,
    compact (prompt above completion, rewards in one column) when not."""
    wide = _rollouts_table(samples, full, algorithm=algorithm)
    # The wide layout needs its fixed columns plus ~40 characters of completion to read well.
    fixed = out.measure(wide, options=out.options.update_width(10_000)).minimum
    if fixed + 40 <= out.width:
        return wide
    return _rollouts_table(samples, full, algorithm=algorithm, compact=True)


def _describe_query(q: rolloutview.Query) -> str:
    parts = []
    if q.filter:
        parts.append(f"hit {q.filter}" if q.filter != "any" else "hit a filter")
    if q.prompt:
        parts.append(f"prompt contains {q.prompt!r}")
    if q.grep:
        parts.append(f"completion matches /{q.grep}/")
    if q.selected is not None:
        parts.append("selected" if q.selected else "not selected")
    return ", ".join(parts)


def show_iteration(out: Console, err: Console, s: runview.RunSummary, n: int, q: rolloutview.Query,
                   full: bool, as_json: bool) -> None:
    problems: list[BadLine] = []
    path = rolloutview.rollouts_path(s.root, n)
    shown, matched, total = rolloutview.select_samples(rolloutview.iter_samples(path, problems), q)
    warn(err, problems)
    metrics = next((m for m in s.metrics if m["iteration"] == n), None)
    if as_json:
        _json({"run": str(s.root), "iteration": n, "file": str(path), "complete": metrics is not None,
               "read": total, "matched": matched, "metrics": metrics,
               "rollouts": [x.to_json() for x in shown], "problems": [str(p) for p in problems]})
        return
    if metrics is None:
        err.print(Text(f"warning: iteration {n} has no metrics yet (in progress, or cut short by a kill)",
                       style="yellow"))
    _show_sample_table(out, shown, matched, total, q, full, f"{s.root} · iteration {n}", s.algorithm)


def _show_sample_table(out: Console, shown: list[rolloutview.Sample], matched: int, total: int,
                       q: rolloutview.Query, full: bool, title: str, algorithm: str | None = None) -> None:
    what = _describe_query(q)
    order = q.sort or ("reward" if q.top or q.worst else None)
    head = f"{title}: {total} rollouts" + (f", {matched} {what}" if what else "")
    parts = []
    if q.top:
        parts.append(f"top {q.top}")
    if q.worst:
        parts.append(f"worst {q.worst}")
    if order:
        parts.append(f"by {order}")
    if len(shown) < matched and not (q.top or q.worst):
        parts.append(f"first {len(shown)} (--limit 0 for all)")
    head += (" — " + ", ".join(parts)) if parts else ""
    out.print(Text(head, style="bold"))
    if not shown:
        out.print(Text("no rollouts match", style="yellow"))
        return
    out.print(rollouts_table(out, shown, full, algorithm=algorithm))


def show_file(out: Console, err: Console, path: Path, q: rolloutview.Query, full: bool,
              as_json: bool) -> None:
    """A rollouts JSONL that is not a run (e.g. `raftkit score --json` output)."""
    problems: list[BadLine] = []
    samples = list(rolloutview.iter_samples(path, problems, rolloutview.registered_filter_names()))
    warn(err, problems)
    if not samples:
        raise runview.InspectError(f"{path}: no rollout records in it" + (
            f" ({len(problems)} unreadable lines)" if problems else ""))
    if not any(s.completion for s in samples):
        err.print(Text(f"warning: {path}: no 'completion' field in any record: showing the scores only",
                       style="yellow"))
    stats = rolloutview.rollout_stats(samples)
    shown, matched, total = rolloutview.select_samples(samples, q)
    if as_json:
        _json({"file": str(path), "summary": stats.to_json(), "matched": matched,
               "rollouts": [x.to_json() for x in shown], "problems": [str(p) for p in problems]})
        return
    t = Table(title=f"{path}: {stats.n} rows", title_justify="left", show_edge=False, header_style="bold")
    for c in ("", "mean", "std", "min", "max", "n"):
        t.add_column(c, justify="left" if not c else "right", overflow="fold")
    for name, d in [*stats.rewards.items(), ("total", stats.total)]:
        t.add_row(visible(name), *(_fmt(d[k]) for k in ("mean", "std", "min", "max")), str(d["n"]),
                  style="bold" if name == "total" else None)
    out.print(t)
    extras = [f"length {stats.chars_mean:.0f} chars" if stats.chars_mean is not None else "",
              f"distinct-2 {stats.distinct_2:.2f}" if stats.distinct_2 is not None else "",
              *(f"{f} hit {_pct(v['rate'])}" for f, v in stats.filters.items()),
              f"{stats.n_selected} selected" if stats.n_selected is not None else ""]
    out.print(visible("  ".join(e for e in extras if e)))
    _show_sample_table(out, shown, matched, total, q, full, str(path))


def show_compare(out: Console, err: Console, root: Path, a: int, b: int, q: rolloutview.Query, full: bool,
                 as_json: bool) -> None:
    problems: list[BadLine] = []
    pairs = rolloutview.compare_iterations(root, a, b, problems)
    warn(err, problems)
    if q.prompt:
        pairs = [p for p in pairs if q.prompt.lower() in p.prompt.lower()]
    if as_json:
        _json({"run": str(root), "a": a, "b": b, "prompts": [p.to_json() for p in pairs],
               "problems": [str(p) for p in problems]})
        return
    both = [p for p in pairs if p.a and p.b]
    deltas = [p.delta for p in both if p.delta is not None]
    mean_delta = sum(deltas) / len(deltas) if deltas else None
    out.print(Text(f"{root}: iteration {a} vs {b} — {len(both)} prompts in both"
                   + (f", mean total {numfmt.fmt(mean_delta, sign=True)}" if mean_delta is not None else ""),
                   style="bold"))
    if pairs and not both:
        out.print(Text("no prompt was sampled at both iterations (each iteration draws its own batch of "
                       "prompts); showing each iteration's prompts alone", style="yellow"))
    shown = pairs if (full or q.limit is None) else pairs[: q.limit]
    t = Table(show_lines=True, header_style="bold")
    t.add_column("prompt", max_width=None if full else 26, overflow="fold")
    t.add_column(f"iteration {a} (best sample)", overflow="fold", ratio=1)
    t.add_column(f"iteration {b} (best sample)", overflow="fold", ratio=1)
    t.add_column("rewards (mean over k)", justify="right", overflow="fold")
    t.add_column("total", justify="right", overflow="fold")
    for p in shown:
        names = list(dict.fromkeys([*(p.a.rewards_mean if p.a else {}), *(p.b.rewards_mean if p.b else {})]))
        lines = [f"{visible(n)}: {_fmt(p.a.rewards_mean.get(n) if p.a else None)} → "
                 f"{_fmt(p.b.rewards_mean.get(n) if p.b else None)}" for n in names]
        delta = p.delta
        total = Text(f"{_fmt(p.a.total_mean if p.a else None)} → {_fmt(p.b.total_mean if p.b else None)}")
        if delta is not None:
            total.append(f"\n{numfmt.fmt(delta, sign=True)}",
                         style="green" if delta > 0 else "red" if delta < 0 else "")
        width = None if full else 220
        t.add_row(Text(visible(p.prompt if full else highlight.fold(p.prompt.replace("\n", " "), 80)[0])),
                  highlighted(p.a.best.completion, width) if p.a else Text("(not sampled)", style="dim"),
                  highlighted(p.b.best.completion, width) if p.b else Text("(not sampled)", style="dim"),
                  "\n".join(lines), total)
    out.print(t)
    if len(shown) < len(pairs):
        out.print(Text(f"{len(pairs) - len(shown)} more prompts (--limit 0 for all)", style="dim"))


# --------------------------------------------------------------------------- several runs


def show_runs(out: Console, runs: list[runview.RunSummary], as_json: bool) -> None:
    data = runview.compare_runs(runs)
    if as_json:
        _json({**data, "status": [r.status_line for r in runs], "summary": [r.config_summary() for r in runs],
               "missing": [r.missing for r in runs]})
        return
    names = _short_names([r.root for r in runs])
    for name, r in zip(names, runs, strict=True):
        cfg = r.config_summary()
        bits = [f"{k} {', '.join(v) if isinstance(v, list) else v}" for k, v in cfg.items()
                if k in ("algorithm", "rewards", "filters", "k")]
        out.print(Text.assemble((f"{name}: ", "bold"), visible(r.status_line),
                                ("  " + visible("; ".join(bits)), "dim")))
    out.print(Text("metrics: last value (best over the run: highest reward and distinct-n, "
                   "lowest filter rate)", style="bold"))
    t = Table(show_edge=False, header_style="bold")
    t.add_column("metric", overflow="fold")
    for name in names:
        t.add_column(name, justify="right", overflow="fold")
    for row in data["metrics"]:
        cells = []
        for v in row["runs"]:
            if not v["present"]:
                cells.append(Text("missing", style="dim"))
            else:
                cells.append(_fmt(v["last"]) + (f" ({_fmt(v['best'])})" if v["best"] is not None else ""))
        t.add_row(visible(row["key"]), *cells)
    out.print(t)
    per = data["total_by_iteration"]
    if per:
        out.print(Text("reward (the policy's own samples) per iteration", style="bold"))
        t2 = Table(show_edge=False, header_style="bold")
        t2.add_column("iter", justify="right", overflow="fold")
        for name in names:
            t2.add_column(name, justify="right", overflow="fold")
        for r in per:
            t2.add_row(str(r["iteration"]), *(_fmt(v) for v in r["total"]))
        out.print(t2)
        for name, r in zip(names, runs, strict=True):
            spark = runview.sparkline(r.series(r.total_key))
            out.print(Text.assemble((f"{name:<20} ", "bold"), (spark, "green")))


def _short_names(roots: list[Path]) -> list[str]:
    """Distinct short labels for runs: their folder names, or more of their paths when those clash."""
    names = [r.name or str(r) for r in roots]
    if len(set(names)) == len(names):
        return names
    return [str(r) for r in roots]
