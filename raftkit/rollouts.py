"""What the sampler hands to the reward stack and the algorithms: one record per sampled completion."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Prompt = str | list[dict[str, str]]  # plain text, or chat messages [{"role": ..., "content": ...}]


@dataclass
class Rollout:
    """One completion of one prompt, as sampled.

    ``completion_ids`` and ``logprobs`` line up token for token with ``completion`` (after any
    self-dialogue truncation, which cuts all three together). ``logprobs`` are the sampler's
    log-probabilities of the chosen tokens under the distribution it sampled from.
    """

    prompt_index: int  # index of the prompt in the batch handed to the sampler
    prompt: Prompt
    completion: str
    completion_ids: list[int]
    logprobs: list[float]
    prompt_ids: list[int] = field(default_factory=list)
    finish_reason: str = "stop"  # "stop" | "length" | "truncated" (self-dialogue cut)
    truncated: bool = False  # hit the max-new-tokens limit without finishing
    hinted: bool = False  # sampled from an exploration proposal, not the plain prompt
    sample_prompt: Prompt | None = None  # the prompt actually sampled from, when it differs (hints)

    @property
    def is_chat(self) -> bool:
        return isinstance(self.prompt, list)

    def completion_for_rewards(self) -> Any:
        """The completion as TRL hands it to rewards: text, or assistant messages for chat prompts."""
        if self.is_chat:
            return [{"role": "assistant", "content": self.completion}]
        return self.completion


@dataclass
class Batch:
    """A batch of prompts with their dataset columns (each column one value per prompt)."""

    prompts: list[Prompt]
    columns: dict[str, list[Any]] = field(default_factory=dict)
    indices: list[int] = field(default_factory=list)  # row numbers in the dataset, for the record

    def __len__(self) -> int:
        return len(self.prompts)
