"""`raftkit eval`: a model on held-out prompts — answer accuracy and degeneracy beside the rewards."""

from __future__ import annotations

import json
from typing import Any

import click

EPILOG = """\b
Examples:
  raftkit eval runs/latest                         # a run's model against its base, on its held-out rows
  raftkit eval runs/latest --dataset facts.jsonl   # on your own questions (an 'answers' column)
  raftkit eval ./my-model --base default --json
  raftkit eval default --reward emoji --samples 4
"""


@click.command("eval", epilog=EPILOG)
@click.argument("target", metavar="MODEL_OR_RUN")
@click.option("--base", default=None, metavar="MODEL",
              help="Model to compare with, 'none' for none [default: a run's base model, else none].")
@click.option("--dataset", default=None, help="Prompt set: 'bundled', a file or folder [default: the run's].")
@click.option("--prompt-column", default=None, help="Column holding the prompt [default: prompt].")
@click.option("--answer-column", default=None,
              help="Column of accepted answers for the answer accuracy [default: answers].")
@click.option("--reward", "rewards", multiple=True,
              help="Reward to report, NAME[:key=value,...] (repeatable) [default: the run's rewards].")
@click.option("--filter", "filters", multiple=True,
              help="Filter with its parameters (repeatable); every built-in filter is measured anyway.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate the first N prompts only.")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="Completions per prompt [default: the run's, else 2].")
@click.option("--temperature", type=click.FloatRange(min=0), default=None,
              help="Sampling temperature, 0 for greedy [default: the run's, else 0.7].")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=None,
              help="Most tokens per completion [default: the run's, else 40].")
@click.option("--sampler", type=click.Choice(["auto", "vllm", "hf"]), default="auto", show_default=True,
              help="Sampling engine.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def command(target: str, as_json: bool, rewards: tuple[str, ...], filters: tuple[str, ...],
            **options: Any) -> None:
    """Evaluate a model folder or a run's model on held-out prompts.

    Prints answer accuracy (built-in `answer_match` over the dataset's accepted answers), the share of
    degenerate completions by every built-in filter, each reward with the share of samples where it is
    positive, distinct-2 and length, with examples side by side with the base model. When the rewards
    rose while the answers got worse, it says so in red.
    """
    from rich.console import Console

    from raftkit.config import ConfigError
    from raftkit.datasets import DatasetError
    from raftkit.evaluation.render import render
    from raftkit.evaluation.run import EvalSettings, run_eval
    from raftkit.models import ModelError
    from raftkit.rewards import RegistryError, RewardError

    settings = EvalSettings(rewards=list(rewards) or None, filters=list(filters) or None, **options)
    console = Console(stderr=as_json)
    try:
        with console.status("evaluating") as status:
            results = run_eval(target, settings, progress=lambda text: status.update(text))
    except (ConfigError, DatasetError, ModelError, RegistryError, RewardError) as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(results, ensure_ascii=False, indent=2))
        return
    console.print(f"[bold]raftkit eval[/bold] {results['model']}"
                  + (f" against {results['base']}" if results["base"] else "") + f" on {results['dataset']}")
    render(results.get("base_eval"), results["model_eval"], console, results["alarm"],
           names=("base", "model"))
