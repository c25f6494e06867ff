"""The plugin registry: which reward functions and filters exist, where they came from, what they take.

Plugins are found lazily, through the ``raftkit`` entry-point group; the built-ins
(``raftkit.rewards.builtin``) are registered there too, so there is one path for everyone.
``RAFTKIT_LOAD_PLUGINS`` (a comma list of entry-point names, empty for none) restricts which packages
load. A name belongs to the plugin that registered it first; ``PLUGIN:NAME`` picks another plugin's
function of the same name. What each function declares is read by ``raftkit.rewards.info``.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pluggy

from raftkit.rewards import hookspecs, refs
from raftkit.rewards.info import RegistryError, RewardInfo, info_for


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
        ``package.module:FN``, see raftkit.rewards.refs); an unknown one lists what is available."""
        if name in self.rewards:
            return self.rewards[name]
        if refs.is_reference(name):
            return refs.resolve(name)
        if ":" in name:
            return self._qualified(*name.rsplit(":", 1))
        close = difflib.get_close_matches(name, self.rewards, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else refs.missing_function_hint(name)
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
