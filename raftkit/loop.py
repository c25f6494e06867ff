"""The alignment loop shared by RAFT and GRPO: sample, score, update, sync, record; crash-safe and resumable.

One function, ``run``, reads top to bottom. What differs between algorithms (how to sample, how to
update) lives in the algorithm object; everything else — data, rewards, the sampler, the run directory,
checkpoints, evaluation — is here once.

Crash safety comes from ordering. Per iteration: its files (rollouts, selection, metrics.json) are
written first, then the checkpoint (via a temporary folder swapped into place), and only then its line in
metrics.jsonl. A kill at any moment leaves either the previous checkpoint or the new one complete, and
``--resume`` continues after the newest complete checkpoint, dropping any later partial iteration.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from raftkit import evalrender, evaluate
from raftkit.config import AlignConfig, to_dict
from raftkit.runs import rundir
from raftkit.runs.metrics import iteration_metrics, rollout_records, summary_line

CHECKPOINT_STATE = "state.pt"
CHECKPOINT_WEIGHTS = "policy.pt"


class RunError(RuntimeError):
    """A run that stopped on an error; the message says what happened and at which iteration."""

    def __init__(self, message: str, run_dir: Path):
        super().__init__(message)
        self.run_dir = run_dir


# --------------------------------------------------------------------------- building blocks


def default_run_dir(algo: str, root: str | Path = "runs") -> Path:
    """runs/<timestamp>-<algo>, unique even when two runs start in the same second."""
    root = Path(root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = root / f"{stamp}-{algo}", 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{algo}-{n}"
    return path


def link_latest(run_dir: Path) -> None:
    """Point runs/latest at the run (a relative symlink, swapped atomically)."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.tmp-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, link)
    except OSError:  # a file system without symlinks: the run itself is unaffected
        tmp.unlink(missing_ok=True)


def make_algorithm(cfg: AlignConfig, algo_cfg: Any, policy: Any, sampling: Any) -> Any:
    """The configured algorithm, built from the registry (raftkit.algorithms)."""
    from raftkit import algorithms

    return algorithms.get(cfg.algo).cls(
        policy,
        algo_cfg,
        lr=cfg.lr,
        total_steps=cfg.iterations,
        k=cfg.k,
        sampling=sampling,
        seed=cfg.seed,
        rewards=cfg.rewards,
    )


def make_sampler(cfg: AlignConfig, model_path: str) -> Any:
    # The in-process engine is what lets the loop sync weights into it (DESIGN.md).
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(cfg.kv_cache_gib))))
    from raftkit.sampling import sampler

    kwargs: dict[str, Any] = {"seed": cfg.seed}
    if cfg.sampler != "hf":
        kwargs["kv_cache_gib"] = cfg.kv_cache_gib
    return sampler.make_sampler(cfg.sampler, model_path, **kwargs)


def start_sampler(cfg: AlignConfig, model_path: str) -> Any:
    """``make_sampler``, leaving the process's random state as it was: the vLLM engine reseeds Python,
    NumPy and torch when it starts, which would overwrite the state a resume has just restored."""
    state = rng_state()
    sampler = make_sampler(cfg, model_path)
    set_rng_state(state)
    return sampler


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
    tmp = root / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
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
    rundir.replace_dir(tmp, rundir.checkpoint_path(root))


def load_checkpoint(path: Path, marker: dict[str, Any], policy: Any, algorithm: Any) -> int:
    """Restore policy weights, algorithm state and RNG; returns the checkpoint's iteration."""
    if marker["algorithm"] != algorithm.name:
        raise RunError(
            f"{path}: the checkpoint is from {marker['algorithm']}, not {algorithm.name}", path.parent
        )
    weights = torch.load(path / CHECKPOINT_WEIGHTS, weights_only=True, map_location=policy.device)
    _, unexpected = policy.model.load_state_dict(weights, strict=not policy.lora_r)
    if unexpected:
        raise RunError(f"{path}: checkpoint weights do not fit the model ({unexpected[:3]}...)", path.parent)
    state = torch.load(
        path / CHECKPOINT_STATE, weights_only=False
    )  # our own file: RNG tuples, optimiser state
    algorithm.load_state_dict(state["algorithm_state"])
    set_rng_state(state["rng"])
    return int(marker["iteration"])


def keep_copy(root: Path, iteration: int) -> None:
    """checkpoints/iter-N: hard links to the current checkpoint's files (no extra disk), else a copy."""
    src = rundir.checkpoint_path(root)
    dst = root / "checkpoints" / f"iter-{iteration:06d}"
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in src.iterdir():
        try:
            os.link(f, tmp / f.name)
        except OSError:
            shutil.copy2(f, tmp / f.name)
    rundir.replace_dir(tmp, dst)


def _json_safe(d: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf are not JSON: written as null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _read_eval(root: Path) -> dict[str, Any]:
    try:
        return json.loads((root / "eval.json").read_text())
    except (OSError, ValueError):
        return {}


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with progress:
        yield progress


# --------------------------------------------------------------------------- the loop


def run(
    cfg: AlignConfig,
    algo_cfg: Any,
    run_dir: str | Path,
    *,
    resume: bool = False,
    console: Console | None = None,
) -> Path:
    """Align a policy as configured and record it in ``run_dir``; returns the run directory.

    With ``resume`` the run continues after its newest complete checkpoint. Raises RunError (the run is
    then marked crashed) or KeyboardInterrupt (marked stopped); either way the directory stays resumable.
    """
    from raftkit.datasets import load_prompts
    from raftkit.policy import Policy
    from raftkit.rewards import RewardStack
    from raftkit.sampling.sampler import SamplingParams

    console = console or Console()
    root = Path(run_dir)

    # 1. Rewards and prompts first: a typo in a reward name should fail in a second, not after model loading.
    if not cfg.rewards:
        raise RunError("no reward given: pass at least one --reward (see `raftkit rewards`)", root)
    stack = RewardStack.build(cfg.rewards, cfg.filters, timeout=cfg.reward_timeout)
    # The evaluation measures the task beside the rewards: answer accuracy and every built-in filter.
    eval_stack = evaluate.eval_stack(cfg.rewards, cfg.filters, timeout=cfg.reward_timeout)
    reward_names = [e.label for e in stack.rewards]
    prompts = load_prompts(
        None if cfg.dataset in ("", "bundled") else cfg.dataset, prompt_column=cfg.prompt_column
    )
    # Always split: with --heldout 0 the bundled set's marked held-out rows must still stay out of training.
    train_set, heldout = prompts.split_heldout(cfg.heldout, seed=cfg.seed)
    heldout = heldout if len(heldout) else None
    if len(train_set) == 0:
        raise RunError(f"no training prompts left in {prompts.source} after holding out {cfg.heldout}", root)

    # 2. The run directory. On resume, config.yaml is rewritten with any options changed on the command line.
    config_dict = to_dict(cfg, algo_cfg)
    writer: rundir.RunWriter | None = None
    if resume:
        rundir.atomic_write_text(root / "config.yaml", _yaml(config_dict))
    else:
        writer = rundir.RunWriter.create(root, config_dict, cfg.algo)
        if root.parent.name == "runs":
            link_latest(root)

    sampler = None
    iteration = 0
    previous_sigterm = _stop_on_sigterm()
    rollouts = batch = None
    try:
        # 3. Seeds, the policy (fp32 master weights, bf16 autocast where the CPU has it) and the algorithm.
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        with console.status("loading the model"):
            policy = Policy(cfg.model, lora_r=cfg.lora_r, gradient_checkpointing=cfg.gradient_checkpointing)
        sampling = SamplingParams(
            temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens
        )
        algorithm = make_algorithm(cfg, algo_cfg, policy, sampling)

        # 4. Resume: restore the newest complete checkpoint and drop any iteration it does not cover.
        start = 1
        if resume:
            found = rundir.latest_checkpoint(root)
            done = load_checkpoint(*found, policy, algorithm) if found is not None else None
            writer = rundir.RunWriter.resume(root, done)
            writer.info["iterations_planned"] = cfg.iterations
            start = (done or 0) + 1
            console.print(f"resuming {root} after iteration {done or 0}")

        # 5. The sampler starts from the model folder, i.e. the base weights: evaluate the base model first.
        with console.status(f"starting the {cfg.sampler} sampler"):
            sampler = start_sampler(cfg, policy.path)
        _header(console, cfg, root, reward_names, stack, algorithm, len(train_set), heldout)
        evals = _read_eval(root)
        if heldout is not None and "before" not in evals:
            with console.status(f"evaluating the base model on {len(heldout)} held-out prompts"):
                evals["before"] = _evaluate(sampler, heldout, eval_stack, cfg)
            writer.write_json("eval.json", evals)
        if start > 1:
            sampler.sync(policy.weights())  # the sampler must serve the resumed policy, not the base

        # 6. The iterations.
        for iteration in range(start, cfg.iterations + 1):
            t0 = time.perf_counter()
            rollouts = None
            batch = evaluate.with_answer_column(
                train_set.batch_at(iteration - 1, cfg.prompts_per_iteration, cfg.seed), cfg.answer_column
            )
            with _progress(console) as progress:
                # 6a. Sample k completions per prompt (how is the algorithm's business: RAFT adds hints).
                task = progress.add_task(
                    f"iteration {iteration}: sampling {len(batch)} prompts x {cfg.k}", total=1
                )
                rollouts = algorithm.sample(sampler, batch, iteration)
                progress.update(task, completed=1)
                t1 = time.perf_counter()
                # 6b. Score: one path for every algorithm, rewards and filters together.
                task = progress.add_task(f"iteration {iteration}: scoring {len(rollouts)} samples", total=1)
                scores = stack.score_rollouts(rollouts, batch)
                progress.update(task, completed=1)
                t2 = time.perf_counter()
                # 6c. Update the policy.
                task = progress.add_task(f"iteration {iteration}: training", total=None)
                if hasattr(algorithm, "progress"):
                    algorithm.progress = lambda done, total, task=task: progress.update(
                        task, completed=done, total=total
                    )
                result = algorithm.update(batch, rollouts, scores, iteration)
                t3 = time.perf_counter()
            # 6d. Sync the new weights into the sampler, in place (no engine restart).
            sync_seconds = sampler.sync(policy.weights())
            t4 = time.perf_counter()

            # 6e. Record: the iteration's files, then the checkpoint, then the metrics line (see module doc).
            selected_flags = (
                [bool(p.get("selected")) for p in result.per_sample] if result.selected is not None else None
            )
            metrics = iteration_metrics(rollouts, scores, selected_flags)
            metrics.update(result.metrics)
            records = rollout_records(iteration, batch, rollouts, scores, result.per_sample)
            selected = None
            if result.selected is not None:
                selected = [
                    {**records[s["index"]], **{k: v for k, v in s.items() if k != "index"}}
                    for s in result.selected
                ]
            writer.write_iteration(iteration, records, selected)
            metrics.update(
                {
                    "time/sample": t1 - t0,
                    "time/score": t2 - t1,
                    "time/update": t3 - t2,
                    "time/sync": float(sync_seconds if sync_seconds is not None else t4 - t3),
                }
            )
            metrics["time/iteration"] = time.perf_counter() - t0
            metrics = _json_safe(metrics)
            writer.write_metrics(iteration, metrics)  # before the checkpoint that covers this iteration
            if iteration % cfg.save_every == 0 or iteration == cfg.iterations:
                t5 = time.perf_counter()
                save_checkpoint(root, policy, algorithm, iteration)
                if cfg.checkpoint_every and iteration % cfg.checkpoint_every == 0:
                    keep_copy(root, iteration)
                metrics["time/checkpoint"] = time.perf_counter() - t5
            writer.commit_iteration(iteration, metrics)
            console.print(summary_line(iteration, cfg.iterations, metrics, reward_names))
            rollouts = None

        # 7. The final policy as a transformers folder, then the after-evaluation.
        with console.status("saving the model"):
            tmp = root / "model.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            policy.save(tmp)
            rundir.replace_dir(tmp, root / "model")
        if heldout is not None:
            with console.status(f"evaluating the trained model on {len(heldout)} held-out prompts"):
                evals["after"] = _evaluate(sampler, heldout, eval_stack, cfg)
            evals["delta"] = evaluate.compare(evals["before"], evals["after"])
            evals["alarm"] = evaluate.alarm(evals["before"], evals["after"])
            writer.write_json("eval.json", evals)
            evalrender.render(evals["before"], evals["after"], console, evals["alarm"])
        writer.finish("finished")
        if evals.get("alarm"):
            console.print(f"[bold red]done, but the model looks wrecked[/bold red] (see above): {root}")
        else:
            console.print(f"[bold]done[/bold]: {root} (model at {root / 'model'})")
        return root
    except KeyboardInterrupt:
        if writer is not None:
            writer.finish("stopped", f"interrupted during iteration {iteration}")
        raise
    except Exception as e:
        where = f"iteration {iteration}" if iteration else "start-up"
        message = f"{where}: {type(e).__name__}: {e}"
        if rollouts and batch is not None:
            # The unscored samples that broke the iteration, for debugging; outside iterations/ so a
            # resume (which redoes the iteration) and `inspect` are not confused by them.
            crash = root / "crash"
            crash.mkdir(exist_ok=True)
            rundir.write_jsonl(
                crash / f"iteration-{iteration:06d}-rollouts.jsonl",
                rollout_records(iteration, batch, rollouts, None),
            )
            message += f" (its samples: {crash / f'iteration-{iteration:06d}-rollouts.jsonl'})"
        if writer is not None:
            writer.finish("crashed", message)
        raise RunError(message, root) from e
    finally:
        if sampler is not None:
            sampler.close()
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


def _stop_on_sigterm() -> Any:
    """Treat SIGTERM (e.g. `kill`, a job scheduler) like Ctrl-C: the run is marked stopped, the sampler shut
    down. Returns the previous handler (None off the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, stop)


def _evaluate(sampler: Any, heldout: Any, stack: Any, cfg: AlignConfig) -> dict[str, Any]:
    batch = evaluate.with_answer_column(heldout.batch(list(range(len(heldout)))), cfg.answer_column)
    return evaluate.evaluate(
        sampler,
        batch,
        stack,
        samples=cfg.eval_samples,
        temperature=cfg.eval_temperature,
        max_new_tokens=cfg.max_new_tokens,
        top_p=cfg.top_p,
    )


def _yaml(values: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(values, sort_keys=False, allow_unicode=True)


def _header(
    console: Console,
    cfg: AlignConfig,
    root: Path,
    rewards: list[str],
    stack: Any,
    algorithm: Any,
    n_train: int,
    heldout: Any,
) -> None:
    filters = ", ".join(f"{f.label}({f.action})" for f in stack.filters) or "none"
    hint = getattr(algorithm, "hint", "")
    share = getattr(algorithm, "n_hinted", 0)
    console.print(
        f"[bold]raftkit align[/bold] {cfg.algo} -> {root}\n"
        f"  rewards: {', '.join(rewards)} | filters: {filters}\n"
        f"  {cfg.iterations} iterations x {cfg.prompts_per_iteration} prompts x k={cfg.k}, "
        f"max {cfg.max_new_tokens} new tokens, T={cfg.temperature}, lr {cfg.lr:g} | "
        f"{n_train} training prompts, {len(heldout) if heldout is not None else 0} held out"
        + (
            f"\n  exploration: {share} of {cfg.k} samples per prompt with the hint {hint!r}"
            if hint and share
            else ""
        )
    )
