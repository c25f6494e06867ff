"""One figure of a run (or several runs): reward curves, completion length, distinct-2, filter rates.

matplotlib is the optional extra ``plot`` and is imported only here, only when a figure is drawn, with
the Agg backend (no display needed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raftkit.runs.metric_names import reward_key

if TYPE_CHECKING:
    from raftkit.runs.runview import RunSummary


_STYLES = ("-", "--", ":", "-.")


class PlotError(RuntimeError):
    """The figure cannot be drawn (matplotlib missing, nothing to plot, unwritable file)."""


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise PlotError("--plot needs matplotlib, the optional extra 'plot': "
                        "pip install 'raftkit[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _xy(run: RunSummary, key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for m in run.metrics:
        v = m.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(m["iteration"])
            ys.append(float(v))
    return xs, ys


def panels(runs: list[RunSummary]) -> list[dict[str, Any]]:
    """What the figure shows: one panel per reward, the total, length, diversity, filters, KL/loss.

    Each panel is {"title", "ylabel", "lines": [(run index, key, label, style)]}; only keys some run has.
    """
    present: set[str] = set()
    for r in runs:
        for m in r.metrics:
            present.update(m)
    rewards = list(dict.fromkeys(n for r in runs for n in r.groups.rewards))
    filters = list(dict.fromkeys(n for r in runs for n in r.groups.filters))
    out = []

    def reward_panel(name: str, title: str) -> None:
        lines = []
        for i in range(len(runs)):
            lines.append((i, reward_key(name, "mean"), "policy's own", "-"))
            # With exploration hints: the hinted samples, apart.
            lines.append((i, reward_key(name, "explore_mean"), "hinted", "-."))
            lines.append((i, reward_key(name, "selected_mean"), "selected", "--"))
        out.append({"title": title, "ylabel": "mean reward", "lines": lines, "band": reward_key(name, "std")})

    if "reward" in present:
        reward_panel("total", "reward (weighted total)")
    for name in rewards:
        reward_panel(name, f"reward: {name}")
    if "length/chars_mean" in present:
        out.append({"title": "completion length", "ylabel": "characters",
                    "lines": [(i, "length/chars_mean", "chars", "-") for i in range(len(runs))]})
    elif "completions/mean_length" in present:
        out.append({"title": "completion length", "ylabel": "tokens",
                    "lines": [(i, "completions/mean_length", "tokens", "-") for i in range(len(runs))]})
    div = [k for k in ("distinct_2", "distinct_1") if k in present]
    if div:
        out.append({"title": "diversity", "ylabel": "distinct-n", "ylim": (0, 1.02),
                    "lines": [(i, k, k.replace("_", "-"), "-" if k == "distinct_2" else ":")
                              for i in range(len(runs)) for k in div]})
    if filters:
        out.append({"title": "filter hit rate", "ylabel": "share of samples", "ylim": (0, 1.02),
                    "percent": True,
                    "lines": [(i, f"filter/{f}/rate", f, "-") for i in range(len(runs)) for f in filters]})
    for key, title in (("kl", "KL to reference"), ("loss", "loss")):
        if key in present:
            out.append({"title": title, "ylabel": key,
                        "lines": [(i, key, key, "-") for i in range(len(runs))]})
    # Keep only lines that have data, and panels that keep a line.
    kept = []
    for p in out:
        p["lines"] = [ln for ln in p["lines"] if _xy(runs[ln[0]], ln[1])[0]]
        if p["lines"]:
            kept.append(p)
    return kept


def plot_runs(runs: list[RunSummary], path: str | Path, dpi: int = 120) -> Path:
    """Draw the runs' metrics into one PNG (or any format matplotlib knows from the suffix)."""
    path = Path(path)
    if not any(r.metrics for r in runs):
        raise PlotError("nothing to plot: no iteration has completed yet")
    spec = panels(runs)
    if not spec:
        raise PlotError("nothing to plot: the metrics hold no rewards, lengths, diversity or filter rates")
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    ncols = min(3, len(spec))
    nrows = math.ceil(len(spec) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows), squeeze=False)
    cmap = plt.get_cmap("tab10")
    multi = len(runs) > 1
    names = [r.root.name or str(r.root) for r in runs]
    for ax, p in zip(axes.flat, spec, strict=False):
        series_seen: dict[str, int] = {}
        for run_i, key, label, style in p["lines"]:
            xs, ys = _xy(runs[run_i], key)
            # One colour per run when comparing runs; else one per series (filters, distinct-n).
            if multi:
                # One colour per run; the panel's series (all/selected, each filter) by line style.
                color = cmap(run_i % 10)
                style = _STYLES[series_seen.setdefault(label, len(series_seen)) % len(_STYLES)]
                full = f"{names[run_i]} · {label}"
            else:
                # Each series of a panel its own colour: all samples vs selected, each filter.
                color = cmap(series_seen.setdefault(label, len(series_seen)) % 10)
                if label == "any":  # metrics.py's share of samples hit by any filter: the envelope
                    color, style = "black", ":"
                full = label
            marker = "o" if len(xs) <= 30 else None
            ax.plot(xs, ys, style, color=color, label=full, marker=marker, markersize=3.5, linewidth=1.8)
            if "band" in p and style == "-" and not multi:  # bands of several runs only clutter
                bx, bs = _xy(runs[run_i], p["band"])
                std = dict(zip(bx, bs, strict=True))
                pts = [(x, y, std[x]) for x, y in zip(xs, ys, strict=True) if x in std]
                if pts:
                    ax.fill_between([t[0] for t in pts], [t[1] - t[2] for t in pts],
                                    [t[1] + t[2] for t in pts], color=color, alpha=0.08, linewidth=0,
                                    label="± std")
        ax.set_title(p["title"], fontsize=11, loc="left")
        ax.set_xlabel("iteration", fontsize=9)
        ax.set_ylabel(p["ylabel"], fontsize=9)
        if "ylim" in p:
            ax.set_ylim(*p["ylim"])
        if p.get("percent"):
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
        handles, _ = ax.get_legend_handles_labels()
        if len(handles) > 1:
            ax.legend(fontsize=8, frameon=False)
    for ax in list(axes.flat)[len(spec):]:
        ax.set_visible(False)
    labels = [f"{n} ({r.algorithm})" if r.algorithm else n for n, r in zip(names, runs, strict=True)]
    title = " vs ".join(labels) + ("" if multi else f" — {runs[0].status}")
    fig.suptitle(title, fontsize=12, x=0.01, ha="left")
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    except (OSError, ValueError) as e:
        raise PlotError(f"cannot write {path}: {e}") from None
    finally:
        plt.close(fig)
    return path
