"""KL-regularised ranking for RAFT: rank by r − β·log(π(y|x) / π_ref(y|x)) instead of r alone.

The RAFT paper suggests this to keep the selection near the starting model. log π/π_ref of a whole
completion is how much more likely the current policy finds it than the starting model did: large for
what the policy has drifted into (an emoji habit, a spam pattern), about 0 for what both find equally
likely. Ranking by the regularised reward prefers, among samples of similar reward, the ones that do not
push the drift further. At the first iteration π = π_ref and the ranking is the plain one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch

from raftkit.algorithms.sft import Example


def regularised(totals: Sequence[float], log_ratios: Sequence[float | None], beta: float) -> list[float]:
    """``total − beta · log_ratio`` per sample; a sample without a ratio (not ranked) keeps its total.

    >>> regularised([2.0, 3.0, 1.0], [0.0, 4.0, None], 0.5)
    [2.0, 1.0, 1.0]
    """
    if len(totals) != len(log_ratios):
        raise ValueError("totals and log_ratios must have one entry per sample")
    return [t if r is None else t - beta * r for t, r in zip(totals, log_ratios, strict=True)]


def log_ratios(
    policy: Any, reference: torch.nn.Module | None, examples: Sequence[Example], micro_batch_size: int
) -> list[float]:
    """log π(completion | prompt) − log π_ref(completion | prompt) per example, summed over its tokens.

    ``reference`` is the frozen starting model; None with LoRA, where the policy with its adapters off is
    the starting model. Each distinct prompt runs once per micro-batch of its samples (shared_prompt.py).
    """
    from raftkit.algorithms.dpo import reference_logprobs
    from raftkit.algorithms.shared_prompt import shared_prompt_logprobs

    pad_id = policy.tokenizer.pad_token_id if policy.tokenizer.pad_token_id is not None else 0
    forward = functools.partial(shared_prompt_logprobs, micro_batch_size=micro_batch_size)
    with policy.autocast():
        current = forward(policy.model, examples, pad_id)
    return (current - reference_logprobs(policy, reference, examples, pad_id, forward=forward)).tolist()
