"""Experiment trackers (``--report-to tensorboard,wandb,mlflow,trackio``): the run's metrics, evaluation
and a few samples per iteration, mirrored to the tools people already watch.

The run directory stays the record (``raftkit inspect`` reads it); trackers are a copy. So a tracker that
fails mid-run is switched off with a warning instead of stopping the training, while a tracker whose
package is missing is an error before the run starts (``check``), naming the extra to install.

Each package is imported only when its tracker is used. Where they write:

- tensorboard: ``RUN/tensorboard`` (``tensorboard --logdir runs``)
- wandb: the project ``$WANDB_PROJECT`` (default ``raftkit``), its files under ``RUN/`` (``WANDB_MODE``,
  ``WANDB_DIR`` and the other ``WANDB_*`` variables apply); a resumed run continues the same W&B run.
- mlflow: ``$MLFLOW_TRACKING_URI`` (unset: MLflow's default, which for MLflow 3 is ``sqlite:///mlflow.db``
  in the working directory with artifacts under ``./mlruns``), experiment ``$MLFLOW_EXPERIMENT_NAME``
  (default ``raftkit``). Recent MLflow refuses a plain ``./mlruns`` file store unless
  ``MLFLOW_ALLOW_FILE_STORE=true``.
- trackio: the project ``$TRACKIO_PROJECT`` (default ``raftkit``), trackio's local store.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# tracker name -> the module it needs (the extra is raftkit[<name>])
MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}
SAMPLES_PER_ITERATION = 16  # rows of the samples table each iteration: enough to read, cheap to log


class TrackerError(ValueError):
    """A --report-to value that cannot be used: an unknown tracker, or its package is not installed."""


def parse(values: Iterable[str] | str | None) -> list[str]:
    """Tracker names from ``--report-to`` values (each may be a comma list); ``none`` means none.

    >>> parse(["tensorboard,wandb", "none"])
    ['tensorboard', 'wandb']
    """
    if isinstance(values, str):
        values = [values]
    names: list[str] = []
    for value in values or ():
        for name in str(value).split(","):
            name = name.strip().lower()
            if not name or name == "none" or name in names:
                continue
            if name not in MODULES:
                close = difflib.get_close_matches(name, MODULES, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise TrackerError(f"--report-to: unknown tracker '{name}'.{hint} "
                                   f"(trackers: {', '.join(MODULES)}, none)")
            names.append(name)
    return names


def check(names: Iterable[str]) -> None:
    """Raise TrackerError for a tracker whose package is not installed (found without importing it)."""
    for name in names:
        if importlib.util.find_spec(MODULES[name]) is None:
            raise TrackerError(f"--report-to {name}: the {MODULES[name]} package is not installed; "
                               f"pip install 'raftkit[{name}]'")


def _scalars(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics dict (None, text and NaN are left out)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, int | float) and math.isfinite(value):
            out[key] = float(value)
    return out


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}/{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
    return out


def _sample_rows(records: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of a small samples table: prompt, completion, total, selected, each reward, and the
    columns rewards logged with ``log_extra``."""
    from raftkit.evaluation.metrics import prompt_text

    shown = list(records[:SAMPLES_PER_ITERATION])
    rewards = list(dict.fromkeys(k for r in shown for k in (r.get("rewards") or {})))
    extra = list(dict.fromkeys(k for r in shown for k in (r.get("extra") or {})))
    columns = ["prompt", "completion", "total", "selected", *rewards, *extra]
    rows = [[prompt_text(r.get("prompt")), str(r.get("completion", "")), r.get("total"),
             bool(r.get("selected")), *[(r.get("rewards") or {}).get(k) for k in rewards],
             *[(r.get("extra") or {}).get(k) for k in extra]] for r in shown]
    return columns, rows


class _Tracker:
    name = ""

    def metrics(self, step: int, values: dict[str, float]) -> None: ...

    def samples(self, step: int, columns: list[str], rows: list[list[Any]]) -> None: ...

    def summary(self, step: int, values: dict[str, float], alarm: list[str]) -> None:
        self.metrics(step, values)

    def close(self) -> None: ...


class _TensorBoard(_Tracker):
    name = "tensorboard"

    def __init__(self, root: Path, config: Mapping[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(root / "tensorboard"))
        settings = _markdown_table(["setting", "value"], [[k, v] for k, v in config.items()])
        self.writer.add_text("config", settings)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()  # a viewer watching a long run sees each iteration at once

    def samples(self, step: int, columns: list[str], rows: list[list[Any]]) -> None:
        self.writer.add_text("samples", _markdown_table(columns, rows), step)

    def summary(self, step: int, values: dict[str, float], alarm: list[str]) -> None:
        self.metrics(step, values)
        if alarm:
            self.writer.add_text("eval/alarm", "\n\n".join(alarm), step)

    def close(self) -> None:
        self.writer.close()


class _WandB(_Tracker):
    name = "wandb"

    def __init__(self, root: Path, config: Mapping[str, Any]):
        import wandb

        self.wandb = wandb
        # The same id for the same run (its folder and start time, which a resume keeps), so `--resume`
        # continues the W&B run while a new run in a reused folder gets a run of its own.
        try:
            started = json.loads((root / "run.json").read_text(encoding="utf-8")).get("started_at", "")
        except (OSError, ValueError):
            started = ""
        run_id = hashlib.sha1(f"{root.resolve()}|{started}".encode()).hexdigest()[:16]
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "raftkit"), name=root.name, id=run_id,
                              resume="allow", config=dict(config), dir=os.environ.get("WANDB_DIR", str(root)))

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def samples(self, step: int, columns: list[str], rows: list[list[Any]]) -> None:
        self.run.log({"samples": self.wandb.Table(columns=columns, data=rows)}, step=step)

    def summary(self, step: int, values: dict[str, float], alarm: list[str]) -> None:
        self.run.summary.update({**values, "eval/alarm": "; ".join(alarm)})

    def close(self) -> None:
        self.run.finish()


class _MLflow(_Tracker):
    name = "mlflow"

    def __init__(self, root: Path, config: Mapping[str, Any]):
        import mlflow

        self.mlflow = mlflow
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "raftkit"))
        self.run = mlflow.start_run(run_name=root.name)
        # MLflow caps a parameter's value at a few hundred characters; a long reward list is cut, not fatal.
        mlflow.log_params({k: str(v)[:250] for k, v in config.items()})

    @staticmethod
    def _key(key: str) -> str:
        return re.sub(r"[^\w\-. /]", "_", key)  # MLflow refuses '=', and ':' on Windows (length:target=10)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self.mlflow.log_metrics({self._key(k): v for k, v in values.items()}, step=step)

    def samples(self, step: int, columns: list[str], rows: list[list[Any]]) -> None:
        table = {c: [row[i] for row in rows] for i, c in enumerate(columns)}
        self.mlflow.log_dict(table, f"samples/iteration-{step:06d}.json")

    def summary(self, step: int, values: dict[str, float], alarm: list[str]) -> None:
        self.metrics(step, values)
        if alarm:
            self.mlflow.set_tag("eval.alarm", "; ".join(alarm)[:5000])

    def close(self) -> None:
        self.mlflow.end_run()


class _Trackio(_Tracker):
    name = "trackio"

    def __init__(self, root: Path, config: Mapping[str, Any]):
        import trackio

        self.trackio = trackio
        self.run = trackio.init(project=os.environ.get("TRACKIO_PROJECT", "raftkit"), name=root.name,
                                config=dict(config), resume="allow")

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self.trackio.log(values, step=step)

    def samples(self, step: int, columns: list[str], rows: list[list[Any]]) -> None:
        table = getattr(self.trackio, "Table", None)
        if table is not None:  # older trackio versions have no tables: the metrics still go
            self.trackio.log({"samples": table(columns=columns, data=rows)}, step=step)

    def close(self) -> None:
        self.trackio.finish()


_CLASSES: dict[str, type[_Tracker]] = {"tensorboard": _TensorBoard, "wandb": _WandB, "mlflow": _MLflow,
                                       "trackio": _Trackio}


def _markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ⏎ ")[:300]

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class Trackers:
    """The trackers of one run; every call goes to each of them. With no names, every call is a no-op."""

    def __init__(self, names: Iterable[str] | str | None, root: str | os.PathLike,
                 config: Mapping[str, Any] | None = None):
        names = parse(names)
        check(names)
        self.active: list[_Tracker] = []
        self.step = 0
        try:
            for name in names:
                self.active.append(_CLASSES[name](Path(root), dict(config or {})))
        except BaseException:
            self.close()
            raise

    def _each(self, what: str, call: Any) -> None:
        for tracker in list(self.active):
            try:
                call(tracker)
            except Exception as e:  # a copy of what the run directory holds: never worth a crashed run
                self.active.remove(tracker)
                print(f"warning: {tracker.name}: {what} failed ({type(e).__name__}: {e}); not reporting to "
                      f"{tracker.name} for the rest of the run (the run directory has everything)",
                      file=sys.stderr)

    def log_metrics(self, iteration: int, metrics: Mapping[str, Any]) -> None:
        """An iteration's metrics (its line in metrics.jsonl), at step ``iteration``."""
        self.step = iteration
        values = _scalars(metrics)
        values.pop("iteration", None)
        self._each("logging metrics", lambda t: t.metrics(iteration, values))

    def log_samples(self, iteration: int, records: Sequence[Mapping[str, Any]]) -> None:
        """The first few rollouts of an iteration as a table (tracker permitting)."""
        if not self.active or not records:
            return
        columns, rows = _sample_rows(records)
        self._each("logging samples", lambda t: t.samples(iteration, columns, rows))

    def log_eval(self, evals: Mapping[str, Any]) -> None:
        """eval.json (before, after, delta, alarm) as ``eval/before/accuracy``..., at the last step."""
        flat = _flatten("eval", {k: v for k, v in evals.items() if k != "alarm"}, {})
        values = _scalars(flat)
        alarm = [str(a) for a in evals.get("alarm") or []]
        self._each("logging the evaluation", lambda t: t.summary(self.step, values, alarm))

    def close(self) -> None:
        for tracker in self.active:
            try:
                tracker.close()
            except Exception as e:
                print(f"warning: {tracker.name}: closing failed ({type(e).__name__}: {e})", file=sys.stderr)
        self.active = []
