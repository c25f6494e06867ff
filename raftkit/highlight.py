"""Where degenerate text sits in a completion, for ``raftkit inspect`` to colour it; and folding long text.

The patterns are the built-in filters' own (``raftkit.rewards.builtin.filters.PATTERNS``), so what is
highlighted is what the filters look for. Only where that module cannot be imported (a broken install)
does highlighting fall back to the self-dialogue pattern shared in ``raftkit.text``.
"""

from __future__ import annotations

import functools
import re

from raftkit.text import SELF_DIALOGUE


@functools.cache
def highlight_patterns() -> dict[str, re.Pattern[str]]:
    """Highlight patterns keyed by filter name: the built-in filters' ``PATTERNS``."""
    try:
        from raftkit.rewards.builtin.filters import PATTERNS
    except Exception:  # a broken plugin module must not stop a run from being read
        return {"self_dialogue": SELF_DIALOGUE}
    return dict(PATTERNS)


def hit_spans(text: str, patterns: dict[str, re.Pattern[str]] | None = None) -> list[tuple[int, int, str]]:
    """(start, end, pattern name) of every degenerate-pattern match in ``text``."""
    spans = []
    for name, p in (patterns or highlight_patterns()).items():
        spans.extend((m.start(), m.end(), name) for m in p.finditer(text) if m.end() > m.start())
    return sorted(spans)


def fold(text: str, width: int, tail: int | None = None) -> tuple[str, int]:
    """Shorten long text to its head and tail (floods tend to sit at the end); returns (text, cut chars).

    >>> fold("abcdefghij", 6, tail=2)
    ('abc … ij', 5)
    """
    if width <= 0 or len(text) <= width:
        return text, 0
    tail = max(0, width // 4) if tail is None else tail
    head = max(1, width - tail - 1)
    cut = len(text) - head - tail
    return text[:head] + " … " + (text[-tail:] if tail else ""), cut
