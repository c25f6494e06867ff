"""What a reward function declares: its name, kind, description and typed parameters.

``@reward`` and ``@filter`` mark a function; ``info_for`` reads the mark (or, for a plain TRL reward, the
function itself) into a ``RewardInfo``. A reward's parameters are its keyword-only arguments;
``Annotated[T, Ge(1)]`` and the other bounds check their values, converted by the same ``coerce`` as the
config fields.
"""

from __future__ import annotations

import inspect
import math
import operator
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from raftkit.options import ConfigError, coerce

KINDS = ("rule", "neural", "filter")
# Keyword arguments the caller supplies (raftkit's stack or TRL's GRPOTrainer): never parameters.
CONTRACT_KWARGS = frozenset(
    {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}
)
_MARK = "__raftkit__"


class RegistryError(ValueError):
    """A reward name or parameter that cannot be resolved; the message says what is available."""


REQUIRED = inspect.Parameter.empty  # the default of a parameter that must be given


@dataclass(frozen=True)
class _Bound:
    """A validator for ``Annotated[T, Ge(1)]``: a parameter's value must lie on one side of ``bound``."""

    bound: float
    symbol: ClassVar[str]
    holds: ClassVar[Callable[[Any, Any], bool]]  # (value, bound) -> ok

    def __call__(self, value: Any) -> None:
        if value is not None and not type(self).holds(value, self.bound):  # None: an unset Optional
            raise ValueError(f"must be {self.symbol} {self.bound}")


class Ge(_Bound):
    """``Annotated[int, Ge(1)]``: at least ``bound``."""

    symbol, holds = ">=", operator.ge


class Gt(_Bound):
    """``Annotated[float, Gt(0)]``: more than ``bound``."""

    symbol, holds = ">", operator.gt


class Le(_Bound):
    """``Annotated[float, Le(1)]``: at most ``bound``."""

    symbol, holds = "<=", operator.le


class Lt(_Bound):
    """``Annotated[float, Lt(1)]``: less than ``bound``."""

    symbol, holds = "<", operator.lt


# ``Annotated[float, ALLOW_NON_FINITE]``: this float parameter accepts inf and nan (others refuse them:
# a NaN threshold compares false with everything and silently disables a check).
ALLOW_NON_FINITE = "raftkit:allow-non-finite"


@dataclass(frozen=True)
class Param:
    """A typed parameter of a reward: a keyword-only argument, with a default unless it is required.

    ``Annotated[T, check, ...]`` adds validators: each ``check(value)`` runs after conversion to ``T`` and
    raises ``ValueError`` to reject the value (e.g. a regular expression that does not compile).
    """

    name: str
    type: Any
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def type_name(self) -> str:
        t = self.type
        if typing.get_origin(t) is typing.Annotated:
            t = typing.get_args(t)[0]
        if typing.get_origin(t) is Literal:
            return "|".join(map(str, typing.get_args(t)))
        if typing.get_origin(t) in (typing.Union, types.UnionType):
            return " | ".join(getattr(a, "__name__", str(a)) for a in typing.get_args(t))
        return getattr(t, "__name__", str(t))

    def describe(self) -> str:
        """``name: type = default`` (or ``name: type (required)``), as `raftkit rewards` shows it."""
        return f"{self.name}: {self.type_name}" + (" (required)" if self.required else f" = {self.default!r}")

    def parse(self, raw: Any, owner: str) -> Any:
        """Convert a CLI/config value to this parameter's type, or raise a RegistryError saying why."""
        t, checks = self.type, ()
        if typing.get_origin(t) is typing.Annotated:
            t, *checks = typing.get_args(t)
        value = self._convert(t, raw, owner)
        if isinstance(value, float) and not math.isfinite(value) and ALLOW_NON_FINITE not in checks:
            raise RegistryError(f"{owner}: parameter '{self.name}' must be a finite number, got {raw!r}")
        for check in checks:
            if callable(check):
                try:
                    check(value)
                except (TypeError, ValueError) as e:
                    raise RegistryError(
                        f"{owner}: parameter '{self.name}' = {raw!r} is not valid: {e}") from None
        return value

    def _convert(self, t: Any, raw: Any, owner: str) -> Any:
        # The same converter as the config fields (raftkit.options.coerce); lists and other annotations it
        # does not know are passed through as given.
        unions = (typing.Union, types.UnionType)
        members = [a for a in typing.get_args(t) if a is not type(None)]
        base = members[0] if typing.get_origin(t) in unions and len(members) == 1 else t
        if (raw is None or (isinstance(raw, str) and raw.lower() == "none")) and base is not t:
            return None  # Optional[X]
        if base not in (bool, int, float, str) and typing.get_origin(base) not in (Literal, *unions):
            return raw
        try:
            return coerce(raw, t, owner)
        except ConfigError as e:
            raise RegistryError(
                f"{owner}: parameter '{self.name}' expects {self.type_name}, got {raw!r} ({e.reason})"
            ) from None


@dataclass(frozen=True)
class RewardInfo:
    """A registered reward or filter."""

    name: str
    fn: Callable[..., Any]
    kind: str = "rule"
    description: str = ""
    plugin: str = ""
    params: dict[str, Param] = field(default_factory=dict)

    @property
    def is_filter(self) -> bool:
        return self.kind == "filter"

    def parse_params(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Validate ``raw`` (strings from the CLI, or config values) against the declared parameters."""
        owner = f"{'filter' if self.is_filter else 'reward'} '{self.name}'"
        out = {}
        for key, value in raw.items():
            if key not in self.params:
                known = ", ".join(self.params) or "none"
                raise RegistryError(f"{owner} has no parameter '{key}' (parameters: {known})")
            out[key] = self.params[key].parse(value, owner)
        missing = [p for p in self.params.values() if p.required and p.name not in out]
        if missing:
            example = ",".join(f"{p.name}=..." for p in missing)
            raise RegistryError(
                f"{owner} needs parameter(s) {', '.join(p.describe() for p in missing)}; "
                f"e.g. --{'filter' if self.is_filter else 'reward'} {self.name}:{example}")
        return out


def _declared_params(fn: Callable[..., Any]) -> dict[str, Param]:
    """A reward's parameters are its keyword-only arguments (the contract's own arguments are not).

    One without a default is required: the spec must give it (e.g. the reward model's path).
    """
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to the defaults' types
        hints = {}
    params = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in CONTRACT_KWARGS:
            fallback = str if p.default is REQUIRED or p.default is None else type(p.default)
            params[p.name] = Param(p.name, hints.get(p.name, fallback), p.default)
    return params


def _mark(fn, *, name, description, kind):
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    doc = (inspect.getdoc(fn) or "").strip().splitlines()
    setattr(fn, _MARK, {"name": name or fn.__name__, "description": description or (doc[0] if doc else ""),
                        "kind": kind})
    return fn


def reward(fn=None, *, name: str | None = None, description: str | None = None, kind: str = "rule"):
    """Mark a TRL-style reward function for registration; usable bare (``@reward``) or with arguments.

    Keyword-only arguments with defaults become the reward's typed parameters::

        @reward(name="length", description="Closeness to a target length.")
        def length(completions, *, target: int = 30, alpha: float = 0.15, **kwargs): ...
    """
    def wrap(f):
        return _mark(f, name=name, description=description, kind=kind)
    return wrap(fn) if fn is not None else wrap


def filter(fn=None, *, name: str | None = None, description: str | None = None):
    """Mark a degeneracy filter: same call as a reward, returns the number of hits per sample."""
    def wrap(f):
        return _mark(f, name=name, description=description, kind="filter")
    return wrap(fn) if fn is not None else wrap


def info_for(fn: Callable[..., Any], plugin: str = "") -> RewardInfo:
    """Describe a function for the registry; a plain (undecorated) TRL reward is a rule named after itself."""
    if not callable(fn):
        raise RegistryError(f"cannot register {fn!r}: a reward or filter must be a function")
    meta = getattr(fn, _MARK, None) or {}
    name = meta.get("name") or getattr(fn, "__name__", None)
    if not name or name == "<lambda>":
        raise RegistryError(f"cannot register {fn!r}: give it a name (def, or @reward(name=...))")
    doc = (inspect.getdoc(fn) or "").strip().splitlines()
    return RewardInfo(
        name=name,
        fn=fn,
        kind=meta.get("kind", "rule"),
        description=meta.get("description") or (doc[0] if doc else ""),
        plugin=plugin,
        params=_declared_params(fn),
    )
