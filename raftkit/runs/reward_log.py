"""What rewards log while an iteration is scored, through the kwargs TRL 1.16's GRPOTrainer passes them.

Every reward call in the training loop gets, besides its per-sample columns:

- ``trainer_state``: a ``transformers.TrainerState`` with ``global_step`` (the updates done so far: 0 while
  iteration 1 is scored), ``epoch`` (the iteration, from 1) and ``max_steps`` (the planned iterations);
- ``log_metric(name, value)``: a scalar for the iteration's metrics; several values under one name are
  averaged (TRL averages over a logging step). It reaches metrics.jsonl, the trackers and the report; a
  name raftkit already records keeps raftkit's value;
- ``log_extra(column, values)``: one value per sample of the batch, written to each rollout record under
  ``extra.<column>`` (TRL's completions table). A column logged twice keeps the later values.

A reward that does not declare them receives them through ``**kwargs`` and can ignore them, as in TRL.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Sequence
from typing import Any

CONTEXT_ARGUMENTS = ("trainer_state", "log_extra", "log_metric")


def trainer_state(global_step: int, max_steps: int, epoch: float) -> Any:
    """The ``transformers.TrainerState`` TRL hands to rewards; the loop scores iteration i with
    ``trainer_state(i - 1, iterations, i)``."""
    from transformers import TrainerState

    return TrainerState(global_step=global_step, epoch=float(epoch), max_steps=max_steps)


class RewardLog:
    """Collects one scoring call's ``log_metric`` and ``log_extra`` calls (rewards run on threads: locked)."""

    def __init__(self, n_samples: int):
        self.n = n_samples
        self.values: dict[str, list[float]] = {}
        self.extra: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    def log_metric(self, name: str, value: float) -> None:
        """TRL's ``log_metric``: a scalar for this iteration (averaged with others under the same name)."""
        if hasattr(value, "item") and not isinstance(value, numbers.Number):  # numpy / torch scalars
            value = value.item()
        if not isinstance(name, str) or not name:
            raise ValueError(f"log_metric: the name must be a non-empty string, got {name!r}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"log_metric({name!r}, ...): the value must be a finite number, got {value!r}")
        with self._lock:
            self.values.setdefault(name, []).append(float(value))

    def log_extra(self, column: str, values: Sequence[Any]) -> None:
        """TRL's ``log_extra``: one value per sample, for the rollout records."""
        if not isinstance(column, str) or not column:
            raise ValueError(f"log_extra: the column must be a non-empty string, got {column!r}")
        if hasattr(values, "tolist") and not isinstance(values, list | tuple):
            values = values.tolist()
        if not isinstance(values, list | tuple) or len(values) != self.n:
            got = len(values) if isinstance(values, list | tuple) else type(values).__name__
            raise ValueError(f"log_extra({column!r}, ...): expected a list of {self.n} values (one per "
                             f"sample), got {got}")
        with self._lock:
            self.extra[column] = list(values)

    def context(self, state: Any) -> dict[str, Any]:
        """The kwargs every reward call gets besides its columns."""
        return {"trainer_state": state, "log_extra": self.log_extra, "log_metric": self.log_metric}

    def metrics(self) -> dict[str, float]:
        """Each logged name's mean value."""
        return {k: sum(v) / len(v) for k, v in self.values.items()}

    def per_sample(self) -> list[dict[str, Any]]:
        """Sample i's logged columns, ``{"extra": {column: value}}`` (empty dicts when nothing was logged)."""
        if not self.extra:
            return [{} for _ in range(self.n)]
        return [{"extra": {c: v[i] for c, v in self.extra.items()}} for i in range(self.n)]
