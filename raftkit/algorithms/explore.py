"""Exploration by a hinted proposal, shared by RAFT and GRPO.

The bundled model almost never writes an emoji on its own (about 0.2% of samples at temperature 0.9), so an
algorithm that only sees the policy's own samples never sees the behaviour it is asked to learn. Both
algorithms can therefore draw a share of each prompt's k samples from a *proposal*: the prompt with an
exploration hint appended (" Use emojis 😊."). Those samples are marked ``hinted`` and handed on as
completions of the *original* prompt: ``prompt`` and ``prompt_ids`` are the original's, ``sample_prompt``
keeps what was sampled from, and ``logprobs`` stay the sampler's, i.e. the behaviour distribution's
(prompt + hint), which is what GRPO's importance correction needs (``losses.importance_weights``).
RAFT needs no correction: it fine-tunes on selected samples whatever their source.

With ``prefill`` (RAFT's default) a hinted sample continues the first sentence of one of the prompt's own
samples instead (``continue_own``): the hint then adds to the policy's answer rather than replacing it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from raftkit.chat import encode_prompt, prefill, with_hint
from raftkit.rollouts import Batch, Prompt, Rollout
from raftkit.sampling.sampler import cut_tokens, decode, trim_partial_char

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


def sample_with_hint(sampler: Any, batch: Batch, k: int, n_hinted: int, hint: str, params: Any,
                     prefill: bool = False) -> Sampled:
    """k samples per prompt: ``k - n_hinted`` from the prompt itself and ``n_hinted`` from prompt + hint.

    Hinted rollouts get ``hinted=True``, ``sample_prompt`` = the hinted prompt, and ``prompt_index``,
    ``prompt`` and ``prompt_ids`` of the original prompt (ids re-encoded with ``raftkit.chat.encode_prompt``,
    as the sampler encodes, so a trainer sees the very ids of the unhinted prompt). Their ``logprobs`` are
    left as sampled: log μ(y_t | prompt + hint, y_<t) at the sampling temperature.

    With ``prefill``, each hinted sample continues the first sentence of one of the prompt's own samples
    (``continue_own``) instead of starting from nothing.
    """
    if not hint:
        n_hinted = 0
    if not 0 <= n_hinted <= k:
        raise ValueError(f"n_hinted must be between 0 and k={k}, got {n_hinted}")
    plain_k, b = k - n_hinted, len(batch.prompts)
    continued = bool(prefill and n_hinted and plain_k)  # the hinted samples need the plain ones first
    hinted = [with_hint(p, hint) for p in batch.prompts] if n_hinted else []
    # One engine call where both proposals take the same number of samples (one bigger batch), else one
    # call each. Prompt i + b of a combined call is prompt i with the hint.
    if n_hinted and n_hinted == plain_k and not continued:
        calls = [(batch.prompts + hinted, n_hinted, 0)]
    else:
        proposals = ((batch.prompts, plain_k, 0), (hinted, 0 if continued else n_hinted, b))
        calls = [(ps, n, offset) for ps, n, offset in proposals if n]
    ids_of = _OriginalIds(getattr(sampler, "tokenizer", None), batch.prompts)

    rollouts: list[Rollout] = []
    for prompts, n, offset in calls:
        for r in sampler.generate(prompts, n, params):
            index = r.prompt_index + offset
            if index >= b:  # a hinted sample: from now on a completion of the original prompt
                index -= b
                r.sample_prompt, r.prompt, r.hinted = r.prompt, batch.prompts[index], True
                r.prompt_ids = ids_of(index)
            r.prompt_index = index
            rollouts.append(r)
    if continued:
        rollouts += continue_own(sampler, batch, rollouts, n_hinted, hint, params, ids_of)
    by_prompt: dict[int, list[Rollout]] = {}
    for r in rollouts:
        by_prompt.setdefault(r.prompt_index, []).append(r)
    for samples in by_prompt.values():
        samples.sort(key=lambda r: r.hinted)  # stable: plain samples first, each in sampled order
    return Sampled([r for i in sorted(by_prompt) for r in by_prompt[i]],
                   [i for i in range(b) if i not in by_prompt])


class _OriginalIds:
    """The token ids of batch prompt i, encoded once, as the sampler encodes them."""

    def __init__(self, tokenizer: Any, prompts: Sequence[Prompt]):
        self.tokenizer, self.prompts, self.cache = tokenizer, prompts, {}

    def __call__(self, index: int) -> list[int]:
        # A stand-in sampler without a tokenizer gets no ids rather than the hinted prompt's, which would
        # silently train on the wrong prompt.
        if index not in self.cache:
            self.cache[index] = (list(encode_prompt(self.tokenizer, self.prompts[index]))
                                 if self.tokenizer is not None else [])
        return self.cache[index]


# A sentence ends at . ! ? before white space or the end of the text, or at 。！？ (Japanese puts no space).
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|[。！？]")
PREFILL_MIN_NEW_TOKENS = 2
"""New tokens a continued sample must add before it may stop: without it the small model mostly ends
right where its own sentence did, and the hint adds nothing (docs/raft.md, "Hints that keep the answer")."""


def first_sentence(text: str) -> int:
    """Characters in the first sentence of ``text``, its end mark included; 0 when no sentence ends.

    >>> first_sentence("Paris is the capital. It is big."), first_sentence("東京です。大きい")
    (21, 5)
    >>> first_sentence("It is 3.5 m")
    0
    """
    found = _SENTENCE_END.search(text)
    return found.end() if found else 0


def continue_own(sampler: Any, batch: Batch, own: Sequence[Rollout], n_hinted: int, hint: str, params: Any,
                 ids_of: Callable[[int], list[int]]) -> list[Rollout]:
    """``n_hinted`` hinted samples per prompt, each continuing the first sentence of one of the prompt's
    own (unhinted) samples, taken in turn, under prompt + hint.

    The hint then adds to the policy's answer instead of replacing it: the small model, asked for emojis
    from the start, mostly drops the answer for them. A sample's tokens are its source's first-sentence
    tokens (with their log-probs, drawn from the policy itself) followed by the continuation's, which must
    add at least ``PREFILL_MIN_NEW_TOKENS`` before it may stop; the whole is cut at the length limit.
    A source with no complete sentence in the first half of the length limit is continued from nothing,
    i.e. an ordinary hinted sample.
    ``sample_prompt`` holds what was sampled from: the hinted prompt with the sentence prefilled.
    """
    tokenizer = sampler.tokenizer
    special = set(getattr(tokenizer, "all_special_ids", ()))
    longest = params.longest if params is not None else None
    mine: dict[int, list[Rollout]] = {}
    for r in own:
        if not r.hinted:
            mine.setdefault(r.prompt_index, []).append(r)
    prompts: list[Prompt] = []
    heads: list[tuple[int, list[int], list[float]]] = []  # (batch prompt, prefix ids, their log-probs)
    for index, samples in sorted(mine.items()):
        for j in range(n_hinted):
            source = samples[j % len(samples)]
            ids, logprobs = list(source.completion_ids), list(source.logprobs)
            while ids and ids[-1] in special:  # the end-of-turn token: the continuation decides the end
                ids, logprobs = ids[:-1], logprobs[:-1]
            cut = first_sentence(source.completion)
            ids, logprobs, text = cut_tokens(tokenizer, ids, logprobs, source.completion, cut)
            if longest is not None and len(ids) > longest // 2:  # too little room left to add anything
                ids, logprobs, text = [], [], ""
            hinted = with_hint(batch.prompts[index], hint)
            prompts.append(prefill(hinted, text) if text else hinted)
            heads.append((index, ids, logprobs))
    if not prompts:
        return []
    if params is not None:
        params = replace(params, min_new_tokens=max(params.min_new_tokens, min(PREFILL_MIN_NEW_TOKENS,
                                                                                  params.max_new_tokens)))
    out = []
    for r in sampler.generate(prompts, 1, params):
        index, ids, logprobs = heads[r.prompt_index]
        ids, logprobs, reason = ids + r.completion_ids, logprobs + r.logprobs, r.finish_reason
        if longest is not None and len(ids) > longest:
            ids, logprobs, reason = ids[:longest], logprobs[:longest], "length"
        ids, logprobs, text = trim_partial_char(tokenizer, ids, logprobs, decode(tokenizer, ids))
        out.append(Rollout(index, batch.prompts[index], text, ids, logprobs, prompt_ids=ids_of(index),
                           finish_reason=reason, truncated=reason == "length", hinted=True,
                           sample_prompt=prompts[r.prompt_index]))
    return out
