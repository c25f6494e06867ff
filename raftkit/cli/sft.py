"""`raftkit sft`: supervised fine-tuning on prompt/completion pairs, as DeepSpeed-Chat and RAFT start."""

from __future__ import annotations

import random
import time
from typing import Any

import click

EPILOG = """\b
Examples:
  raftkit sft --dataset demos.jsonl --output sft
  raftkit sft --dataset chats.jsonl --epochs 3 --lr 2e-5 --lora-r 16
  raftkit align --model sft/model --reward emoji            # align the fine-tuned model
"""


@click.command("sft", epilog=EPILOG)
@click.option("--dataset", required=True,
              help="Rows with prompt/completion columns (text or chat messages) or a 'messages' list "
              "ending with the assistant's reply: .jsonl/.json, csv/parquet, or a datasets name.")
@click.option("--model", default=None, help="Model folder or hub id (default: the bundled model).")
@click.option("--output", default=None, help="New or empty folder (default: runs/<timestamp>-sft).")
@click.option("--prompt-column", default="prompt", show_default=True)
@click.option("--completion-column", default="completion", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-5, show_default=True,
              help="AdamW learning rate (constant).")
@click.option("--micro-batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--lora-r", type=click.IntRange(min=0), default=0, show_default=True,
              help="LoRA rank; 0 trains all weights.")
@click.option("--heldout-share", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="Share of the rows held out for the completion loss before and after.")
@click.option("--seed", type=int, default=0, show_default=True)
def command(dataset: str, model: str | None, output: str | None, prompt_column: str, completion_column: str,
            epochs: int, lr: float, micro_batch_size: int, lora_r: int, heldout_share: float,
            seed: int) -> None:
    """Fine-tune a model on demonstrations with a completion-only loss (the prompt's tokens carry none).

    Writes OUTPUT/model (a transformers folder `raftkit align --model` takes), OUTPUT/metrics.jsonl
    (before training and after) and OUTPUT/run.json.
    """
    from rich.console import Console

    from raftkit.models import ModelError
    from raftkit.pipelines import common
    from raftkit.pipelines.sft_data import SFTDataError, load_rows

    console = Console(stderr=True)
    try:
        rows = load_rows(dataset, prompt_column=prompt_column, completion_column=completion_column)
        root = common.output_dir(output, "sft")
    except (SFTDataError, common.PipelineError) as e:
        raise click.ClickException(str(e)) from None
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_held = min(len(rows) - 1, round(heldout_share * len(rows))) if heldout_share else 0
    heldout, train = [rows[i] for i in order[:n_held]], [rows[i] for i in order[n_held:]]
    settings = {"dataset": dataset, "model": model, "epochs": epochs, "lr": lr, "lora_r": lora_r,
                "micro_batch_size": micro_batch_size, "heldout_share": heldout_share, "seed": seed}
    info = {"kind": "sft", "status": "running", "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "settings": settings, "rows": {"train": len(train), "heldout": len(heldout)},
            "versions": common.versions()}
    common.write_summary(root, info)
    console.print(f"[bold]sft[/] {len(train)} examples to train, {len(heldout)} held out -> {root}")
    with common.crash_recorded(root, info, (ModelError,)):
        records = _train(root, model, train, heldout, console, epochs=epochs, lr=lr,
                         micro_batch_size=micro_batch_size, lora_r=lora_r, seed=seed)
    common.write_finished(root, info, records)
    console.print(common.epoch_table("sft", records, [("heldout/loss", "held-out loss"),
                                                       ("train/loss", "train loss")]))
    console.print(f"[bold]done[/]: {root / 'model'}")


def _train(root: Any, model_name: str | None, train: list[Any], heldout: list[Any], console: Any, *,
           epochs: int, lr: float, micro_batch_size: int, lora_r: int, seed: int) -> list[dict[str, Any]]:
    import torch

    from raftkit.algorithms import sft
    from raftkit.pipelines import common
    from raftkit.policy import Policy
    from raftkit.progress import progress_bar

    torch.manual_seed(seed)
    policy = Policy(model_name or "default", lora_r=lora_r)
    tok = policy.tokenizer

    def examples(rows: list[Any]) -> list[sft.Example]:
        return [sft.make_example(tok, r.prompt, tok(r.completion, add_special_tokens=False)["input_ids"])
                for r in rows]

    train_ex, held_ex = examples(train), examples(heldout)

    def heldout_loss() -> float:
        if not held_ex:
            return float("nan")
        total, count = 0.0, 0
        policy.model.eval()
        with torch.no_grad(), policy.autocast():
            for s in range(0, len(held_ex), micro_batch_size):
                batch = sft.collate(held_ex[s:s + micro_batch_size], tok.pad_token_id or 0)
                loss, n = sft.completion_loss(policy.model, batch)
                total, count = total + float(loss), count + n
        return total / max(count, 1)

    records = [{"epoch": 0, "heldout/loss": heldout_loss()}]
    common.append_metrics(root, records[0])
    with progress_bar(console) as bar:
        task = bar.add_task("training", total=None)
        # One call for all epochs: AdamW's moments carry across them (each call starts fresh ones).
        out = sft.train(policy, train_ex, lr=lr, epochs=epochs, micro_batch_size=micro_batch_size, seed=seed,
                        progress=lambda done, total: bar.update(task, completed=done, total=total))
    record = {"epoch": epochs, "train/loss": out["loss/last_epoch"], "heldout/loss": heldout_loss()}
    records.append(record)
    common.append_metrics(root, record)
    common.save_model(root, policy.model.merge_and_unload() if lora_r else policy.model, tok)
    return records
