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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

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
def progress(console: Console) -> Iterator[Progress]:
    """The same bar the alignment loop shows (transient: the summary table replaces it)."""
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=console, transient=True)
    with bar:
        yield bar


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
