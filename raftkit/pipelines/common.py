"""What the offline pipelines share: the output folder, its summary files, the progress bar and the table.

An output folder holds ``model/`` (a transformers folder with its tokenizer), ``metrics.jsonl`` (one line
per epoch; epoch 0 is the model before training) and ``run.json`` (what was trained, on what, with which
settings, how it ended). ``model/`` is written to a temporary folder and swapped in whole, so a folder
that has one holds a complete model.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from raftkit.progress import progress_bar
from raftkit.runs import rundir


class PipelineError(ValueError):
    """A pipeline that cannot start as asked (bad data, bad settings, an output folder in use)."""


def output_dir(output: str | None, kind: str) -> Path:
    """``output`` or runs/<timestamp>-<kind>; refused when it already holds anything."""
    if output:
        root = Path(output).expanduser()
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        root, n = Path("runs") / f"{stamp}-{kind}", 1
        while root.exists():
            n += 1
            root = Path("runs") / f"{stamp}-{kind}-{n}"
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise PipelineError(f"{root} is not a new or empty folder; nothing was written. "
                            "Choose another --output")
    return root


def versions() -> dict[str, str]:
    """Package versions recorded in run.json (the alignment runs' list)."""
    return rundir._versions()


def write_summary(root: Path, info: dict[str, Any]) -> None:
    """run.json, written atomically (readers never see half of it)."""
    root.mkdir(parents=True, exist_ok=True)
    info = {**info, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    rundir.atomic_write_text(root / "run.json", json.dumps(info, indent=2, ensure_ascii=False))


def append_metrics(root: Path, record: dict[str, Any]) -> None:
    """One line of metrics.jsonl."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({**record, "time": time.time()}, ensure_ascii=False) + "\n")


def save_model(root: Path, model: Any, tokenizer: Any) -> Path:
    """root/model: ``save_pretrained`` of the model and its tokenizer, swapped in whole."""
    tmp, final = root / "model.tmp", root / "model"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with rundir.writing("the model"):
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    rundir.replace_dir(tmp, final)
    return final


@contextmanager
def epoch_callbacks(root: Path, console: Console, epochs: int
                    ) -> Iterator[tuple[Callable[[int, int], None], Callable[[dict[str, Any]], None]]]:
    """(on_step, on_epoch) for an epoch loop: the progress bar follows the steps, and each epoch's record
    is appended to metrics.jsonl."""
    with progress_bar(console) as bar:
        task = bar.add_task(f"epoch 1/{epochs}", total=None)

        def on_step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        def on_epoch(record: dict[str, Any]) -> None:
            append_metrics(root, record)
            if 0 < record["epoch"] < epochs:
                bar.reset(task, description=f"epoch {record['epoch'] + 1}/{epochs}")

        yield on_step, on_epoch


@contextmanager
def crash_recorded(root: Path, info: dict[str, Any],
                   user_errors: tuple[type[BaseException], ...]) -> Iterator[None]:
    """Mark run.json crashed on any error; the ``user_errors`` become a one-line message, no traceback."""
    import click

    try:
        yield
    except user_errors as e:
        write_summary(root, {**info, "status": "crashed", "error": str(e)})
        raise click.ClickException(str(e)) from None
    except BaseException as e:
        write_summary(root, {**info, "status": "crashed", "error": f"{type(e).__name__}: {e}"})
        raise


def write_finished(root: Path, info: dict[str, Any], records: Sequence[dict[str, Any]], **extra: Any) -> None:
    """run.json of a finished pipeline: its last epoch's record and anything in ``extra``."""
    write_summary(root, {**info, "status": "finished", "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                         "final": records[-1], **extra})


def epoch_table(title: str, records: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> Table:
    """A rich table of per-epoch records: ``columns`` are (metric key, header)."""
    table = Table(title=title)
    table.add_column("epoch", justify="right")
    for _, header in columns:
        table.add_column(header, justify="right")
    for r in records:
        cells = []
        for key, _ in columns:
            v = r.get(key)
            cells.append("" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v))
        table.add_row(str(r.get("epoch", "")), *cells)
    return table
