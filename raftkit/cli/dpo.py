"""`raftkit dpo`: offline DPO on preference pairs (raftkit.algorithms.dpo, raftkit.pipelines.pairs)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

EPILOG = """\b
Examples:
  raftkit dpo --dataset pairs.jsonl --output dpo-run
  raftkit dpo --dataset hh.jsonl --beta 0.1 --lr 1e-6 --epochs 1 --batch-size 8
  raftkit align --model dpo-run/model --reward emoji      # continue from the DPO model
"""


@click.command("dpo", epilog=EPILOG)
@click.option("--dataset", required=True,
              help="Pairs: .jsonl/.json rows with chosen/rejected (+ optional prompt or messages), chat "
              "message lists, or HH-RLHF dialogues (the formats of `raftkit train-rm`).")
@click.option("--model", default=None, help="Policy model folder or hub id (default: the bundled model).")
@click.option("--output", default=None, help="New or empty folder (default: runs/<timestamp>-dpo).")
@click.option("--beta", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              help="Strength of the pull towards the reference (the starting model); must be > 0.")
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-6, show_default=True,
              help="AdamW learning rate (constant; TRL's DPO default).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Pairs per optimiser step.")
@click.option("--heldout-share", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="Share of the pairs held out for the DPO metrics.")
@click.option("--max-length", type=click.IntRange(min=2), default=1024, show_default=True,
              help="Tokens per sequence; longer ones keep their start (pairs whose prompt fills it are "
              "skipped).")
@click.option("--seed", type=int, default=0, show_default=True)
def command(dataset: str, model: str | None, output: str | None, beta: float, epochs: int, lr: float,
            batch_size: int, heldout_share: float, max_length: int, seed: int) -> None:
    """Train a policy with DPO on preference pairs: -log σ(β[(log π(c) - log π_ref(c)) - (log π(r) -
    log π_ref(r))]), log-probs summed over completion tokens.

    Writes OUTPUT/model (a transformers folder: `raftkit align --model OUTPUT/model`), OUTPUT/metrics.jsonl
    (one line per epoch with TRL's rewards/* and logps/* names; epoch 0 is before training) and
    OUTPUT/run.json.
    """
    from rich.console import Console

    from raftkit.models import ModelError
    from raftkit.pipelines import common
    from raftkit.pipelines.pairs import PairsError, load_pairs, split_heldout

    console = Console(stderr=True)
    try:
        pairs = load_pairs(dataset)
        train, heldout = split_heldout(pairs.pairs, heldout_share, seed)
        root = common.output_dir(output, "dpo")
    except (PairsError, common.PipelineError) as e:
        raise click.ClickException(str(e)) from None
    settings = {"dataset": dataset, "model": model, "beta": beta, "epochs": epochs, "lr": lr,
                "batch_size": batch_size, "heldout_share": heldout_share, "max_length": max_length,
                "seed": seed}
    info: dict[str, Any] = {"kind": "dpo", "status": "running",
                            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": settings,
                            "pairs": {"train": len(train), "heldout": len(heldout), "skipped": pairs.skipped},
                            "versions": common.versions()}
    common.write_summary(root, info)
    with common.crash_recorded(root, info, (ModelError, ValueError)):
        _train(root, info, model, train, heldout, console, beta=beta, epochs=epochs, lr=lr,
               batch_size=batch_size, max_length=max_length, seed=seed)


def _train(root: Path, info: dict[str, Any], model_name: str | None, train: list[Any], heldout: list[Any],
           console: Console, *, beta: float, epochs: int, lr: float, batch_size: int, max_length: int,
           seed: int) -> None:
    import torch

    from raftkit.algorithms.dpo import DPOUpdate, pair_examples, train_dpo
    from raftkit.pipelines import common
    from raftkit.policy import Policy

    torch.manual_seed(seed)
    policy = Policy(model_name)
    info["base_model"] = policy.path

    def encode(pairs: list[Any]) -> list[Any]:
        found = [pair_examples(policy.tokenizer, p, max_length) for p in pairs]
        return [e for e in found if e is not None]

    train_ex, held_ex = encode(train), encode(heldout)
    info["pairs"]["too_long"] = len(train) + len(heldout) - len(train_ex) - len(held_ex)
    if not train_ex:
        raise ValueError(f"no pair fits --max-length {max_length} (every prompt fills it)")
    common.write_summary(root, info)
    skipped = f", {info['pairs']['skipped']} skipped (chosen = rejected)" if info["pairs"]["skipped"] else ""
    console.print(f"[bold]dpo[/] {len(train_ex)} pairs to train, {len(held_ex)} held out{skipped} -> {root}")
    update = DPOUpdate(policy, beta=beta, lr=lr, micro_batch_size=batch_size)
    with common.epoch_callbacks(root, console, epochs) as (on_step, on_epoch):
        records = train_dpo(update, train_ex, held_ex, epochs=epochs, batch_size=batch_size, seed=seed,
                            on_step=on_step, on_epoch=on_epoch)
    where = common.save_model(root, policy.model, policy.tokenizer)
    common.write_finished(root, info, records, model_dir=str(where))
    console.print(common.epoch_table("DPO", records, [
        ("loss", "loss"), ("rewards/accuracies", "acc"), ("rewards/margins", "margin"),
        ("heldout/rewards/accuracies", "held-out acc"), ("heldout/rewards/margins", "held-out margin"),
        ("heldout/loss", "held-out loss")]))
    console.print(f"model: {where}\nuse it: raftkit align --model {where}")
