"""Sampler/trainer mismatch correction for policy-gradient losses, as pure functions.

The sampler (vLLM) draws completions and reports per-token log-probs ``sampler_logp``; the trainer recomputes
them as ``old_logp``. Different kernels and precisions (bf16 vs fp32) make the two differ, so the samples are
slightly off-policy for the trainer. The per-token loss is multiplied by a weight derived from the importance
ratio ``rho = exp(old_logp - sampler_logp)``, truncated or masked at ``cap`` so a few outliers cannot blow up
the gradient.

Semantics follow TRL 1.16's ``vllm_importance_sampling_correction`` (``trl/trainer/grpo_trainer.py``) so
results are comparable: differences are taken under the mask only, a NaN sampler log-prob (vLLM could not
score the token) counts as difference 0 (ratio 1), sequence modes use ``exp(sum of per-token log-ratios)``,
and there is no lower bound unless ``floor`` is given (TRL's ``clip_min`` defaults to None).

Shapes: ``[n, T]`` tensors hold n sequences' per-token values, right-padded; ``mask`` is 1 for tokens that
count and 0 for padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Mode = Literal["none", "token_truncate", "token_mask", "sequence_truncate", "sequence_mask"]
MODES: tuple[str, ...] = ("none", "token_truncate", "token_mask", "sequence_truncate", "sequence_mask")

# Log-ratios are clamped to this before exp: exp(20) ~ 4.9e8 is far above any sensible cap, and finite, so
# a wildly off sequence (a sum of many per-token differences) gives a large ratio, not inf (inf * 0 = NaN).
MAX_LOG_RATIO = 20.0


def _ratio(log_ratio: Tensor) -> Tensor:
    return torch.exp(log_ratio.clamp(max=MAX_LOG_RATIO))


@dataclass
class Correction:
    """The result of :func:`mismatch_correction`.

    ``masked`` and ``truncated`` are bool ``[n, T]`` for every mode; for sequence modes a flagged row has all
    its masked-in tokens flagged. They are False on padding and on rows not corrected; the weight is 0
    wherever ``masked`` is True.
    """

    weight: Tensor  # [n, T] float32 loss multiplier (no grad); 1 on padding, uncorrected rows, mode "none"
    log_ratio: Tensor  # [n, T] float32 old_logp - sampler_logp on masked-in tokens of corrected rows, else 0
    masked: Tensor  # bool [n, T]: tokens whose weight the mask modes set to 0
    truncated: Tensor  # bool [n, T]: tokens whose ratio a truncate mode capped (ratio > cap)
    rows: Tensor  # bool [n]: rows corrected (the others keep weight 1 and are left out of the stats)
    scored: Tensor  # bool [n, T]: tokens where both log-probs were available (not NaN)
    mode: str

    def stats(self, mask: Tensor) -> dict[str, float]:
        """Diagnostics over the masked-in tokens of corrected rows; zeros (never NaN) when there are none.

        ``ratio_*`` are over the per-token ratio ``exp(log_ratio)``; ``abs_logp_diff_*`` leave out tokens with
        a NaN log-prob (as TRL does: counting them as 0 would understate the divergence); ``masked_share`` is
        the share of tokens zeroed; ``truncated_share`` the share of tokens (token modes) or sequences
        (sequence modes) whose ratio exceeded the cap under a truncate mode; ``seq_ratio_mean`` (sequence
        modes only) the mean sequence ratio before truncation or masking.
        """
        tok = mask.bool() & self.rows[:, None]
        count = tok.sum()
        ratio = _ratio(self.log_ratio)

        def mean(x: Tensor, sel: Tensor) -> Tensor:
            n = sel.sum()
            return torch.where(n > 0, (x * sel).sum() / n.clamp(min=1), 0.0)

        def extreme(x: Tensor, sel: Tensor, fn: str) -> Tensor:
            fill = torch.inf if fn == "amin" else -torch.inf
            value = getattr(torch.where(sel, x, fill), fn)()
            return torch.where(sel.any(), value, 0.0)

        scored = tok & self.scored
        diff = self.log_ratio.abs()
        sequence = self.mode.startswith("sequence")
        seqs = tok.any(dim=1)
        if sequence:
            truncated = mean(self.truncated.any(dim=1).float(), seqs)
        else:
            truncated = mean(self.truncated.float(), tok)
        values = {
            "mismatch/ratio_mean": mean(ratio, tok),
            "mismatch/ratio_min": extreme(ratio, tok, "amin"),
            "mismatch/ratio_max": extreme(ratio, tok, "amax"),
            "mismatch/abs_logp_diff_mean": mean(diff, scored),
            "mismatch/abs_logp_diff_max": extreme(diff, scored, "amax"),
            "mismatch/masked_share": (self.masked & tok).sum() / count.clamp(min=1),
            "mismatch/truncated_share": truncated,
        }
        if sequence:
            # log_ratio is already 0 off the mask, so the row sum is the sequence's log-ratio.
            values["mismatch/seq_ratio_mean"] = mean(_ratio(self.log_ratio.sum(dim=1)), seqs)
        # One stack, one transfer: a single device sync instead of one per statistic.
        return dict(zip(values, torch.stack([v.float() for v in values.values()]).tolist(), strict=True))


@torch.no_grad()
def mismatch_correction(
    old_logp: Tensor,
    sampler_logp: Tensor,
    mask: Tensor,
    mode: Mode = "sequence_mask",
    cap: float = 3.0,
    rows: Tensor | None = None,
    floor: float | None = None,
) -> Correction:
    """Per-token loss weights correcting for the sampler/trainer log-prob mismatch.

    With ``rho_t = exp(old_logp_t - sampler_logp_t)`` and ``rho_seq = exp(sum_t log rho_t)`` over the row's
    masked-in tokens:

    - ``none``: weight 1 everywhere (the log-ratios are still computed, for the stats).
    - ``token_truncate``: ``w_t = min(rho_t, cap)``.
    - ``token_mask``: ``w_t = rho_t`` if ``rho_t <= cap`` else 0.
    - ``sequence_truncate``: ``w = min(rho_seq, cap)`` on the whole row.
    - ``sequence_mask``: ``w = rho_seq`` if ``rho_seq <= cap`` else 0, on the whole row.

    ``floor`` (default None: no lower bound, as in TRL) clamps ratios from below in truncate modes and zeroes
    ratios below it in mask modes. ``rows`` (bool ``[n]``, default all) selects the rows to correct; the
    others keep weight exactly 1, e.g. rows drawn from an exploration proposal, which carry their own
    importance weight.

    The weight is 1 on padding rather than 0: the loss is masked there anyway, and 1 keeps the weight neutral
    for callers that multiply before masking. Computation is in float32 whatever the input dtype; log-ratios
    are clamped at ``MAX_LOG_RATIO`` before exp so no weight is inf.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not cap > 0:
        raise ValueError(f"cap must be > 0, got {cap}")
    if floor is not None and not 0 <= floor <= cap:
        raise ValueError(f"floor must be in [0, cap={cap}], got {floor}")
    if old_logp.shape != sampler_logp.shape or old_logp.shape != mask.shape or old_logp.dim() != 2:
        raise ValueError(
            f"old_logp, sampler_logp and mask must share one [n, T] shape, got {tuple(old_logp.shape)}, "
            f"{tuple(sampler_logp.shape)}, {tuple(mask.shape)}"
        )
    n = old_logp.shape[0]
    device = old_logp.device
    if rows is None:
        rows = torch.ones(n, dtype=torch.bool, device=device)
    elif rows.shape != (n,):
        raise ValueError(f"rows must have shape ({n},), got {tuple(rows.shape)}")
    rows = rows.to(device=device, dtype=torch.bool)

    tok = mask.bool() & rows[:, None]
    diff = old_logp.float() - sampler_logp.float()
    scored = ~torch.isnan(diff)
    # where, not multiply: an inf difference on padding times a 0 mask would be NaN.
    log_ratio = torch.where(tok & scored, diff, 0.0)

    ones = torch.ones_like(log_ratio)
    no = torch.zeros_like(tok)
    if mode == "none":
        return Correction(ones, log_ratio, no, no.clone(), rows, scored, mode)

    if mode.startswith("sequence"):
        ratio = _ratio(log_ratio.sum(dim=1, keepdim=True)).expand_as(log_ratio)
    else:
        ratio = _ratio(log_ratio)
    lo = 0.0 if floor is None else floor

    if mode.endswith("truncate"):
        weight = ratio.clamp(min=lo, max=cap)
        truncated, masked = tok & (ratio > cap), no
    else:
        masked = tok & ((ratio > cap) | (ratio < lo))
        weight = torch.where(masked, 0.0, ratio)
        truncated = no
    weight = torch.where(tok, weight, 1.0)
    return Correction(weight, log_ratio, masked, truncated, rows, scored, mode)
