"""The plugin registry: which reward functions and filters exist, where they came from, what they take.

Plugins are found lazily, through the ``raftkit`` entry-point group; the built-ins in ``plugins/``
are registered there too, so there is one path for everyone. ``RAFTKIT_LOAD_PLUGINS`` (a comma list of
entry-point names, empty for none) restricts which packages load. A name belongs to the plugin that
registered it first; ``PLUGIN:NAME`` picks another plugin's function of the same name.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import math
import operator
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar, Literal

import pluggy

from raftkit import hookspecs

hookimpl = hookspecs.hookimpl  # plugins may take it from here or from raftkit.hookspecs
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
        # The same converter as the config fields (raftkit.config.coerce); lists and other annotations it
        # does not know are passed through as given.
        from raftkit.config import ConfigError, coerce

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


@dataclass
class Registry:
    """Every reward and filter the loaded plugins registered, and the plugins that failed to load.

    A name belongs to its first registration; a later plugin's function of the same name is kept in
    ``shadowed`` (reachable as ``PLUGIN:NAME``) and its plugin is reported in ``failures``.
    """

    rewards: dict[str, RewardInfo] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    shadowed: list[RewardInfo] = field(default_factory=list)

    def add(self, info: RewardInfo) -> None:
        """Register ``info``; a taken name is recorded as its plugin's failure instead of raising."""
        if info.name not in self.rewards:
            self.rewards[info.name] = info
            return
        self.shadowed.append(info)
        first = self.rewards[info.name]
        self.fail(info.plugin, f"registers '{info.name}', which {first.plugin or '?'} already registered; "
                               f"the name stays with {first.plugin or '?'}: pick this one with "
                               f"'{_dist(info.plugin)}:{info.name}', or leave a plugin out with "
                               "RAFTKIT_LOAD_PLUGINS")

    def fail(self, plugin: str, error: str) -> None:
        """Record a plugin's problem (several are joined), as `raftkit rewards` shows them."""
        self.failures[plugin] = f"{self.failures[plugin]}; {error}" if plugin in self.failures else error

    def get(self, name: str) -> RewardInfo:
        """Look a name up (``NAME``, ``PLUGIN:NAME``, or a function reference ``FILE.py:FN`` /
        ``package.module:FN``, see raftkit.reward_refs); an unknown one lists what is available."""
        from raftkit import reward_refs  # it imports this module

        if name in self.rewards:
            return self.rewards[name]
        if reward_refs.is_reference(name):
            return reward_refs.resolve(name)
        if ":" in name:
            return self._qualified(*name.rsplit(":", 1))
        close = difflib.get_close_matches(name, self.rewards, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else reward_refs.missing_function_hint(name)
        raise RegistryError(f"unknown reward or filter '{name}'.{hint} {self._available()}")

    def _qualified(self, plugin: str, name: str) -> RewardInfo:
        """``PLUGIN:NAME``: the function called NAME that this plugin (label, distribution or entry point)
        registered."""
        candidates = [i for i in [*self.rewards.values(), *self.shadowed] if i.name == name]
        found = [i for i in candidates if plugin in (i.plugin, *i.plugin.split(":"))]
        if len(found) == 1:
            return found[0]
        if found:
            raise RegistryError(f"'{plugin}:{name}' is ambiguous: registered by "
                                f"{', '.join(i.plugin for i in found)}; give the whole plugin label")
        if candidates:
            raise RegistryError(f"no plugin '{plugin}' registers '{name}' (registered by: "
                                f"{', '.join(i.plugin for i in candidates)})")
        hint = ""
        if plugin in self.rewards:  # `length:target`: a parameter without its value, not a plugin
            hint = f" Parameters are given as key=value: '{plugin}:{name}=VALUE'."
        else:  # `rewards:fn` for a top-level module: only dotted prefixes and files are function references
            hint = (f" (A function in a file or module is written FILE.py:{name} or package.module:{name}; "
                    f"'{plugin}' reads as a plugin.)")
        raise RegistryError(f"unknown reward or filter '{plugin}:{name}'.{hint} {self._available()}")

    def _available(self) -> str:
        msg = f"Available: {', '.join(sorted(self.rewards)) or 'none'}."
        if self.failures:
            msg += f" (Plugins that failed to load: {', '.join(self.failures)}; see `raftkit rewards`.)"
        return msg

    def of_kind(self, *kinds: str) -> list[RewardInfo]:
        return [r for r in self.rewards.values() if r.kind in kinds]


def _dist(label: str) -> str:
    """The distribution part of a plugin label (``raftkit-shout:shout`` -> ``raftkit-shout``)."""
    return label.split(":", 1)[0]


def _allowed(ep: importlib.metadata.EntryPoint, allow: set[str] | None) -> bool:
    if allow is None:
        return True
    dist = ep.dist.name if ep.dist else ""
    return bool({ep.name, dist, f"{dist}:{ep.name}"} & allow)


@cache
def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with every ``raftkit`` entry point that imports cleanly.

    Built on first use, never at import. A package that fails to import is remembered in
    ``plugin_manager().raftkit_failures`` (label -> error) and does not stop the others. Plugins are
    labelled ``distribution:entry-point`` (e.g. ``raftkit-shout:shout``). ``RAFTKIT_LOAD_PLUGINS`` keeps
    only the entry points named there (entry-point names, distribution names or labels; empty: none).
    """
    pm = pluggy.PluginManager("raftkit")
    pm.add_hookspecs(hookspecs)
    failures: dict[str, str] = {}
    allowed = os.environ.get("RAFTKIT_LOAD_PLUGINS")
    allow = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for ep in importlib.metadata.entry_points(group="raftkit"):
        if not _allowed(ep, allow):
            continue
        label = f"{ep.dist.name}:{ep.name}" if ep.dist else ep.name
        try:
            module = ep.load()
            if pm.is_registered(module) or pm.has_plugin(label):
                continue
            pm.register(module, name=label)
        except Exception as e:  # a broken plugin must not take the others down
            failures[label] = f"{type(e).__name__}: {e}"
    pm.raftkit_failures = failures  # type: ignore[attr-defined]
    return pm


def load_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    """Ask every plugin to register its rewards and filters, and collect them.

    A plugin whose hook raises, registers something that is not a nameable function, registers one name
    twice, or implements a hook raftkit does not have (a typo) is reported in ``Registry.failures``; a
    name another plugin registered first is reported too (see ``Registry.add``). The others still load.
    """
    pm = pm or plugin_manager()
    registry = Registry(failures=dict(getattr(pm, "raftkit_failures", {})))
    for plugin_name, error in _unknown_hooks(pm):
        registry.fail(plugin_name, error)
    # Called one implementation at a time, in registration order, so each reward is credited to its
    # plugin, one plugin raising does not lose the others' rewards, and the first registration wins.
    for impl in pm.hook.register_rewards.get_hookimpls():
        plugin_name = impl.plugin_name
        collected: list[Callable[..., Any]] = []
        try:
            # pluggy lets an implementation take fewer arguments than the spec names.
            impl.function(**({"register": collected.append} if "register" in impl.argnames else {}))
            infos = [info_for(fn, plugin=plugin_name) for fn in collected]
        except Exception as e:
            registry.fail(plugin_name, f"{type(e).__name__}: {e}")
            continue
        names = [i.name for i in infos]
        if dup := sorted({n for n in names if names.count(n) > 1}):
            registry.fail(plugin_name, f"registers {', '.join(dup)} more than once; a name must resolve to "
                                       "exactly one function, so none of its rewards were loaded")
            continue
        for info in infos:
            registry.add(info)
    return registry


def _unknown_hooks(pm: pluggy.PluginManager) -> list[tuple[str, str]]:
    """Plugins implementing a hook raftkit has no spec for (``register_reward``): pluggy accepts those
    silently, and the plugin would register nothing without a word."""
    known = [name for name, caller in vars(pm.hook).items()
             if isinstance(caller, pluggy.HookCaller) and caller.has_spec()]
    out = []
    for name, caller in vars(pm.hook).items():
        if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        for impl in caller.get_hookimpls():
            out.append((impl.plugin_name, f"implements '{name}', which is not a raftkit hook, so it was "
                                          f"never called.{hint} (hooks: {', '.join(sorted(known))})"))
    return out
