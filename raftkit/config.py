"""Run configuration: plain dataclasses whose field docstrings are the documentation and the ``--help``.

Each field is followed by a string literal (cleanrl style); ``field_docs`` reads those with ``ast``.
``AlignConfig`` holds what every algorithm shares; each algorithm's own config (``RaftConfig``,
``GRPOConfig``, ... in raftkit.algorithms) adds its fields; a name the common config already has is not
repeated. Where a field's name is unclear or differs in meaning between algorithms (``beta``), its option
has a clear name (``CLEAR_NAMES``: --kl-beta, --dpo-beta) and the field name stays accepted; ``settle``
turns either into the chosen algorithm's fields. Values come, in increasing priority, from the dataclass
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

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message  # what was wrong, without where (``coerce``'s errors set it)


# The one table of clear option names for fields whose own names are ambiguous or say nothing. The field
# keeps its name (the algorithms, TRL's GRPOConfig and every saved RUN_DIR/config.yaml use it), and that name
# stays accepted everywhere: as an option (--beta), a --config key, a raftkit.align keyword. Keys are
# "Class.field"; a subclass inherits its base's entry (GRPOConfig's beta is PolicyGradientConfig's).
# One clear name may stand for a differently named field in each algorithm (--kl-beta is GRPO's beta,
# PPO's kl_coef and RAFT's rank_beta), and one field name may mean different things (beta: a KL weight in
# GRPO, DPO's β in online DPO), which is why the clear names exist.
CLEAR_NAMES: dict[str, str] = {
    "PolicyGradientConfig.beta": "kl_beta",
    "PolicyGradientConfig.num_iterations": "passes_per_batch",
    "PolicyGradientConfig.is_correction": "mismatch_correction",
    "PolicyGradientConfig.is_cap": "mismatch_cap",
    "RaftConfig.rank_beta": "kl_beta",
    "RaftConfig.epochs_per_iteration": "passes_per_batch",
    "PPOConfig.kl_coef": "kl_beta",
    "PPOConfig.lam": "gae_lambda",
    "PPOConfig.num_iterations": "passes_per_batch",
    "OnlineDPOConfig.beta": "dpo_beta",
}


def option_name(cls: type, f: dataclasses.Field) -> str:
    """The option (without dashes) that sets field ``f`` of ``cls``: its ``option`` metadata, its clear name
    (CLEAR_NAMES), or the field name."""
    if "option" in f.metadata:
        return f.metadata["option"]
    for klass in cls.__mro__:
        if f"{klass.__name__}.{f.name}" in CLEAR_NAMES:
            return CLEAR_NAMES[f"{klass.__name__}.{f.name}"]
    return f.name


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


def at_least(cfg: Any, name: str, low: float) -> None:
    """Raise a ConfigError naming the option when ``cfg.name`` is below ``low``."""
    value = getattr(cfg, name)
    if value < low:
        f = next((f for f in dataclasses.fields(cfg) if f.name == name), None)
        option = option_name(type(cfg), f) if f is not None else name
        # A clear option name differs from the field a config file or a saved run spells: name both.
        spelled = f" ({name})" if option != name else ""
        raise ConfigError(f"--{option.replace('_', '-')}{spelled} must be at least {low}, got {value}")


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

    @property
    def old_names(self) -> list[str]:
        """The field's own name where a clear name (CLEAR_NAMES) is its option: still accepted."""
        return [self.name] if self.option != self.name and self.option in CLEAR_NAMES.values() else []


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
                option_name(cls, f),
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


def _mismatch(where: str, reason: str, value: Any) -> ConfigError:
    return ConfigError(f"{where}: {reason}, got {value!r}", reason)


def coerce(value: Any, t: Any, where: str) -> Any:
    """Convert a value read from a file or the CLI to the type ``t``; ``where`` goes in the error.

    The one converter of config fields and reward parameters (raftkit.rewards.info.Param): a ConfigError's
    ``reason`` says what was expected, without ``where``.
    """
    base, optional = _unwrap_optional(t)
    members = [a for a in typing.get_args(base) if a is not type(None)]
    if typing.get_origin(base) in (typing.Union, types.UnionType) and members:
        for member in members:  # X | Y: the first member the value converts to
            try:
                return coerce(value, member, where)
            except ConfigError:
                continue
        names = " or ".join(getattr(m, "__name__", str(m)) for m in members)
        raise _mismatch(where, f"expected a {names}", value)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required", "a value is required")
    origin = typing.get_origin(base)
    if _is_sequence(base):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise _mismatch(where, "expected a list", value)
        args = [a for a in typing.get_args(base) if a is not Ellipsis] or [Any]
        items = [
            coerce(v, args[0], f"{where}[{i}]") if args[0] is not Any else v for i, v in enumerate(value)
        ]
        return tuple(items) if origin is tuple else list(items)
    if origin is Literal:
        choices = typing.get_args(base)
        if value in choices:
            return value
        try:  # "3" from the command line for Literal[1, 3]
            converted = type(choices[0])(value)
        except (TypeError, ValueError):
            converted = None
        if converted is not None and converted in choices and not isinstance(value, bool):
            return converted
        raise _mismatch(where, f"choose one of {', '.join(map(str, choices))}", value)
    if base is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise _mismatch(where, "expected true or false", value)
    if base is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise _mismatch(where, "expected a whole number", value)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _mismatch(where, "expected a whole number", value) from None
    if base is float:
        if isinstance(value, bool):
            raise _mismatch(where, "expected a number", value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _mismatch(where, "expected a number", value) from None
    if base is dict:
        if not isinstance(value, dict):
            raise _mismatch(where, "expected a mapping", value)
        return value
    if base is str:
        if isinstance(value, dict | list):
            raise _mismatch(where, "expected text", value)
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


def setting_names(cls: type) -> set[str]:
    """Every name that sets a field of ``cls``: the field names and their option names."""
    return {n for f in dataclasses.fields(cls) if f.init for n in (f.name, option_name(cls, f))}


def resolve(values: Mapping[str, Any], classes: Iterable[type],
            label: Callable[[str], str]) -> dict[str, Any]:
    """``values`` keyed by field names: each option name (``kl_beta``, ``mismatch_correction``) becomes the
    field it sets in ``classes`` (GRPOConfig's ``beta``); other keys stay as they are, for the checks to
    name. Two spellings of one field in the same place are an error (``label(key)`` names each)."""
    fields: set[str] = set()
    by_option: dict[str, str] = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.init:
                fields.add(f.name)
                by_option.setdefault(option_name(cls, f), f.name)
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in values.items():
        target = key if key in fields else by_option.get(key, key)
        if target in spelled:
            raise ConfigError(f"{label(spelled[target])} and {label(key)} are one setting; give one of them")
        out[target] = value
        spelled[target] = key
    return out


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


def click_option(spec: FieldSpec, dest: str | None = None, hidden: bool = False) -> click.Option:
    """A click option for a field. Every option defaults to "not given", so a --config value can win.

    ``dest`` is the parameter name (default: the field's); the field's old name and TRL's names are extra
    spellings that parse but stay out of the help's option column (the help text names them).
    """
    base, _ = _unwrap_optional(spec.type)
    default = spec.default
    shown = ", ".join(map(str, default)) if isinstance(default, list | tuple) else default
    if spec.other_defaults:
        others = ", ".join(f"{_short_name(c)}: {d}" for c, d in spec.other_defaults)
        shown = f"{_short_name(spec.owner.__name__)}: {shown}, {others}"
    from raftkit.trl_names import aliases_of

    old = [f"--{n.replace('_', '-')}" for n in spec.old_names]
    # TRL's names for the field are more spellings of the same option, named once in its help.
    trl = [f"--{n.replace('_', '-')}" for n in aliases_of(spec.name)]
    help_text = spec.doc + (f" (also {', '.join(old)})" if old else "")
    help_text += f" (TRL: {', '.join(trl)})" if trl else ""
    help_text += f"  [default: {shown}]" if shown not in (None, "", []) else ""
    flag = spec.option.replace("_", "-")
    # A field renamed in one algorithm but not in another (beta) keeps its old spelling as its own option.
    spellings = trl + (old if dest is None or dest == spec.name else [])
    name = dest or spec.name
    common = {"help": help_text, "hidden": hidden}
    if base is bool:
        return _Option([f"--{flag}/--no-{flag}", name], spellings, default=None, **common)
    if _is_sequence(base):
        common["help"] = help_text + " (repeatable)"
        return _Option([f"--{flag}", name], spellings, multiple=True, type=_click_type(spec.type), **common)
    return _Option(
        [f"--{flag}", name],
        spellings,
        type=_click_type(spec.type),
        default=None,
        metavar=None if typing.get_origin(base) is Literal else _type_hint(spec.type),
        **common,
    )


def option_specs(*classes: type) -> dict[str, FieldSpec]:
    """One FieldSpec per option name over the classes: the first class's field, with the other classes'
    defaults where they differ. Unlike ``fields_of`` it keeps apart one field name that is two options
    (beta: --kl-beta in GRPO, --dpo-beta in online DPO)."""
    out: dict[str, FieldSpec] = {}
    for cls in classes:
        for spec in fields_of(cls).values():
            first = out.get(spec.option)
            if first is None:
                out[spec.option] = spec
            elif spec.default != first.default:
                out[spec.option] = dataclasses.replace(
                    first, other_defaults=(*first.other_defaults, (spec.owner.__name__, spec.default)))
    return out


def config_params(classes: Iterable[type]) -> list[click.Option]:
    """The click options of the classes' fields, one per option name.

    An option that sets one field everywhere is stored under the field's name (``is_correction`` for
    --mismatch-correction, its old spelling --is-correction parsing into it). An option that sets different
    fields (--kl-beta: beta, rank_beta, kl_coef) is stored under its own name, for ``resolve`` to map onto
    the chosen algorithm's field, and each of those fields' own names stays a hidden option of its own.
    """
    classes = list(classes)
    specs = option_specs(*classes)
    fields: dict[str, set[str]] = {}  # option name -> the field names it sets
    options: dict[str, set[str]] = {}  # field name -> the option names that set it
    for cls in classes:
        for spec in fields_of(cls).values():
            fields.setdefault(spec.option, set()).add(spec.name)
            options.setdefault(spec.name, set()).add(spec.option)
    params: list[click.Option] = []
    alone: dict[str, FieldSpec] = {}  # field name -> its spec, for the fields that get an option of their own
    for option, spec in specs.items():
        names = fields[option]
        if len(names) == 1 and options[next(iter(names))] == {option}:
            params.append(click_option(spec))
            continue
        params.append(click_option(spec, dest=option))
        for cls in classes:
            for other in fields_of(cls).values():
                if other.option == option and other.name != option:
                    alone.setdefault(other.name, other)
    for name, spec in alone.items():
        plain = dataclasses.replace(spec, option=name, other_defaults=())
        params.append(click_option(plain, hidden=True))
    return params


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

    def config_classes(self) -> list[type]:
        return list(self._classes())

    def config_options(self) -> dict[str, str]:
        """Each config parameter's name (a field or an option name) -> the option that sets it, --dashed."""
        return {p.name: p.opts[0] for p in self._config_params() if p.name}

    def _config_params(self) -> list[click.Option]:
        if not self._loaded:
            self._loaded = True
            self._generated = config_params(self._classes())
            self.params.extend(self._generated)
        return self._generated

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        self._config_params()
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
