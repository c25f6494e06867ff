"""Run configuration: plain dataclasses whose field docstrings are the documentation and the ``--help``.

Each field is followed by a string literal (cleanrl style); ``field_docs`` reads those with ``ast``.
``AlignConfig`` holds what every algorithm shares; each algorithm's own config (``RaftConfig``,
``GRPOConfig``, ... in raftkit.algorithms) adds its fields. A field name means one thing everywhere: a name
the common config already has is not repeated. Values come, in increasing priority, from the dataclass
defaults, a ``--config`` file (YAML or TOML, flat keys) and the command line. A run writes the resolved
config back to ``RUN_DIR/config.yaml`` in the same flat form, so ``--config RUN_DIR/config.yaml`` repeats
it.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import math
import textwrap
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import click
import yaml

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


class ConfigError(ValueError):
    """A config value or file that cannot be used; the message names the file and key."""


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
    """Peak learning rate (AdamW); default: 3e-5 for raft and raftpp (steps on selected samples), 1e-4 for
    grpo (with its 4 mini-batches and no KL term), 1e-5 for reinforce_rej and ppo, 1e-6 for online_dpo."""
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


def at_least(cfg: Any, name: str, low: float) -> None:
    """Raise a ConfigError naming the option when ``cfg.name`` is below ``low``."""
    value = getattr(cfg, name)
    if value < low:
        raise ConfigError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")


# --------------------------------------------------------------------------- reading the dataclasses


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass, from its source (empty where there is none)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):  # no source (e.g. built in a REPL): no help text
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, [*body[1:], None], strict=True):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


@dataclass(frozen=True)
class FieldSpec:
    """One config field as the CLI and the loaders see it."""

    name: str
    type: Any
    default: Any
    doc: str
    option: str  # the CLI option without dashes, e.g. "reward" for the field "rewards"
    owner: type
    other_defaults: tuple[tuple[str, Any], ...] = ()  # (class name, default) where another class differs


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def fields_of(*classes: type) -> dict[str, FieldSpec]:
    """The union of the classes' fields; a name seen twice belongs to the first class that has it."""
    out: dict[str, FieldSpec] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.name in out:
                first = out[f.name]
                if _default_of(f) != first.default:  # shared name, own default: say so in --help
                    out[f.name] = dataclasses.replace(
                        first, other_defaults=(*first.other_defaults, (cls.__name__, _default_of(f)))
                    )
                continue
            out[f.name] = FieldSpec(
                f.name,
                hints[f.name],
                _default_of(f),
                docs.get(f.name, ""),
                f.metadata.get("option", f.name),
                cls,
            )
    return out


def _unwrap_optional(t: Any) -> tuple[Any, bool]:
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(t) if a is not type(None)]
        if len(members) == 1 and len(typing.get_args(t)) == 2:
            return members[0], True
    return t, False


def _is_sequence(t: Any) -> bool:
    return typing.get_origin(t) in (list, tuple) or t in (list, tuple)


def coerce(value: Any, t: Any, where: str) -> Any:
    """Convert a value read from a file or the CLI to the field type ``t``; ``where`` goes in the error."""
    base, optional = _unwrap_optional(t)
    members = [a for a in typing.get_args(base) if a is not type(None)]
    if typing.get_origin(base) in (typing.Union, types.UnionType) and members:
        for member in members:  # X | Y: the first member the value converts to
            try:
                return coerce(value, member, where)
            except ConfigError:
                continue
        raise ConfigError(
            f"{where}: {value!r} is not a {' or '.join(getattr(m, '__name__', str(m)) for m in members)}"
        )
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required")
    origin = typing.get_origin(base)
    if _is_sequence(base):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = [a for a in typing.get_args(base) if a is not Ellipsis] or [Any]
        items = [
            coerce(v, args[0], f"{where}[{i}]") if args[0] is not Any else v for i, v in enumerate(value)
        ]
        return tuple(items) if origin is tuple else list(items)
    if origin is Literal:
        choices = typing.get_args(base)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if base is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if base is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}") from None
    if base is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if base is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if base is str:
        if isinstance(value, dict | list):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return str(value)
    return value


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
        raise ConfigError(f"{source}: {e}") from None


def check_reward_specs(values: Mapping[str, Any], source: str) -> None:
    """Every ``rewards``/``filters`` entry must read as a spec (not ``parms:``, ``weight: abc``...): said
    with the file's name, before anything loads. Names are resolved later, against the plugins."""
    from raftkit.registry import RegistryError
    from raftkit.rewards import RewardSpec

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


# --------------------------------------------------------------------------- command-line options


def _click_type(t: Any) -> Any:
    base, _ = _unwrap_optional(t)
    if _is_sequence(base):
        args = [a for a in typing.get_args(base) if a is not Ellipsis]
        base = args[0] if args else str
    if typing.get_origin(base) is Literal:
        return click.Choice([str(c) for c in typing.get_args(base)])
    return {int: int, float: float, bool: bool}.get(base, str)


def _type_hint(t: Any) -> str:
    base, _ = _unwrap_optional(t)
    if _is_sequence(base):
        return "TEXT"
    return {int: "INT", float: "FLOAT"}.get(base, "TEXT")


def _short_name(class_name: str) -> str:
    """RaftConfig -> raft, GRPOConfig -> grpo (for --help defaults that differ by algorithm)."""
    return class_name.removesuffix("Config").lower()


def click_option(spec: FieldSpec) -> click.Option:
    """A click option for a field. Every option defaults to "not given", so a --config value can win."""
    base, _ = _unwrap_optional(spec.type)
    default = spec.default
    shown = ", ".join(map(str, default)) if isinstance(default, list | tuple) else default
    if spec.other_defaults:
        others = ", ".join(f"{_short_name(c)}: {d}" for c, d in spec.other_defaults)
        shown = f"{_short_name(spec.owner.__name__)}: {shown}, {others}"
    from raftkit.trl_names import aliases_of

    # TRL's names for the field are more spellings of the same option, named once in its help.
    trl = [f"--{n.replace('_', '-')}" for n in aliases_of(spec.name)]
    help_text = spec.doc + (f" (TRL: {', '.join(trl)})" if trl else "")
    help_text += f"  [default: {shown}]" if shown not in (None, "", []) else ""
    flag = spec.option.replace("_", "-")
    if base is bool:
        return _Option([f"--{flag}/--no-{flag}", spec.name], trl, default=None, help=help_text)
    if _is_sequence(base):
        return _Option(
            [f"--{flag}", spec.name],
            trl,
            multiple=True,
            type=_click_type(spec.type),
            help=help_text + " (repeatable)",
        )
    return _Option(
        [f"--{flag}", spec.name],
        trl,
        type=_click_type(spec.type),
        default=None,
        metavar=None if typing.get_origin(base) is Literal else _type_hint(spec.type),
        help=help_text,
    )


class _Option(click.Option):
    """A click option with extra spellings that parse but stay out of the help's option column."""

    def __init__(self, decls: list[str], hidden_spellings: list[str], **kwargs: Any):
        *flags, name = decls
        hidden = list(hidden_spellings)
        if "/" in flags[0]:  # a boolean flag: each spelling has its --no- form too
            hidden = [f"{h}/--no-{h[2:]}" for h in hidden]
        super().__init__([*flags, *hidden, name], **kwargs)
        self.hidden_spellings = {part for h in hidden for part in h.split("/")}

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        opts, secondary = self.opts, self.secondary_opts
        self.opts = [o for o in opts if o not in self.hidden_spellings]
        self.secondary_opts = [o for o in secondary if o not in self.hidden_spellings]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.secondary_opts = opts, secondary


def cli_values(ctx: click.Context, names: Iterable[str]) -> dict[str, Any]:
    """The options the user actually gave on the command line (not click's defaults)."""
    out = {}
    for name in names:
        source = ctx.get_parameter_source(name)
        if source in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT):
            value = ctx.params[name]
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


class ConfigCommand(click.Command):
    """A click command whose options come from config dataclasses, found on first use.

    Loading the algorithm configs imports torch; deferring it keeps `raftkit --help` and the other
    commands fast.
    """

    def __init__(self, *args: Any, classes: Callable[[], list[type]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._classes = classes
        self._loaded = False

    def config_fields(self) -> dict[str, FieldSpec]:
        return fields_of(*self._classes())

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not self._loaded:
            self._loaded = True
            self.params.extend(click_option(s) for s in self.config_fields().values())
        return super().get_params(ctx)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """As click's, but a TRL option raftkit has no counterpart for says why (``--top-k``)."""
        from raftkit.trl_names import refusal

        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as e:
            if message := refusal(e.option_name):
                raise click.UsageError(message, ctx) from None
            raise
