"""Training algorithms (RAFT, RAFT++, Reinforce-Rej, GRPO, ...) and the registry that finds them.

An algorithm is a class implementing ``raftkit.algorithms.base.Algorithm``. Besides ``sample`` and ``update``
it declares its ``name``, a ``Config`` dataclass of its own settings (they become `raftkit align` options),
and ``default_lr`` and ``default_prompts`` (an optional classmethod ``lr_for(rewards, config)`` picks the
learning rate by what the run has, where one number does not serve every task); it is constructed as
``cls(policy, config, *, lr, total_steps, k, sampling, seed, rewards)``.

Algorithms register through the ``register_algorithms`` hook of the ``raftkit`` entry-point group; the
built-in ones do so from ``raftkit.algorithms.builtins``, exactly as a third-party package would.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

import pluggy

REQUIRED_ATTRIBUTES = ("name", "Config", "default_lr", "default_prompts", "sample", "update")


class AlgorithmError(ValueError):
    """An algorithm name that does not resolve, or a class that is not an algorithm."""


@dataclass(frozen=True)
class AlgorithmInfo:
    """A registered algorithm: its class and the plugin that registered it."""

    name: str
    cls: type
    plugin: str

    @property
    def config(self) -> type:
        return self.cls.Config

    @property
    def lr_text(self) -> str:
        """The default learning rate as help and docs show it, with the class's ``lr_note`` where
        ``lr_for`` can choose another (GRPO: "3e-05; 1e-4 where it explores with a hint")."""
        note = self.cls.lr_note() if hasattr(self.cls, "lr_note") else ""
        return f"{self.cls.default_lr:g}" + (f"; {note}" if note else "")

    @property
    def description(self) -> str:
        return (self.cls.__doc__ or "").strip().splitlines()[0] if self.cls.__doc__ else ""


def _check(cls: Any, plugin: str) -> AlgorithmInfo:
    missing = [a for a in REQUIRED_ATTRIBUTES if not hasattr(cls, a)]
    if not isinstance(cls, type) or missing:
        raise AlgorithmError(f"{plugin} registered {cls!r}, which is not an algorithm class "
                             f"(missing: {', '.join(missing) or 'a class'})")
    if not dataclasses.is_dataclass(cls.Config):
        raise AlgorithmError(f"{plugin}: {cls.__name__}.Config must be a dataclass")
    return AlgorithmInfo(str(cls.name), cls, plugin)


def load_algorithms(
    pm: pluggy.PluginManager | None = None,
) -> tuple[dict[str, AlgorithmInfo], dict[str, str]]:
    """(every registered algorithm by name, plugins whose hook failed -> error).

    A plugin whose hook raises or registers something that is not an algorithm is reported and
    contributes nothing; two plugins registering the same name is an error, as for rewards.
    """
    from raftkit.rewards import plugin_manager

    pm = pm or plugin_manager()
    found: dict[str, AlgorithmInfo] = {}
    failures: dict[str, str] = {}
    for impl in reversed(pm.hook.register_algorithms.get_hookimpls()):
        collected: list[Any] = []
        try:
            impl.function(**({"register": collected.append} if "register" in impl.argnames else {}))
            infos = [_check(c, impl.plugin_name) for c in collected]
        except Exception as e:  # one broken plugin must not take the others down
            failures[impl.plugin_name] = f"{type(e).__name__}: {e}"
            continue
        for info in infos:
            if info.name in found:
                raise AlgorithmError(f"algorithm name '{info.name}' is registered twice: by "
                                     f"{found[info.name].plugin} and by {info.plugin}")
            found[info.name] = info
    return found, failures


def get(name: str, pm: pluggy.PluginManager | None = None) -> AlgorithmInfo:
    """The algorithm called ``name``; an unknown name lists what exists and the closest match."""
    found, failures = load_algorithms(pm)
    if name in found:
        return found[name]
    close = difflib.get_close_matches(name, found, n=1)
    msg = f"unknown algorithm '{name}'." + (f" Did you mean '{close[0]}'?" if close else "")
    msg += f" Available: {', '.join(found) or 'none'}."
    if failures:
        msg += f" (Plugins that failed to register algorithms: {', '.join(failures)}.)"
    raise AlgorithmError(msg)
