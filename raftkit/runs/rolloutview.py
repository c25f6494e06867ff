"""Rollout records as plain data for ``raftkit inspect``: samples, queries, stats and comparisons.

A rollouts file is streamed one line at a time and read in either form: a run's records (``rewards`` and
``hits`` nested) or the flat one of ``raftkit score --json``. Bad lines are collected as problems that
name the file and line, never raised; a last line still being written is skipped.
"""

from __future__ import annotations

import difflib
import heapq
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from raftkit.rewards import completion_text
from raftkit.runs import rundir
from raftkit.runs.runview import InspectError, number
from raftkit.text import distinct_n

# The fields a rollout record carries besides its rewards (everything else numeric in a flat
# `raftkit score` record is a reward value).
ROLLOUT_FIELDS = frozenset({
    "iteration", "prompt_index", "row", "sample", "prompt", "completion", "rewards", "hits", "total",
    "dropped", "selected", "advantage", "hinted", "truncated", "finish_reason", "completion_ids",
    "logprobs", "prompt_ids", "sample_prompt", "index", "id", "filters", "extra",
})


# --------------------------------------------------------------------------- text of a record


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


# --------------------------------------------------------------------------- records and iterations


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
    extra: dict[str, Any] | None = None  # the columns rewards logged with log_extra

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
        extra=record["extra"] if isinstance(record.get("extra"), dict) else None,
    )


def iter_samples(path: Path, problems: list[rundir.BadLine] | None = None,
                 filter_names: frozenset[str] = frozenset()) -> Iterator[Sample]:
    """Stream a rollouts file's samples, line by line (bad lines go to ``problems``, never raise).

    A last line without its newline is a record still being written and is skipped. ``filter_names``
    tells filter hit counts from rewards in flat records (see ``normalise``).
    """
    for position, (lineno, record) in enumerate(rundir.read_jsonl_lines(path, problems)):
        yield normalise(record, position, lineno, filter_names)


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


# --------------------------------------------------------------------------- queries


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

    filter_names: set[str] = set()

    def matching() -> Iterator[Sample]:
        nonlocal total, matched
        for s in samples:
            total += 1
            if not first_names and s.rewards:
                first_names.extend(s.rewards)
            filter_names.update(s.hits)
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
        # Every path below reads the stream to its end, so this runs once all filter names are known.
        if query.filter and query.filter != "any" and total and query.filter not in filter_names:
            raise InspectError(_no_such_filter(query.filter, filter_names))

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
        kept += [t[2] for t in sorted(worst_heap, key=lambda t: t[:2], reverse=True)]  # the worst first
        return kept, matched, total
    kept = sorted(rest, key=lambda s: (-key(s), s.position))
    if query.limit is not None:
        kept = kept[: query.limit]
    return kept, matched, total


def _no_such_filter(name: str, known: set[str]) -> str:
    """``--filter NAME`` that no rollout was checked with: a typo, not "no rollouts match"."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    listed = ", ".join(sorted(known)) or "none (these rollouts carry no filter hits)"
    return f"--filter {name}: no such filter in these rollouts.{hint} Filters: {listed}, or 'any'."


def _chain(first: Sample, rest: Iterator[Sample]) -> Iterator[Sample]:
    yield first
    yield from rest


def registered_filter_names() -> frozenset[str]:
    """Names of the installed filters (to read flat ``raftkit score`` output); empty if plugins fail."""
    try:
        from raftkit.rewards import load_registry

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


# --------------------------------------------------------------------------- per-prompt comparisons


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
