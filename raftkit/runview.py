"""Reading run directories and rollout files into plain data for ``raftkit inspect``.

Everything here tolerates what a real run directory can hold: a run still being written (the last line
unfinished), a killed run (no finish, a half-written iteration folder), a run from an older raftkit
(fields missing) and corrupt lines. Nothing raises on bad content; problems are collected as messages
that name the file and line. The summary reads only ``run.json``, ``config.yaml``, ``metrics.jsonl`` and
``eval.json`` — never the rollouts — so it opens instantly on runs of any size; rollouts are streamed one
iteration file at a time.
"""

from __future__ import annotations

import functools
import heapq
import json
import math
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raftkit import rundir
from raftkit.text import SELF_DIALOGUE, distinct_n

STATUSES = ("running", "finished", "crashed", "stopped")
SPARK = "▁▂▃▄▅▆▇█"

# The fields a rollout record carries besides its rewards (everything else numeric in a flat
# `raftkit score` record is a reward value).
ROLLOUT_FIELDS = frozenset({
    "iteration", "prompt_index", "row", "sample", "prompt", "completion", "rewards", "hits", "total",
    "dropped", "selected", "advantage", "hinted", "truncated", "finish_reason", "completion_ids",
    "logprobs", "prompt_ids", "sample_prompt", "index", "id", "filters",
})

# Metrics a current run records; an older run lacking them still displays and says so.
EXPECTED_METRICS = {
    "reward/total/mean": "total reward",
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


def prompt_text(prompt: Any) -> str:
    """A prompt as one string: plain text as is; chat messages as their non-system contents."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        parts = []
        for m in prompt:
            if isinstance(m, dict):
                if m.get("role") == "system":
                    continue
                content = m.get("content", "")
                role = m.get("role", "")
                parts.append(content if role == "user" else f"[{role}] {content}")
            else:
                parts.append(str(m))
        return "\n".join(str(p) for p in parts)
    return "" if prompt is None else str(prompt)


def completion_text(completion: Any) -> str:
    """A completion as text: TRL's chat form ``[{"role": "assistant", "content": ...}]`` is unwrapped."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in completion)
    return "" if completion is None else str(completion)


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
    return True


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
    reward_stats: dict[str, list[str]] = field(default_factory=dict)  # name -> stats seen (mean, std, ...)
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
            for prefix, names, stats in (("reward/", g.rewards, g.reward_stats),
                                         ("filter/", g.filters, g.filter_stats)):
                if key.startswith(prefix) and "/" in key[len(prefix):]:
                    # The name may hold a '/' of its own (a label): the stat is the last segment.
                    name, _, stat = key[len(prefix):].rpartition("/")
                    if name not in stats:
                        stats[name] = []
                        if name != "total":
                            names.append(name)
                    stats[name].append(stat)
                    break
            else:
                g.other.append(key)
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
        """The total reward to follow: the policy's own samples when exploration hints were mixed in."""
        if "policy_mean" in self.groups.reward_stats.get("total", []):
            return "reward/total/policy_mean"
        return "reward/total/mean"

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
    return RunSummary(root, info, config, metrics, ev, status, line, updated, partial, groups, missing,
                      problems)


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
        for n, rec in enumerate(rundir.read_jsonl(path, bad)):
            it = rec.get("iteration")
            if isinstance(it, bool) or not isinstance(it, int):
                bad.append(rundir.BadLine(path, _line_of(path, n), "no integer 'iteration' field; skipped"))
                continue
            records.append(rec)
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
                    records.append(rec)
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
    if status == "finished":
        return status, f"finished: {done}"
    if status == "crashed":
        err = str(info.get("error") or "no error message recorded")
        if current is not None:
            err = re.sub(rf"^iteration {current}:\s*", "", err)  # the loop's message may say it already
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


# --------------------------------------------------------------------------- rollouts


@dataclass
class Sample:
    """One rollout record, normalised (nested run form or flat ``raftkit score`` form)."""

    position: int  # 0-based position in its file
    line: int  # line number in its file (for messages)
    prompt: str
    completion: str
    rewards: dict[str, float | None]
    hits: dict[str, int]
    total: float | None
    selected: bool | None = None
    dropped: bool | None = None
    advantage: float | None = None
    iteration: int | None = None
    prompt_index: int | None = None
    row: Any = None
    sample: int | None = None
    finish_reason: str | None = None
    truncated: bool | None = None
    hinted: bool | None = None

    @property
    def key(self) -> Any:
        """What identifies the prompt across iterations: the dataset row, else the prompt text."""
        if isinstance(self.row, int | str) and not isinstance(self.row, bool):
            return ("row", self.row)
        return ("prompt", self.prompt)

    @property
    def n_hits(self) -> int:
        return sum(v for v in self.hits.values() if isinstance(v, int | float))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        return {k: v for k, v in out.items() if v is not None or k in ("total",)}


def normalise(record: dict[str, Any], position: int = 0, line: int = 0,
              filter_names: frozenset[str] = frozenset()) -> Sample:
    """Read a rollout record in either form: ``rewards``/``hits`` nested, or each value under its name.

    In the flat form (``raftkit score --json``) a field named in ``filter_names`` is a filter's hit
    count; every other numeric (or null) field that is not a known rollout field is a reward.
    """
    rewards = record.get("rewards")
    flat_hits: dict[str, Any] = {}
    if not isinstance(rewards, dict):
        rewards = {}
        for k, v in record.items():
            if k in ROLLOUT_FIELDS or (v is not None and number(v) is None):
                continue
            if k in filter_names:
                flat_hits[k] = v
            else:
                rewards[k] = number(v)
    else:
        rewards = {str(k): number(v) for k, v in rewards.items()}
    hits = record.get("hits")
    if not isinstance(hits, dict):
        hits = record.get("filters") if isinstance(record.get("filters"), dict) else flat_hits
    hits = {str(k): int(v) for k, v in hits.items() if number(v) is not None}
    total = number(record.get("total"))
    if total is None and "total" not in record:
        # An older or foreign file without a total: the plain sum of the rewards that apply.
        vals = [v for v in rewards.values() if v is not None]
        total = float(sum(vals)) if vals else None

    def opt_bool(k: str) -> bool | None:
        v = record.get(k)
        return v if isinstance(v, bool) else None

    def opt_int(k: str) -> int | None:
        v = record.get(k)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    return Sample(
        position=position, line=line,
        prompt=prompt_text(record.get("prompt")),
        completion=completion_text(record.get("completion")),
        rewards=rewards, hits=hits, total=total,
        selected=opt_bool("selected"), dropped=opt_bool("dropped"), advantage=number(record.get("advantage")),
        iteration=opt_int("iteration"), prompt_index=opt_int("prompt_index"), row=record.get("row"),
        sample=opt_int("sample"), finish_reason=record.get("finish_reason"),
        truncated=opt_bool("truncated"), hinted=opt_bool("hinted"),
    )


def iter_samples(path: Path, problems: list[rundir.BadLine] | None = None,
                 filter_names: frozenset[str] = frozenset()) -> Iterator[Sample]:
    """Stream a rollouts file's samples, line by line (bad lines go to ``problems``, never raise).

    A last line without its newline is a record still being written and is skipped. ``filter_names``
    tells filter hit counts from rewards in flat records (see ``normalise``).
    """
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    position = 0
    with f:
        for lineno, line in enumerate(f, start=1):
            if not line.endswith("\n"):
                break  # unfinished: the writer is still on it
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                if problems is not None:
                    problems.append(rundir.BadLine(Path(path), lineno, f"not valid JSON ({e.msg}); skipped"))
                continue
            if not isinstance(record, dict):
                if problems is not None:
                    problems.append(rundir.BadLine(Path(path), lineno, "not a JSON object; skipped"))
                continue
            yield normalise(record, position, lineno, filter_names)
            position += 1


def rollouts_path(root: Path, iteration: int) -> Path:
    return rundir.iteration_dir(root, iteration) / "rollouts.jsonl"


def available_iterations(root: Path) -> list[int]:
    iter_root = Path(root) / "iterations"
    if not iter_root.is_dir():
        return []
    return sorted(int(p.name) for p in iter_root.iterdir() if p.name.isdigit()
                  and (p / "rollouts.jsonl").exists())


def resolve_iteration(root: Path, spec: str | int) -> int:
    """An iteration number from the CLI: a number, or 'last' / -1 for the newest with rollouts."""
    have = available_iterations(root)
    if isinstance(spec, str) and spec.strip().lower() in ("last", "latest", "-1"):
        if not have:
            raise InspectError(f"{root}: no iteration has rollouts yet")
        return have[-1]
    try:
        n = int(spec)
    except ValueError:
        raise InspectError(f"--iteration expects a number or 'last', got {spec!r}") from None
    if n < 0:
        if len(have) < -n:
            raise InspectError(f"{root}: only {len(have)} iterations have rollouts")
        return have[n]
    if n not in have:
        shown = _ranges(have) if have else "none"
        raise InspectError(f"{root}: iteration {n} has no rollouts.jsonl (iterations with rollouts: {shown})")
    return n


def _ranges(nums: list[int]) -> str:
    out, start, prev = [], None, None
    for n in [*nums, None]:
        if start is None:
            start = prev = n
        elif n is not None and n == prev + 1:
            prev = n
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = n
    return ", ".join(out)


@dataclass
class Query:
    """Which samples to show and in what order (the ``--iteration`` options)."""

    sort: str | None = None  # "reward" (the total), "reward:NAME", "length"; None keeps file order
    top: int | None = None
    worst: int | None = None
    filter: str | None = None  # only samples that hit this filter ("any" for any filter)
    prompt: str | None = None  # substring of the prompt (case-insensitive)
    grep: str | None = None  # regex searched in the completion
    selected: bool | None = None  # only selected (True) / only not selected (False)
    limit: int | None = None  # at most this many, in the chosen order

    def compiled_grep(self) -> re.Pattern[str] | None:
        if not self.grep:
            return None
        try:
            return re.compile(self.grep)
        except re.error as e:
            raise InspectError(f"--grep {self.grep!r} is not a valid regular expression: {e}") from None


def sort_key(sort: str, reward_names: Iterable[str] = ()) -> Callable[[Sample], float]:
    """The value a sample is ranked by; samples without it rank lowest."""
    if sort == "length":
        return lambda s: float(len(s.completion))
    if sort in ("reward", "total"):
        return lambda s: s.total if s.total is not None and math.isfinite(s.total) else -math.inf
    if sort.startswith("reward:"):
        name = sort.split(":", 1)[1]
        names = list(reward_names)
        if names and name not in names:
            raise InspectError(f"--sort {sort}: no reward '{name}' in these rollouts "
                               f"(rewards: {', '.join(names)})")

        def by_reward(s: Sample) -> float:
            v = s.rewards.get(name)
            return v if v is not None and math.isfinite(v) else -math.inf
        return by_reward
    raise InspectError(f"--sort expects reward, reward:NAME or length, got {sort!r}")


def select_samples(samples: Iterable[Sample], query: Query) -> tuple[list[Sample], int, int]:
    """Apply a query to streamed samples; returns (shown, matching, total read).

    Top/worst keep only K samples in memory (a heap), so a 2,000-sample iteration stays cheap.
    """
    grep = query.compiled_grep()
    needle = query.prompt.lower() if query.prompt else None
    total = matched = 0
    kept: list[Sample] = []
    first_names: list[str] = []

    def matching() -> Iterator[Sample]:
        nonlocal total, matched
        for s in samples:
            total += 1
            if not first_names and s.rewards:
                first_names.extend(s.rewards)
            if query.filter:
                if query.filter == "any":
                    if not s.n_hits:
                        continue
                elif not s.hits.get(query.filter):
                    continue
            if needle is not None and needle not in s.prompt.lower():
                continue
            if grep is not None and not grep.search(s.completion):
                continue
            if query.selected is not None and bool(s.selected) != query.selected:
                continue
            matched += 1
            yield s

    sort = query.sort or ("reward" if (query.top or query.worst) else None)
    stream = matching()
    if sort is None:
        kept = [s for s in stream]
        if query.limit is not None:
            kept = kept[: query.limit]
        return kept, matched, total
    # The key needs the reward names to validate 'reward:NAME': peek at the first sample.
    first = next(stream, None)
    if first is None:
        return [], matched, total
    key = sort_key(sort, first.rewards)
    rest = _chain(first, stream)
    if query.top or query.worst:
        # Both at once: the best K then the worst K (one pass, two bounded heaps).
        top_heap: list[tuple[float, int, Sample]] = []
        worst_heap: list[tuple[float, int, Sample]] = []
        for s in rest:
            k = key(s)
            if query.top:
                item = (k, -s.position, s)
                if len(top_heap) < query.top:
                    heapq.heappush(top_heap, item)
                elif item[:2] > top_heap[0][:2]:
                    heapq.heapreplace(top_heap, item)
            if query.worst:
                item = (-k, -s.position, s)
                if len(worst_heap) < query.worst:
                    heapq.heappush(worst_heap, item)
                elif item[:2] > worst_heap[0][:2]:
                    heapq.heapreplace(worst_heap, item)
        kept = [t[2] for t in sorted(top_heap, key=lambda t: t[:2], reverse=True)]
        kept += [t[2] for t in sorted(worst_heap, key=lambda t: t[:2])]
        return kept, matched, total
    kept = sorted(rest, key=lambda s: (-key(s), s.position))
    if query.limit is not None:
        kept = kept[: query.limit]
    return kept, matched, total


def _chain(first: Sample, rest: Iterator[Sample]) -> Iterator[Sample]:
    yield first
    yield from rest


def registered_filter_names() -> frozenset[str]:
    """Names of the installed filters (to read flat ``raftkit score`` output); empty if plugins fail."""
    try:
        from raftkit.registry import load_registry

        return frozenset(r.name for r in load_registry().of_kind("filter"))
    except Exception:  # a broken plugin must not stop a file from being read
        return frozenset()


# --------------------------------------------------------------------------- summaries of rollouts


@dataclass
class RolloutStats:
    """Aggregate numbers over a set of samples (for a rollouts file that is not a run)."""

    n: int
    rewards: dict[str, dict[str, float | int | None]]  # name -> mean, std, min, max, n
    total: dict[str, float | int | None]
    filters: dict[str, dict[str, float]]  # name -> rate (share of samples hit), hits (total count)
    chars_mean: float | None
    distinct_2: float | None
    n_selected: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _describe(values: list[float]) -> dict[str, float | int | None]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    return {"mean": mean, "std": std, "min": min(vals), "max": max(vals), "n": len(vals)}


def rollout_stats(samples: list[Sample]) -> RolloutStats:
    names: list[str] = []
    fnames: list[str] = []
    for s in samples:
        names.extend(k for k in s.rewards if k not in names)
        fnames.extend(k for k in s.hits if k not in fnames)
    rewards = {n: _describe([s.rewards.get(n) for s in samples]) for n in names}  # type: ignore[misc]
    filters = {}
    for f in fnames:
        hit = [s.hits.get(f, 0) for s in samples]
        filters[f] = {"rate": sum(1 for h in hit if h) / len(samples), "hits": float(sum(hit))}
    selected = [s.selected for s in samples if s.selected is not None]
    has_text = any(s.completion for s in samples)  # scores-only files carry no text to measure
    return RolloutStats(
        n=len(samples), rewards=rewards, total=_describe([s.total for s in samples]),  # type: ignore[misc]
        filters=filters,
        chars_mean=sum(len(s.completion) for s in samples) / len(samples) if has_text else None,
        distinct_2=distinct_n([s.completion for s in samples], 2) if has_text else None,
        n_selected=sum(selected) if selected else None,
    )


# --------------------------------------------------------------------------- comparisons


@dataclass
class PromptAtIteration:
    """One prompt's samples at one iteration: mean values over its k samples and the best sample."""

    n: int
    total_mean: float | None
    rewards_mean: dict[str, float | None]
    hits: dict[str, int]
    best: Sample

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "total_mean": self.total_mean, "rewards_mean": self.rewards_mean,
                "hits": self.hits, "best": self.best.to_json()}


def per_prompt(samples: Iterable[Sample]) -> dict[Any, PromptAtIteration]:
    groups: dict[Any, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.key, []).append(s)
    out = {}
    for key, group in groups.items():
        names = list(dict.fromkeys(n for s in group for n in s.rewards))
        means = {n: _describe([s.rewards.get(n) for s in group])["mean"] for n in names}  # type: ignore[misc]
        hits: dict[str, int] = {}
        for s in group:
            for f, h in s.hits.items():
                hits[f] = hits.get(f, 0) + h
        best = max(group, key=sort_key("reward"))
        out[key] = PromptAtIteration(len(group), _describe([s.total for s in group])["mean"],  # type: ignore[arg-type]
                                     means, hits, best)
    return out


@dataclass
class PromptComparison:
    key: Any
    prompt: str
    a: PromptAtIteration | None
    b: PromptAtIteration | None

    @property
    def delta(self) -> float | None:
        if self.a and self.b and self.a.total_mean is not None and self.b.total_mean is not None:
            return self.b.total_mean - self.a.total_mean
        return None

    def to_json(self) -> dict[str, Any]:
        key = self.key[1] if self.key[0] == "row" else None
        return {"row": key, "prompt": self.prompt, "a": self.a.to_json() if self.a else None,
                "b": self.b.to_json() if self.b else None, "delta_total": self.delta}


def compare_iterations(root: Path, a: int, b: int, problems: list[rundir.BadLine]) -> list[PromptComparison]:
    """The prompts of iterations A and B matched by dataset row (else prompt text), in A's order."""
    pa = per_prompt(iter_samples(rollouts_path(root, a), problems))
    pb = per_prompt(iter_samples(rollouts_path(root, b), problems))
    if pa and pb and not set(pa) & set(pb):
        # Rows differ (e.g. a run without `row`): fall back to matching by prompt text.
        pa = {("prompt", v.best.prompt): v for v in pa.values()}
        pb = {("prompt", v.best.prompt): v for v in pb.values()}
    out = []
    for key in list(pa) + [k for k in pb if k not in pa]:
        x, y = pa.get(key), pb.get(key)
        out.append(PromptComparison(key, (x or y).best.prompt, x, y))  # type: ignore[union-attr]
    return out


# Keys with a direction, for the "best" column of a run comparison; others (length, loss, time) have none.
_HIGHER_IS_BETTER = re.compile(r"^(reward/.*/(mean|selected_mean)$|distinct_)")
_LOWER_IS_BETTER = re.compile(r"^filter/")


def best_value(key: str, values: list[float | None]) -> float | None:
    """The best value of a metric over a run: highest reward or diversity, lowest filter rate, else None."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None
    if _HIGHER_IS_BETTER.search(key):
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
        rank = 0 if k.startswith("reward/") else 1 if k.startswith(("length/", "distinct")) else \
            2 if k.startswith("filter/") else 4 if k.startswith("time/") else 3
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


# --------------------------------------------------------------------------- highlighting


def _builtin_patterns() -> dict[str, re.Pattern[str]]:
    """Patterns of the degenerate text the built-in filters catch (seed 003's hacks), for highlighting.

    Keyed by the built-in filter names; equivalent to the filters' own regexes (plugins/filters.py),
    but every '#' is marked, headings included: the point is to see them.
    """
    return {
        "stray_hash": re.compile(r"#+"),
        # Western and eastern emoticons: :) ;-) :D XD ^_^ (^^) T_T — the ones seed 003's PPO spammed.
        "emoticon_flood": re.compile(
            r"""(?<![:;=])[:;=]['-]?[)(\]\[DPp|*O](?!\w)"""
            r"""|(?<!\w)[xX]D+(?!\w)"""
            r"""|\(\s*[*o]?\s*[\^T;][_\-.o~]?[\^T;]\s*[*o]?\s*\)"""
            r"""|(?<![\w^])\^[_\-.o~]?\^(?![\w^])"""
            r"""|(?<!\w)T_T(?!\w)|(?<!\w)-_-(?!\w)|(?<!\w)[oO]_[oO](?!\w)"""),
        "self_dialogue": SELF_DIALOGUE,
        # A phrase (2-50 characters, starting with a letter) three or more times back to back.
        "repetition_loop": re.compile(r"([^\W\d_].{1,49}?)(?:[\s、,，。.!！?？…・;；:：\-—]*\1){2,}",
                                      re.S | re.I),
    }


@functools.cache
def highlight_patterns() -> dict[str, re.Pattern[str]]:
    """Highlight patterns: ours, overridden by the filters plugin's own if it exposes ``PATTERNS``."""
    patterns = _builtin_patterns()
    try:
        from raftkit_plugins import filters as plugin_filters  # the built-in filters, if they expose them
    except Exception:
        return patterns
    exposed = getattr(plugin_filters, "PATTERNS", None)
    if isinstance(exposed, dict):
        for name, p in exposed.items():
            if isinstance(p, re.Pattern):
                patterns[str(name)] = p
            elif isinstance(p, str):
                try:
                    patterns[str(name)] = re.compile(p)
                except re.error:
                    pass
    return patterns


def hit_spans(text: str, patterns: dict[str, re.Pattern[str]] | None = None) -> list[tuple[int, int, str]]:
    """(start, end, pattern name) of every degenerate-pattern match in ``text``."""
    spans = []
    for name, p in (patterns or highlight_patterns()).items():
        spans.extend((m.start(), m.end(), name) for m in p.finditer(text) if m.end() > m.start())
    return sorted(spans)


def fold(text: str, width: int, tail: int | None = None) -> tuple[str, int]:
    """Shorten long text to its head and tail (floods tend to sit at the end); returns (text, cut chars).

    >>> fold("abcdefghij", 6, tail=2)
    ('abc … ij', 5)
    """
    if width <= 0 or len(text) <= width:
        return text, 0
    tail = max(0, width // 4) if tail is None else tail
    head = max(1, width - tail - 1)
    cut = len(text) - head - tail
    return text[:head] + " … " + (text[-tail:] if tail else ""), cut


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
