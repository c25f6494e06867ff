"""raftkit: align language models to rewards written as plain Python functions."""

from raftkit.api import Run, align, score
from raftkit.api import evaluate as eval_model
from raftkit.rewards import (
    RewardError,
    RewardSpec,
    RewardStack,
    Scores,
    completion_text,
    filter,
    hookimpl,
    load_registry,
    reward,
)

# `raftkit.eval(...)` reads like the command; not in __all__, so `import *` never shadows the builtin.
eval = eval_model

__version__ = "0.1.0"

__all__ = [
    "RewardError",
    "RewardSpec",
    "RewardStack",
    "Run",
    "Scores",
    "__version__",
    "align",
    "completion_text",
    "eval_model",
    "filter",
    "hookimpl",
    "load_registry",
    "reward",
    "score",
]
