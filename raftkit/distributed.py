"""Several processes (``torchrun --nproc_per_node N -m raftkit align ...``): data parallel, DDP-equivalent.

Each rank takes a contiguous, equal slice of the iteration's prompts (``shard``), samples all k completions
of each of them itself (so group statistics stay on one rank), scores them with its own reward stack and
computes gradients on them. The algorithms make their loss normalisers global (``all_reduce_sum`` of the
batch's sequence and token counts) and sum the gradients over ranks before each optimiser step
(``average_gradients``), so a step equals the one-process step on the whole batch. The model is replicated;
rank 0 alone writes the run directory, from rollouts gathered to it (``gather_objects``).

With one process (WORLD_SIZE unset or 1) no process group is created and every function here is a no-op
that returns its input, so nothing changes for a plain ``raftkit align``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

import torch

T = TypeVar("T")

# Long: rank 0 evaluates and checkpoints while the others wait at a barrier. A rank that dies is noticed
# by its peers' closed connections (and by torchrun), not by this timeout.
TIMEOUT = timedelta(minutes=float(os.environ.get("RAFTKIT_DIST_TIMEOUT_MIN", "120")))
_FAILURE_KEY = "raftkit/failure"


def _env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def active() -> bool:
    """Whether a process group of more than one rank is up."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() and world() > 1


def init() -> int:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT); returns
    the world size. gloo on CPU, nccl on CUDA (each rank on GPU LOCAL_RANK). Idempotent; with WORLD_SIZE
    unset or 1 it does nothing."""
    if _env_world() <= 1 or torch.distributed.is_initialized():
        return world()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl"
    else:
        backend = "gloo"
    torch.distributed.init_process_group(backend, timeout=TIMEOUT)
    return world()


def world() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def is_main() -> bool:
    return rank() == 0


def shutdown() -> None:
    """Leave the process group (after a final barrier, so no rank is still waiting on another)."""
    if active():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def check_divisible(n: int, what: str = "--prompts-per-iteration") -> None:
    """Each rank must get the same number of prompts: the loss normalisers and the gathered prompt order
    assume equal, contiguous slices."""
    w = world()
    if n % w:
        raise ValueError(
            f"{what} {n} is not divisible by the number of processes ({w}): each process takes an equal "
            f"share of the prompts; use a multiple of {w}"
        )


def shard(items: Sequence[T], strict: bool = True) -> list[T]:
    """This rank's contiguous slice of ``items``. ``strict``: the slices must be equal (else ValueError);
    otherwise the first ``len % world`` ranks get one item more (some may get none)."""
    w, r, n = world(), rank(), len(items)
    if strict:
        check_divisible(n, "a batch of")
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return list(items[start : start + base + (r < extra)])


def shard_batch(batch: Any) -> Any:
    """This rank's slice of a ``rollouts.Batch``: its prompts, their columns and dataset rows."""
    if world() == 1:
        return batch
    return type(batch)(
        shard(batch.prompts),
        {k: shard(v) for k, v in batch.columns.items()},
        shard(batch.indices) if batch.indices else [],
    )


def all_reduce_sum(*values: float) -> tuple[float, ...]:
    """The sums over ranks of a few numbers, in one all-reduce (float64, so counts stay exact)."""
    if not active():
        return tuple(values)
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    torch.distributed.all_reduce(t)
    return tuple(t.tolist())


def gather_objects(obj: T) -> list[T] | None:
    """Every rank's ``obj`` (picklable), in rank order, on rank 0; None on the others."""
    if not active():
        return [obj]
    out: list[Any] | None = [None] * world() if is_main() else None
    torch.distributed.gather_object(obj, out, dst=0)
    return out


def all_gather_objects(obj: T) -> list[T]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world()
    torch.distributed.all_gather_object(out, obj)
    return out


def all_gather_flat(items: Sequence[T]) -> tuple[list[T], int]:
    """The concatenation over ranks of each rank's list, and where this rank's part starts in it."""
    parts = all_gather_objects(list(items))
    return [x for p in parts for x in p], sum(len(p) for p in parts[: rank()])


def barrier() -> None:
    if active():
        torch.distributed.barrier()


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum ``.grad`` over ranks in place (called before clipping and the optimiser step).

    A sum, not a mean: the losses are already divided by the *global* batch's normalisers, so the summed
    gradient is exactly the one-process gradient of the whole batch. A rank with no sample in the loss
    contributes zeros; when no rank has a gradient the ``.grad`` stay None, as with one process (AdamW
    then skips the parameters instead of stepping on zero gradients with its old moments).
    """
    if not active():
        return
    params = list(params)
    (have,) = all_reduce_sum(float(any(p.grad is not None for p in params)))
    if not have:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        torch.distributed.all_reduce(p.grad)  # per tensor: simple; bucketing would overlap better


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers to every rank, as DDP does at start: the replicas must agree."""
    if not active():
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            torch.distributed.broadcast(t.data, src=0)


def rank_seed(seed: int, iteration: int = 1) -> int:
    """This rank's sampling seed for a run (re)starting at ``iteration``: ``seed`` itself with one process
    (unchanged behaviour), else a distinct, deterministic seed per (rank, iteration) so ranks draw
    independent samples and a resumed run does not replay the first iteration's random stream."""
    if world() == 1:
        return seed
    return seed + 7919 * rank() + 104729 * (iteration - 1)


def reseed(seed: int, iteration: int) -> None:
    """Python, NumPy and torch RNG from (seed, rank, iteration), for a multi-process resume: a checkpoint
    holds rank 0's state only, so each rank's state is derived instead. A resumed multi-process run is
    therefore not bit-identical to an uninterrupted one. No-op with one process (the checkpoint's exact
    state is restored)."""
    if world() == 1:
        return
    import random

    import numpy as np

    s = rank_seed(seed, iteration)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def gather_scored(rollouts: list[Any], scores: Any, n_prompts: int, *, to_all: bool = False
                  ) -> tuple[list[Any], Any] | None:
    """All ranks' rollouts (``prompt_index`` renumbered into the whole batch, ``n_prompts`` per rank) and
    their Scores concatenated, in prompt order; on rank 0 (None elsewhere), or on every rank (``to_all``)."""
    if not active():
        return rollouts, scores
    mine = (_renumbered(rollouts, n_prompts), scores)
    parts = all_gather_objects(mine) if to_all else gather_objects(mine)
    if parts is None:
        return None
    return [r for rs, _ in parts for r in rs], concat_scores([s for _, s in parts])


def concat_scores(parts: Sequence[Any]) -> Any:
    """One Scores from several ranks' (same rewards and filters), in rank order."""
    first = parts[0]
    return type(first)(
        rewards={k: [v for p in parts for v in p.rewards[k]] for k in first.rewards},
        weights=dict(first.weights),
        hits={k: [v for p in parts for v in p.hits[k]] for k in first.hits},
        total=[v for p in parts for v in p.total],
        dropped=[v for p in parts for v in p.dropped],
        # Ranks score in parallel: the slowest one is the iteration's wall time.
        seconds={k: max(p.seconds.get(k, 0.0) for p in parts) for k in first.seconds},
    )


# Algorithm metrics that count things on each rank's own share: summed over ranks. Every other one is a
# rate, a mean or already global (the algorithms reduce their losses): averaged over the equal shares.
ADDITIVE = frozenset({
    "n_selected", "n_empty_prompts", "n_skipped_prompts", "trained_sequences", "zero_adv_groups_n",
    "explore/hinted_tokens",
})


def merge_metrics(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    """One dict of algorithm metrics from every rank's (see ADDITIVE); time/* is the slowest rank's."""
    if len(parts) == 1:
        return dict(parts[0])
    out: dict[str, float] = {}
    for key in parts[0]:
        values = [p[key] for p in parts if isinstance(p.get(key), int | float)]
        if len(values) != len(parts):
            out[key] = parts[0][key]
        elif key in ADDITIVE:
            out[key] = sum(values)
        elif key.startswith("time/"):
            out[key] = max(values)
        else:
            out[key] = sum(values) / len(values)
    return out


def record_failure(message: str) -> None:
    """Leave ``rank R: message`` in the rendezvous store, where rank 0 can read it to mark the run crashed
    with the real cause (it may only see a closed connection or torchrun's SIGTERM)."""
    store = _store()
    if store is not None:
        try:
            store.set(_FAILURE_KEY, f"rank {rank()}: {message}")
        except Exception:  # the store may already be gone; the message still reaches stderr
            pass


def failure() -> str | None:
    """What another rank recorded with ``record_failure``, if anything."""
    store = _store()
    if store is None:
        return None
    try:
        if store.check([_FAILURE_KEY]):
            return store.get(_FAILURE_KEY).decode("utf-8", "replace")
    except Exception:
        pass
    return None


def hold_stop_signals() -> None:
    """Ignore SIGTERM and SIGINT from here on, while this rank records a failure and exits: torchrun
    sends SIGTERM to every rank as soon as one dies, which must not cut rank 0's record short (torchrun
    follows with SIGKILL after its grace period, so a stuck rank still ends)."""
    if active() and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def abort(message: str, code: int = 1) -> None:
    """Print ``rank R: message`` to stderr and end this process at once. A normal exit could block in the
    process group's teardown while peers wait in a collective; torchrun then stops the other ranks."""
    from raftkit.runs.quiet import to_terminal

    to_terminal(f"rank {rank()}: {message}\n")  # the terminal, even while other output goes to the log
    sys.stdout.flush()
    os._exit(code)


def _store() -> Any:
    if not active():
        return None
    try:  # private, but the one handle on the store every rank already shares
        return torch.distributed.distributed_c10d._get_default_store()
    except Exception:
        return None


def _device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_step(rollouts: list[Any], scores: Any, result: Any, n_prompts: int
                ) -> tuple[list[Any], Any, Any] | None:
    """One iteration of every rank, on rank 0 (None elsewhere), as if one process had done it: rollouts
    renumbered into the whole batch (``n_prompts`` per rank), Scores and the StepResult's per-sample
    records concatenated, its ``selected`` indices shifted, its metrics merged (``merge_metrics``)."""
    if not active():
        return rollouts, scores, result
    parts = gather_objects((_renumbered(rollouts, n_prompts), scores, result))
    if parts is None:
        return None
    everything: list[Any] = []
    per_sample: list[dict[str, Any]] = []
    selected: list[dict[str, Any]] | None = None
    for rs, _, res in parts:
        if res.selected is not None:
            selected = (selected or []) + [{**s, "index": s["index"] + len(everything)} for s in res.selected]
        everything.extend(rs)
        per_sample.extend(res.per_sample)
    merged = replace(parts[0][2], metrics=merge_metrics([res.metrics for _, _, res in parts]),
                     per_sample=per_sample, selected=selected)
    return everything, concat_scores([s for _, s, _ in parts]), merged


def _renumbered(rollouts: list[Any], n_prompts: int) -> list[Any]:
    """Rollouts with ``prompt_index`` counted in the whole batch instead of this rank's slice."""
    offset = rank() * n_prompts
    return [replace(r, prompt_index=r.prompt_index + offset) for r in rollouts]
