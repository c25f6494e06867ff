"""Sampler/trainer mismatch correction: hand-computed weights for each mode, padding, NaN, rows, stats."""

from __future__ import annotations

import math

import pytest
import torch

from raftkit.algorithms.correction import MODES, mismatch_correction


def _log(values: list[list[float]]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).log().float()


# Row 0: rho = [2, 0.5] per token, rho_seq = 1. Row 1: rho = [2, 2], rho_seq = 4.
OLD = _log([[0.5, 0.2], [0.4, 0.6]])
SAMPLER = _log([[0.25, 0.4], [0.2, 0.3]])
MASK = torch.ones(2, 2)


def _weight(mode: str, cap: float = 1.5, **kw) -> torch.Tensor:
    return mismatch_correction(OLD, SAMPLER, MASK, mode=mode, cap=cap, **kw).weight


def test_token_truncate():
    torch.testing.assert_close(_weight("token_truncate"), torch.tensor([[1.5, 0.5], [1.5, 1.5]]))


def test_token_mask():
    c = mismatch_correction(OLD, SAMPLER, MASK, mode="token_mask", cap=1.5)
    torch.testing.assert_close(c.weight, torch.tensor([[0.0, 0.5], [0.0, 0.0]]))
    assert c.masked.tolist() == [[True, False], [True, True]]


def test_sequence_modes():
    # Row 0's ratios cancel (rho_seq = 1, within cap 3); row 1's rho_seq = 4 exceeds it.
    torch.testing.assert_close(_weight("sequence_truncate", cap=3.0), torch.tensor([[1.0, 1.0], [3.0, 3.0]]))
    c = mismatch_correction(OLD, SAMPLER, MASK, mode="sequence_mask", cap=3.0)
    torch.testing.assert_close(c.weight, torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert c.masked.tolist() == [[False, False], [True, True]]
    # Under the cap the sequence ratio passes through unchanged: 4 with cap 5.
    torch.testing.assert_close(_weight("sequence_mask", cap=5.0)[1], torch.tensor([4.0, 4.0]))


def test_none_is_exactly_one():
    c = mismatch_correction(OLD, SAMPLER, MASK, mode="none")
    assert torch.equal(c.weight, torch.ones(2, 2))
    assert not c.masked.any() and not c.truncated.any()
    torch.testing.assert_close(c.log_ratio, (OLD - SAMPLER) * MASK)  # still computed, for the stats


def test_floor():
    # rho = [[2, 0.5], [2, 2]], floor 0.6 (cap 3): truncate lifts 0.5 to 0.6, mask zeroes it.
    truncate = _weight("token_truncate", cap=3.0, floor=0.6)
    torch.testing.assert_close(truncate, torch.tensor([[2.0, 0.6], [2.0, 2.0]]))
    torch.testing.assert_close(
        _weight("token_mask", cap=3.0, floor=0.6), torch.tensor([[2.0, 0.0], [2.0, 2.0]])
    )


@pytest.mark.parametrize("mode", MODES)
def test_padding_ignored(mode):
    # A padded third token with a huge (even infinite) difference changes nothing; its weight stays 1.
    old = torch.cat([OLD, torch.tensor([[0.0], [0.0]])], dim=1)
    sampler = torch.cat([SAMPLER, torch.tensor([[-50.0], [-math.inf]])], dim=1)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    c = mismatch_correction(old, sampler, mask, mode=mode, cap=3.0)
    torch.testing.assert_close(c.weight[:, :2], _weight(mode, cap=3.0))
    assert torch.equal(c.weight[:, 2], torch.ones(2))
    assert torch.equal(c.log_ratio[:, 2], torch.zeros(2))
    assert not c.masked[:, 2].any()


def test_nan_sampler_logprob_is_ratio_one():
    sampler = SAMPLER.clone()
    sampler[0, 0] = float("nan")  # row 0 becomes rho = [1, 0.5]
    c = mismatch_correction(OLD, sampler, MASK, mode="token_truncate", cap=3.0)
    torch.testing.assert_close(c.weight[0], torch.tensor([1.0, 0.5]))
    assert c.log_ratio[0, 0] == 0
    seq = mismatch_correction(OLD, sampler, MASK, mode="sequence_truncate", cap=3.0)
    torch.testing.assert_close(seq.weight[0], torch.tensor([0.5, 0.5]))
    assert not torch.isnan(seq.weight).any()


def test_rows_leave_other_rows_at_one():
    rows = torch.tensor([False, True])
    c = mismatch_correction(OLD, SAMPLER, MASK, mode="sequence_mask", cap=5.0, rows=rows)
    assert torch.equal(c.weight[0], torch.ones(2))
    torch.testing.assert_close(c.weight[1], torch.tensor([4.0, 4.0]))
    t = mismatch_correction(OLD, SAMPLER, MASK, mode="token_mask", cap=1.5, rows=torch.tensor([True, False]))
    assert torch.equal(t.weight[1], torch.ones(2))
    torch.testing.assert_close(t.weight[0], torch.tensor([0.0, 0.5]))


def test_bf16_inputs_work_in_float32():
    c = mismatch_correction(OLD.bfloat16(), SAMPLER.bfloat16(), MASK.bool(), mode="token_truncate", cap=1.5)
    assert c.weight.dtype == torch.float32
    torch.testing.assert_close(c.weight, torch.tensor([[1.5, 0.5], [1.5, 1.5]]), atol=1e-2, rtol=1e-2)


def test_huge_sequence_difference_is_finite():
    old = torch.zeros(1, 100)
    sampler = torch.full((1, 100), -5.0)  # log rho_seq = 500: exp would overflow float32
    c = mismatch_correction(old, sampler, torch.ones(1, 100), mode="sequence_truncate", cap=3.0)
    assert torch.equal(c.weight, torch.full((1, 100), 3.0))
    stats = c.stats(torch.ones(1, 100))
    assert all(math.isfinite(v) for v in stats.values())


def test_stats_token_mode():
    # rho = [[2, 0.5], [2, 2]] with the last token padded: counted tokens have rho 2, 0.5, 2.
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    c = mismatch_correction(OLD, SAMPLER, mask, mode="token_mask", cap=1.5)
    s = c.stats(mask)
    assert s["mismatch/ratio_mean"] == pytest.approx(4.5 / 3)
    assert s["mismatch/ratio_min"] == pytest.approx(0.5)
    assert s["mismatch/ratio_max"] == pytest.approx(2.0)
    assert s["mismatch/abs_logp_diff_mean"] == pytest.approx(math.log(2))
    assert s["mismatch/abs_logp_diff_max"] == pytest.approx(math.log(2))
    assert s["mismatch/masked_share"] == pytest.approx(2 / 3)
    assert s["mismatch/truncated_share"] == 0.0
    assert "mismatch/seq_ratio_mean" not in s
    t = mismatch_correction(OLD, SAMPLER, mask, mode="token_truncate", cap=1.5).stats(mask)
    assert t["mismatch/truncated_share"] == pytest.approx(2 / 3)
    assert t["mismatch/masked_share"] == 0.0


def test_stats_sequence_mode():
    c = mismatch_correction(OLD, SAMPLER, MASK, mode="sequence_truncate", cap=3.0)
    s = c.stats(MASK)
    assert s["mismatch/seq_ratio_mean"] == pytest.approx((1.0 + 4.0) / 2)
    assert s["mismatch/truncated_share"] == pytest.approx(1 / 2)  # one of two sequences
    assert s["mismatch/ratio_mean"] == pytest.approx(6.5 / 4)  # per-token ratios 2, 0.5, 2, 2
    m = mismatch_correction(OLD, SAMPLER, MASK, mode="sequence_mask", cap=3.0).stats(MASK)
    assert m["mismatch/masked_share"] == pytest.approx(2 / 4)


def test_stats_skip_nan_and_uncorrected_rows():
    sampler = SAMPLER.clone()
    sampler[1, 0] = float("nan")
    rows = torch.tensor([False, True])
    s = mismatch_correction(OLD, sampler, MASK, mode="token_truncate", cap=3.0, rows=rows).stats(MASK)
    # Only row 1 counts: ratios [1 (NaN), 2]; the NaN token is left out of the differences.
    assert s["mismatch/ratio_mean"] == pytest.approx(1.5)
    assert s["mismatch/abs_logp_diff_mean"] == pytest.approx(math.log(2))


def test_stats_empty_mask_is_zero():
    empty = torch.zeros(2, 2)
    for mode in MODES:
        s = mismatch_correction(OLD, SAMPLER, empty, mode=mode).stats(empty)
        assert s and all(v == 0.0 for v in s.values()), (mode, s)


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"mode": "seq_mask"}, "mode"),
        ({"cap": 0.0}, "cap"),
        ({"cap": -1.0}, "cap"),
        ({"cap": float("nan")}, "cap"),
        ({"floor": -0.1}, "floor"),
        ({"floor": 4.0, "cap": 3.0}, "floor"),
    ],
)
def test_invalid_arguments_raise(kw, name):
    with pytest.raises(ValueError, match=f"^{name} must"):
        mismatch_correction(OLD, SAMPLER, MASK, **kw)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        mismatch_correction(OLD, SAMPLER[:, :1], MASK)
    with pytest.raises(ValueError, match="rows"):
        mismatch_correction(OLD, SAMPLER, MASK, rows=torch.tensor([True]))
