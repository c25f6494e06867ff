"""`raftkit align --help` in groups: the shared settings by topic, then the chosen algorithm's own.

Every algorithm's options parse whatever ``--algo`` says (one that the algorithm does not use is refused
with a message naming whose it is); the help lists only what ``--algo`` (default raft) uses, and names the
other algorithms.
"""

from __future__ import annotations

from typing import Any

import click

from raftkit.config import AlignConfig, ConfigCommand, click_option, option_specs

# Shared settings by topic, by parameter name (a field of AlignConfig or one of the command's own options).
GROUPS: dict[str, tuple[str, ...]] = {
    "Run": ("algo", "config_file", "resume_dir", "restart", "output", "iterations", "seed", "save_every",
            "checkpoint_every", "report_to", "verbose", "help"),
    "Model and data": ("model", "dataset", "prompt_column", "answer_column", "prompts_per_iteration", "lr",
                       "lora_r", "gradient_checkpointing"),
    "Sampling": ("k", "max_new_tokens", "temperature", "top_p", "sampler", "kv_cache_gib"),
    "Rewards": ("rewards", "filters", "no_filters", "reward_weights", "reward_timeout"),
    "Evaluation": ("heldout", "eval_samples", "eval_temperature"),
}
ALGO = "raftkit.help_algo"  # ctx.meta key: the --algo the command line names, for the help


def algo_in(args: list[str]) -> str | None:
    """The value of the last ``--algo`` in ``args`` (before a ``--``), or None."""
    found = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--algo" and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith("--algo="):
            found = arg.split("=", 1)[1]
    return found


class AlignCommand(ConfigCommand):
    """A ConfigCommand whose help groups the options and shows only the chosen algorithm's settings."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ALGO] = algo_in(args)  # --help is eager: it may act before --algo is processed
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from raftkit import algorithms

        name = ctx.meta.get(ALGO) or AlignConfig.algo
        try:
            info = algorithms.get(name)
        except algorithms.AlgorithmError as e:
            raise click.UsageError(f"--algo: {e}", ctx) from None
        help_option = self.get_help_option(ctx)
        records = {"help" if p is help_option else p.name: p.get_help_record(ctx)
                   for p in self.get_params(ctx) if p.name not in self.config_options()}  # the command's own
        records.update({spec.name: click_option(spec).get_help_record(ctx)
                        for spec in option_specs(AlignConfig).values()})
        grouped = {n for names in GROUPS.values() for n in names}
        groups: dict[str, list[Any]] = {title: [records[n] for n in names if records.get(n)]
                                        for title, names in GROUPS.items()}
        groups["Other options"] = [r for n, r in records.items() if r and n not in grouped]
        shared = set(option_specs(AlignConfig))
        groups[f"{info.name} settings (--algo {info.name})"] = [
            click_option(spec).get_help_record(ctx)
            for option, spec in option_specs(info.config).items() if option not in shared]
        for title, rows in groups.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
        found, _ = algorithms.load_algorithms()
        others = [n for n in found if n != info.name]
        if others:
            formatter.write_paragraph()
            formatter.write_text(f"Other algorithms: {', '.join(others)}. Their settings: raftkit align "
                                 "--algo NAME --help (raftkit algorithms describes each).")
