"""Reading run directories into plain data for ``raftkit inspect``: the run summary and run comparisons.

Everything here tolerates what a run directory can hold: a run still being written (the last line
unfinished), a killed run (no finish, a half-written iteration folder), a run from an older raftkit
(fields missing) and corrupt lines. Nothing raises on bad content; problems are collected as messages
that name the file and line. The summary reads only ``run.json``, ``config.yaml``, ``metrics.jsonl`` and
``eval.json`` — never the rollouts (``raftkit.runs.rolloutview`` streams those) — so it opens instantly on
runs of any size.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raftkit.runs import rundir
from raftkit.runs.metric_names import canonical, parse_reward_key

STATUSES = ("running", "finished", "crashed", "stopped")
SPARK = "▁▂▃▄▅▆▇█"

# Metrics a current run records; an older run lacking them still displays and says so.
EXPECTED_METRICS = {
    "reward": "reward",
    "length/chars_mean": "completion length",
    "distinct_2": "distinct-2",
}


class InspectError(Exception):
    """Something the user asked for that the files cannot give (no such run, no such iteration)."""


# --------------------------------------------------------------------------- small helpers


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and any((path / n).exists() for n in ("run.json", "metrics.jsonl", "iterations"))


def number(value: Any) -> float | None:
    """A metric value as a number, or None when it is not one (bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value  # an int stays an int (counts print as counts)


def sparkline(values: Iterable[float | None]) -> str:
    """Unicode sparkline of a series; missing values are spaces.

    >>> sparkline([0, 1, 2, 3, None, 7])
    '▁▂▃▄ █'
    """
    vals = [number(v) for v in values]
    finite = [v for v in vals if v is not None and math.isfinite(v)]
    if not finite:
        return " " * len(vals)
    lo, hi = min(finite), max(finite)
    out = []
    for v in vals:
        if v is None or not math.isfinite(v):
            out.append(" ")
        elif hi == lo:
            out.append(SPARK[len(SPARK) // 2])
        else:
            out.append(SPARK[min(len(SPARK) - 1, int((v - lo) / (hi - lo) * len(SPARK)))])
    return "".join(out)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that has exited but was not reaped yet still answers kill(0); Linux's /proc tells."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            return any(line.startswith("State:") and "Z" in line.split()[1:2] for line in f)
    except OSError:  # no /proc (macOS) or the process just went: trust kill(0)
        return False


def ago(seconds: float) -> str:
    """A duration as '12 s', '5 min', '3.2 h', '2.0 d'."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


# --------------------------------------------------------------------------- metric keys


@dataclass
class MetricGroups:
    """The keys found in a run's metrics, grouped by prefix (no fixed key list is assumed)."""

    rewards: list[str] = field(default_factory=list)  # reward names, without "total"
    # name ("total": the weighted total) -> stats seen: mean, std, selected_mean, explore_mean, explore_std
    reward_stats: dict[str, list[str]] = field(default_factory=dict)
    filters: list[str] = field(default_factory=list)
    filter_stats: dict[str, list[str]] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)  # every other key, in first-seen order

    @property
    def has_total(self) -> bool:
        return "total" in self.reward_stats


def group_keys(records: Iterable[dict[str, Any]]) -> MetricGroups:
    g = MetricGroups()
    seen: set[str] = set()
    for rec in records:
        for key in rec:
            if key in seen or key in ("iteration", "time"):
                continue
            seen.add(key)
            parsed = parse_reward_key(key)
            if parsed is None and key.startswith("filter/") and "/" in key[len("filter/"):]:
                # The name may hold a '/' of its own (a label): the stat is the last segment.
                name, _, stat = key[len("filter/"):].rpartition("/")
                parsed, names, stats = (name, stat), g.filters, g.filter_stats
            elif parsed is not None:
                names, stats = g.rewards, g.reward_stats
            else:
                g.other.append(key)
                continue
            name, stat = parsed
            if name not in stats:
                stats[name] = []
                if name != "total":
                    names.append(name)
            stats[name].append(stat)
    return g


# --------------------------------------------------------------------------- the run summary


@dataclass
class RunSummary:
    """A run at a glance: what ``raftkit inspect RUN_DIR`` shows, read without touching the rollouts."""

    root: Path
    info: dict[str, Any]
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    eval: Any
    status: str  # running | finished | crashed | stopped | killed | running (or killed) | unknown
    status_line: str
    updated_at: float | None
    partial: list[int]  # iteration folders without metrics: the one in progress, or left by a kill
    groups: MetricGroups
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def algorithm(self) -> str | None:
        return self.info.get("algorithm") or self.config.get("algorithm") or self.config.get("algo")

    @property
    def total_key(self) -> str:
        """The reward to follow: ``reward``, over the policy's own samples (raftkit.runs.metrics)."""
        return "reward"

    def series(self, key: str) -> list[float | None]:
        return [number(m.get(key)) for m in self.metrics]

    def iterations(self) -> list[int]:
        return [int(m["iteration"]) for m in self.metrics]

    def config_summary(self) -> dict[str, Any]:
        """The handful of settings that identify a run (whatever names the config used)."""
        c = self.config

        def first(*names: str) -> Any:
            for n in names:
                if c.get(n) is not None:
                    return c[n]
            return None

        out = {
            "algorithm": self.algorithm,
            "model": first("model", "model_name", "model_path", "policy"),
            "rewards": _spec_names(first("rewards", "reward")),
            "filters": _spec_names(first("filters", "filter")),
            "k": first("k", "num_generations", "samples_per_prompt", "n"),
            "prompts per iteration": first("prompts_per_iteration", "batch_size", "prompts_per_step",
                                           "batch_prompts", "b"),
            "iterations": first("iterations", "steps", "max_steps") or self.info.get("iterations_planned"),
            "dataset": first("dataset", "prompts", "data"),
        }
        return {k: v for k, v in out.items() if v not in (None, [], "")}

    def to_json(self) -> dict[str, Any]:
        return {
            "run": str(self.root),
            "status": self.status,
            "status_line": self.status_line,
            "updated_at": self.updated_at,
            "summary": self.config_summary(),
            "info": self.info,
            "config": self.config,
            "rewards": self.groups.rewards,
            "filters": self.groups.filters,
            "iterations": self.metrics,
            "partial_iterations": self.partial,
            "eval": self.eval,
            "missing": self.missing,
            "problems": self.problems,
        }


def _spec_names(value: Any) -> list[str]:
    """Reward/filter entries from a config (strings, or {name, params, weight}) as short strings."""
    if value is None:
        return []
    if isinstance(value, str | dict):
        value = [value]
    out = []
    for v in value:
        if isinstance(v, dict) and "name" in v:
            params = ",".join(f"{k}={p}" for k, p in (v.get("params") or {}).items())
            weight = v.get("weight", 1)
            out.append(str(v["name"]) + (f":{params}" if params else "") + (f"*{weight:g}" if isinstance(
                weight, int | float) and weight != 1 else ""))
        else:
            out.append(str(v))
    return out


def _read_json(path: Path, problems: list[str], what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as e:
        problems.append(f"{path}: cannot read {what} ({e.strerror})")
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        problems.append(f"{path}:{e.lineno}: {what} is not valid JSON ({e.msg}); ignored")
        return None


def load_summary(root: str | os.PathLike, now: float | None = None) -> RunSummary:
    """Read a run directory's summary: run.json, config.yaml, metrics.jsonl and eval.json only."""
    root = Path(root)
    if not root.exists():
        raise InspectError(f"{root}: no such file or directory")
    if not is_run_dir(root):
        raise InspectError(f"{root} is not a run directory (no run.json, metrics.jsonl or iterations/ in it)")
    problems: list[str] = []
    missing: list[str] = []

    info = _read_json(root / "run.json", problems, "run.json")
    if info is None:
        if not (root / "run.json").exists():
            missing.append("run.json (status, algorithm and versions unknown)")
        info = {}
    elif not isinstance(info, dict):
        problems.append(f"{root / 'run.json'}: not a JSON object; ignored")
        info = {}

    config: dict[str, Any] = {}
    try:
        loaded = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8", errors="replace"))
        if isinstance(loaded, dict):
            config = loaded
        elif loaded is not None:
            problems.append(f"{root / 'config.yaml'}: not a mapping; ignored")
    except FileNotFoundError:
        missing.append("config.yaml (settings unknown)")
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problems.append(f"{root / 'config.yaml'}{where}: not valid YAML; ignored")

    metrics, partial, bad = _read_metrics(root)
    problems.extend(str(b) for b in bad)
    if not (root / "metrics.jsonl").exists():
        missing.append("metrics.jsonl" + (" (read from iterations/*/metrics.json)" if metrics else ""))
    groups = group_keys(metrics)
    if metrics:
        present = set().union(*(m.keys() for m in metrics))
        for key, label in EXPECTED_METRICS.items():
            if key not in present:
                missing.append(f"{label} ({key}) not recorded")

    ev = _read_json(root / "eval.json", problems, "eval.json")

    mtimes = [_mtime(root / n) for n in ("run.json", "metrics.jsonl")]
    if partial:
        mtimes.append(_mtime(rundir.iteration_dir(root, partial[-1])))
    updated = max((t for t in mtimes if t is not None), default=None)
    status, line = _status(info, metrics, partial, updated, time.time() if now is None else now)
    if status != "running":  # a live run may be between the two renames of a swap
        missing.extend(_interrupted_swaps(root))
    return RunSummary(root, info, config, metrics, ev, status, line, updated, partial, groups, missing,
                      problems)


def _interrupted_swaps(root: Path) -> list[str]:
    """What a kill inside a folder swap left (read only: `--resume` repairs it)."""
    out = []
    for name in ("checkpoint", "model"):
        final = root / name
        if not final.exists() and any(final.with_name(f"{name}.{s}").exists() for s in ("tmp", "old")):
            out.append(f"{name}/ (a kill interrupted its writing; `raftkit align --resume {root}` mends it)")
    return out


def _read_metrics(root: Path) -> tuple[list[dict[str, Any]], list[int], list[rundir.BadLine]]:
    """metrics.jsonl (or, if absent, each iteration's metrics.json), sorted, one record per iteration.

    Also lists iteration folders that have no metrics.json: written but never committed.
    """
    bad: list[rundir.BadLine] = []
    records: list[dict[str, Any]] = []
    path = root / "metrics.jsonl"
    iter_root = root / "iterations"
    dirs: list[int] = []
    if iter_root.is_dir():
        with os.scandir(iter_root) as it:
            dirs = sorted(int(e.name) for e in it if e.is_dir() and e.name.isdigit())
    if path.exists():
        seen: set[int] = set()
        for n, rec in enumerate(rundir.read_jsonl(path, bad)):
            it = rec.get("iteration")
            if isinstance(it, bool) or not isinstance(it, int):
                bad.append(rundir.BadLine(path, _line_of(path, n), "no integer 'iteration' field; skipped"))
                continue
            if it in seen:  # resume rewrites the file: a repeat means two processes wrote this run
                bad.append(rundir.BadLine(path, _line_of(path, n), f"iteration {it} again (duplicated: two "
                                          "processes may have written this run); the last line is shown"))
            seen.add(it)
            records.append(canonical(rec))
    else:
        for it in dirs:
            p = rundir.iteration_dir(root, it) / "metrics.json"
            if p.exists():
                try:
                    rec = json.loads(p.read_text(encoding="utf-8"))
                except (json.JSONDecodeError, OSError) as e:
                    bad.append(rundir.BadLine(p, 1, f"cannot read ({e})"))
                    continue
                if isinstance(rec, dict):
                    rec.setdefault("iteration", it)
                    records.append(canonical(rec))
    # A resumed run may repeat an iteration: the later line wins.
    by_iter = {r["iteration"]: r for r in records}
    records = [by_iter[i] for i in sorted(by_iter)]
    committed = set(by_iter)
    partial = [d for d in dirs
               if d not in committed and not (rundir.iteration_dir(root, d) / "metrics.json").exists()]
    return records, partial, bad


def _line_of(path: Path, record_number: int) -> int:
    """The line number of the n-th valid record (only used to report a problem, so it may re-read)."""
    count = -1
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            try:
                if isinstance(json.loads(line), dict):
                    count += 1
            except json.JSONDecodeError:
                continue
            if count == record_number:
                return lineno
    return 0


def _status(info: dict[str, Any], metrics: list[dict[str, Any]], partial: list[int], updated: float | None,
            now: float) -> tuple[str, str]:
    status = info.get("status")
    last = info.get("last_iteration")
    if last is None and metrics:
        last = metrics[-1]["iteration"]
    planned = info.get("iterations_planned")
    done = f"{len(metrics)} iteration{'s' if len(metrics) != 1 else ''} complete" + (
        f" of {planned}" if isinstance(planned, int) else "")
    when = f"last update {ago(now - updated)} ago" if updated is not None else "last update unknown"
    stamp = time.strftime(" (%Y-%m-%d %H:%M:%S)", time.localtime(updated)) if updated is not None else ""
    # The iteration that was under way: a folder without metrics, else the one after the last complete.
    current = partial[-1] if partial else (last + 1 if isinstance(last, int) else None)
    at = f" at iteration {current}" if current is not None else " before the first iteration completed"
    if not partial and isinstance(current, int) and isinstance(planned, int) and current > planned:
        # Every planned iteration is complete and none is under way: it was saving the model, evaluating.
        at = f" after iteration {planned} (saving the model, evaluating)"
    if status == "finished":
        return status, f"finished: {done}"
    if status == "crashed":
        err = str(info.get("error") or "no error message recorded")
        said = re.match(r"(after )?iteration \d+( \([^)]*\))?(?=:)", err)
        if said:  # the loop's message says where it happened: that, not a guess
            at = f" {said.group(0)}" if said.group(1) else f" at {said.group(0)}"
            err = err[said.end() + 1:].lstrip()
        return status, f"crashed{at}: {err} ({done})"
    if status == "stopped":
        return status, f"stopped{at} ({done}); continue with `raftkit align --resume RUN_DIR`"
    if status == "running":
        pid, host = info.get("pid"), info.get("host") or info.get("hostname")
        if isinstance(pid, int) and host == socket.gethostname():
            if _process_alive(pid):
                return status, f"running{at} ({done}, {when})"
            return "killed", f"killed{at}: process {pid} is gone ({done}, {when}{stamp})"
        # No way to see the process from here: it may be running, or it was killed.
        return "running (or killed)", f"running (or killed){at} ({done}, {when}{stamp})"
    if status is None:
        return "unknown", f"status unknown: no run.json status ({done}, {when}{stamp})"
    return str(status), f"{status} ({done}, {when})"



# --------------------------------------------------------------------------- comparing runs


# Keys with a direction, for the "best" column of a run comparison; others (length, loss, time) have none.
_HIGHER_IS_BETTER = re.compile(r"^distinct_")  # and every reward mean (parse_reward_key)
_LOWER_IS_BETTER = re.compile(r"^filter/")


def best_value(key: str, values: list[float | None]) -> float | None:
    """The best value of a metric over a run: highest reward or diversity, lowest filter rate, else None."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None
    parsed = parse_reward_key(key)
    if _HIGHER_IS_BETTER.search(key) or (parsed is not None and parsed[1].endswith("mean")):
        return max(vals)
    if _LOWER_IS_BETTER.search(key):
        return min(vals)
    return None


def last_value(values: list[float | None]) -> float | None:
    for v in reversed(values):
        if v is not None:
            return v
    return None


def compare_runs(runs: list[RunSummary]) -> dict[str, Any]:
    """Metric keys of several runs side by side: last and best value of each, per run."""
    keys: list[str] = []
    for r in runs:
        for m in r.metrics:
            keys.extend(k for k in m if k not in keys and k not in ("iteration", "time"))

    def order(k: str) -> tuple[int, str]:
        rank = 0 if parse_reward_key(k) else 1 if k.startswith(("length/", "completions/", "distinct")) \
            else 2 if k.startswith("filter/") else 4 if k.startswith("time/") else 3
        return rank, k

    rows = []
    for k in sorted(keys, key=order):
        rows.append({"key": k, "runs": [
            {"last": last_value(r.series(k)), "best": best_value(k, r.series(k)),
             "present": any(k in m for m in r.metrics)} for r in runs]})
    iterations = sorted(set().union(*(set(r.iterations()) for r in runs)))
    total = {it: [next((number(m.get(r.total_key)) for m in r.metrics if m["iteration"] == it), None)
                  for r in runs] for it in iterations}
    return {"runs": [str(r.root) for r in runs], "metrics": rows,
            "total_by_iteration": [{"iteration": it, "total": total[it]} for it in iterations]}


# --------------------------------------------------------------------------- eval.json


_EVAL_SETTINGS = ("prompts", "samples", "temperature", "max_new_tokens", "seconds", "top_p")


def eval_rows(ev: Any) -> list[dict[str, Any]]:
    """eval.json as rows (key, before, after); tolerant of its exact shape.

    Handles ``{"before": {...}, "after": {...}}`` (nested mappings are flattened with '/') and a flat
    mapping of numbers (shown as 'after').
    """
    if not isinstance(ev, dict):
        return []

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        if isinstance(d, dict):
            for k, v in d.items():
                key = f"{prefix}{k}"
                if isinstance(v, dict):
                    out.update(flat(v, key + "/"))
                elif number(v) is not None:
                    out[key] = v
        return out

    if "before" in ev or "after" in ev:
        before, after = flat(ev.get("before")), flat(ev.get("after"))
        for d in (before, after):  # the evaluation's settings, not results
            for k in _EVAL_SETTINGS:
                d.pop(k, None)
        keys = list(dict.fromkeys([*before, *after]))
        rows = []
        for k in keys:
            b, a = number(before.get(k)), number(after.get(k))
            rows.append({"key": k, "before": b, "after": a,
                         "delta": a - b if a is not None and b is not None else None})
        return rows
    return [{"key": k, "before": None, "after": number(v), "delta": None} for k, v in flat(ev).items()]
