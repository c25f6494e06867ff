"""DPO seconds and memory per optimiser step: raftkit against TRL 1.16's DPOTrainer, same batch, one script
run; and raftkit's PPO step, beside TRL's PPOTrainer where the installed TRL still has one.

DPO. Both train the bundled SmolLM2-135M-Instruct in fp32 on the CPU, with a frozen fp32 copy of it as the
reference, on the same --pairs preference pairs every optimiser step (the first pairs of
benchmarks/data/preferences.jsonl: chat prompts, short and long replies), --micro-batch-size pairs per
forward pass (chosen and rejected together, as both do), gradients accumulated over the step: sigmoid loss,
beta 0.1, lr 1e-6 constant, fused AdamW without weight decay, gradient norm clipped to 1.
  raftkit: DPOUpdate.step on pair_examples tokens (tokenised once before timing, as TRL tokenises its
    dataset in __init__).
  TRL: DPOTrainer with per_device_train_batch_size = micro-batch, gradient_accumulation_steps = pairs /
    micro-batch, bf16=False, gradient_checkpointing=False (TRL's default is on; raftkit's DPO does not
    checkpoint), dropout disabled (its default; the model has none), logging every step. A step is timed
    from on_step_begin to on_step_end, so fetching and collating its batch is outside TRL's time.

PPO. TRL 1.16 has no PPOTrainer (not in trl, not in trl.experimental): the script says so and times
raftkit's PPO update alone, with no ratio. Its rollouts are the same pairs' chosen and rejected replies (two
samples per prompt, scored by emoji + length), so no sampler runs; one update is PPO's rollout pass (old
log-probs, values, reference log-probs) plus one optimiser step (num_iterations 1), 2 x micro-batch
sequences per forward pass.

Memory. Each side runs in a child process of its own. "process peak" is the child's RSS high-water mark
over its life (models, reference, optimiser state, steps). "step peak" is, per timed step, the RSS
high-water mark during the step above the RSS just before it (Linux resets the mark through
/proc/self/clear_refs), the median over timed steps: what a step adds on top of what is loaded
(activations, gradients; the optimiser state is allocated in the untimed warm-up step). RSS counts memory
the allocator keeps after a free too, so the step peak can read low once an earlier step left its memory
mapped; compare the two sides as measured the same way, not as exact byte counts.

    .venv/bin/python benchmarks/dpo_ppo_vs_trl.py                         # 16 pairs, 1 warm-up + 5 timed
    .venv/bin/python benchmarks/dpo_ppo_vs_trl.py --pairs 2 --micro-batch-size 1 --steps 1   # smoke test

Run it on an idle machine: times are measured, not estimated.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PAIRS_FILE = Path(__file__).resolve().parent / "data" / "preferences.jsonl"
BETA, DPO_LR, PPO_LR, MAX_LENGTH = 0.1, 1e-6, 1e-5, 1024


# --------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class StepMemory:
    """The RSS high-water mark during a block, above the RSS at its start (MiB); None where Linux's
    /proc/self/clear_refs is not there to reset the mark."""

    def __enter__(self) -> StepMemory:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS
            self.start = _status_kib("VmRSS")
        except OSError:
            self.start = None
        self.mib: float | None = None
        return self

    def __exit__(self, *exc: Any) -> None:
        peak = _status_kib("VmHWM")
        if self.start is not None and peak is not None:
            self.mib = (peak - self.start) / 1024


# --------------------------------------------------------------------------- the same data for both


def load_pairs(n: int) -> list[Any]:
    from raftkit.pipelines.pairs import load_pairs as read

    pairs = read(str(PAIRS_FILE)).pairs
    if n > len(pairs):
        raise SystemExit(f"--pairs {n}: {PAIRS_FILE} has {len(pairs)} pairs")
    return pairs[:n]


def record(steps: list[dict[str, Any]], name: str, i: int, seconds: float, mem: StepMemory,
           loss: float | None) -> None:
    steps.append({"seconds": seconds, "step_peak_mib": mem.mib, "loss": loss})
    shown = "" if mem.mib is None else f", step peak {mem.mib:.0f} MiB"
    print(f"{name} step {i}: {seconds:.2f} s{shown}, loss {loss if loss is None else round(loss, 4)}",
          flush=True)


# --------------------------------------------------------------------------- DPO


def run_raftkit_dpo(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    from raftkit.algorithms.dpo import DPOUpdate, pair_examples
    from raftkit.policy import Policy

    torch.manual_seed(0)
    policy = Policy(None, bf16=False, device="cpu")
    ref = AutoModelForCausalLM.from_pretrained(policy.path, dtype=torch.float32).eval().requires_grad_(False)
    update = DPOUpdate(policy, beta=BETA, lr=DPO_LR, micro_batch_size=args.micro_batch_size, reference=ref)
    examples = [pair_examples(policy.tokenizer, p, max_length=MAX_LENGTH) for p in load_pairs(args.pairs)]
    steps: list[dict[str, Any]] = []
    for i in range(args.warmup + args.steps):
        with StepMemory() as mem:
            start = time.perf_counter()
            metrics = update.step(examples)
            seconds = time.perf_counter() - start
        record(steps, "raftkit dpo", i, seconds, mem, metrics["loss"])
    return {"steps": steps}


def run_trl_dpo(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from raftkit.models import default_model_path

    torch.manual_seed(0)
    path = str(default_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval().requires_grad_(False)
    # TRL's conversational prompt-completion format: the same prompt and replies raftkit trains on.
    rows = [{"prompt": p.prompt, "chosen": [{"role": "assistant", "content": p.chosen}],
             "rejected": [{"role": "assistant", "content": p.rejected}]} for p in load_pairs(args.pairs)]
    total = args.warmup + args.steps
    config = DPOConfig(
        output_dir=tempfile.mkdtemp(prefix="raftkit-bench-trl-dpo-"), report_to="none", save_strategy="no",
        logging_steps=1, max_steps=total, per_device_train_batch_size=args.micro_batch_size,
        gradient_accumulation_steps=args.pairs // args.micro_batch_size, learning_rate=DPO_LR, beta=BETA,
        lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0, max_length=MAX_LENGTH,
        bf16=False, use_cpu=True, gradient_checkpointing=False, seed=0, disable_tqdm=True,
        dataloader_num_workers=0,
    )
    steps: list[dict[str, Any]] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.mem = StepMemory().__enter__()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            seconds = time.perf_counter() - self.start
            self.mem.__exit__(None, None, None)
            steps.append({"seconds": seconds, "mem": self.mem})

    # The dataset is the --pairs rows: one epoch per optimiser step, so every step sees the same pairs (in a
    # fresh order: its micro-batches may group them differently from raftkit's, which keeps file order).
    trainer = DPOTrainer(model=model, ref_model=ref, args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, callbacks=[StepTimer()])
    try:
        trainer.train()
    finally:
        shutil.rmtree(config.output_dir, ignore_errors=True)  # save_strategy="no": nothing to keep
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    out: list[dict[str, Any]] = []
    for i, s in enumerate(steps):
        record(out, "trl dpo", i, s["seconds"], s["mem"], losses[i] if i < len(losses) else None)
    return {"steps": out}


# --------------------------------------------------------------------------- PPO


def trl_ppo_trainer() -> Any:
    """TRL's PPOTrainer class where the installed TRL has one, else None."""
    import importlib
    import warnings

    for module in ("trl", "trl.experimental.ppo", "trl.experimental"):
        try:
            with warnings.catch_warnings():  # importing trl.experimental warns that it is experimental
                warnings.simplefilter("ignore")
                found = getattr(importlib.import_module(module), "PPOTrainer", None)
        except ImportError:
            found = None
        if found is not None:
            return found
    return None


def run_raftkit_ppo(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from raftkit.algorithms.ppo import PPO, PPOConfig
    from raftkit.chat import encode_prompt
    from raftkit.policy import Policy
    from raftkit.rewards import RewardStack
    from raftkit.rollouts import Batch, Rollout

    torch.manual_seed(0)
    policy = Policy(None, bf16=False, device="cpu")
    tok = policy.tokenizer
    pairs = load_pairs(args.pairs)
    batch = Batch([p.prompt for p in pairs])
    rollouts = []
    for i, p in enumerate(pairs):
        prompt_ids = encode_prompt(tok, p.prompt)
        for text in (p.chosen, p.rejected):  # two samples of the prompt, ended as a sampler ends them
            ids = [*tok(text, add_special_tokens=False)["input_ids"][:MAX_LENGTH], tok.eos_token_id]
            rollouts.append(Rollout(i, p.prompt, text, ids, [0.0] * len(ids), prompt_ids))
    scores = RewardStack.build(["emoji", "length"]).score_rollouts(rollouts, batch)
    total = args.warmup + args.steps
    algo = PPO(policy, PPOConfig(num_iterations=1, micro_batch_size=2 * args.micro_batch_size), lr=PPO_LR,
               total_steps=total, k=2)
    steps: list[dict[str, Any]] = []
    for i in range(total):
        with StepMemory() as mem:
            start = time.perf_counter()
            result = algo.update(batch, rollouts, scores, i)
            seconds = time.perf_counter() - start
        record(steps, "raftkit ppo", i, seconds, mem, result.metrics["loss"])
    return {"steps": steps}


# --------------------------------------------------------------------------- children and report


RUNNERS = {"raftkit-dpo": run_raftkit_dpo, "trl-dpo": run_trl_dpo, "raftkit-ppo": run_raftkit_ppo}


def child(side: str, args: argparse.Namespace) -> None:
    from raftkit.runs.metrics import peak_rss_gib

    result = RUNNERS[side](args)
    result["process_peak_gib"] = peak_rss_gib()
    Path(args.result).write_text(json.dumps(result))


def spawn(side: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """Run one side in a fresh process (its memory is its own); its result, or None if it failed."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = Path(f.name)
    cmd = [sys.executable, __file__, "--child", side, "--result", str(result), "--pairs", str(args.pairs),
           "--micro-batch-size", str(args.micro_batch_size), "--steps", str(args.steps),
           "--warmup", str(args.warmup)]
    print(f"--- {side}", flush=True)
    try:
        done = subprocess.run(cmd, check=False)
        if done.returncode != 0 or not result.stat().st_size:
            print(f"{side} failed (exit {done.returncode})", flush=True)
            return None
        return json.loads(result.read_text())
    finally:
        result.unlink(missing_ok=True)


def summary(res: dict[str, Any], warmup: int) -> dict[str, float | None]:
    timed = res["steps"][warmup:]
    mems = [s["step_peak_mib"] for s in timed if s["step_peak_mib"] is not None]
    return {"seconds": statistics.median(s["seconds"] for s in timed) if timed else None,
            "step_peak_mib": statistics.median(mems) if mems else None,
            "process_peak_gib": res["process_peak_gib"]}


def report(results: dict[str, dict[str, Any] | None], args: argparse.Namespace, ppo_note: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    console = Console()
    rows = [("median s / step", "seconds", ".2f"), ("step peak RSS (MiB, median)", "step_peak_mib", ".0f"),
            ("process peak RSS (GiB)", "process_peak_gib", ".2f")]
    for algo in ("dpo", "ppo"):
        ours, theirs = results.get(f"raftkit-{algo}"), results.get(f"trl-{algo}")
        if ours is None and theirs is None:
            continue
        sums = {n: summary(r, args.warmup) for n, r in (("raftkit", ours), ("TRL", theirs)) if r is not None}
        table = Table(title=f"{algo.upper()}: {args.pairs} pairs per optimiser step, {args.micro_batch_size} "
                      f"pairs per forward pass, fp32 on CPU, {args.steps} timed steps after {args.warmup}")
        table.add_column("")
        for name in sums:
            table.add_column(name, justify="right")
        if len(sums) == 2:
            table.add_column("raftkit / TRL", justify="right")
        for label, key, spec in rows:
            cells = [fmt(s[key], spec) for s in sums.values()]
            if len(sums) == 2:
                a, b = sums["raftkit"][key], sums["TRL"][key]
                cells.append(fmt(a / b if a is not None and b else None, ".2f"))
            table.add_row(label, *cells)
        losses = {n: " ".join(fmt(s["loss"], ".4f") for s in r["steps"])
                  for n, r in (("raftkit", ours), ("TRL", theirs)) if r is not None}
        table.add_row("loss per step", *losses.values(), *([""] if len(sums) == 2 else []))
        console.print(table)
        if algo == "ppo" and ppo_note:
            console.print(ppo_note)
    for side, res in results.items():
        if res is None:
            console.print(f"[red]{side} failed[/red]: see its output above")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=16, help="preference pairs per optimiser step")
    ap.add_argument("--micro-batch-size", type=int, default=4,
                    help="pairs per forward pass (divides --pairs)")
    ap.add_argument("--steps", type=int, default=5, help="timed optimiser steps per side")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (optimiser state, caches)")
    ap.add_argument("--only", choices=["dpo", "ppo"], help="one algorithm only")
    ap.add_argument("--side", choices=["raftkit", "trl"], help="one side only")
    ap.add_argument("--child", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pairs < 1 or args.micro_batch_size < 1 or args.pairs % args.micro_batch_size:
        ap.error("--micro-batch-size must divide --pairs (both sides then see equal micro-batches)")
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be >= 1 and --warmup >= 0")
    if args.child:
        child(args.child, args)
        return

    import trl

    if trl_ppo_trainer() is None:
        ppo_note = (f"TRL {trl.__version__} has no PPOTrainer (neither trl nor trl.experimental): raftkit's "
                    "PPO step is timed alone, without a baseline or ratio.")
    else:
        ppo_note = (f"TRL {trl.__version__} has a PPOTrainer, but this script does not drive it yet (it "
                    "needs a reward and a value model): raftkit's PPO step is timed alone.")
    print(f"TRL {trl.__version__}; {ppo_note}", flush=True)
    results: dict[str, dict[str, Any] | None] = {}
    for side in ("raftkit-dpo", "trl-dpo", "raftkit-ppo"):
        algo, who = side.split("-")[1], side.split("-")[0]
        if args.only not in (None, algo) or args.side not in (None, who):
            continue
        results[side] = spawn(side, args)
    report(results, args, ppo_note if args.only in (None, "ppo") and args.side != "trl" else None)


if __name__ == "__main__":
    main()
