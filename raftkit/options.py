"""How a config dataclass becomes settings: its fields, their docstrings, option names and values.

Each field is followed by a string literal (cleanrl style); ``field_docs`` reads those with ``ast``, and
``fields_of``/``option_specs`` describe the fields as the command line and the loaders see them. Where a
field's name is unclear or differs in meaning between algorithms (``beta``), its option has a clear name
(``CLEAR_NAMES``: --kl-beta, --dpo-beta) and the field name stays accepted; ``resolve`` turns either
into the field. ``coerce`` is the one converter of config values and reward parameters. Nothing here
knows a particular config: ``raftkit.config`` holds ``AlignConfig`` and the loading, ``raftkit.cli.options``
the click options.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal


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


# --------------------------------------------------------------------------- values


def unwrap_optional(t: Any) -> tuple[Any, bool]:
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(t) if a is not type(None)]
        if len(members) == 1 and len(typing.get_args(t)) == 2:
            return members[0], True
    return t, False


def is_sequence(t: Any) -> bool:
    return typing.get_origin(t) in (list, tuple) or t in (list, tuple)


def _mismatch(where: str, reason: str, value: Any) -> ConfigError:
    return ConfigError(f"{where}: {reason}, got {value!r}", reason)


def coerce(value: Any, t: Any, where: str) -> Any:
    """Convert a value read from a file or the CLI to the type ``t``; ``where`` goes in the error.

    The one converter of config fields and reward parameters (raftkit.rewards.info.Param): a ConfigError's
    ``reason`` says what was expected, without ``where``.
    """
    base, optional = unwrap_optional(t)
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
    if is_sequence(base):
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
    if base is int or base is float:
        whole = base is int
        expected = "expected a whole number" if whole else "expected a number"
        if isinstance(value, bool) or (whole and isinstance(value, float) and not value.is_integer()):
            raise _mismatch(where, expected, value)
        try:
            return base(value)
        except (TypeError, ValueError):
            raise _mismatch(where, expected, value) from None
    if base is dict:
        if not isinstance(value, dict):
            raise _mismatch(where, "expected a mapping", value)
        return value
    if base is str:
        if isinstance(value, dict | list):
            raise _mismatch(where, "expected text", value)
        return str(value)
    return value


# --------------------------------------------------------------------------- option names


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
