"""The resumable training state of a run: checkpoint/ (weights, optimiser, RNG) and the final model/.

Both are written to a temporary folder that is swapped in whole (``rundir.replace_dir``), so a kill leaves
either the previous complete folder or the new one; ``checkpoint/``'s marker file is written last and marks
it complete (``rundir.latest_checkpoint``).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from raftkit.runs import rundir

CHECKPOINT_STATE = "state.pt"
CHECKPOINT_WEIGHTS = "policy.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that does not fit the run resuming it (another algorithm, other weights)."""


def rng_state() -> dict[str, Any]:
    import numpy as np

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    random.setstate(state["python"])
    if "numpy" in state:  # checkpoints written before NumPy's state was kept lack it
        np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(root: Path, policy: Any, algorithm: Any, iteration: int) -> None:
    """Write the training state to a temporary folder, then swap it in for checkpoint/."""
    rundir.finish_checkpoint_swap(root)  # after a killed swap checkpoint.tmp may be the only copy
    tmp = root / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with rundir.writing("the checkpoint"):
            tmp.mkdir()
            if policy.lora_r:  # the base weights are the model folder's; only the adapters changed
                weights = {n: p.detach() for n, p in policy.model.named_parameters() if p.requires_grad}
            else:
                weights = policy.model.state_dict()
            torch.save(weights, tmp / CHECKPOINT_WEIGHTS)
            state = {"algorithm_state": algorithm.state_dict(), "rng": rng_state()}
            torch.save(state, tmp / CHECKPOINT_STATE)
            # The marker last: its presence marks the folder complete (rundir.latest_checkpoint relies on it).
            marker = {"iteration": iteration, "algorithm": algorithm.name, "time": time.time()}
            rundir.atomic_write_text(tmp / rundir.CHECKPOINT_MARKER, json.dumps(marker))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # half a checkpoint is of no use and may fill the disk
        raise
    rundir.replace_dir(tmp, rundir.checkpoint_path(root))


def load_checkpoint(path: Path, marker: dict[str, Any], policy: Any, algorithm: Any) -> int:
    """Restore policy weights, algorithm state and RNG; returns the checkpoint's iteration."""
    if marker["algorithm"] != algorithm.name:
        raise CheckpointError(f"{path}: the checkpoint is from {marker['algorithm']}, not {algorithm.name}")
    weights = torch.load(path / CHECKPOINT_WEIGHTS, weights_only=True, map_location=policy.device)
    _, unexpected = policy.model.load_state_dict(weights, strict=not policy.lora_r)
    if unexpected:
        raise CheckpointError(f"{path}: checkpoint weights do not fit the model ({unexpected[:3]}...)")
    state = load_state(path / CHECKPOINT_STATE)
    algorithm.load_state_dict(state["algorithm_state"])
    set_rng_state(state["rng"])
    return int(marker["iteration"])


def _numpy_globals() -> list[Any]:
    """The NumPy types a checkpoint's RNG state pickles (``np.random.get_state()``: an array of uint32)."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct  # NumPy 2
    except ImportError:  # pragma: no cover - NumPy 1
        from numpy.core.multiarray import _reconstruct
    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_state(path: Path) -> dict[str, Any]:
    """Read a checkpoint's ``state.pt`` as data only: tensors, numbers, strings, containers and NumPy's RNG
    arrays. A run folder may come from anywhere, and a full pickle runs whatever code it names, so a file
    that needs anything else is refused (CheckpointError), never executed."""
    import pickle

    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        needs = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({needs.group(1)})" if needs else ""
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than training data{what}, which could run "
            "code. raftkit writes no such checkpoint; start a new run, or --restart this one"
        ) from None
    except (OSError, RuntimeError, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({e}); --restart the run") from None
    if not isinstance(state, dict) or "algorithm_state" not in state or "rng" not in state:
        raise CheckpointError(f"{path}: not a raftkit checkpoint (no algorithm_state/rng); --restart the run")
    return state


def keep_copy(root: Path, iteration: int) -> None:
    """checkpoints/iter-N: hard links to the current checkpoint's files (no extra disk), else a copy."""
    src = rundir.checkpoint_path(root)
    dst = root / "checkpoints" / f"iter-{iteration:06d}"
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with rundir.writing("a copy of the checkpoint"):
            tmp.mkdir(parents=True)
            for f in src.iterdir():
                try:
                    os.link(f, tmp / f.name)
                except OSError:
                    shutil.copy2(f, tmp / f.name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    rundir.replace_dir(tmp, dst)


def save_model(root: Path, policy: Any) -> None:
    """The final policy as a transformers folder, model/, swapped in whole."""
    tmp = root / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with rundir.writing("the final model"):
            policy.save(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    rundir.replace_dir(tmp, root / "model")
