"""The ``raftkit`` command: one module per command, each adding itself to this group."""

import click

from raftkit import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="raftkit")
def main() -> None:
    """Align language models to rewards written as plain Python functions (RAFT, GRPO, ... on vLLM).

    \b
    Examples:
      raftkit rewards                                  # what rewards and filters are installed
      raftkit score --reward emoji --input samples.jsonl
      raftkit align --reward emoji --reward length     # RAFT on the bundled model and prompts
      raftkit align --algo grpo --reward emoji --reward length
      raftkit algorithms                               # raft, raftpp, reinforce_rej, grpo, online_dpo,
                                                       # ppo, and plugins'
      raftkit eval runs/latest                         # answer accuracy and degeneracy, base vs trained
      raftkit inspect runs/latest                      # read a run: metrics, rollouts, plots
    """


def _register_commands() -> None:
    # Imported here, after the group exists; each module defines exactly one command.
    from raftkit.cli import (
        algorithms,
        align,
        dpo,
        evaluate,
        inspect,
        model,
        report,
        rewards,
        score,
        sft,
        train_rm,
    )

    for module in (rewards, score, align, algorithms, evaluate, inspect, report, model, sft, train_rm, dpo):
        main.add_command(module.command)


_register_commands()
