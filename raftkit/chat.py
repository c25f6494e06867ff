"""Prompt rendering shared by the sampler and the trainers, so both see the very same token ids."""

from __future__ import annotations

from typing import Any

from raftkit.rollouts import Prompt


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


def encode_prompt(tokenizer: Any, prompt: Prompt) -> list[int]:
    """Token ids of a rendered prompt. The chat template already holds any special tokens it wants."""
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
