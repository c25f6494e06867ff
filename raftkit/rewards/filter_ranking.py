"""Where a filter hit puts a sample's total: below every clean sample of its group, at any reward scale.

A degenerate sample (a flood, a loop, stray ``#``) must never outrank a clean one, or RAFT selects it and
GRPO pushes it up. A fixed cap such as −1 only does that when clean totals are above −1: with a TRL-style
reward like ``-abs(20 - len(text))`` clean answers score −61 and a flood capped at −1 would rank first.

So a hit caps the total at ``AUTO_CAP`` (−1, which keeps the usual 0..N rewards as they were) and, where that
is not below the lowest clean total of the sample's group, moves it one spread of the group's clean totals
(at least 1) below that lowest clean total. A filter given an explicit ``penalty=P`` caps at ``P`` exactly,
as the user asked.
"""

from __future__ import annotations

from collections.abc import Sequence

AUTO_CAP = -1.0


def place_degenerate(
    totals: Sequence[float],
    auto: Sequence[bool],
    caps: Sequence[float | None],
    clean: Sequence[bool],
    groups: Sequence[int] | None = None,
) -> list[float]:
    """The totals after filter hits.

    ``auto[i]``: a filter without an explicit penalty hit sample i. ``caps[i]``: the lowest explicit penalty
    of the filters that hit it (None: none). ``clean[i]``: no filter hit it and some reward scored it; only
    clean samples set a group's floor. ``groups`` (one id per sample, e.g. the prompt) defaults to one group.

    >>> place_degenerate([0.5, 0.9, 3.0], [False, False, True], [None, None, None], [True, True, False])
    [0.5, 0.9, -1.0]
    >>> place_degenerate([-61.0, -70.0, -13.0], [False, False, True], [None, None, None], [True, True, False])
    [-61.0, -70.0, -79.0]
    """
    n = len(totals)
    if not len(auto) == len(caps) == len(clean) == n:
        raise ValueError("totals, auto, caps and clean must have one entry per sample")
    groups = list(groups) if groups is not None else [0] * n
    clean_totals: dict[int, list[float]] = {}
    for i in range(n):
        if clean[i]:
            clean_totals.setdefault(groups[i], []).append(totals[i])
    out = list(totals)
    for i in range(n):
        if caps[i] is not None:
            out[i] = min(out[i], caps[i])
        if not auto[i]:
            continue
        out[i] = min(out[i], AUTO_CAP)
        if found := clean_totals.get(groups[i]):
            floor, top = min(found), max(found)
            if out[i] >= floor:
                out[i] = floor - max(1.0, top - floor)
    return out
