"""The Python API: ``raftkit.align``, ``raftkit.score`` and ``raftkit.eval_model``, for TRL users.

Thin over what the commands run: ``align`` builds the same configs as ``raftkit align``
(``build_configs``, which the CLI calls too) and runs the same loop; ``score`` is ``raftkit score``'s
stack; ``eval_model`` is ``raftkit eval``. Rewards may be functions (plain TRL reward functions, used
unchanged), spec strings (``"length:target=30*0.5"``, ``"my_rewards.py:fn"``) or config mappings.

Heavy imports (torch, the loop) happen inside the functions: ``import raftkit`` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

RewardLike = str | dict | Callable[..., Any]
DATASET_FILE = "dataset.jsonl"  # where a dataset given as an object is kept in the run directory


@dataclasses.dataclass(frozen=True)
class Run:
    """A run directory, read on demand (``raftkit inspect`` shows the same)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """One dict per completed iteration, from metrics.jsonl (older metric names read as current ones)."""
        from raftkit.runs.metric_names import canonical
        from raftkit.runs.rundir import read_jsonl

        return [canonical(m) for m in read_jsonl(self.path / "metrics.jsonl")]

    @property
    def eval(self) -> dict[str, Any]:
        """eval.json: ``before``, ``after``, ``delta`` and ``alarm`` ({} when the run did not evaluate)."""
        try:
            return json.loads((self.path / "eval.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}

    @property
    def info(self) -> dict[str, Any]:
        """run.json: status, algorithm, versions, error."""
        return json.loads((self.path / "run.json").read_text(encoding="utf-8"))

    @property
    def config(self) -> dict[str, Any]:
        """The resolved settings (config.yaml)."""
        from raftkit.config import load_file

        return load_file(self.path / "config.yaml")

    @property
    def model_path(self) -> Path | None:
        """The trained model's transformers folder, or None before the run finished."""
        model = self.path / "model"
        return model if (model / "config.json").is_file() else None


# --------------------------------------------------------------------------- configs


def build_configs(values: Mapping[str, Any], source: str = "options") -> tuple[Any, Any]:
    """(AlignConfig, the algorithm's config) from flat option values: the one place both are built, for
    `raftkit align` and ``raftkit.align`` alike, so both validate the same way."""
    from raftkit import algorithms
    from raftkit.algorithms.raft import keeps_answers_by_default
    from raftkit.config import AlignConfig, ConfigError, build
    from raftkit.runs import trackers

    cfg = build(AlignConfig, values, source)
    try:  # a tracker whose package is missing fails here, before the run directory or the model
        cfg.report_to = trackers.parse(cfg.report_to)
        trackers.check(cfg.report_to)
    except trackers.TrackerError as e:
        raise ConfigError(f"{source}: {e}") from None
    # AlignConfig has checked the algorithm's name already.
    cls = algorithms.get(cfg.algo).cls
    algo_cfg = build(cls.Config, values, source)
    # Defaults that depend on what the run has are chosen once, here, and config.yaml records them.
    if values.get("lr") is None and hasattr(cls, "lr_for"):
        cfg.lr = cls.lr_for(cfg.rewards, algo_cfg)  # GRPO: by whether it explores
    if getattr(algo_cfg, "keep_answers", False) is None:
        algo_cfg.keep_answers = keeps_answers_by_default(cfg.rewards)
    return cfg, algo_cfg


def check_options(values: Mapping[str, Any], algo: str, source: str) -> None:
    """Every key must set a field of AlignConfig or of ``algo``'s config, by its field or option name
    (``beta`` or ``kl_beta``); a typo gets the closest name, another algorithm's setting says whose it is."""
    from raftkit.config import settle

    settle([({**values, "algo": algo}, lambda key: f"{source}: '{key}'", source)])


def reward_specs(items: RewardLike | Iterable[RewardLike] | None,
                 resumable: bool = False) -> list[str | dict]:
    """Spec strings or mappings for rewards given as functions, callable objects, specs or a mix (a single
    one is fine). ``resumable``: each must load again in another process (a run records it), else a
    RegistryError says how to make it so (raftkit.rewards.refs.register)."""
    from raftkit.rewards import refs

    if items is None:
        return []
    if isinstance(items, str | dict) or callable(items):
        items = [items]
    return [refs.register(r, resumable=resumable) if callable(r) else r for r in items]


# --------------------------------------------------------------------------- align


def align(
    rewards: RewardLike | Iterable[RewardLike] = (),
    *,
    algo: str | None = None,
    model: str | os.PathLike | None = None,
    dataset: Any = None,
    output: str | os.PathLike | None = None,
    resume: str | os.PathLike | Run | None = None,
    console: Any = None,
    verbose: bool = False,
    **options: Any,
) -> Run:
    """Align ``model`` to ``rewards`` with ``algo``, as `raftkit align` does; returns the finished Run.

    ``options`` are the command's settings by field or option name (``iterations=4``, ``k=8``,
    ``prompts_per_iteration=16``, ``filters=[...]``, ``sampler="hf"``, ``kl_beta=0.04`` for GRPO...; see
    docs/configuration.md). ``dataset`` is 'bundled', a file or folder, a hub name, or a
    ``datasets.Dataset`` / list of row dicts, which is written to RUN/dataset.jsonl. Raises
    raftkit.config.ConfigError for bad settings, RegistryError for a bad reward, loop.RunError when
    the run fails (the directory then stays resumable). Defaults: algo 'raft', the bundled model and
    prompts.

    ``resume=RUN`` continues a stopped or crashed run, as `raftkit align --resume RUN` does: its
    config.yaml supplies every setting, and what is passed here overrides it (``iterations=12`` extends
    a finished run).

    Other libraries' output (transformers' progress bars and notes, vLLM's) goes to
    RUN/logs/terminal.log, as with the command; ``verbose=True`` leaves it on stderr.
    """
    import warnings

    from raftkit import loop
    from raftkit.config import settle
    from raftkit.runs.quiet import foreign_output_to_log
    from raftkit.trl_names import fold_reward_weights, translate

    # TRL's GRPOConfig names (num_generations=4, learning_rate=1e-5...) are raftkit's settings too.
    options = translate(options, "raftkit.align", known=_is_setting,
                        warn=lambda message: warnings.warn(message, stacklevel=3))
    values: dict[str, Any] = {**options}
    saved = _saved_config(resume) if resume is not None else {}
    for name, value, default in (("algo", algo, "raft"), ("model", model, "default"),
                                 ("dataset", dataset, "bundled")):
        if value is not None or resume is None:
            values[name] = value if value is not None else default
    if "model" in values:
        values["model"] = os.fspath(values["model"])
    if rewards or resume is None:
        values["rewards"] = reward_specs(rewards, resumable=True)
    if "filters" in options:
        values["filters"] = reward_specs(options["filters"], resumable=True)
    if output is not None:
        values["output"] = os.fspath(output)
    fold_reward_weights(values, "raftkit.align")
    # Old and new names alike (beta or kl_beta) become the algorithm's fields, checked as the command does.
    values = settle([(saved, None, None), (values, lambda key: f"raftkit.align: '{key}'", "raftkit.align")])
    staged = run_dir = None
    if isinstance(values["dataset"], str | os.PathLike):
        values["dataset"] = os.fspath(values["dataset"])
    else:
        staged = _stage_dataset(values["dataset"])
        values["dataset"] = str(staged)
    try:
        cfg, algo_cfg = build_configs(values, "raftkit.align")
        if resume is not None:
            run_dir = _run_path(resume)
        else:
            run_dir = Path(cfg.output) if cfg.output else loop.default_run_dir(cfg.algo)
        # As `raftkit align` does: other libraries' output (transformers' progress bars, vLLM's notes)
        # goes to RUN/logs/terminal.log; verbose=True shows it.
        with foreign_output_to_log(run_dir, enabled=not verbose, python_stderr=True):
            loop.run(cfg, algo_cfg, run_dir, resume=resume is not None, console=console)
    finally:
        if staged is not None:
            _adopt_dataset(staged, run_dir)
    return Run(run_dir)


def _is_setting(name: str) -> bool:
    """Whether ``name`` sets a field of the common config or of any algorithm's (field or option name)."""
    from raftkit import algorithms
    from raftkit.config import AlignConfig
    from raftkit.options import setting_names

    found, _ = algorithms.load_algorithms()
    return any(name in setting_names(cls) for cls in (AlignConfig, *(info.config for info in found.values())))


def _run_path(run: str | os.PathLike | Run) -> Path:
    return run.path if isinstance(run, Run) else Path(run)


def _saved_config(run: str | os.PathLike | Run) -> dict[str, Any]:
    """The settings a resumable run was started with (its config.yaml); RunDirError if it cannot resume."""
    from raftkit.config import load_file
    from raftkit.runs import rundir

    path = _run_path(run)
    rundir.check_resumable(path)
    return load_file(path / "config.yaml")


def _stage_dataset(dataset: Any) -> Path:
    """Write a ``datasets.Dataset`` (or row dicts) to a JSONL file that ``load_prompts`` reads.

    A new run directory must be empty until the run creates it, so the file waits in a temporary folder
    and moves into the run directory afterwards (``_adopt_dataset``).
    """
    if hasattr(dataset, "to_list"):  # datasets.Dataset (and pandas-like objects with records)
        rows = dataset.to_list()
    elif isinstance(dataset, Sequence) and all(isinstance(r, Mapping) for r in dataset):
        rows = [dict(r) for r in dataset]
    else:
        raise TypeError(f"dataset must be a name, a path, a datasets.Dataset or a list of dicts, "
                        f"got {type(dataset).__name__}")
    path = Path(tempfile.mkdtemp(prefix="raftkit-dataset-")) / DATASET_FILE
    # default=str: a value JSON cannot hold (a date) arrives as text rather than failing the run
    path.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def _adopt_dataset(staged: Path, run_dir: Path | None) -> None:
    """Move a staged dataset into the run directory and point its config.yaml there, so the run can be
    resumed and repeated without the temporary file; without a run directory, just delete it."""
    import yaml

    from raftkit.runs import rundir

    try:
        config = (run_dir / "config.yaml") if run_dir is not None else None
        if config is not None and config.is_file():
            target = run_dir / DATASET_FILE
            shutil.move(str(staged), target)
            values = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
            values["dataset"] = str(target.resolve())
            rundir.atomic_write_text(config, yaml.safe_dump(values, sort_keys=False, allow_unicode=True))
    finally:
        shutil.rmtree(staged.parent, ignore_errors=True)


# --------------------------------------------------------------------------- score and eval


def score(
    prompts: Sequence[Any] | None,
    completions: Sequence[Any],
    rewards: RewardLike | Iterable[RewardLike] = (),
    filters: RewardLike | Iterable[RewardLike] = (),
    *,
    columns: Mapping[str, Sequence[Any]] | None = None,
    timeout: float | None = None,
    model: str | os.PathLike | None = "default",
) -> list[dict[str, Any]]:
    """Score completions as `raftkit score --json` does: one dict per completion with ``prompt``,
    ``completion``, each reward's raw value, each filter's hits, ``total`` and ``dropped``.

    ``prompts`` may be None (completions only). ``columns`` are dataset columns, one value per
    completion, passed to the rewards as keyword arguments. A string completion of a chat prompt is
    handed to the rewards as an assistant message, as TRL does. The rewards get ``completion_ids`` as in
    training, tokenised with ``model``'s tokenizer ('default': the bundled model; a model folder or a
    run directory; None: no ids), unless ``columns`` holds them.
    """
    from raftkit.cli.score import _row_json, completion_ids, missing_argument_hint
    from raftkit.rewards import DEFAULT_TIMEOUT, RewardError, RewardStack

    if isinstance(completions, str) or (prompts is not None and isinstance(prompts, str)):
        raise TypeError("prompts and completions are lists (one entry per completion), not strings")
    completions = list(completions)
    prompts = [""] * len(completions) if prompts is None else list(prompts)
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions; give one prompt per "
                         "completion")
    stack = RewardStack.build(reward_specs(rewards), reward_specs(filters),
                              timeout=DEFAULT_TIMEOUT if timeout is None else timeout)
    given = [[{"role": "assistant", "content": c}] if isinstance(p, list) and isinstance(c, str) else c
             for p, c in zip(prompts, completions, strict=True)]
    columns = {k: list(v) for k, v in (columns or {}).items()}
    extra = completion_ids(stack, given, columns, None if model is None else os.fspath(model))
    try:
        scores = stack.score(prompts, given, columns, **extra)
    except RewardError as e:
        hint = missing_argument_hint(e, "pass columns={{'{name}': [...]}}, one value per completion")
        if not hint:
            raise
        raise RewardError(f"{e}{hint}", reward=e.reward, index=e.index, value=e.value) from e.__cause__
    return [_row_json(scores, i, prompts[i], completions[i]) for i in range(len(completions))]


def evaluate(
    target: str | os.PathLike = "default",
    *,
    base: str | os.PathLike | None = None,
    dataset: str | os.PathLike | None = None,
    rewards: RewardLike | Iterable[RewardLike] | None = None,
    filters: RewardLike | Iterable[RewardLike] | None = None,
    sampler: str = "auto",
    **settings: Any,
) -> dict[str, Any]:
    """Evaluate a model folder, a run (a path or a ``Run``) or 'default', as `raftkit eval --json` does.

    ``settings`` are ``raftkit.evaluation.run.EvalSettings`` fields (``limit``, ``samples``, ``temperature``,
    ``max_new_tokens``, ``seed``, ``prompt_column``, ``answer_column``). Returns the results dict:
    ``model_eval``, ``base_eval``, ``delta``, ``alarm``...
    """
    from raftkit.evaluation.run import EvalSettings, run_eval

    settings = {**settings, "sampler": sampler}
    if base is not None:
        settings["base"] = os.fspath(base)
    if dataset is not None:
        settings["dataset"] = os.fspath(dataset)
    if rewards is not None:
        settings["rewards"] = reward_specs(rewards)
    if filters is not None:
        settings["filters"] = reward_specs(filters)
    known = {f.name for f in dataclasses.fields(EvalSettings)}
    if unknown := sorted(set(settings) - known):
        raise TypeError(f"raftkit.eval_model: unknown setting(s) {', '.join(unknown)} "
                        f"(settings: {', '.join(sorted(known))})")
    return run_eval(os.fspath(target), EvalSettings(**settings))
