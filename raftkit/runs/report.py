"""One self-contained HTML page for one or more runs: curves, the before/after evaluation, the rollouts.

``raftkit report`` writes it. The page works offline and fetches nothing: the CSS, the charts (inline SVG
drawn here) and one small script are all in the file, and the rollouts are embedded as JSON in a
``<script type="application/json">`` tag. Runs are read with the same tolerant readers as
``raftkit inspect`` (``runview``, ``rolloutview``), so a live, killed or older run still reports.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raftkit import __version__
from raftkit.highlight import highlight_patterns, hit_spans
from raftkit.runs import rolloutview, runview
from raftkit.runs.rundir import BadLine

MAX_ROLLOUTS = 0  # per iteration, 0: all (the page pages through them); it says when some were left out
PAGE_ROWS = 100  # rollouts the table shows at once
MAX_TEXT = 2000  # characters of a prompt or completion kept in the page
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
# Chart size and margins, in SVG units.
W, H, LEFT, RIGHT, TOP, BOTTOM = 330, 190, 48, 12, 26, 24


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


# --------------------------------------------------------------------------- charts


def chart_keys(summaries: Sequence[runview.RunSummary]) -> list[tuple[str, str]]:
    """(metric key, chart title) for every curve some run recorded: rewards, filters, length, diversity."""
    rewards = list(dict.fromkeys(n for s in summaries for n in s.groups.rewards))
    filters = list(dict.fromkeys(n for s in summaries for n in s.groups.filters))
    keys = [("reward", "reward (weighted total, policy's own samples)")]
    keys += [(f"rewards/{n}/mean", f"reward: {n}") for n in rewards]
    keys += [("explore/reward", "reward of the hinted samples")]
    keys += [(f"filter/{n}/rate", f"filter rate: {n}") for n in filters]
    keys += [("length/chars_mean", "length (chars)"), ("completions/mean_length", "length (tokens)"),
             ("distinct_1", "distinct-1"), ("distinct_2", "distinct-2")]
    return [(k, t) for k, t in keys if _has_numbers(summaries, k)]


# Training health, in this order; a prefix ending in '/' takes every key under it (first-seen order).
HEALTH = (("loss", "loss"), ("policy_loss", "policy loss"), ("value_loss", "value loss"),
          ("learning_rate", "learning rate"), ("kl", "KL to the reference"), ("entropy", "entropy"),
          ("clip_ratio/", "clip ratio: "), ("grad_norm", "gradient norm"),
          ("frac_reward_zero_std", "groups with no reward spread"),
          ("mismatch/", "mismatch: "))


def health_keys(summaries: Sequence[runview.RunSummary]) -> list[tuple[str, str]]:
    """(metric key, chart title) of the training-health curves some run recorded: loss, learning rate,
    KL, entropy, clip ratios, gradient norm and the sampler/trainer mismatch (names as TRL's)."""
    seen = list(dict.fromkeys(k for s in summaries for m in s.metrics for k in m))
    out = []
    for key, title in HEALTH:
        if key.endswith("/"):
            out += [(k, title + k[len(key):]) for k in seen if k.startswith(key)]
        elif key in seen:
            out.append((key, title))
    return [(k, t) for k, t in out if _has_numbers(summaries, k)]


def other_chart_keys(summaries: Sequence[runview.RunSummary]) -> list[str]:
    """Every other numeric metric some run recorded (the algorithm's, and what rewards logged with
    ``log_metric``), in first-seen order."""
    shown = {k for k, _ in [*chart_keys(summaries), *health_keys(summaries)]}
    keys = dict.fromkeys(k for s in summaries for m in s.metrics for k in m)
    return [k for k in keys
            if k not in shown and k not in ("iteration", "time") and _has_numbers(summaries, k)]


def _has_numbers(summaries: Sequence[runview.RunSummary], key: str) -> bool:
    return any(v is not None and math.isfinite(v) for s in summaries for v in s.series(key))


def nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """Round axis ticks (steps of 1, 2 or 5 times a power of ten) covering lo..hi.

    >>> nice_ticks(-1.07, 0.19)
    [-1.5, -1.0, -0.5, 0.0, 0.5]
    """
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step), math.ceil(hi / step)
    return [round(i * step, 12) for i in range(first, last + 1)]


def _tick(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.2e}"


def svg_chart(title: str, key: str, series: Sequence[tuple[str, str, Sequence[tuple[int, float | None]]]]
              ) -> str:
    """A small line chart as inline SVG: one polyline per (label, colour, [(iteration, value)]).

    A missing value breaks its line; each point carries a tooltip.
    """
    points = [(x, y) for _, _, pts in series for x, y in pts if y is not None and math.isfinite(y)]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if key.startswith("filter/"):
        y0 = min(0.0, y0)  # rates read best from zero
    if y0 == y1:
        y0, y1 = y0 - (abs(y0) * 0.1 or 0.5), y1 + (abs(y1) * 0.1 or 0.5)
    ticks = nice_ticks(y0, y1)
    y0, y1 = ticks[0], ticks[-1]

    def px(x: float) -> float:
        return LEFT + (W - LEFT - RIGHT) * (0.5 if x1 == x0 else (x - x0) / (x1 - x0))

    def py(y: float) -> float:
        return H - BOTTOM - (H - TOP - BOTTOM) * (y - y0) / (y1 - y0)

    out = [f'<svg class="chart" data-key="{esc(key)}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
           f'role="img" aria-label="{esc(title)}">',
           f'<text class="title" x="{LEFT}" y="16">{esc(title)}</text>']
    for v in ticks:
        y = py(v)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text class="tick" x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{_tick(v)}</text>')
    for x in sorted({x0, x1}):
        out.append(f'<text class="tick" x="{px(x):.1f}" y="{H - 8}" text-anchor="middle">{x}</text>')
    out.append(f'<text class="tick" x="{(LEFT + W - RIGHT) / 2:.0f}" y="{H - 8}" '
               'text-anchor="middle">iteration</text>')
    for label, color, pts in series:
        segments: list[list[tuple[int, float]]] = [[]]
        for x, y in pts:
            if y is None or not math.isfinite(y):
                segments.append([])
            else:
                segments[-1].append((x, y))
        for seg in segments:
            if seg:
                coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in seg)
                out.append(f'<polyline class="series" data-run="{esc(label)}" stroke="{color}" '
                           f'points="{coords}"/>')
        dots = [(x, y) for seg in segments for x, y in seg]
        if len(dots) <= 80:
            out.extend(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{color}">'
                       f'<title>{esc(label)} · iteration {x}: {y:.4g}</title></circle>' for x, y in dots)
    out.append("</svg>")
    return "".join(out)


def charts_html(summaries: Sequence[runview.RunSummary], labels: Sequence[str]) -> str:
    keys = chart_keys(summaries)
    if not keys:
        return '<p class="note">No metrics recorded yet (no numbers in metrics.jsonl).</p>'
    legend = "".join(f'<span><i style="background:{COLORS[i % len(COLORS)]}"></i>{esc(lab)}</span>'
                     for i, lab in enumerate(labels))

    def charts(pairs: Sequence[tuple[str, str]]) -> str:
        out = []
        for key, title in pairs:
            series = [(lab, COLORS[i % len(COLORS)], list(zip(s.iterations(), s.series(key), strict=True)))
                      for i, (s, lab) in enumerate(zip(summaries, labels, strict=True))]
            out.append(svg_chart(title, key, series))
        return "".join(out)

    health = health_keys(summaries)
    health_html = (f'<h3>Training health</h3><div class="charts" id="health">{charts(health)}</div>'
                   if health else "")
    others = other_chart_keys(summaries)
    more = (f'<details><summary>Every other metric ({len(others)})</summary><div class="charts">'
            f'{charts([(k, k) for k in others])}</div></details>') if others else ""
    return (f'<div class="legend">{legend}</div><h3>Rewards and samples</h3><div class="charts" id="curves">'
            f'{charts(keys)}</div>{health_html}{more}')


# --------------------------------------------------------------------------- the evaluation


def _get(d: Any, path: Sequence[str]) -> float | None:
    for k in path:
        d = d.get(k) if isinstance(d, dict) else None
    return runview.number(d)


def eval_spec(evals: Sequence[dict[str, Any]]) -> list[tuple[str, tuple[str, ...], bool, int]]:
    """Rows of the evaluation table: (label, path in an evaluation, as percent, +1/-1 good direction).

    Task metrics first, rewards after: rewards going up on top of a table reads as success.
    """
    sides = [ev.get(side) for ev in evals for side in ("before", "after") if isinstance(ev.get(side), dict)]
    names = {g: list(dict.fromkeys(n for s in sides for n in (s.get(g) or {})))
             for g in ("rewards", "filters")}
    rows: list[tuple[str, tuple[str, ...], bool, int]] = [
        ("answer accuracy", ("accuracy",), True, +1), ("degenerate share", ("degenerate",), True, -1)]
    for n in names["rewards"]:
        rows += [(f"reward {n}", ("rewards", n), False, +1), (f"{n} > 0", ("positive", n), True, 0)]
    # The same definition as the training curves' reward, measured on the held-out prompts.
    rows.append(("reward (held-out)", ("total",), False, +1))
    rows += [(f"filter {n}", ("filters", n), True, -1) for n in names["filters"]]
    rows += [("distinct-2", ("distinct_2",), False, 0), ("length (chars)", ("length_chars",), False, 0)]
    return [r for r in rows if any(_get(s, r[1]) is not None for s in sides)]


def _fmt(v: float | None, percent: bool, sign: bool = False) -> str:
    """A value; a change of a share is in percentage points."""
    if v is None:
        return "–"
    if percent:
        return f"{v * 100:+.1f} pp" if sign else f"{v:.1%}"
    return f"{v:{'+' if sign else ''}.3f}"


def _change(b: float | None, a: float | None, percent: bool, good: int) -> str:
    if a is None or b is None:
        return ""
    d = a - b
    cls = "" if not good or not d else (" good" if d * good > 0 else " bad")
    return f'<span class="change{cls}">{esc(_fmt(d, percent, sign=True))}</span>'


def eval_html(summaries: Sequence[runview.RunSummary], labels: Sequence[str]) -> str:
    """The before/after evaluation: before, after, change for one run; a column per run for several."""
    evals = [s.eval if isinstance(s.eval, dict) else {} for s in summaries]
    notes = [f"{esc(lab)}: no eval.json (the run did not evaluate, or has not finished)"
             for lab, ev in zip(labels, evals, strict=True) if not ev]
    spec = eval_spec(evals)
    if not spec:
        return "".join(f'<p class="note">{n}</p>' for n in notes) or '<p class="note">No evaluation.</p>'
    single = len(summaries) == 1
    head = ["<th>metric</th>"]
    head += ["<th>before (base)</th><th>after (trained)</th><th>change</th>"] if single else [
        f"<th>{esc(lab)}<br><small>before → after</small></th>" for lab in labels]
    body = []
    for label, path, percent, good in spec:
        cells = [f"<td>{esc(label)}</td>"]
        for ev in evals:
            b, a = _get(ev.get("before"), path), _get(ev.get("after"), path)
            if single:
                cells.append(f'<td class="num">{_fmt(b, percent)}</td><td class="num">{_fmt(a, percent)}</td>'
                             f'<td class="num">{_change(b, a, percent, good)}</td>')
            else:
                cells.append(f'<td class="num">{_fmt(b, percent)} → {_fmt(a, percent)} '
                             f'{_change(b, a, percent, good)}</td>')
        key = "-".join(path)
        body.append(f'<tr data-metric="{esc(key)}">{"".join(cells)}</tr>')
    settings = []
    for lab, ev in zip(labels, evals, strict=True):
        first = ev.get("after") or ev.get("before")
        if isinstance(first, dict) and first.get("prompts"):
            settings.append(f"{esc(lab)}: {esc(first.get('prompts'))} held-out prompts, "
                            f"{esc(first.get('samples'))} samples, T={esc(first.get('temperature'))}")
    foot = "".join(f'<p class="note">{n}</p>' for n in [*settings, *notes])
    return (f'<table id="eval"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>{foot}')


def alarms_html(summaries: Sequence[runview.RunSummary], labels: Sequence[str]) -> str:
    """The reward-hacking alarm of each run whose evaluation raised one, in red."""
    out = []
    for s, lab in zip(summaries, labels, strict=True):
        alarm = s.eval.get("alarm") if isinstance(s.eval, dict) else None
        if isinstance(alarm, list) and alarm:
            items = "".join(f"<li>{esc(a)}</li>" for a in alarm)
            who = f" ({esc(lab)})" if len(summaries) > 1 else ""
            out.append(f'<div class="alarm"><strong>Reward hacking?{who}</strong><ul>{items}</ul></div>')
    return "".join(out)


# --------------------------------------------------------------------------- rollouts


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + f" … [{len(text) - limit} more characters]"


def iteration_rollouts(root: Path, iteration: int, max_rollouts: int | None, problems: list[BadLine]
                       ) -> dict[str, Any]:
    """An iteration's records trimmed for the page (all of them, or the first ``max_rollouts``), and how
    many it has in all.

    Compact, since every sample is embedded: each prompt once (``prompts``; a row's ``p`` is its index),
    and a row carries only the fields it has (no empty hits, marks or advantage).
    """
    patterns = highlight_patterns()
    rows: list[dict[str, Any]] = []
    prompts: dict[str, int] = {}
    count = 0
    for smp in rolloutview.iter_samples(rolloutview.rollouts_path(root, iteration), problems):
        count += 1
        if max_rollouts is not None and count > max_rollouts:
            continue
        hit = {n: v for n, v in smp.hits.items() if v}
        wanted = {n: p for n, p in patterns.items() if n in hit}
        spans = hit_spans(smp.completion, wanted) if wanted else []  # only what a filter hit
        prompt = prompts.setdefault(_clip(smp.prompt, 600), len(prompts))
        row: dict[str, Any] = {"n": smp.position, "p": prompt, "completion": _clip(smp.completion),
                               "total": _finite(smp.total),
                               "rewards": {k: _finite(v) for k, v in smp.rewards.items()}}
        if hit:
            row["hits"] = hit
            row["marks"] = [[a, min(b, MAX_TEXT)] for a, b, _ in spans if a < MAX_TEXT]
        if smp.selected is not None:
            row["selected"] = smp.selected
        if smp.advantage is not None:
            row["advantage"] = _finite(smp.advantage)
        rows.append(row)
    return {"iteration": iteration, "count": count, "prompts": list(prompts), "rows": rows}


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _data_json(data: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' can end it early."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# --------------------------------------------------------------------------- the page


def run_labels(runs: Sequence[Path]) -> list[str]:
    """Short distinct names: the folder names, or the paths as given when two folders share a name."""
    names = [Path(r).resolve().name or str(r) for r in runs]
    return names if len(set(names)) == len(names) else [str(r) for r in runs]


def _run_header(s: runview.RunSummary, label: str, color: str) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(', '.join(map(str, v)) if isinstance(v, list) else v)}"
                   "</td></tr>" for k, v in s.config_summary().items())
    warn = "".join(f"<li>{esc(p)}</li>" for p in [*s.problems, *(f"missing: {m}" for m in s.missing)])
    return (f'<div class="run"><h3><i style="background:{color}"></i>{esc(label)}</h3>'
            f'<p class="status status-{esc(s.status.split()[0])}">{esc(s.status_line)}</p>'
            f'<p class="note">{esc(s.root)}</p><table class="kv">{rows}</table>'
            + (f'<ul class="problems">{warn}</ul>' if warn else "") + "</div>")


def build_report(runs: list[Path], max_rollouts: int | None = MAX_ROLLOUTS) -> str:
    """The report of ``runs`` as one HTML page (raises ``runview.InspectError`` for a path not a run).

    ``max_rollouts``: the first N rollouts of each iteration; 0 or None (the default) embeds them all."""
    if not runs:
        raise runview.InspectError("no run given")
    summaries = [runview.load_summary(r) for r in runs]
    labels = run_labels(runs)
    max_rollouts = max_rollouts or None
    data: dict[str, Any] = {"max_rollouts": max_rollouts, "page_rows": PAGE_ROWS, "runs": []}
    for s, lab in zip(summaries, labels, strict=True):
        its = [iteration_rollouts(s.root, n, max_rollouts, s.problems)
               for n in rolloutview.available_iterations(s.root)]
        # The metrics as `raftkit inspect` reads them (current names), for scripts reading the page.
        metrics = [{k: _finite(v) if isinstance(v, float) else v for k, v in m.items()} for m in s.metrics]
        data["runs"].append({"label": lab, "metrics": metrics, "iterations": its})
    headers = "".join(_run_header(s, lab, COLORS[i % len(COLORS)])
                      for i, (s, lab) in enumerate(zip(summaries, labels, strict=True)))
    run_select = "" if len(runs) == 1 else '<label>run <select id="run-select">' + "".join(
        f'<option value="{i}">{esc(lab)}</option>' for i, lab in enumerate(labels)) + "</select></label>"
    title = "raftkit report: " + ", ".join(labels)
    kept = (f"The first {max_rollouts} rollouts of each iteration are in the page." if max_rollouts
            else "Every rollout of each iteration is in the page.")
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{CSS}</style></head>
<body>
<h1>{esc(title)}</h1>
<p class="note">Written {stamp} by raftkit {esc(__version__)}. Self-contained: works offline.</p>
{alarms_html(summaries, labels)}
<div class="runs">{headers}</div>
<h2>Curves per iteration</h2>
{charts_html(summaries, labels)}
<h2>Held-out evaluation</h2>
{eval_html(summaries, labels)}
<h2>Rollouts</h2>
<p class="note">Pick an iteration; click a column header to sort. Rows a filter hit are
<span class="hit-key">shaded red</span> with the matched text marked; samples selected for training are
<span class="sel-key">marked ✓</span>. {kept} The table shows {PAGE_ROWS} at a time: sorting
orders all of them.</p>
<div class="browser">{run_select}
<div class="iters"><span>iteration</span><div id="iterations"></div></div></div>
<p id="rollout-note" class="note"></p>
<div id="pager"><button id="page-first">« first</button><button id="page-prev">‹ previous</button>
<span id="page-info"></span><button id="page-next">next ›</button><button id="page-last">last »</button></div>
<div class="table-wrap"><table id="rollouts"><thead></thead><tbody></tbody></table></div>
<script type="application/json" id="report-data">{_data_json(data)}</script>
<script>{JS}</script>
</body></html>
"""


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1280px;padding:0 1em;color:#222}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.note{color:#666;font-size:.9em;margin:.3em 0}
.alarm{border:2px solid #c00;background:#fdecea;color:#a00;padding:.6em 1em;margin:1em 0;border-radius:4px}
.alarm strong{font-size:1.2em}.alarm ul{margin:.3em 0}
.runs{display:flex;flex-wrap:wrap;gap:1.5em}.run h3{margin:.4em 0}
.run i,.legend i{display:inline-block;width:12px;height:12px;margin-right:6px;border-radius:2px}
.status-crashed,.status-killed{color:#a00}.status-finished{color:#070}
table.kv th{text-align:left;font-weight:normal;color:#666;padding-right:1em}
.problems{color:#a60;font-size:.9em}
.legend span{margin-right:1.5em}.charts{display:flex;flex-wrap:wrap;gap:8px}
svg.chart{border:1px solid #e4e4e4;background:#fff}
svg .title{font-size:12px;font-weight:600}svg .tick{font-size:10px;fill:#666}
svg .grid{stroke:#eee}svg .series{fill:none;stroke-width:1.8}
table{border-collapse:collapse}#eval td,#eval th{padding:3px 10px;border-bottom:1px solid #eee}
#eval th{text-align:right}#eval th:first-child{text-align:left}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.change{color:#666;margin-left:.4em}.good{color:#070}.bad{color:#c00;font-weight:600}
#eval tr[data-metric=accuracy] td{font-weight:600}
.browser{margin:.5em 0}.iters{display:flex;gap:.6em;align-items:baseline}
#iterations{display:flex;flex-wrap:wrap;gap:4px;margin:.5em 0}
#iterations button{border:1px solid #bbb;background:#f7f7f7;border-radius:3px;padding:2px 8px;cursor:pointer}
#iterations button.active{background:#1f77b4;color:#fff;border-color:#1f77b4}
.table-wrap{max-height:75vh;overflow:auto;border:1px solid #ddd}
#rollouts{width:100%;font-size:13px}
#rollouts th{position:sticky;top:0;background:#f0f0f0;cursor:pointer;user-select:none;padding:4px 6px;
 text-align:left;white-space:nowrap}
#rollouts th.asc::after{content:" ▲"}#rollouts th.desc::after{content:" ▼"}
#rollouts td{padding:3px 6px;border-top:1px solid #eee;vertical-align:top}
#rollouts td.text{white-space:pre-wrap;word-break:break-word;max-width:34em}
#rollouts tr.hit,.hit-key{background:#fdecea}#rollouts tr.sel td:first-child{border-left:4px solid #2ca02c}
.sel-key{border-left:4px solid #2ca02c;padding-left:3px}mark{background:#f5b7b1;color:inherit}
#pager{margin:.4em 0;display:flex;gap:.5em;align-items:center}#pager[hidden]{display:none}
#pager button{border:1px solid #bbb;background:#f7f7f7;border-radius:3px;padding:2px 8px;cursor:pointer}
h3{font-size:1em;margin:.8em 0 .3em}
"""

JS = r"""
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const itersBox = document.getElementById("iterations"), note = document.getElementById("rollout-note");
  const table = document.getElementById("rollouts"), select = document.getElementById("run-select");
  const pager = document.getElementById("pager"), pageInfo = document.getElementById("page-info");
  const PAGE = data.page_rows || 100;
  let run = 0, it = null, sortCol = null, sortDir = 1, page = 0, pages = 1;
  const fmt = v => v === null || v === undefined ? "–" : typeof v === "number" ? v.toFixed(3) : String(v);

  function columns(rows) {
    const names = [...new Set(rows.flatMap(r => Object.keys(r.rewards || {})))];
    const cols = [{label: "#", get: r => r.n, num: true}, {label: "prompt", get: r => r.prompt},
      {label: "completion", get: r => r.completion, text: true},
      {label: "total", get: r => r.total, num: true}];
    names.forEach(n => cols.push({label: n, get: r => (r.rewards || {})[n], num: true}));
    cols.push({label: "hits", get: r => Object.entries(r.hits || {}).map(([k, v]) => k + "×" + v).join(" ")});
    if (rows.some(r => r.selected !== null && r.selected !== undefined))
      cols.push({label: "selected", get: r => r.selected ? 1 : 0, show: r => r.selected ? "✓" : "",
                 num: true});
    if (rows.some(r => r.advantage !== null && r.advantage !== undefined))
      cols.push({label: "advantage", get: r => r.advantage, num: true});
    return cols;
  }

  function marked(text, marks) {  // the completion with its filter matches in <mark>
    const td = document.createElement("td"); let at = 0;
    td.className = "text";
    for (const [a, b] of marks) {
      if (a < at) continue;
      td.append(text.slice(at, a));
      const m = document.createElement("mark"); m.textContent = text.slice(a, b); td.append(m); at = b;
    }
    td.append(text.slice(at));
    return td;
  }

  function render() {
    const entry = data.runs[run].iterations[it];
    // Each prompt is stored once per iteration: a row points at it.
    entry.rows.forEach(r => { if (r.prompt === undefined) r.prompt = entry.prompts[r.p]; });
    const cols = columns(entry.rows), rows = entry.rows.slice();
    if (sortCol !== null) {
      const c = cols[sortCol];
      rows.sort((x, y) => {
        let a = c.get(x), b = c.get(y);
        if (a === null || a === undefined) return 1;
        if (b === null || b === undefined) return -1;
        return (c.num ? a - b : String(a).localeCompare(String(b))) * sortDir;
      });
    }
    const head = document.createElement("tr");
    cols.forEach((c, i) => {
      const th = document.createElement("th"); th.textContent = c.label;
      if (i === sortCol) th.className = sortDir > 0 ? "asc" : "desc";
      th.onclick = () => {
        sortDir = i === sortCol ? -sortDir : (c.num ? -1 : 1); sortCol = i; page = 0; render();
      };
      head.append(th);
    });
    table.tHead.replaceChildren(head);
    pages = Math.max(1, Math.ceil(rows.length / PAGE));
    page = Math.min(Math.max(page, 0), pages - 1);
    const first = page * PAGE, shown = rows.slice(first, first + PAGE);
    table.tBodies[0].replaceChildren(...shown.map(r => {
      const tr = document.createElement("tr");
      if (Object.keys(r.hits || {}).length) tr.classList.add("hit");
      if (r.selected) tr.classList.add("sel");
      cols.forEach(c => {
        if (c.text) { tr.append(marked(r.completion, r.marks || [])); return; }
        const td = document.createElement("td"), v = c.get(r);
        td.textContent = c.show ? c.show(r) : c.label === "#" ? String(v) : fmt(v);
        if (c.num) td.className = "num"; else if (c.label === "prompt") td.className = "text";
        tr.append(td);
      });
      return tr;
    }));
    note.textContent = "iteration " + entry.iteration + ": " + (entry.count > entry.rows.length
      ? "the first " + entry.rows.length + " of " + entry.count + " rollouts are in the page"
      : entry.count + " rollouts");
    pager.hidden = pages < 2;
    pageInfo.textContent = "rows " + (rows.length ? first + 1 : 0) + "–" + (first + shown.length) + " of "
      + rows.length + " (page " + (page + 1) + " of " + pages + ")";
  }

  const go = p => { page = p; render(); };
  document.getElementById("page-first").onclick = () => go(0);
  document.getElementById("page-prev").onclick = () => go(page - 1);
  document.getElementById("page-next").onclick = () => go(page + 1);
  document.getElementById("page-last").onclick = () => go(pages - 1);

  function show(i) {
    it = i; sortCol = null; page = 0;
    [...itersBox.children].forEach((b, j) => b.classList.toggle("active", j === i));
    render();
  }

  function showRun(r) {
    run = r;
    const its = data.runs[r].iterations;
    itersBox.replaceChildren(...its.map((e, i) => {
      const b = document.createElement("button");
      b.textContent = e.iteration; b.dataset.iteration = e.iteration; b.title = "iteration " + e.iteration;
      b.onclick = () => show(i);
      return b;
    }));
    if (its.length) show(its.length - 1);
    else { note.textContent = "This run has no rollouts yet."; table.tHead.replaceChildren();
           table.tBodies[0].replaceChildren(); }
  }

  if (select) select.onchange = () => showRun(Number(select.value));
  showRun(0);
})();
"""
