"""Run configuration: ``AlignConfig``, the settings every algorithm shares, and where values come from.

``AlignConfig`` holds what every algorithm shares; each algorithm's own config (``RaftConfig``,
``GRPOConfig``, ... in raftkit.algorithms) adds its fields; a name the common config already has is not
repeated. Fields are documented by the string literal below them, which becomes their ``--help`` and
docs/configuration.md (raftkit.options reads them). Values come, in increasing priority, from the
dataclass defaults, a ``--config`` file (YAML or TOML, flat keys) and the command line; ``settle`` merges
those layers and turns a clear option name (--kl-beta) into the chosen algorithm's field (``beta``). A run
writes the resolved config back to ``RUN_DIR/config.yaml`` in the same flat form, so
``--config RUN_DIR/config.yaml`` repeats it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from raftkit.options import ConfigError, at_least, coerce, fields_of, resolve, setting_names

__all__ = [
    "DEFAULT_FILTERS",
    "AlignConfig",
    "ConfigError",
    "Layer",
    "build",
    "check_keys",
    "check_reward_specs",
    "check_settings",
    "load_file",
    "save_yaml",
    "settle",
    "to_dict",
]

# The built-in degeneracy filters: the failures RAFT (Dong et al. 2023) reports (stray '#', ':)' floods,
# loops, self-dialogue) and those an emoji reward breeds (emoji floods, @-spam, broken characters, no words).
DEFAULT_FILTERS = (
    "stray_hash",
    "emoticon_flood",
    "repetition_loop",
    "self_dialogue",
    "emoji_density",
    "mention_spam",
    "broken_char",
    "no_words",
)


@dataclass
class AlignConfig:
    """Settings shared by every algorithm of `raftkit align`."""

    algo: str = "raft"
    """Training algorithm: raft (keep the best samples, fine-tune on them), raftpp (RAFT with clipped
    importance-sampled steps), reinforce_rej (REINFORCE on the reward, prompts without signal rejected), grpo,
    online_dpo (best vs worst of k), ppo (value head, GAE), or a plugin's (`raftkit algorithms`)."""
    model: str = "default"
    """Model to align: a transformers folder, a hub id, or 'default' (bundled SmolLM2-135M-Instruct)."""
    dataset: str = "bundled"
    """Prompt set: 'bundled', a .jsonl/.json/.csv/.parquet file or folder, or a datasets name."""
    prompt_column: str = "prompt"
    """Dataset column holding the prompt (text or chat messages)."""
    rewards: list[str | dict] = field(default_factory=list, metadata={"option": "reward"})
    """Reward as NAME[:key=value,...][*WEIGHT], or a plain function as FILE.py:FN or package.module:FN;
    repeat for several (see `raftkit rewards`)."""
    filters: list[str | dict] = field(
        default_factory=lambda: list(DEFAULT_FILTERS), metadata={"option": "filter"}
    )
    """Degeneracy filter as NAME[:action=penalty|drop,penalty=P]; repeat for several. Replaces the default
    eight (stray_hash, emoticon_flood, repetition_loop, self_dialogue, emoji_density, mention_spam,
    broken_char, no_words)."""
    iterations: int = 8
    """Number of iterations (sample, score, update)."""
    prompts_per_iteration: int | None = None
    """Prompts drawn per iteration (b); default: 32 for raft, raftpp and grpo, 16 for reinforce_rej,
    online_dpo and ppo (RAFT trains only on samples that keep the answer, a few per batch)."""
    k: int = 8
    """Completions sampled per prompt."""
    temperature: float = 0.8
    """Sampling temperature."""
    top_p: float = 1.0
    """Nucleus sampling threshold (1 = off)."""
    max_new_tokens: int = 40
    """Most tokens a completion may have."""
    lr: float | None = None
    """Peak learning rate (AdamW); default: 3e-5 for raft and raftpp (steps on selected samples), 3e-5 for
    grpo, or 1e-4 where it explores with a hint (the built-in emoji and length rewards), 1e-5 for
    reinforce_rej and ppo, 1e-6 for online_dpo."""
    seed: int = 0
    """Random seed: prompt order, sampling engine, training."""
    output: str | None = None
    """Run directory (default runs/<timestamp>-<algo>, with runs/latest pointing at it)."""
    sampler: Literal["auto", "vllm", "hf"] = "auto"
    """Sampling engine: vllm, hf (transformers generate), or auto (vllm when it imports)."""
    kv_cache_gib: float = 1.0
    """vLLM KV-cache size in GiB."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, slower)."""
    lora_r: int = 0
    """LoRA rank; 0 trains all weights."""
    save_every: int = 1
    """Save the resumable checkpoint every N iterations."""
    checkpoint_every: int = 0
    """Also keep a copy at checkpoints/iter-N every N iterations (0: never)."""
    heldout: int = 40
    """Held-out prompts for the before/after evaluation (never trained on; 0 skips the evaluation)."""
    eval_samples: int = 4
    """Completions per held-out prompt in the evaluation (4 x 40: one sample moves a rate by 0.6%)."""
    eval_temperature: float = 0.7
    """Sampling temperature of the evaluation (0: greedy)."""
    answer_column: str = "answers"
    """Dataset column of accepted answers, for the evaluation's answer accuracy (answer_match)."""
    reward_timeout: float = 60.0
    """Seconds a reward may take on one batch before the run stops with an error."""
    report_to: list[str] = field(default_factory=list)
    """Experiment trackers to mirror metrics, samples and the evaluation to: tensorboard, wandb, mlflow,
    trackio (a comma list or repeated; none for none). Each needs its extra: pip install 'raftkit[wandb]'."""

    def __post_init__(self) -> None:
        from raftkit import algorithms

        try:
            algorithm = algorithms.get(self.algo).cls
        except algorithms.AlgorithmError as e:
            raise ConfigError(f"--algo: {e}") from None
        if self.prompts_per_iteration is None:
            self.prompts_per_iteration = algorithm.default_prompts
        for name in (
            "iterations",
            "prompts_per_iteration",
            "k",
            "max_new_tokens",
            "save_every",
            "eval_samples",
        ):
            at_least(self, name, 1)
        for name in ("checkpoint_every", "heldout", "lora_r", "temperature", "eval_temperature"):
            at_least(self, name, 0)
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.lr is None:
            self.lr = algorithm.default_lr
        if not all(math.isfinite(v) and v > 0 for v in (self.lr, self.reward_timeout, self.kv_cache_gib)):
            raise ConfigError("--lr, --reward-timeout and --kv-cache-gib must be positive finite numbers")


def build(cls: type, values: Mapping[str, Any], source: str = "config") -> Any:
    """An instance of ``cls`` from the values that name its fields (the others are ignored)."""
    specs = fields_of(cls)
    kwargs = {
        name: coerce(v, specs[name].type, f"{source}: '{name}'")
        for name, v in values.items()
        if name in specs
    }
    check_reward_specs(kwargs, source)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:  # a dataclass's own validation
        message = str(e)
        first, _, rest = message.partition(" ")
        if first in specs and specs[first].old_names:  # "lam must be ..." says the option it was given as
            message = f"--{specs[first].option.replace('_', '-')} ({first}) {rest}"
        raise ConfigError(f"{source}: {message}") from None


def check_reward_specs(values: Mapping[str, Any], source: str) -> None:
    """Every ``rewards``/``filters`` entry must read as a spec (not ``parms:``, ``weight: abc``...): said
    with the file's name, before anything loads. Names are resolved later, against the plugins."""
    from raftkit.rewards import RegistryError, RewardSpec

    for key in ("rewards", "filters"):
        for i, item in enumerate(values.get(key) or ()):
            try:
                RewardSpec.coerce(item)
            except RegistryError as e:
                raise ConfigError(f"{source}: '{key}'[{i}]: {e}") from None


def to_dict(*configs: Any) -> dict[str, Any]:
    """The configs as one flat mapping of plain YAML values, in field order (the first config wins)."""
    out: dict[str, Any] = {}
    for cfg in configs:
        for f in dataclasses.fields(cfg):
            if f.name not in out:
                value = getattr(cfg, f.name)
                out[f.name] = list(value) if isinstance(value, tuple | list) else value
    return out


# --------------------------------------------------------------------------- files


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or TOML (.toml) config into a flat mapping."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise ConfigError(
            f"--config {path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'} ({e})"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"--config {path}: expected a mapping of option names to values, got {type(data).__name__}"
        )
    return data


def check_keys(values: Mapping[str, Any], known: Iterable[str], source: str) -> None:
    """Every key must name a field; a typo gets the closest match."""
    known = list(known)
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)  # YAML keys may be numbers
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{source}: unknown option '{key}'.{hint}")


def save_yaml(path: str | Path, values: Mapping[str, Any]) -> None:
    Path(path).write_text(yaml.safe_dump(dict(values), sort_keys=False, allow_unicode=True), encoding="utf-8")


# --------------------------------------------------------------------------- layers of settings


def check_settings(values: Mapping[str, Any], algo: str, label: Callable[[str], str],
                   source: str | None = None) -> None:
    """Every key must set a field of AlignConfig or of ``algo``'s config: another algorithm's setting is an
    error that says whose it is (not silently ignored); with ``source``, any other key is an unknown option
    with the closest name. The one check of `raftkit align` and ``raftkit.align``."""
    from raftkit import algorithms

    found, _ = algorithms.load_algorithms()
    if algo not in found:
        return  # building AlignConfig says so, listing the algorithms
    usable = setting_names(AlignConfig) | setting_names(found[algo].config)
    for key in values:
        owners = [a for a, info in found.items() if key not in usable and key in setting_names(info.config)]
        if owners:
            raise ConfigError(f"{label(key)} is a {'/'.join(owners)} setting; {algo} does not use it")
    if source is not None:
        check_keys(values, sorted(usable), source)


Layer = tuple[Mapping[str, Any], Callable[[str], str] | None, str | None]


def settle(layers: Iterable[Layer]) -> dict[str, Any]:
    """Merge layers of settings, lowest priority first, into one mapping keyed by field names.

    Each layer is (values, label, source): its option names become the fields they set in the algorithm
    the layers choose (the last ``algo`` given), then, with a ``label`` (how to name a key in an error), a
    setting of another algorithm is refused, and with a ``source``, an unknown key (``check_settings``).
    Resolving layer by layer lets ``--kl-beta`` on the command line override a saved run's ``beta``.
    """
    from raftkit import algorithms

    layers = list(layers)
    algo = AlignConfig.algo
    for values, _, _ in layers:
        algo = values.get("algo", algo)
    classes: list[type] = [AlignConfig]
    found, _ = algorithms.load_algorithms()
    if isinstance(algo, str) and algo in found:
        classes.append(found[algo].config)
    out: dict[str, Any] = {}
    for values, label, source in layers:
        named = label or (lambda key: f"'{key}'")
        resolved = resolve(values, classes, named)
        if label is not None:
            # A key that resolved is usable; the others keep the spelling given, for the message.
            check_settings(resolved, str(algo), named, source)
        out.update(resolved)
    return out
