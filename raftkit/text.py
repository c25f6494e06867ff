"""Text helpers shared by the sampler, the filters and the metrics."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# A new turn the model writes for the other side: "###Human:", "### User:", "\nUser:", "<|im_start|>user"...
# RAFT (Dong et al. 2023) saw models continue the dialogue on their own; such text is cut, never trained on.
SELF_DIALOGUE = re.compile(
    r"(?:#{2,3}\s*(?:Human|User|Assistant)\b\s*:?"
    r"|(?:^|\n)[ \t]*(?:Human|User|USER|Assistant)[ \t]*:"
    r"|<\|im_start\|>\s*(?:user|system|assistant))",
)


def self_dialogue_cut(text: str) -> int | None:
    """Index where a self-dialogue continuation starts in ``text``, or None if there is none.

    >>> self_dialogue_cut("Paris is the capital.###Human: and Spain?")
    21
    >>> self_dialogue_cut("Paris.") is None
    True
    """
    m = SELF_DIALOGUE.search(text)
    if m is None:
        return None
    return m.start() + (1 if m.group(0).startswith("\n") else 0)


def tokens_for_distinct(text: str) -> list[str]:
    """Words for distinct-n; text without spaces (Japanese) falls back to characters."""
    words = text.split()
    if len(words) <= 1 and len(text) > 1:
        return [c for c in text if not c.isspace()]
    return words


def distinct_n(texts: str | Iterable[str], n: int = 2) -> float:
    """Distinct-n: unique n-grams over all n-grams (over the whole set of texts), 0 when there are none."""
    if isinstance(texts, str):
        texts = [texts]
    grams: list[tuple[str, ...]] = []
    for t in texts:
        toks: Sequence[str] = tokens_for_distinct(t)
        grams.extend(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0
