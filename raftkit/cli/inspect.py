"""`raftkit inspect`: read a run (live, finished, killed or crashed) or a rollouts file in the terminal.

This module is the command: it checks the options and picks a view; ``inspect_render`` draws it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.console import Console

from raftkit.cli import inspect_render as render
from raftkit.runs import rolloutview, runview

DEFAULT_LIMIT = 20
PIPE_WIDTH = 160


@click.command("inspect")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--iteration", "-i", "iteration", metavar="N",
              help="Show iteration N's rollouts (a number, or 'last').")
@click.option("--sort", metavar="KEY", help="Order rollouts by reward (the total), reward:NAME or length, "
              "highest first.")
@click.option("--top", type=click.IntRange(min=1), metavar="K",
              help="Only the K best rollouts (by --sort).")
@click.option("--worst", type=click.IntRange(min=1), metavar="K",
              help="Only the K worst rollouts (by --sort).")
@click.option("--filter", "filter_name", metavar="NAME",
              help="Only rollouts that hit filter NAME ('any' for any filter).")
@click.option("--prompt", "prompt_text", metavar="TEXT", help="Only rollouts whose prompt contains TEXT.")
@click.option("--grep", metavar="REGEX", help="Only rollouts whose completion matches REGEX.")
@click.option("--selected/--not-selected", "selected", default=None,
              help="Only rollouts RAFT selected for training (or only those it did not).")
@click.option("--limit", type=click.IntRange(min=0), default=DEFAULT_LIMIT, show_default=True,
              help="At most this many rollouts in a table (0: all). --json lists every match.")
@click.option("--full", is_flag=True, help="Do not fold long prompts and completions.")
@click.option("--compare", nargs=2, type=str, metavar="A B",
              help="The same prompts at iterations A and B side by side.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png",
              help="Write a figure of the reward curves, length, distinct-2 and filter rates.")
@click.option("--columns", metavar="NAME,...|all",
              help="Iteration-table columns to keep however narrow the terminal ('all': every one); "
              "by default the least important are left out until the table fits, and named.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")
def command(paths: tuple[Path, ...], iteration: str | None, sort: str | None, top: int | None,
            worst: int | None, filter_name: str | None, prompt_text: str | None, grep: str | None,
            selected: bool | None, limit: int, full: bool, compare: tuple[str, str] | None,
            plot: Path | None, columns: str | None, as_json: bool) -> None:
    """Read a run directory or a rollouts file: metrics per iteration, the rollouts themselves, plots.

    \b
    Examples:
      raftkit inspect runs/latest                       # config, status, one row per iteration
      raftkit inspect runs/latest -i 3 --worst 5        # iteration 3's five lowest-reward rollouts
      raftkit inspect runs/latest -i last --filter hash # samples that hit the '#' filter
      raftkit inspect runs/latest -i 7 --grep '(:\\)\\s*){3}'
      raftkit inspect runs/latest --compare 0 9         # the same prompts before and after
      raftkit inspect runs/latest --plot curves.png
      raftkit inspect runs/with-filter runs/without     # two runs side by side
      raftkit inspect scored.jsonl --sort reward        # a `raftkit score --json` file
    """
    out = Console(highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = PIPE_WIDTH  # piped into a file or a pager: no terminal width to respect
    err = Console(stderr=True, highlight=False, soft_wrap=True)  # paths in warnings stay whole
    query = rolloutview.Query(sort=sort, top=top, worst=worst, filter=filter_name, prompt=prompt_text,
                              grep=grep, selected=selected, limit=None if as_json or limit == 0 else limit)
    try:
        for p in paths:
            if not p.exists():
                raise runview.InspectError(f"{p}: no such file or directory")
        chosen = (sort, top, worst, filter_name, prompt_text, grep, selected)
        rollout_opts = any(v is not None for v in chosen)
        if len(paths) > 1:
            if iteration is not None or compare or rollout_opts:
                raise runview.InspectError("--iteration and --compare take one run; "
                                           "with several paths inspect compares their metrics")
            runs = []
            for p in paths:
                if not runview.is_run_dir(p):
                    raise runview.InspectError(f"{p} is not a run directory; only runs can be compared")
                runs.append(runview.load_summary(p))
            render.warn(err, [w for r in runs for w in r.problems])
            if plot is not None:
                _plot(runs, plot, err)
            render.show_runs(out, runs, as_json)
            return
        path = paths[0]
        if path.is_file():
            if compare or plot:
                raise runview.InspectError(f"{path} is a rollouts file, not a run directory: --compare and "
                                           "--plot need a run directory")
            render.show_file(out, err, path, query, full, as_json)
            return
        summary = runview.load_summary(path)
        if compare:
            if iteration is not None:
                raise runview.InspectError("use either --iteration or --compare, not both")
            a, b = (rolloutview.resolve_iteration(path, x) for x in compare)
            render.show_compare(out, err, path, a, b, query, full, as_json)
        elif iteration is not None:
            n = rolloutview.resolve_iteration(path, iteration)
            render.show_iteration(out, err, summary, n, query, full, as_json)
        else:
            if rollout_opts:
                raise runview.InspectError("--sort, --top, --worst, --filter, --prompt, --grep and "
                                           "--selected choose rollouts: add --iteration N (or 'last')")
            render.warn(err, summary.problems)
            if plot is not None:
                _plot([summary], plot, err)
            render.show_summary(out, summary, as_json, columns)
            return
        if plot is not None:
            _plot([summary], plot, err)
    except runview.InspectError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:  # unreadable files, a full disk for --plot: say which file
        raise click.ClickException(f"{e.filename or ''}: {e.strerror or e}") from None


def _plot(runs: list[runview.RunSummary], path: Path, err: Console) -> None:
    from raftkit.runs import plots

    try:
        plots.plot_runs(runs, path)
    except plots.PlotError as e:
        raise click.ClickException(str(e)) from None
    err.print(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(command())
