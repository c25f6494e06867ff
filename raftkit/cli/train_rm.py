"""`raftkit train-rm`: train a Bradley–Terry reward model on preference pairs (raftkit.pipelines)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

EPILOG = """\b
Examples:
  raftkit train-rm --dataset pairs.jsonl --output rm
  raftkit train-rm --dataset hh.jsonl --epochs 2 --lr 1e-5 --batch-size 8 --heldout-share 0.1
  raftkit align --reward reward_model:model=rm/model      # use it as a reward
"""


@click.command("train-rm", epilog=EPILOG)
@click.option("--dataset", required=True,
              help="Pairs: .jsonl/.json rows with chosen/rejected (+ optional prompt or messages), chat "
              "message lists, or HH-RLHF dialogues; csv/parquet/hub ids go through the datasets library.")
@click.option("--model", default=None, help="Causal-LM base folder or hub id (default: the bundled model).")
@click.option("--output", default=None, help="New or empty folder (default: runs/<timestamp>-rm).")
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-5, show_default=True,
              help="AdamW learning rate (constant).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Pairs per step.")
@click.option("--heldout-share", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="Share of the pairs held out for accuracy and margin.")
@click.option("--max-length", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Tokens per text; longer texts keep their end.")
@click.option("--seed", type=int, default=0, show_default=True)
def command(dataset: str, model: str | None, output: str | None, epochs: int, lr: float, batch_size: int,
            heldout_share: float, max_length: int, seed: int) -> None:
    """Train a reward model: loss -log σ(r_chosen - r_rejected), score at the last non-pad token.

    Writes OUTPUT/model (usable as --reward reward_model:model=OUTPUT/model), OUTPUT/metrics.jsonl (one
    line per epoch; epoch 0 is before training) and OUTPUT/run.json.
    """
    from rich.console import Console

    from raftkit.models import ModelError
    from raftkit.pipelines import common
    from raftkit.pipelines.pairs import PairsError, load_pairs, split_heldout

    console = Console(stderr=True)
    try:
        pairs = load_pairs(dataset)
        train, heldout = split_heldout(pairs.pairs, heldout_share, seed)
        root = common.output_dir(output, "rm")
    except (PairsError, common.PipelineError) as e:
        raise click.ClickException(str(e)) from None
    settings = {"dataset": dataset, "model": model, "epochs": epochs, "lr": lr, "batch_size": batch_size,
                "heldout_share": heldout_share, "max_length": max_length, "seed": seed}
    info = {"kind": "reward_model", "status": "running", "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "settings": settings, "pairs": {"train": len(train), "heldout": len(heldout),
                                            "skipped": pairs.skipped}, "versions": common.versions()}
    common.write_summary(root, info)
    skipped = f", {pairs.skipped} skipped (chosen = rejected)" if pairs.skipped else ""
    console.print(f"[bold]train-rm[/] {len(train)} pairs to train, {len(heldout)} held out{skipped}"
                  f" -> {root}")
    with common.crash_recorded(root, info, (ModelError,)):
        _train(root, info, model, train, heldout, console, epochs=epochs, lr=lr, batch_size=batch_size,
               max_length=max_length, seed=seed)


def _train(root: Path, info: dict[str, Any], model_name: str | None, train: list[Any], heldout: list[Any],
           console: Console, *, epochs: int, lr: float, batch_size: int, max_length: int, seed: int) -> None:
    from raftkit.pipelines import common
    from raftkit.pipelines.reward_model import load_reward_model, train_reward_model

    model, tokenizer = load_reward_model(model_name, seed=seed)
    info["base_model"] = str(getattr(model.config, "_name_or_path", model_name))
    with common.epoch_callbacks(root, console, epochs) as (on_step, on_epoch):
        records = train_reward_model(model, tokenizer, train, heldout, epochs=epochs, lr=lr,
                                     batch_size=batch_size, max_length=max_length, seed=seed,
                                     on_step=on_step, on_epoch=on_epoch)
    where = common.save_model(root, model, tokenizer)
    common.write_finished(root, info, records, model_dir=str(where))
    console.print(common.epoch_table("reward model", records, [
        ("train/loss", "train loss"), ("train/accuracy", "train acc"), ("heldout/accuracy", "held-out acc"),
        ("heldout/margin", "held-out margin"), ("heldout/loss", "held-out loss")]))
    console.print(f"model: {where}\nuse it: raftkit align --reward reward_model:model={where}")
