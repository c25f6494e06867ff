"""raftkit: align language models to rewards written as plain Python functions."""

from raftkit.hookspecs import hookimpl
from raftkit.registry import filter, load_registry, reward
from raftkit.rewards import RewardError, RewardSpec, RewardStack, Scores, completion_text

__version__ = "0.1.0"

__all__ = [
    "RewardError",
    "RewardSpec",
    "RewardStack",
    "Scores",
    "__version__",
    "completion_text",
    "filter",
    "hookimpl",
    "load_registry",
    "reward",
]
