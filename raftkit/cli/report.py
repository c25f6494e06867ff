"""`raftkit report`: one self-contained HTML page for one or more runs (curves, evaluation, rollouts)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from raftkit.runs import report, runview
from raftkit.runs.rundir import atomic_write_text


@click.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.html",
              help="Where to write the page [default: RUN/report.html for one run, ./report.html for "
              "several].")
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
@click.option("--max-rollouts", type=click.IntRange(min=0), default=report.MAX_ROLLOUTS, show_default=True,
              metavar="N", help="Rollouts kept per iteration in the page: the first N (0: all of them; the "
              "table pages through them).")
def command(runs: tuple[Path, ...], output: Path | None, force: bool, max_rollouts: int) -> None:
    """Write an HTML report of one or more runs: curves, before/after evaluation, an iteration browser.

    The page is one file with everything inline (no network, no CDN): open it in any browser, offline.
    With several runs the curves overlay and the evaluation has a column per run.

    \b
    Examples:
      raftkit report runs/latest                        # writes runs/latest/report.html
      raftkit report runs/with-filter runs/without -o compare.html
    """
    try:
        for p in runs:
            if not p.exists():
                raise runview.InspectError(f"{p}: no such file or directory")
            if not runview.is_run_dir(p):
                raise runview.InspectError(
                    f"{p} is not a run directory (no run.json, metrics.jsonl or iterations/ in it)")
        if output is None:
            output = runs[0] / "report.html" if len(runs) == 1 else Path("report.html")
        if output.is_dir():
            raise runview.InspectError(f"{output} is a directory; give a file name with -o")
        if output.exists() and not force:
            raise runview.InspectError(f"{output} already exists; use --force to overwrite it")
        page = report.build_report(list(runs), max_rollouts=max_rollouts)
    except runview.InspectError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or output}: {e.strerror or e}") from None
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output, page)
    except OSError as e:  # a read-only run folder, a full disk: the page can go elsewhere
        raise click.ClickException(f"cannot write {output} ({e.strerror or e}); write the page elsewhere "
                                   "with -o FILE.html") from None
    click.echo(f"wrote {output} ({len(page.encode()) / 1024:.0f} KiB)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(command())
