"""Sampling k completions per prompt: the interface both backends implement, and the helpers they share.

Two backends produce the same ``Rollout`` records:

- ``VLLMSampler`` (vllm_engine.py): an in-process vLLM engine whose weights are replaced in place after
  every policy update.
- ``HFSampler`` (hf_generate.py): batched transformers ``generate``, the fallback where vLLM is missing.

``make_sampler`` (raftkit.sampling.factory) picks one.

Both tokenize prompts with ``raftkit.chat.encode_prompt`` and hand the engine token ids, so the trainer
sees the very ids that were sampled from. Both report ``logprobs`` under the *processed* distribution the
token was drawn from (after temperature, top-k and top-p), which is what GRPO's importance ratio needs;
at temperature 0 that is the plain log-softmax of the logits. docs/sampler.md has the details.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from raftkit.chat import MAX_PROMPT_TOKENS, PromptTooLong, encode_prompt
from raftkit.rollouts import Prompt, Rollout
from raftkit.text import self_dialogue_cut

log = logging.getLogger(__name__)
# vLLM logs to stdout by default, which would mix its warnings into `--json` output: stderr instead.
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")


@dataclass
class SamplingParams:
    """How to sample. One object serves both backends."""

    temperature: float = 0.9
    """Softmax temperature; 0 means greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p (1 = off)."""
    top_k: int = 0
    """Keep only the k most likely tokens (0 = off)."""
    max_new_tokens: int = 64
    """Length limit of each completion, in tokens."""
    min_new_tokens: int = 0
    """The end-of-sequence token is not sampled before this many new tokens (its probability is 0)."""
    random_max_new_tokens: tuple[int, int] | None = None
    """Draw each sample's length limit uniformly from [lo, hi] (RAFT: [64, 128] reduced repetition)."""
    stop: list[str] = field(default_factory=list)
    """Strings that end a completion; the text is cut before the first one."""
    truncate_self_dialogue: bool = True
    """Cut a completion where the model starts writing the user's turn (raftkit.text.self_dialogue_cut)."""
    max_prompt_tokens: int = MAX_PROMPT_TOKENS
    """Longer prompts are skipped and counted in ``Sampler.skipped``, never sampled (no out-of-memory)."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(f"min_new_tokens must be between 0 and max_new_tokens={self.max_new_tokens}, "
                             f"got {self.min_new_tokens}")
        if self.random_max_new_tokens is not None:
            lo, hi = self.random_max_new_tokens
            if not 1 <= lo <= hi:
                raise ValueError(f"random_max_new_tokens must be (lo, hi) with 1 <= lo <= hi, got {(lo, hi)}")
            self.random_max_new_tokens = (int(lo), int(hi))
        if any(not s for s in self.stop):
            raise ValueError("stop strings must not be empty")

    @property
    def longest(self) -> int:
        """The largest number of new tokens any sample may get."""
        return self.random_max_new_tokens[1] if self.random_max_new_tokens else self.max_new_tokens


class Sampler(Protocol):
    """Draws k completions per prompt and takes the policy's new weights after each update."""

    tokenizer: Any  # PreTrainedTokenizerBase
    skipped: list[int]  # prompt indices the last generate() call skipped (too long)

    def generate(self, prompts: Sequence[Prompt], k: int, params: SamplingParams) -> list[Rollout]:
        """k rollouts per prompt, prompt-major (all k of prompt 0, then prompt 1, ...); skipped prompts
        have none."""
        ...

    def sync(self, weights: Iterable[tuple[str, torch.Tensor]]) -> float:
        """Load (name, tensor) pairs in HF checkpoint naming in place; return the seconds taken."""
        ...

    def close(self) -> None:
        ...


# --------------------------------------------------------------------------------------------------
# Helpers shared by the backends
# --------------------------------------------------------------------------------------------------


def encode_prompts(tokenizer: Any, prompts: Sequence[Prompt],
                   max_tokens: int) -> tuple[list[list[int] | None], list[int]]:
    """Token ids of each prompt, or None for prompts that are empty or longer than ``max_tokens``.

    Returns (ids per prompt, indices of the skipped prompts).
    """
    encoded: list[list[int] | None] = []
    skipped: list[int] = []
    for i, prompt in enumerate(prompts):
        try:
            ids = encode_prompt(tokenizer, prompt, max_tokens)  # an over-long one is never tokenised
        except PromptTooLong:
            ids = []
        if not ids or len(ids) > max_tokens:
            encoded.append(None)
            skipped.append(i)
        else:
            encoded.append(list(ids))
    if skipped:
        shown = skipped[:10] + (["..."] if len(skipped) > 10 else [])
        log.warning("sampler: skipped %d of %d prompts (empty or longer than %d tokens): indices %s",
                    len(skipped), len(prompts), max_tokens, shown)
    return encoded, skipped


def draw_lengths(rng: random.Random, n: int, params: SamplingParams) -> list[int]:
    """Each sample's max-new-tokens: the fixed limit, or one drawn from the random range."""
    if params.random_max_new_tokens is None:
        return [params.max_new_tokens] * n
    lo, hi = params.random_max_new_tokens
    return [rng.randint(lo, hi) for _ in range(n)]


def decode(tokenizer: Any, ids: Sequence[int]) -> str:
    """The completion text of ``ids``: special tokens (the end-of-turn token) are left out."""
    return tokenizer.decode(list(ids), skip_special_tokens=True)


def cut_tokens(tokenizer: Any, ids: Sequence[int], logprobs: Sequence[float], text: str,
               cut: int) -> tuple[list[int], list[float], str]:
    """Cut a completion at character ``cut`` of ``text`` (== ``decode(tokenizer, ids)``), keeping ids,
    log-probs and text consistent.

    Keeps the longest token prefix ``ids[:n]`` whose text ends at or before the cut, i.e. a token that
    straddles the cut is dropped with everything after it, so no part of the cut-off text is kept.
    Invariant of the result ``(ids', logprobs', text')``::

        text' == decode(tokenizer, ids')  and  text[:cut].startswith(text')  and  len(ids') == len(logprobs')
    """
    ids = list(ids)
    head = text[:cut]

    def fits(n: int) -> bool:
        return head.startswith(decode(tokenizer, ids[:n]))

    # Decoded length grows (almost) monotonically with n: bisect for the last prefix not longer than the
    # cut, then step back past prefixes that end inside a multi-byte character or a straddling token.
    lo, hi = 0, len(ids)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(decode(tokenizer, ids[:mid])) <= cut:
            lo = mid
        else:
            hi = mid - 1
    n = lo
    while n > 0 and not fits(n):
        n -= 1
    return ids[:n], list(logprobs[:n]), decode(tokenizer, ids[:n])


MAX_PARTIAL_TOKENS = 4
"""The most tokens ``trim_partial_char`` drops: a UTF-8 character has at most 4 bytes, so at most 3 of
its bytes (3 tokens) are left over at a cut; one more for a token that holds the end of one character and
the start of the next."""


def trim_partial_char(tokenizer: Any, ids: Sequence[int], logprobs: Sequence[float],
                      text: str) -> tuple[list[int], list[float], str]:
    """Drop a half character from the end of a cut completion, keeping ids, log-probs and text together.

    A byte-level tokenizer spells a multi-byte character (an emoji: 4 bytes) with several tokens, so a
    completion cut after some of them decodes to text ending with U+FFFD. The last tokens are dropped,
    one at a time and at most ``MAX_PARTIAL_TOKENS``, until the text ends with a whole character.
    ``text`` must be ``decode(tokenizer, ids)``; the result keeps that invariant and
    ``len(ids') == len(logprobs')``, and ``ids'`` is a prefix of ``ids``. Unchanged (no work beyond one
    ``endswith``) when the text does not end with U+FFFD; also unchanged when it ends with a whole
    U+FFFD the model wrote (the tokens the tokenizer spells that character with), or when no whole
    character is reached within the bound (a run of invalid bytes the model sampled, not a cut
    character). A U+FFFD elsewhere in the text is never touched.
    """
    ids = list(ids)
    if not text.endswith("\ufffd"):
        return ids, list(logprobs), text
    whole = tokenizer("\ufffd", add_special_tokens=False)["input_ids"]  # the character itself, complete
    if whole and ids[-len(whole):] == whole:
        return ids, list(logprobs), text
    for n in range(len(ids) - 1, max(len(ids) - MAX_PARTIAL_TOKENS, 0) - 1, -1):
        kept = decode(tokenizer, ids[:n])
        if not kept.endswith("\ufffd"):
            return ids[:n], list(logprobs[:n]), kept
    return ids, list(logprobs), text


def finish_rollout(tokenizer: Any, *, prompt_index: int, prompt: Prompt, prompt_ids: list[int],
                   ids: Sequence[int], logprobs: Sequence[float], finish_reason: str,
                   params: SamplingParams) -> Rollout:
    """Build a Rollout from a backend's raw sample: apply stop strings and the self-dialogue cut, and
    drop a half character from the end of a cut completion.

    ``ids`` are the sampled tokens, ending with the end-of-turn token where the model stopped by itself
    (kept: the trainer must learn to stop). ``finish_reason`` is the backend's: "stop" or "length".
    After a stop-string or self-dialogue cut the ids end without an end-of-turn token, and the reason
    becomes "stop" (stop string) or "truncated" (self-dialogue). A completion that was cut (the length
    limit, a stop string, self-dialogue) never ends in the middle of a multi-byte character
    (``trim_partial_char``); a length-cut one keeps the reason "length".
    """
    if len(ids) != len(logprobs):
        raise ValueError(f"{len(ids)} token ids but {len(logprobs)} log-probs")
    ids, logprobs = list(ids), [float(x) for x in logprobs]
    text = decode(tokenizer, ids)
    cut, reason = None, finish_reason
    for s in params.stop:
        at = text.find(s)
        if at >= 0 and (cut is None or at < cut):
            cut, reason = at, "stop"
    if params.truncate_self_dialogue:
        at = self_dialogue_cut(text)
        if at is not None and (cut is None or at < cut):
            cut, reason = at, "truncated"
    if cut is not None:
        ids, logprobs, text = cut_tokens(tokenizer, ids, logprobs, text, cut)
    if cut is not None or finish_reason == "length":
        ids, logprobs, text = trim_partial_char(tokenizer, ids, logprobs, text)
    return Rollout(
        prompt_index=prompt_index,
        prompt=prompt,
        prompt_ids=list(prompt_ids),
        completion=text,
        completion_ids=ids,
        logprobs=logprobs,
        finish_reason=reason,
        truncated=reason == "length",
    )
