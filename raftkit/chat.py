"""Prompt rendering shared by the sampler and the trainers, so both see the very same token ids."""

from __future__ import annotations

from typing import Any

from raftkit.rollouts import Prompt

MAX_PROMPT_TOKENS = 512  # the sampler's default prompt limit (SamplingParams.max_prompt_tokens)
# More characters than any one token holds (the bundled model's longest, a run of spaces or of '#', has
# 81), so a prompt longer than CHARS_PER_TOKEN * limit characters cannot fit the limit: refused before it
# is tokenised (a 50 MB line would otherwise cost gigabytes of token ids just to find out).
CHARS_PER_TOKEN = 128


def char_limit(max_tokens: int = MAX_PROMPT_TOKENS) -> int:
    """The most characters a prompt of at most ``max_tokens`` tokens can have."""
    return CHARS_PER_TOKEN * max_tokens


def prompt_chars(prompt: Prompt) -> int:
    """A prompt's length in characters (chat messages: the sum of their contents)."""
    if isinstance(prompt, list):
        return sum(len(str(m.get("content") or "")) for m in prompt)
    return len(prompt)


def render_prompt(tokenizer: Any, prompt: Prompt) -> str:
    """Chat messages go through the model's chat template (with the generation prompt); text stays as is.

    Messages ending with an assistant turn (``prefill``) render that turn open, so the model continues it
    (as TRL renders such prompts).
    """
    if isinstance(prompt, list):
        if prompt and prompt[-1].get("role") == "assistant":
            return tokenizer.apply_chat_template(prompt, tokenize=False, continue_final_message=True)
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return prompt


class PromptTooLong(ValueError):
    """A prompt longer in characters than any prompt of the allowed token count can be."""


def encode_prompt(tokenizer: Any, prompt: Prompt, max_tokens: int | None = None) -> list[int]:
    """Token ids of a rendered prompt. The chat template already holds any special tokens it wants.

    With ``max_tokens``, a prompt over ``char_limit(max_tokens)`` characters raises PromptTooLong without
    being tokenised.
    """
    if max_tokens is not None and (n := prompt_chars(prompt)) > char_limit(max_tokens):
        raise PromptTooLong(f"the prompt is {n:,} characters long; one of at most {max_tokens} tokens has at "
                            f"most {char_limit(max_tokens):,}")
    return tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=not isinstance(prompt, list))[
        "input_ids"
    ]


def with_hint(prompt: Prompt, hint: str) -> Prompt:
    """The prompt with an exploration hint appended to its last user turn (or to the text)."""
    if isinstance(prompt, list):
        messages = [dict(m) for m in prompt]
        for m in reversed(messages):
            if m.get("role") == "user":
                m["content"] = str(m["content"]) + hint
                return messages
        return [*messages, {"role": "user", "content": hint.strip()}]
    return prompt + hint


def prefill(prompt: Prompt, text: str) -> Prompt:
    """The prompt with the start of the answer already written: an open assistant turn holding ``text``
    (chat), or ``text`` appended (plain text). Sampling from it continues ``text``.

    >>> prefill([{"role": "user", "content": "Capital of France?"}], "Paris.")[-1]
    {'role': 'assistant', 'content': 'Paris.'}
    >>> prefill("Q: Capital of France? A:", " Paris.")
    'Q: Capital of France? A: Paris.'
    """
    if isinstance(prompt, list):
        return [*(dict(m) for m in prompt), {"role": "assistant", "content": text}]
    return prompt + text
