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

import dataclasses
import errno
import json
import math
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console

from raftkit import distributed
from raftkit.config import AlignConfig, to_dict
from raftkit.evaluation import metrics as evaluate
from raftkit.evaluation import render as evalrender
from raftkit.progress import progress_bar
from raftkit.runs import rundir
from raftkit.runs.checkpoint import (
    keep_copy,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    save_model,
    set_rng_state,
)
from raftkit.runs.metric_names import canonical
from raftkit.runs.metrics import closing_line, iteration_metrics, peak_rss_gib, rollout_records, summary_line
from raftkit.runs.reward_log import RewardLog, trainer_state
from raftkit.runs.trackers import Trackers


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
    # The in-process engine is what lets the loop sync weights into it (docs/architecture.md).
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(cfg.kv_cache_gib))))
    from raftkit import sampling as sampler

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


def check_model(name: str) -> None:
    """Fail at once on a --model that cannot load, before the run directory exists (nothing is fetched)."""
    from raftkit import models

    if name in ("", "default", models.DEFAULT_MODEL_NAME):
        return  # the bundled model, converted on first use
    if Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        models.resolve_model(name)  # a folder: checked on the spot
        return
    try:  # a hub id: fine when cached, or when the hub answers for it
        from huggingface_hub import model_info, try_to_load_from_cache

        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return
        model_info(name, timeout=10)
    except Exception as e:
        reason = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__
        raise models.ModelError(
            f"--model {name}: no such folder, not in the Hugging Face cache, and not fetchable from the hub "
            f"({reason}). Pass a local model folder, or leave --model out for the bundled model"
        ) from None


def heldout_size(prompts: Any, cfg: AlignConfig, console: Console) -> int:
    """--heldout, scaled down with a note where it would leave less than one batch to train on."""
    from raftkit.datasets import HELDOUT

    n, want = len(prompts), cfg.heldout
    marked = sum(s == HELDOUT for s in prompts.columns.get("split", ()))
    if marked:  # the marked rows are the held-out set (split_heldout): never more of them
        if want > marked:
            console.print(
                f"note: --heldout {want}: {prompts.source} marks {marked} rows as held out; "
                f"evaluating on those {marked}"
            )
        return want
    scaled = n // 4
    if n - want >= cfg.prompts_per_iteration or scaled >= want:
        return want
    instead = f"holding out {scaled} (a quarter) instead" if scaled else "holding none out (no evaluation)"
    console.print(
        f"note: --heldout {want} would leave {max(n - want, 0)} of the {n} prompts in "
        f"{prompts.source} to train on; {instead}"
    )
    return scaled


def prepare_resume(root: Path, config: dict[str, Any], restart: bool, console: Console) -> None:
    """Check that the run in ``root`` can continue with ``config``, then record it; if it cannot, say
    why and change nothing (beyond finishing a swap a kill interrupted, which loses nothing)."""
    rundir.check_resumable(root)
    rundir.acquire_lock(root)  # one writer per run folder: refused while another process writes it
    if not restart:
        rundir.check_not_finished(root, config.get("iterations"))
    rundir.check_same_data(root, config.get("dataset"))
    for note in rundir.repair_swaps(root):  # first: until then checkpoint.tmp may be the only copy
        console.print(note)
    saved = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8")) or {}
    changed = rundir.changed_settings(saved, config)
    if changed and rundir.has_results(root):
        # Evaluations and iterations made with other settings would be compared as if they were alike.
        raise rundir.RunDirError(
            f"--resume {root}: a resumed run keeps its settings, but these differ: {'; '.join(changed)}. "
            f"Nothing was changed. Only {', '.join(rundir.RESUMABLE_OPTIONS)} may change on resume; "
            f"for the others start a new run (e.g. --config {root / 'config.yaml'} with the new values)"
        )
    if restart:
        rundir.discard_progress(root)
    else:
        rundir.check_checkpoint(root, int(saved.get("save_every") or 1), saved.get("iterations"))
    rundir.atomic_write_text(root / "config.yaml", _yaml(config))


def disk_full(e: BaseException) -> str | None:
    """What was being written when ``e`` (or what caused it) ran out of disk space, else None."""
    while e is not None:
        if isinstance(e, rundir.DiskFullError):
            return e.what
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return str(e.filename or "a file")
        e = e.__cause__ or e.__context__
    return None


def crash_message(e: BaseException, iteration: int, finishing: bool, root: Path) -> str:
    """The one line a crash is reported and recorded as, saying where it happened."""
    if finishing:
        where, during = (
            f"after iteration {iteration} (saving the model, evaluating)",
            f"after iteration {iteration}",
        )
    elif iteration:
        where, during = f"iteration {iteration}", f"of iteration {iteration}"
    else:
        where, during = "start-up", "at start-up"
    what = disk_full(e)
    if what is not None:
        return (
            f"no space left on device while writing {what} {during}; free space and resume with: "
            f"raftkit align --resume {root}"
        )
    return f"{where}: {type(e).__name__}: {e}"


def _dump_crash(root: Path, iteration: int, batch: Any, rollouts: Any) -> str:
    """Keep the unscored samples that broke an iteration, for debugging; outside iterations/ so a resume
    (which redoes the iteration) and `inspect` are not confused by them. Returns a note for the message."""
    path = root / "crash" / f"iteration-{iteration:06d}-rollouts.jsonl"
    try:
        path.parent.mkdir(exist_ok=True)
        rundir.write_jsonl(path, rollout_records(iteration, batch, rollouts, None))
    except OSError as e:
        return f" (its samples could not be kept: {e.strerror or e})"
    return f" (its samples: {path})"


def _mark(writer: rundir.RunWriter, status: str, message: str) -> str:
    """Record how the run ended; returns a note for the message when even that fails (a full disk)."""
    try:
        writer.finish(status, message)
    except OSError as e:
        return f" (run.json could not be updated: {e.strerror or e})"
    return ""


def _json_safe(d: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf are not JSON: written as null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _add_reward_log(result: Any, log: RewardLog) -> set[str]:
    """Carry what rewards logged in the step's result, so several processes gather it like the rest:
    ``log_metric`` values into its metrics (a name the algorithm uses stays the algorithm's), ``log_extra``
    columns into its per-sample records. Returns the metric names added."""
    added = {k for k in log.metrics() if k not in result.metrics}
    result.metrics.update({k: v for k, v in log.metrics().items() if k in added})
    if log.extra:
        if not result.per_sample:
            result.per_sample = [{} for _ in range(log.n)]
        for rec, extra in zip(result.per_sample, log.per_sample(), strict=False):
            rec.update(extra)
    return added


def _read_eval(root: Path) -> dict[str, Any]:
    try:
        return json.loads((root / "eval.json").read_text())
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- the loop


def run(
    cfg: AlignConfig,
    algo_cfg: Any,
    run_dir: str | Path,
    *,
    resume: bool = False,
    restart: bool = False,
    console: Console | None = None,
) -> Path:
    """Align a policy as configured and record it in ``run_dir``; returns the run directory.

    With ``resume`` the run continues after its newest complete checkpoint (with ``restart`` too: from
    iteration 1, its iterations discarded). Raises RunError (the run is then marked crashed) or
    KeyboardInterrupt (marked stopped); either way the directory stays resumable. A run directory that
    cannot be used as asked raises rundir.RunDirError, and a bad --model models.ModelError, before
    anything is written.
    """
    from raftkit.datasets import load_prompts
    from raftkit.policy import Policy
    from raftkit.rewards import RewardStack
    from raftkit.sampling.sampler import SamplingParams

    console = console or Console()
    root = Path(run_dir)
    # Under torchrun: join the process group (a no-op with one process); rank 0 alone prints and writes.
    distributed.init()
    if not distributed.is_main():
        console = Console(quiet=True)

    # 1. Rewards, prompts and the model first: a typo should fail in a second, before the run directory
    # exists and before model loading.
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
    train_set, heldout = prompts.split_heldout(heldout_size(prompts, cfg, console), seed=cfg.seed)
    heldout = heldout if len(heldout) else None
    if len(train_set) == 0:
        raise RunError(f"no training prompts left in {prompts.source} after holding out {cfg.heldout}", root)
    check_model(cfg.model)
    try:
        distributed.check_divisible(cfg.prompts_per_iteration)
    except ValueError as e:
        raise RunError(str(e), root) from None

    # 2. The run directory, written only now that everything above is known to work.
    config_dict = to_dict(cfg, algo_cfg)
    writer: rundir.RunWriter | None = None
    if resume and distributed.is_main():
        try:
            prepare_resume(root, config_dict, restart, console)
        except BaseException:
            rundir.release_lock(root)  # refused: nothing is being written
            raise
    elif distributed.is_main():
        writer = rundir.RunWriter.create(root, config_dict, cfg.algo)
        if root.parent.name == "runs":
            link_latest(root)
    distributed.barrier()  # the other ranks read the checkpoint only once rank 0 has prepared the directory

    sampler = None
    iteration = 0
    finishing = False
    previous_sigterm = _stop_on_sigterm()
    rollouts = batch = None
    trackers: Trackers | None = None
    try:
        trackers = Trackers(cfg.report_to if distributed.is_main() else (), root, config_dict)  # --report-to
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
            if distributed.is_main():
                writer = rundir.RunWriter.resume(
                    root, done, iterations_planned=cfg.iterations, algorithm=cfg.algo
                )
            start = (done or 0) + 1
            distributed.reseed(cfg.seed, start)  # the checkpoint holds one rank's RNG state
            console.print(
                f"restarting {root} from iteration 1"
                if restart
                else f"resuming {root} after iteration {done or 0}"
            )

        # 5. The sampler starts from the model folder, i.e. the base weights: evaluate the base model first.
        with console.status(f"starting the {cfg.sampler} sampler"):
            distributed.broadcast_parameters(policy.model)  # replicas start identical, as DDP ensures
            # Each rank samples its own prompts with its own seed (the plain seed with one process).
            sampler = start_sampler(dataclasses.replace(cfg, seed=distributed.rank_seed(cfg.seed, start)),
                                    policy.path)
        _header(console, cfg, root, reward_names, stack, algorithm, len(train_set), heldout)
        evals = _read_eval(root)
        if heldout is not None and "before" not in evals and distributed.is_main():
            with console.status(f"evaluating the base model on {len(heldout)} held-out prompts"):
                before = trainer_state(0, cfg.iterations, 0)  # what rewards see: nothing trained yet
                evals["before"] = _evaluate(sampler, heldout, eval_stack, cfg, before)
            writer.write_json("eval.json", evals)
        distributed.barrier()  # the other ranks wait for rank 0's evaluation
        if start > 1:
            sampler.sync(policy.weights())  # the sampler must serve the resumed policy, not the base

        # 6. The iterations.
        for iteration in range(start, cfg.iterations + 1):
            t0 = time.perf_counter()
            rollouts = None
            batch = evaluate.with_answer_column(
                train_set.batch_at(iteration - 1, cfg.prompts_per_iteration, cfg.seed), cfg.answer_column
            )
            whole, batch = batch, distributed.shard_batch(batch)  # this rank's contiguous share
            with progress_bar(console) as progress:
                # 6a. Sample k completions per prompt (how is the algorithm's business: RAFT adds hints).
                task = progress.add_task(
                    f"iteration {iteration}: sampling {len(batch)} prompts x {cfg.k}", total=1
                )
                rollouts = algorithm.sample(sampler, batch, iteration)
                progress.update(task, completed=1)
                t1 = time.perf_counter()
                # 6b. Score: one path for every algorithm, rewards and filters together.
                task = progress.add_task(f"iteration {iteration}: scoring {len(rollouts)} samples", total=1)
                # Rewards get TRL's trainer_state, log_extra and log_metric (raftkit.runs.reward_log).
                reward_log = RewardLog(len(rollouts))
                state = trainer_state(iteration - 1, cfg.iterations, iteration)
                scores = stack.score_rollouts(rollouts, batch, reward_log.context(state))
                progress.update(task, completed=1)
                t2 = time.perf_counter()
                # 6c. Update the policy.
                task = progress.add_task(f"iteration {iteration}: training", total=None)
                if hasattr(algorithm, "progress"):
                    algorithm.progress = lambda done, total, task=task: progress.update(
                        task, completed=done, total=total
                    )
                result = algorithm.update(batch, rollouts, scores, iteration)
                logged = _add_reward_log(result, reward_log)
                t3 = time.perf_counter()
            # 6d. Sync the new weights into the sampler, in place (no engine restart).
            sync_seconds = sampler.sync(policy.weights())
            t4 = time.perf_counter()
            # Several processes: rank 0 records the whole batch, gathered in prompt order; the others go on.
            gathered = distributed.gather_step(rollouts, scores, result, len(batch))
            if gathered is None:
                rollouts = None
                continue
            (rollouts, scores, result), batch = gathered, whole

            # 6e. Record: the iteration's files, then the checkpoint, then the metrics line (see module doc).
            selected_flags = (
                [bool(p.get("selected")) for p in result.per_sample] if result.selected is not None else None
            )
            metrics = iteration_metrics(rollouts, scores, selected_flags)
            # What rewards logged never replaces a number raftkit records under the same name.
            metrics.update(canonical({k: v for k, v in result.metrics.items() if k not in logged}))
            for name in logged:
                metrics.setdefault(name, result.metrics.get(name))
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
            metrics["memory/peak_rss_gib"] = peak_rss_gib()
            metrics = _json_safe(metrics)
            writer.write_metrics(iteration, metrics)  # before the checkpoint that covers this iteration
            if iteration % cfg.save_every == 0 or iteration == cfg.iterations:
                t5 = time.perf_counter()
                save_checkpoint(root, policy, algorithm, iteration)
                if cfg.checkpoint_every and iteration % cfg.checkpoint_every == 0:
                    keep_copy(root, iteration)
                metrics["time/checkpoint"] = time.perf_counter() - t5
            writer.commit_iteration(iteration, metrics)
            trackers.log_metrics(iteration, metrics)
            trackers.log_samples(iteration, records)
            console.print(summary_line(iteration, cfg.iterations, metrics, reward_names))
            rollouts = None

        # 7. The final policy as a transformers folder, then the after-evaluation.
        finishing = True
        if not distributed.is_main():
            distributed.shutdown()  # waits at a barrier while rank 0 saves the model and evaluates
            return root
        with console.status("saving the model"):
            save_model(root, policy)
        if heldout is not None:
            with console.status(f"evaluating the trained model on {len(heldout)} held-out prompts"):
                after = trainer_state(cfg.iterations, cfg.iterations, cfg.iterations)
                evals["after"] = _evaluate(sampler, heldout, eval_stack, cfg, after)
            evals["delta"] = evaluate.compare(evals["before"], evals["after"])
            evals["alarm"] = evaluate.alarm(evals["before"], evals["after"])
            writer.write_json("eval.json", evals)
            trackers.log_eval(evals)
            evalrender.render(evals["before"], evals["after"], console, evals["alarm"])
        writer.finish("finished")
        if evals.get("alarm"):
            console.print(f"[bold red]done, but the model looks wrecked[/bold red] (see above): {root}")
        else:
            console.print(f"[bold]done[/bold]: {root} (model at {root / 'model'})")
        console.print(closing_line(root), markup=False, highlight=False, style="dim", soft_wrap=True)
        distributed.shutdown()
        return root
    except KeyboardInterrupt:
        distributed.hold_stop_signals()
        peer = distributed.failure()  # torchrun stops every rank when one fails: record the real cause
        if writer is not None and peer:
            _mark(writer, "crashed", peer)
        elif writer is not None:
            when = (f"after iteration {iteration} (saving the model, evaluating)" if finishing
                    else f"during iteration {iteration}" if iteration else "during start-up")
            _mark(writer, "stopped", f"interrupted {when}")
        if distributed.active():
            distributed.abort(f"stopped ({peer})" if peer else "stopped", 130)
        raise
    except Exception as e:
        distributed.hold_stop_signals()  # several processes: finish recording before torchrun's SIGTERM
        message = crash_message(e, iteration if not finishing else cfg.iterations, finishing, root)
        if rollouts and batch is not None and disk_full(e) is None and distributed.is_main():
            message += _dump_crash(root, iteration, batch, rollouts)
        peer = distributed.failure()  # another rank failed first: its error is the cause of this one
        if distributed.active() and peer is None:  # first, so rank 0 can record it while this rank goes down
            distributed.record_failure(message)
        if writer is not None:
            message += _mark(writer, "crashed", peer or message)
        if distributed.active():  # end this rank now: a peer may be waiting in a collective (no hang)
            distributed.abort(message)
        raise RunError(message, root) from e
    finally:
        if sampler is not None:
            sampler.close()
        if trackers is not None:
            trackers.close()
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        rundir.release_lock(root)  # however the run ended, another process may now continue it


def _stop_on_sigterm() -> Any:
    """Treat SIGTERM (e.g. `kill`, a job scheduler) like Ctrl-C: the run is marked stopped, the sampler shut
    down. Returns the previous handler (None off the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, stop)


def _evaluate(sampler: Any, heldout: Any, stack: Any, cfg: AlignConfig, state: Any) -> dict[str, Any]:
    batch = evaluate.with_answer_column(heldout.batch(list(range(len(heldout)))), cfg.answer_column)
    return evaluate.evaluate(
        sampler,
        batch,
        stack,
        samples=cfg.eval_samples,
        temperature=cfg.eval_temperature,
        max_new_tokens=cfg.max_new_tokens,
        top_p=cfg.top_p,
        state=state,
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
            + (f" ({why})" if (why := getattr(algorithm, "explore_note", "")) else "")
            if hint and share
            else ""
        )
    )
