"""Built-in verifier rewards: 1.0 where a completion's answer is right, 0.0 where it is wrong.

``math_verify`` checks the last mathematical expression of a completion against a gold answer from a dataset
column with the math-verify library (the checker behind TRL's ``accuracy_reward``): ``7``, ``3 + 4 = 7``,
``\\boxed{7}`` and ``7.0`` all match a gold ``7``. As TRL does, a row whose gold answer cannot be parsed
scores ``None``: left out of the total, not counted as wrong.

An answer that only restates the question earns nothing (``restates``): math-verify evaluates ``49 - 12``
to 37, so "…gives us 18. So, 49 - 12 =" and "15 is the result of 40 + 15." would be credited. RAFT trained
on arithmetic learnt both endings within eight iterations.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

from raftkit.rewards import completion_text, hookimpl, reward


@lru_cache(maxsize=1)
def _math_verify() -> tuple[Any, Any, list[Any]]:
    """(parse, verify, extraction configs), imported on first use: the import takes about a second."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    # Its timeouts use signal.alarm, which only works on the main thread, and rewards run on worker threads:
    # they are turned off below and the reward stack's own timeout (--reward-timeout) bounds a call. The
    # library then warns on every call that its timeout is off; that is known and expected here.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return parse, verify, [LatexExtractionConfig(), ExprExtractionConfig()]


@lru_cache(maxsize=4096)
def _gold(text: str) -> Any:
    parse, _, configs = _math_verify()
    return parse(text, extraction_config=configs, parsing_timeout=None)


_OPERATOR = re.compile(r"[-+*/^×÷]|\\(?:frac|cdot|times|div)")
_SPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_LETTER = re.compile(r"[^\W\d_]")


def restates(answer: str, prompt: str) -> bool:
    """Whether ``answer`` is no answer but the question again: an expression with an operator that the prompt
    contains (spaces and closing punctuation aside), or a numeric expression made only of the prompt's own
    numbers (``15 + 40`` for "40 + 15 = ?"). A symbolic answer (``x + 1``) is never taken for one.

    >>> restates("49 - 12", "Compute 49 - 12."), restates("40 + 15.", "40 + 15 = ?")
    (True, True)
    >>> restates("15+40", "40 + 15?"), restates("37", "Compute 49 - 12."), restates("14/2", "7?")
    (True, False, False)
    >>> restates("x + 1", "Simplify (x^2-1)/(x-1).")
    False
    """
    bare = _SPACE.sub("", answer).rstrip(".,;:!?")
    if not _OPERATOR.search(bare):
        return False
    if bare in _SPACE.sub("", prompt):
        return True
    numbers = _NUMBER.findall(bare)
    return bool(numbers) and not _LETTER.search(bare) and set(numbers) <= set(_NUMBER.findall(prompt))


@reward(name="math_verify",
        description="1.0 if the completion's last expression equals the gold answer (math-verify), else 0.0.")
def math_verify(
    completions: list[Any], *, column: str = "solution", prompts: list[Any] | None = None, **kwargs: Any
) -> list[float | None]:
    """Whether each completion's answer equals its row's gold answer, by value (``14/2`` matches ``7``);
    0.0 where the answer only restates an expression of its prompt (``restates``).

    Args:
        completions: strings or chat messages.
        column: the dataset column holding the gold answer, as text (``"7"``, ``"\\frac{1}{2}"``,
            ``"$x^2$"``); TRL's ``accuracy_reward`` reads ``solution``.

    Returns:
        1.0 or 0.0 per completion; None where the gold answer cannot be parsed.

    >>> math_verify(["So 3 + 4 = 7.", "It is 8."], solution=["7", "7"])
    [1.0, 0.0]
    """
    if column not in kwargs:
        raise ValueError(f"math_verify needs the gold answers in a dataset column named '{column}'; add one, "
                         f"or name yours with math_verify:column=NAME")
    parse, verify, configs = _math_verify()
    prompts = prompts if prompts is not None else [""] * len(completions)
    scores: list[float | None] = []
    for completion, gold_text, prompt in zip(completions, kwargs[column], prompts, strict=True):
        gold = _gold(str(gold_text))
        if not gold:
            scores.append(None)
            continue
        answer = parse(completion_text(completion), extraction_config=configs, parsing_timeout=None)
        if answer and restates(str(answer[-1]), completion_text(prompt)):
            scores.append(0.0)
            continue
        scores.append(float(verify(gold, answer, timeout_seconds=None)))
    return scores


@hookimpl
def register_rewards(register):
    register(math_verify)
