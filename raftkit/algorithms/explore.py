"""Exploration by a hinted proposal, shared by RAFT and GRPO.

The bundled model almost never writes an emoji on its own (about 0.2% of samples at temperature 0.9), so an
algorithm that only sees the policy's own samples never sees the behaviour it is asked to learn. Both
algorithms can therefore draw a share of each prompt's k samples from a *proposal*: the prompt with an
exploration hint appended (" Use emojis 😊."). Those samples are marked ``hinted`` and handed on as
completions of the *original* prompt: ``prompt`` and ``prompt_ids`` are the original's, ``sample_prompt``
keeps what was sampled from, and ``logprobs`` stay the sampler's, i.e. the behaviour distribution's
(prompt + hint), which is what GRPO's importance correction needs (``losses.importance_weights``).
RAFT needs no correction: it fine-tunes on selected samples whatever their source.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from raftkit.chat import encode_prompt, with_hint
from raftkit.rollouts import Batch, Prompt, Rollout

# Hints that make the built-in rewards' behaviour likely enough to be sampled ("auto" hint).
AUTO_HINTS = {
    "length": "Answer in one short sentence.",
    # An emoji in the hint gives a small model one to imitate (plain "Use emojis." rarely yields one).
    "emoji": "Use emojis 😊.",
}


def resolve_hint(hint: str, rewards: Sequence[Any]) -> str:
    """The exploration hint to use: 'auto' joins AUTO_HINTS of the configured rewards (by name).

    >>> resolve_hint("auto", ["emoji", "length:target=30"])
    ' Answer in one short sentence. Use emojis 😊.'
    """
    if hint != "auto":
        return hint
    from raftkit.rewards import RewardSpec

    names = [RewardSpec.coerce(r).name for r in rewards]
    # In AUTO_HINTS order, not the rewards': a small model follows the last instruction most.
    parts = [hint for name, hint in AUTO_HINTS.items() if name in names]
    return (" " + " ".join(parts)) if parts else ""


def hinted_count(k: int, share: float) -> int:
    """How many of a prompt's k samples come from the hinted proposal (share x k, rounded half up).

    >>> hinted_count(8, 0.5), hinted_count(3, 0.5)
    (4, 2)
    """
    if not 0 <= share <= 1:
        raise ValueError(f"explore_share must be between 0 and 1, got {share}")
    return min(k, max(0, math.floor(share * k + 0.5)))


class Sampled(NamedTuple):
    """A batch's rollouts, prompt-major (each prompt's plain samples, then its hinted ones), and the prompt
    indices the sampler skipped (too long) — those with no sample at all. A prompt whose hinted copy
    alone was too long keeps its plain samples and is not counted."""

    rollouts: list[Rollout]
    skipped: list[int]


def sample_with_hint(sampler: Any, batch: Batch, k: int, n_hinted: int, hint: str, params: Any) -> Sampled:
    """k samples per prompt: ``k - n_hinted`` from the prompt itself and ``n_hinted`` from prompt + hint.

    Hinted rollouts get ``hinted=True``, ``sample_prompt`` = the hinted prompt, and ``prompt_index``,
    ``prompt`` and ``prompt_ids`` of the original prompt (ids re-encoded with ``raftkit.chat.encode_prompt``,
    as the sampler encodes, so a trainer sees the very ids of the unhinted prompt). Their ``logprobs`` are
    left as sampled: log μ(y_t | prompt + hint, y_<t) at the sampling temperature.
    """
    if not hint:
        n_hinted = 0
    if not 0 <= n_hinted <= k:
        raise ValueError(f"n_hinted must be between 0 and k={k}, got {n_hinted}")
    plain_k, b = k - n_hinted, len(batch.prompts)
    hinted = [with_hint(p, hint) for p in batch.prompts] if n_hinted else []
    # One engine call where both proposals take the same number of samples (one bigger batch), else one
    # call each. Prompt i + b of a combined call is prompt i with the hint.
    if n_hinted and n_hinted == plain_k:
        calls = [(batch.prompts + hinted, n_hinted, 0)]
    else:
        proposals = ((batch.prompts, plain_k, 0), (hinted, n_hinted, b))
        calls = [(ps, n, offset) for ps, n, offset in proposals if n]
    tokenizer = getattr(sampler, "tokenizer", None)
    original_ids: dict[int, list[int]] = {}

    def ids_of(index: int, prompt: Prompt) -> list[int]:
        # A stand-in sampler without a tokenizer gets no ids rather than the hinted prompt's, which would
        # silently train on the wrong prompt.
        if index not in original_ids:
            original_ids[index] = list(encode_prompt(tokenizer, prompt)) if tokenizer is not None else []
        return original_ids[index]

    by_prompt: dict[int, list[Rollout]] = {}
    for prompts, n, offset in calls:
        for r in sampler.generate(prompts, n, params):
            index = r.prompt_index + offset
            if index >= b:  # a hinted sample: from now on a completion of the original prompt
                index -= b
                r.sample_prompt, r.prompt, r.hinted = r.prompt, batch.prompts[index], True
                r.prompt_ids = ids_of(index, batch.prompts[index])
            r.prompt_index = index
            by_prompt.setdefault(index, []).append(r)
    for samples in by_prompt.values():
        samples.sort(key=lambda r: r.hinted)  # stable: plain samples first, each in sampled order
    return Sampled([r for i in sorted(by_prompt) for r in by_prompt[i]],
                   [i for i in range(b) if i not in by_prompt])
