"""A verifier written as a plain TRL reward function: 1.0 when the last number of the answer is the gold one.

It works unchanged in TRL (``GRPOTrainer(reward_funcs=[last_number])``) and in raftkit:

    raftkit align --dataset examples/verifiable/train.jsonl --reward examples/verifiable/reward.py:last_number

The built-in ``math_verify`` reward does the same with the math-verify library (fractions, LaTeX,
``\\boxed{}``).
"""

from __future__ import annotations

import re

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def last_number(completions, solution, **kwargs):
    """1.0 if the completion's last number equals ``solution`` (a dataset column), 0.0 if not, None where
    the gold answer is not a number (left out, as TRL leaves out None)."""
    scores = []
    for completion, gold in zip(completions, solution, strict=True):
        text = completion if isinstance(completion, str) else completion[-1]["content"]
        if not NUMBER.fullmatch(str(gold).strip()):
            scores.append(None)
            continue
        found = NUMBER.findall(text.replace(",", ""))
        scores.append(float(bool(found) and float(found[-1]) == float(gold)))
    return scores
