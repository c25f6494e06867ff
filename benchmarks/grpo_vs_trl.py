"""GRPO seconds per optimiser step: raftkit against TRL 1.16's GRPOTrainer, same config, one script run.

Both train the bundled SmolLM2-135M-Instruct with the rewards emoji + length on the same prompts in the
same order: 8 prompts x 4 generations per optimiser step, 32 new tokens, temperature 0.9, beta 0.04,
lr 1e-5 decaying linearly to 0, loss dapo, advantages scaled by the group std, epsilon 0.2.

TRL: per_device_train_batch_size=8 with gradient_accumulation_steps=4 (TRL
counts completions, so one step is 32 completions = 8 prompts x 4), gradient checkpointing on (its
default), HF generate for sampling (use_vllm=False).
raftkit: its vLLM sampler (in-process, weights synced in place).
Both: bf16 autocast over fp32 weights where the hardware has native bf16 (raftkit.policy.bf16_supported),
fp32 elsewhere; on a CPU without it, bf16 is emulated and TRL's step took 566 s instead of about 40.

    .venv/bin/python benchmarks/grpo_vs_trl.py                # 1 warm-up + 4 timed steps each
    .venv/bin/python benchmarks/grpo_vs_trl.py --only raftkit --steps 8

Prints the median seconds per step of each, their ratio, where raftkit's time goes, the reward means
per step of both (do the rewards move as well?), and memory: each trainer runs in its own process, so
each peak RSS is its own, with the resident memory after each stage of set-up (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

PROMPTS_PER_STEP, K, NEW_TOKENS, TEMPERATURE, BETA, LR = 8, 4, 32, 0.9, 0.04, 1e-5
REWARDS = ["emoji", "length"]


def rss_gib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / (1 << 30)


def prompt_batches(steps: int) -> list[list[Any]]:
    from raftkit.datasets import load_prompts

    prompts = load_prompts(limit=steps * PROMPTS_PER_STEP).prompts
    return [prompts[i : i + PROMPTS_PER_STEP] for i in range(0, len(prompts), PROMPTS_PER_STEP)]


# --------------------------------------------------------------------------- raftkit


def run_raftkit(batches: list[list[Any]], sampler_kind: str, micro_batch_size: int) -> dict[str, Any]:
    import torch

    from raftkit.algorithms.grpo import GRPO, GRPOConfig
    from raftkit.policy import Policy
    from raftkit.rewards import RewardStack
    from raftkit.rollouts import Batch
    from raftkit.runs.metrics import peak_rss_gib, reward_metrics
    from raftkit.sampling import SamplingParams, make_sampler

    stages = {"imports": rss_gib()}
    torch.manual_seed(0)
    policy = Policy()
    stages["+ policy (fp32)"] = rss_gib()
    engine_kwargs = {"kv_cache_gib": 1.0} if sampler_kind == "vllm" else {}
    sampler = make_sampler(sampler_kind, policy.path, seed=0, **engine_kwargs)
    stages["+ sampler (engine, KV cache)"] = rss_gib()
    stack = RewardStack.build(REWARDS)
    sampling = SamplingParams(temperature=TEMPERATURE, max_new_tokens=NEW_TOKENS)
    algo = GRPO(policy, GRPOConfig(beta=BETA, micro_batch_size=micro_batch_size), lr=LR,
                total_steps=len(batches), k=K, sampling=sampling)
    steps = []
    try:
        for it, prompts in enumerate(batches):
            batch = Batch(list(prompts))
            t0 = time.perf_counter()
            rollouts = algo.sample(sampler, batch, it)
            t1 = time.perf_counter()
            scores = stack.score_rollouts(rollouts, batch)
            t2 = time.perf_counter()
            result = algo.update(batch, rollouts, scores, it)
            t3 = time.perf_counter()
            if it == 0:
                stages["+ first step (reference, gradients, AdamW states, activations freed)"] = rss_gib()
            sampler.sync(policy.weights())
            t4 = time.perf_counter()
            m = result.metrics
            step = {
                "total": t4 - t0, "sample": t1 - t0, "score": t2 - t1, "update": t3 - t2, "sync": t4 - t3,
                "ref_logprobs": m.get("time/ref_logprobs", 0.0), "forward": m["time/forward"],
                "backward": m["time/backward"], "optimizer": m["time/optimizer"],
                # The run's own definition (raftkit.runs.metrics), under TRL's names: comparable with TRL's.
                **{k: v for k, v in reward_metrics(scores.rewards, scores.weights).items()
                   if k == "reward" or k.endswith("/mean")},
                "kl": m.get("kl", 0.0),
            }
            steps.append(step)
            print(f"raftkit step {it}: {step['total']:.2f} s (sample {step['sample']:.2f}, score "
                  f"{step['score']:.3f}, ref {step['ref_logprobs']:.2f}, fwd {step['forward']:.2f}, bwd "
                  f"{step['backward']:.2f}, opt {step['optimizer']:.2f}, sync {step['sync']:.2f}) "
                  f"emoji {step['rewards/emoji/mean']:.3f} length {step['rewards/length/mean']:.3f}",
                  flush=True)
    finally:
        sampler.close()
    return {"steps": steps, "peak_rss_gib": peak_rss_gib(), "stages": stages}


# --------------------------------------------------------------------------- TRL


def run_trl(batches: list[list[Any]]) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    from raftkit.models import default_model_path
    from raftkit.policy import bf16_supported
    from raftkit.rewards import RewardStack
    from raftkit.runs.metrics import peak_rss_gib

    stages = {"imports": rss_gib()}
    torch.manual_seed(0)
    stack = RewardStack.build(REWARDS)
    reward_funcs = [e.fn for e in stack.rewards]  # raftkit's configured rewards are TRL reward functions
    dataset = Dataset.from_dict({"prompt": [p for b in batches for p in b]})
    model_path = str(default_model_path())
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.padding_side = "left"
    args = TRLConfig(
        output_dir="/tmp/raftkit-bench-trl", report_to="none", save_strategy="no", logging_steps=1,
        max_steps=len(batches), per_device_train_batch_size=PROMPTS_PER_STEP, gradient_accumulation_steps=K,
        num_generations=K, max_completion_length=NEW_TOKENS, temperature=TEMPERATURE, beta=BETA,
        learning_rate=LR, lr_scheduler_type="linear", loss_type="dapo", scale_rewards="group", epsilon=0.2,
        bf16=bf16_supported(), use_cpu=not torch.cuda.is_available(), gradient_checkpointing=True,
        use_vllm=False, shuffle_dataset=False, seed=0,
        disable_tqdm=True, dataloader_num_workers=0,
    )

    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.start)
            if len(times) == 1:
                stages["+ first step (reference, gradients, AdamW states, activations freed)"] = rss_gib()

    trainer = GRPOTrainer(model=model_path, reward_funcs=reward_funcs, args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[StepTimer()])
    stages["+ trainer (policy, reference)"] = rss_gib()
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    steps = []
    for i, t in enumerate(times):
        h = logs[i] if i < len(logs) else {}
        steps.append({"total": t, "rewards/emoji/mean": h.get("rewards/emoji/mean", float("nan")),
                      "rewards/length/mean": h.get("rewards/length/mean", float("nan")),
                      "reward": h.get("reward", float("nan")), "kl": h.get("kl", float("nan"))})
        print(f"trl step {i}: {t:.2f} s emoji {steps[-1]['rewards/emoji/mean']:.3f} "
              f"length {steps[-1]['rewards/length/mean']:.3f}", flush=True)
    return {"steps": steps, "peak_rss_gib": peak_rss_gib(), "stages": stages}


# --------------------------------------------------------------------------- report


def report(results: dict[str, dict[str, Any]], warmup: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    medians = {}
    for name, res in results.items():
        timed = res["steps"][warmup:]
        medians[name] = statistics.median(s["total"] for s in timed) if timed else float("nan")
    table = Table(title=f"GRPO, {PROMPTS_PER_STEP} prompts x {K} x {NEW_TOKENS} tokens per optimiser step")
    table.add_column("")
    for name in results:
        table.add_column(name, justify="right")
    table.add_row("median s / step", *(f"{medians[n]:.2f}" for n in results))
    table.add_row("peak RSS (GiB, own process)", *(f"{results[n]['peak_rss_gib']:.2f}" for n in results))
    for key in ("rewards/emoji/mean", "rewards/length/mean", "reward", "kl"):
        table.add_row(f"{key} per step", *(" ".join(f"{s[key]:.3f}" for s in results[n]["steps"])
                                           for n in results))
    console.print(table)
    if "raftkit" in results:
        timed = results["raftkit"]["steps"][warmup:]
        parts = ("sample", "score", "ref_logprobs", "forward", "backward", "optimizer", "sync")
        console.print("raftkit, median seconds per step: " + ", ".join(
            f"{p} {statistics.median(s[p] for s in timed):.2f}" for p in parts))
    for name, res in results.items():
        stages = ", ".join(f"{stage} {gib:.2f}" for stage, gib in res["stages"].items())
        console.print(f"{name}, resident GiB after each stage: {stages}; peak {res['peak_rss_gib']:.2f}")
    if len(medians) == 2:
        ratio = medians["raftkit"] / medians["trl"]
        memory = results["raftkit"]["peak_rss_gib"] / results["trl"]["peak_rss_gib"]
        console.print(f"raftkit / TRL time per step: [bold]{ratio:.2f}[/bold] (goal <= 0.25); "
                      f"peak RSS: [bold]{memory:.2f}[/bold] (goal <= 0.5)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4, help="timed optimiser steps per trainer")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--only", choices=["raftkit", "trl"], help="run one side only")
    ap.add_argument("--sampler", choices=["vllm", "hf"], default="vllm", help="raftkit's sampler")
    ap.add_argument("--micro-batch-size", type=int, default=8, help="raftkit's sequences per forward")
    ap.add_argument("--json-out", help="write one side's results to this JSON file (with --only)")
    args = ap.parse_args()
    batches = prompt_batches(args.warmup + args.steps)
    if args.only:
        run = run_raftkit(batches, args.sampler, args.micro_batch_size) if args.only == "raftkit" else (
            run_trl(batches))
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(run))
        else:
            report({args.only: run}, args.warmup)
        return
    # Each side in its own process: a process's peak RSS is the largest it ever was, so running both in
    # one process would charge the first one's peak to the second.
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("raftkit", "trl"):
            out = Path(tmp) / f"{side}.json"
            subprocess.run([sys.executable, __file__, "--only", side, "--json-out", str(out), "--steps",
                            str(args.steps), "--warmup", str(args.warmup), "--sampler", args.sampler,
                            "--micro-batch-size", str(args.micro_batch_size)], check=True)
            results[side] = json.loads(out.read_text())
    report(results, args.warmup)


if __name__ == "__main__":
    main()
