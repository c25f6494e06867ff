"""The hooks a raftkit plugin can implement. The marker namespaces them, so names carry no prefix."""

import pluggy

hookspec = pluggy.HookspecMarker("raftkit")
hookimpl = pluggy.HookimplMarker("raftkit")


@hookspec
def register_rewards(register):
    """Register reward functions and degeneracy filters: call ``register(fn)`` once for each."""


@hookspec
def register_algorithms(register):
    """Register training algorithms: call ``register(cls)`` once for each (see raftkit.algorithms)."""
