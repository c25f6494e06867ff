"""`raftkit align`: train a policy with RAFT or GRPO on rewards written as Python functions.

Every option comes from a config dataclass (raftkit.config.AlignConfig and the chosen algorithm's own, e.g.
raftkit.algorithms.raft.RaftConfig); its docstring is the help text.
Priority: defaults < --config FILE < flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from raftkit.config import AlignConfig, ConfigCommand, ConfigError, build, check_keys, cli_values, load_file


def _config_classes() -> list[type]:
    """The common config and every registered algorithm's own (their fields become the options)."""
    from raftkit import algorithms

    found, _ = algorithms.load_algorithms()
    return [AlignConfig, *(info.config for info in found.values())]


def _algorithm_config_class(algo: str) -> type:
    from raftkit import algorithms

    try:
        return algorithms.get(algo).config
    except algorithms.AlgorithmError as e:
        raise click.ClickException(f"--algo: {e}") from None


EPILOG = """\b
Examples:
  raftkit align --reward emoji --reward length
  raftkit align --reward emoji --reward length:target=30 --iterations 20 --k 8
  raftkit align --algo grpo --reward emoji --reward length --beta 0.04
  raftkit align --config my-run.yaml --lr 1e-5       # flags override the file
  raftkit align --resume runs/latest                 # continue a stopped or crashed run
"""


@click.command("align", cls=ConfigCommand, classes=_config_classes, epilog=EPILOG)
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
    help="Continue the run in this directory after its last complete iteration "
    "(its config.yaml is reloaded; flags such as --iterations override it).",
)
@click.option("--no-filters", is_flag=True, help="Run without any degeneracy filter.")
@click.pass_context
def command(
    ctx: click.Context, config_file: Path | None, resume_dir: Path | None, no_filters: bool, **_: Any
) -> None:
    """Align a model to rewards: sample k completions per prompt, score, train, repeat.

    RAFT (default) keeps the best samples and fine-tunes on them; GRPO (--algo grpo) takes a clipped
    policy-gradient step with group-relative advantages. Every iteration is recorded in the run
    directory (`raftkit inspect RUN_DIR`); at the end the base and trained models are compared on
    held-out prompts.
    """
    from raftkit import loop

    assert isinstance(ctx.command, ConfigCommand)
    fields = ctx.command.config_fields()
    try:
        values: dict[str, Any] = {}
        if resume_dir is not None:
            if not (resume_dir / "run.json").is_file() or not (resume_dir / "config.yaml").is_file():
                raise click.ClickException(
                    f"--resume {resume_dir}: not a run directory (no run.json/config.yaml)"
                )
            saved = load_file(resume_dir / "config.yaml")
            check_keys(saved, fields, str(resume_dir / "config.yaml"))
            values.update(saved)
        if config_file is not None:
            from_file = load_file(config_file)
            check_keys(from_file, fields, f"--config {config_file}")
            values.update(from_file)
        given = cli_values(ctx, fields)
        if no_filters:
            if given.get("filters"):
                raise click.UsageError("--no-filters and --filter contradict each other; pass one of them")
            given["filters"] = []
        values.update(given)
        source = f"--config {config_file}" if config_file else "options"
        cfg = build(AlignConfig, values, source)
        algo_cfg = build(_algorithm_config_class(cfg.algo), values, source)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None

    if resume_dir is not None:
        run_dir = resume_dir
    else:
        run_dir = Path(cfg.output) if cfg.output else loop.default_run_dir(cfg.algo)
    _run(cfg, algo_cfg, run_dir, resume=resume_dir is not None)


def _run(cfg: AlignConfig, algo_cfg: Any, run_dir: Path, resume: bool) -> None:
    from raftkit import loop
    from raftkit.models import ModelError
    from raftkit.registry import RegistryError

    user_errors: tuple[type[BaseException], ...] = (RegistryError, ModelError, ConfigError, FileExistsError)
    try:
        from raftkit.datasets import DatasetError

        user_errors = (*user_errors, DatasetError)
    except ImportError:
        pass
    try:
        loop.run(cfg, algo_cfg, run_dir, resume=resume)
    except loop.RunError as e:
        hint = f"\n(the run is in {e.run_dir}; continue it with: raftkit align --resume {e.run_dir})"
        raise click.ClickException(f"{e}{hint if (Path(e.run_dir) / 'run.json').exists() else ''}") from None
    except user_errors as e:
        raise click.ClickException(str(e)) from None
    except KeyboardInterrupt:
        click.echo(f"\nstopped; continue with: raftkit align --resume {run_dir}", err=True)
        raise SystemExit(130) from None
