"""A filter hit ranks its sample below every clean sample of its group, whatever the rewards' scale and sign.

Worked by hand at three scales: 0..1, −100..0 and 0..1000, through the pure rule and through the real
stack with the built-in filters.
"""

from __future__ import annotations

import math

import pytest

from raftkit.rewards import RewardError, RewardStack
from raftkit.rewards.filter_ranking import place_degenerate

NO_CAPS = [None, None, None, None]


@pytest.mark.parametrize(
    ("totals", "expected"),
    [
        # 0..1: the cap of −1 already sits below the clean 0.2 and 0.9, so it is kept.
        ([0.2, 0.9, 0.95, 0.5], [0.2, 0.9, -1.0, 0.5]),
        # −100..0: clean −61 and −70 (spread 9); the flood's −13 capped at −1 would rank first, so it goes
        # one spread below the lowest clean total: −70 − 9 = −79.
        ([-61.0, -70.0, -13.0, -65.0], [-61.0, -70.0, -79.0, -65.0]),
        # 0..1000: clean 400..900, the cap −1 is below them all.
        ([400.0, 900.0, 990.0, 650.0], [400.0, 900.0, -1.0, 650.0]),
    ],
)
def test_a_hit_lands_below_every_clean_sample_at_three_scales(totals, expected):
    clean = [True, True, False, True]
    placed = place_degenerate(totals, [False, False, True, False], NO_CAPS, clean)
    assert placed == expected
    assert placed[2] < min(p for p, c in zip(placed, clean, strict=True) if c)


def test_the_floor_is_the_groups_own():
    """Group 0's clean totals are −10 and −12 (spread 2): its flood goes to −14. Group 1's clean total is
    −50, alone (spread 0, so the margin is 1): its flood goes to −51, not below group 0's."""
    totals = [-10.0, -12.0, -3.0, -50.0, -2.0]
    placed = place_degenerate(totals, [False, False, True, False, True], [None] * 5,
                              [True, True, False, True, False], groups=[0, 0, 0, 1, 1])
    assert placed == [-10.0, -12.0, -14.0, -50.0, -51.0]


def test_an_explicit_penalty_is_used_as_given_and_a_group_of_floods_keeps_the_cap():
    placed = place_degenerate([-61.0, -13.0, 5.0], [False, False, True], [None, -2.0, None],
                              [True, False, False], groups=[0, 0, 1])
    # -13 with penalty=-2 stays -13 (min of the two), the user's number; group 1 has no clean sample: −1.
    assert placed == [-61.0, -13.0, -1.0]
    assert place_degenerate([-61.0, 0.0], [False, False], [None, -200.0], [True, False]) == [-61.0, -200.0]


@pytest.mark.parametrize(
    ("weight", "low", "high"), [(1.0, 0.0, 1.0), (-100.0, -100.0, 0.0), (1000.0, 0.0, 1000.0)]
)
def test_a_flood_ranks_last_through_the_stack_at_every_scale(weight, low, high):
    """The built-in length reward times a weight gives the three scales; the flood hits emoji_density and
    repetition_loop. Whatever the weight's sign, the flood's total is the group's lowest."""
    stack = RewardStack.build([f"length*{weight:g}"], ["emoji_density", "repetition_loop"])
    completions = ["Paris is the capital of France.", "It is Paris.", "The capital is Paris, on the Seine.",
                   "😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀 😀😀😀😀😀😀 😀😀😀😀😀😀"]
    scores = stack.score(["q"] * 4, completions, groups=[0, 0, 0, 0])
    assert scores.degenerate == [False, False, False, True]
    clean = scores.total[:3]
    assert all(low <= t <= high for t in clean)
    assert scores.total[3] < min(clean)


def test_an_overflowing_total_is_a_clear_error():
    stack = RewardStack.build(["length*1e308", "emoji*1e308"], [])
    with pytest.raises(RewardError, match="overflow"):
        stack.score(["q"], ["Paris is the capital of France! 😀😀"])
    assert math.isfinite(RewardStack.build(["length*1e300"], []).score(["q"], ["Hi"]).total[0])
