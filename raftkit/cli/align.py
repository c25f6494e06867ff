"""`raftkit align`: train a policy with RAFT or GRPO on rewards written as Python functions.

Every option comes from a config dataclass (raftkit.config.AlignConfig and the chosen algorithm's own, e.g.
raftkit.algorithms.raft.RaftConfig); its docstring is the help text.
Priority: defaults < --config FILE < flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from raftkit.api import build_configs
from raftkit.cli.options import AlignCommand, cli_values
from raftkit.config import AlignConfig, ConfigError, check_keys, load_file, settle
from raftkit.trl_names import REWARD_WEIGHTS, fold_reward_weights, translate


def _config_classes() -> list[type]:
    """The common config and every registered algorithm's own (their fields become the options)."""
    from raftkit import algorithms

    found, _ = algorithms.load_algorithms()
    return [AlignConfig, *(info.config for info in found.values())]


EPILOG = """\b
Examples:
  raftkit align --reward emoji --reward length
  raftkit align --reward emoji --reward length:target=30 --iterations 20 --k 8
  raftkit align --algo grpo --reward emoji --reward length --kl-beta 0.04
  raftkit align --config my-run.yaml --lr 1e-5       # flags override the file
  raftkit align --resume runs/latest                 # continue a stopped or crashed run
  raftkit align --algo grpo --num-generations 4 --max-completion-length 32 --learning-rate 1e-5 \\
      --reward emoji                                 # TRL's GRPOConfig names work too
"""


@click.command("align", cls=AlignCommand, classes=_config_classes, epilog=EPILOG)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML or TOML file of options (flat keys, as in RUN_DIR/config.yaml); flags override it.",
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Continue the run in this directory after its last complete iteration (its config.yaml is "
    "reloaded; --iterations, --save-every, --checkpoint-every, --reward-timeout, --sampler, --kv-cache-gib "
    "and --gradient-checkpointing may change, nothing else).",
)
@click.option(
    "--restart",
    is_flag=True,
    help="With --resume: discard the run's iterations, checkpoints and model and train it again from "
    "iteration 1 with the same settings (for a run whose checkpoint is gone).",
)
@click.option("--no-filters", is_flag=True, help="Run without any degeneracy filter.")
@click.option("--reward-weights", "reward_weights", multiple=True, metavar="W[,W...]",
              help="The weight of each --reward, in order (TRL's reward_weights; a comma list or repeated); "
              "the same as NAME*WEIGHT.")
@click.option("-v", "--verbose", is_flag=True,
              help="Show other libraries' output (vLLM, transformers, torch warnings) in the terminal; "
              "by default it goes to RUN_DIR/logs/terminal.log.")
@click.pass_context
def command(
    ctx: click.Context,
    config_file: Path | None,
    resume_dir: Path | None,
    restart: bool,
    no_filters: bool,
    reward_weights: tuple[str, ...],
    verbose: bool,
    **_: Any,
) -> None:
    """Align a model to rewards: sample k completions per prompt, score, train, repeat.

    RAFT (default) keeps the best samples and fine-tunes on them; GRPO (--algo grpo) takes a clipped
    policy-gradient step with group-relative advantages. Every iteration is recorded in the run
    directory (`raftkit inspect RUN_DIR`); at the end the base and trained models are compared on
    held-out prompts.
    """
    from raftkit import loop
    from raftkit.runs import rundir

    assert isinstance(ctx.command, AlignCommand)
    if restart and resume_dir is None:
        raise click.UsageError("--restart goes with --resume RUN_DIR")
    flags = ctx.command.config_options()  # parameter name -> its option
    # Keys a file may hold: field names (as RUN_DIR/config.yaml has them) and option names (kl_beta).
    known = sorted({*ctx.command.config_fields(), *(f[2:].replace("-", "_") for f in flags.values())})
    try:
        saved: dict[str, Any] = {}
        from_file: dict[str, Any] = {}
        if resume_dir is not None:
            rundir.check_resumable(resume_dir)
            saved = load_file(resume_dir / "config.yaml")
            check_keys(saved, known, str(resume_dir / "config.yaml"))
        weights = None
        if config_file is not None:
            # A config written for TRL's GRPOConfig reads too: its names become raftkit's.
            from_file = translate(load_file(config_file), f"--config {config_file}",
                                  known=known.__contains__,
                                  warn=lambda message: click.echo(f"warning: {message}", err=True))
            weights = from_file.pop(REWARD_WEIGHTS, None)
            check_keys(from_file, known, f"--config {config_file}")
        given = cli_values(ctx, flags)
        if no_filters:
            if given.get("filters"):
                raise click.UsageError("--no-filters and --filter contradict each other; pass one of them")
            given["filters"] = []
        # Old and new names alike become the chosen algorithm's fields; another algorithm's setting is an
        # error naming whose it is (the same check as raftkit.align's).
        values = settle([(saved, None, None),
                         (from_file, lambda key: f"--config {config_file}: '{key}'", None),
                         (given, lambda key: flags.get(key, f"--{key.replace('_', '-')}"), None)])
        if reward_weights:
            weights = ",".join(reward_weights)
        if weights is not None:
            values[REWARD_WEIGHTS] = weights
            fold_reward_weights(values, "--reward-weights" if reward_weights else f"--config {config_file}")
        source = f"--config {config_file}" if config_file else "options"
        cfg, algo_cfg = build_configs(values, source)  # the same builder as raftkit.align
    except (ConfigError, rundir.RunDirError) as e:
        raise click.ClickException(str(e)) from None

    if resume_dir is not None:
        run_dir = resume_dir
    else:
        run_dir = Path(cfg.output) if cfg.output else loop.default_run_dir(cfg.algo)
    _run(cfg, algo_cfg, run_dir, resume=resume_dir is not None, restart=restart, verbose=verbose)


def _run(cfg: AlignConfig, algo_cfg: Any, run_dir: Path, resume: bool, restart: bool = False,
         verbose: bool = False) -> None:
    from raftkit import loop
    from raftkit.models import ModelError
    from raftkit.rewards import RegistryError
    from raftkit.runs.quiet import foreign_output_to_log
    from raftkit.runs.rundir import RunDirError

    user_errors: tuple[type[BaseException], ...] = (RegistryError, ModelError, ConfigError, RunDirError)
    try:
        from raftkit.datasets import DatasetError

        user_errors = (*user_errors, DatasetError)
    except ImportError:
        pass
    try:
        with foreign_output_to_log(run_dir, enabled=not verbose):
            loop.run(cfg, algo_cfg, run_dir, resume=resume, restart=restart)
    except loop.RunError as e:
        hint = f"\n(the run is in {e.run_dir}; continue it with: raftkit align --resume {e.run_dir})"
        known = "--resume" in str(e) or not (Path(e.run_dir) / "run.json").exists()
        raise click.ClickException(f"{e}{'' if known else hint}") from None
    except user_errors as e:
        raise click.ClickException(str(e)) from None
    except KeyboardInterrupt:
        started = (run_dir / "run.json").exists()
        click.echo(f"\nstopped; continue with: raftkit align --resume {run_dir}" if started else "\nstopped",
                   err=True)
        raise SystemExit(130) from None
