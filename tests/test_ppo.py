"""PPO's math against hand-computed numbers, and its training step on a tiny model built here."""

from __future__ import annotations

import io

import pytest
import torch
from test_grpo import PROMPT, _alone, _group, _policy, _seq_logprob

from raftkit.algorithms.ppo import PPO, PPOConfig
from raftkit.algorithms.ppo_math import clipped_value_loss, gae, kl_penalised_rewards, masked_whiten
from raftkit.rollouts import Batch, Rollout
from raftkit.sampling.sampler import SamplingParams


def _close(actual: torch.Tensor, expected, atol=1e-6):
    expected = torch.tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual.double(), expected, atol=atol, rtol=0)


# --------------------------------------------------------------------------- GAE


def test_gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    # γ = λ = 1: A_t = Σ_{s≥t} r_s − V_t (the value after the last token is 0), R_t = reverse cumulative sum.
    # Row 0: r (1, 2, 3) -> R (6, 5, 3); V (.5, 1, 1.5) -> A (5.5, 4, 1.5).
    # Row 1 has 2 tokens; its padding holds 99 and 77, which must not reach the real tokens:
    # r (1, 1) -> R (2, 1); V (2, 3) -> A (0, -2).
    rewards = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 99.0]])
    values = torch.tensor([[0.5, 1.0, 1.5], [2.0, 3.0, 77.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    _close(ret, [[6.0, 5.0, 3.0], [2.0, 1.0, 0.0]])
    _close(adv, [[5.5, 4.0, 1.5], [0.0, -2.0, 0.0]])


def test_gae_with_discount_by_hand():
    # r (1, 0, 2), V (1, 2, 1), γ = λ = .5 (γλ = .25):
    #   δ_2 = 2 + .5·0 − 1 = 1            A_2 = 1
    #   δ_1 = 0 + .5·1 − 2 = −1.5         A_1 = −1.5 + .25·1 = −1.25
    #   δ_0 = 1 + .5·2 − 1 = 1            A_0 = 1 + .25·(−1.25) = .6875
    #   R = A + V = (1.6875, .75, 2)
    # The same sequence padded to width 5 with junk must give the same numbers and zeros on the padding.
    rewards = torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0], [1.0, 0.0, 2.0, 5.0, 5.0]])
    values = torch.tensor([[1.0, 2.0, 1.0, 0.0, 0.0], [1.0, 2.0, 1.0, -4.0, 8.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0]] * 2)
    adv, ret = gae(rewards, values, mask, gamma=0.5, lam=0.5)
    _close(adv, [[0.6875, -1.25, 1.0, 0.0, 0.0]] * 2)
    _close(ret, [[1.6875, 0.75, 2.0, 0.0, 0.0]] * 2)
    # λ = 1: returns are the discounted reward sums R_2 = 2, R_1 = 0 + .5·2 = 1, R_0 = 1 + .5·1 = 1.5.
    _, ret = gae(rewards[:1, :3], values[:1, :3], mask[:1, :3], gamma=0.5, lam=1.0)
    _close(ret, [[1.5, 1.0, 2.0]])
    # λ = 0: the advantages are the one-step TD errors δ = (1, −1.5, 1).
    adv, _ = gae(rewards[:1, :3], values[:1, :3], mask[:1, :3], gamma=0.5, lam=0.0)
    _close(adv, [[1.0, -1.5, 1.0]])


# --------------------------------------------------------------------------- rewards, whitening, value loss


def test_kl_penalised_rewards_by_hand():
    # kl_coef .1. Row 0: logp − ref = (.5, 0, .5) -> (−.05, 0, −.05), score 2 on its last token -> 1.95.
    # Row 1 (1 token): logp − ref = −.5 -> +.05, score −1 -> −.95; the 9s on its padding never count.
    # Row 2 has no token: nothing at all, not even its score.
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    ref = torch.tensor([[-1.5, -2.0, -1.0], [-0.5, 9.0, 9.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    rewards = kl_penalised_rewards(torch.tensor([2.0, -1.0, 7.0]), logp, ref, mask, kl_coef=0.1)
    _close(rewards, [[-0.05, 0.0, 1.95], [-0.95, 0.0, 0.0], [0.0, 0.0, 0.0]])


def test_masked_whiten_by_hand():
    # Masked entries (1, 2, 3): mean 2, unbiased var (1 + 0 + 1) / 2 = 1 -> (−1, 0, 1); padding (100) -> 0.
    x = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0])
    s = 1 / (1 + 1e-8) ** 0.5
    _close(masked_whiten(x, mask), [-s, 0.0, s, 0.0])
    _close(masked_whiten(x, mask, shift_mean=False), [2 - s, 2.0, 2 + s, 0.0])
    _close(masked_whiten(torch.tensor([5.0]), torch.tensor([1.0])), [0.0])  # one entry: 0, not a NaN


def test_clipped_value_loss_by_hand():
    # clip .2, so v may move within v_old ± .2:
    #   t0: v 1, v_old .5 -> clipped .7; (1−2)² = 1, (.7−2)² = 1.69 -> max 1.69, the clipped term (no grad)
    #   t1: v 0, v_old .5 -> clipped .3; (0−2)² = 4, (.3−2)² = 2.89 -> max 4, unclipped: d/dv = (v−R)/3 = −2/3
    #   t2: v = v_old = 2; both terms (2−0)² = 4: a tie is not counted as clipped; d/dv = (2 − 0)/3 = 2/3
    #   t3: padding.
    # loss = .5·(1.69 + 4 + 4) / 3 = 1.615, clip fraction 1/3.
    values = torch.tensor([[1.0, 0.0, 2.0, 5.0]], requires_grad=True)
    old = torch.tensor([[0.5, 0.5, 2.0, 9.0]])
    returns = torch.tensor([[2.0, 2.0, 0.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    vl = clipped_value_loss(values, old, returns, mask, clip=0.2)
    assert float(vl.loss.detach()) == pytest.approx(1.615, abs=1e-6)
    assert float(vl.clip_frac) == pytest.approx(1 / 3)
    vl.loss.backward()
    _close(values.grad, [[0.0, -2 / 3, 2 / 3, 0.0]])
    # Normalised by the whole batch's 6 tokens (micro-batching): half of each.
    half = clipped_value_loss(values.detach(), old, returns, mask, clip=0.2, tokens=6)
    assert (float(half.loss), float(half.clip_frac)) == pytest.approx((1.615 / 2, 1 / 6))


# --------------------------------------------------------------------------- the step on a tiny model

SAMPLING = SamplingParams(temperature=1.0, max_new_tokens=4)


def _ppo(policy, k=4, lr=1e-3, **cfg):
    return PPO(policy, PPOConfig(**cfg), lr=lr, total_steps=10, k=k, sampling=SAMPLING)


def test_first_step_by_hand(tiny_model_path):
    # kl_coef 0, γ = λ = 1, μ = 1, lr 0. The value head starts at zero, so V = 0 and the advantages are the
    # returns: completion 0 (score 1, 3 tokens) -> (1, 1, 1), completion 1 (score 0, 1 token) -> (0).
    # Whitened over the 4 tokens: mean .75, unbiased var (3·.0625 + .5625) / 3 = .25, std .5
    #   -> (.5, .5, .5) and (−1.5). At ratio 1 the policy loss is −mean(A) = 0 (whitened).
    # Value loss: .5·(1 + 1 + 1 + 0) / 4 = .375; loss = 0 + vf_coef .1 x .375 = .0375.
    # The policy loss is 0 whatever its sign (whitened advantages), so its gradient is checked: at ratio 1
    # it is -Σ_t A_t ∇log π(y_t) / 4 (the zero value head passes no gradient into the model).
    policy = _policy(tiny_model_path)
    rollouts, scores = _group([[300, 301, 302], [400]], [1.0, 0.0])
    algo = _ppo(policy, k=2, lr=0.0, kl_coef=0.0, gamma=1.0, lam=1.0, num_iterations=1)
    param = policy.model.model.layers[-1].mlp.down_proj.weight
    grads = []
    hook = param.register_post_accumulate_grad_hook(lambda p: grads.append(p.grad.clone()))
    try:
        result = algo.update(Batch(["p"]), rollouts, scores, 0)
    finally:
        hook.remove()
    policy.model.zero_grad()
    logp = torch.cat([_alone(policy, PROMPT, [300, 301, 302]), _alone(policy, PROMPT, [400])])
    (-(torch.tensor([0.5, 0.5, 0.5, -1.5]) * logp).sum() / 4).backward()
    torch.testing.assert_close(grads[0], param.grad, atol=1e-7, rtol=1e-4)
    m = result.metrics
    assert m["policy_loss"] == pytest.approx(0.0, abs=1e-6)
    assert m["value_loss"] == pytest.approx(0.375, abs=1e-6)
    assert m["loss"] == pytest.approx(0.0375, abs=1e-6)
    assert (m["advantage/mean"], m["returns/mean"], m["value/mean"]) == pytest.approx((0.75, 0.75, 0.0))
    assert m["clip_ratio/region_mean"] == m["value_clip_frac"] == 0.0 and "kl" not in m
    assert [s["advantage"] for s in result.per_sample] == pytest.approx([0.5, -1.5], abs=1e-5)
    assert [s["value"] for s in result.per_sample] == [0.0, 0.0]
    assert algo.reference is None  # kl_coef 0: no reference model is loaded


def test_a_self_dialogue_cut_is_trained_with_eos(tiny_model_path):
    # As test_first_step_by_hand, but completion 0 is [300, 301] cut at a self-dialogue turn: it ended
    # there, so it is trained with EOS appended and has 3 tokens again: the same figures. Without the EOS
    # the value loss would be .5·(1 + 1 + 0) / 3 = 1/3 and the advantage mean 2/3.
    policy = _policy(tiny_model_path)
    rollouts, scores = _group([[300, 301], [400]], [1.0, 0.0])
    rollouts[0].finish_reason = "truncated"
    algo = _ppo(policy, k=2, lr=0.0, kl_coef=0.0, gamma=1.0, lam=1.0, num_iterations=1)
    m = algo.update(Batch(["p"]), rollouts, scores, 0).metrics
    assert m["value_loss"] == pytest.approx(0.375, abs=1e-6)
    assert m["advantage/mean"] == pytest.approx(0.75)


def test_update_raises_the_best_completion_and_fits_the_values(tiny_model_path):
    policy = _policy(tiny_model_path)
    completions = [[300, 301, 302], [400, 401], [500, 501, 502], [600]]
    rollouts, scores = _group(completions, [5.0, 1.0, 1.0, 0.0])
    rollouts.append(Rollout(0, "p", "c", [700], [0.0], prompt_ids=list(PROMPT)))
    scores.total.append(9.0)
    scores.rewards["r"].append(9.0)
    scores.dropped.append(True)  # dropped: out of the loss whatever its score
    before = [_seq_logprob(policy, PROMPT, c) for c in completions]
    algo = _ppo(policy, k=5, lr=1e-3, micro_batch_size=2)  # defaults: kl_coef .05, μ = 2
    head_before = algo.value_head.weight.detach().clone()
    result = algo.update(Batch(["p"]), rollouts, scores, 0)
    after = [_seq_logprob(policy, PROMPT, c) for c in completions]
    assert after[0] > before[0] + 1e-3  # the best-scored completion became more likely
    assert after[3] < before[3] - 1e-3  # the worst one less likely
    m = result.metrics
    for key in ("loss", "policy_loss", "value_loss", "kl", "clip_ratio/region_mean", "value_clip_frac",
                "grad_norm"):
        assert torch.isfinite(torch.tensor(m[key])), key
    assert m["value_loss"] > 0 and m["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy starts as the ref
    assert m["trained_sequences"] == 4
    assert not torch.equal(algo.value_head.weight, head_before)  # the value head learned
    assert result.per_sample[0]["advantage"] > 0 > result.per_sample[3]["advantage"]
    assert result.per_sample[4] == {"advantage": 0.0}


def test_state_dict_round_trip(tiny_model_path):
    policy = _policy(tiny_model_path)
    algo = _ppo(policy, k=2, kl_coef=0.0)
    rollouts, scores = _group([[300, 301], [400]], [1.0, 0.0])
    algo.update(Batch(["p"]), rollouts, scores, 0)
    buffer = io.BytesIO()
    torch.save(algo.state_dict(), buffer)  # as the loop's checkpoint does
    buffer.seek(0)
    fresh = _ppo(policy, k=2, kl_coef=0.0)
    fresh.load_state_dict(torch.load(buffer, weights_only=False))
    assert algo.value_head.weight.abs().sum() > 0  # trained, so the copy is not just a fresh zero head
    assert torch.equal(fresh.value_head.weight, algo.value_head.weight)
    assert torch.equal(fresh.value_head.bias, algo.value_head.bias)
    assert fresh.scheduler.get_last_lr() == algo.scheduler.get_last_lr()
    moments = [s["exp_avg"] for s in fresh.optimizer.state_dict()["state"].values()]
    assert len(moments) == len(algo.optimizer.state_dict()["state"]) and moments


def test_config_registry_and_options():
    from click.testing import CliRunner

    from raftkit import algorithms
    from raftkit.api import build_configs
    from raftkit.cli import main
    from raftkit.config import AlignConfig

    assert algorithms.get("ppo").cls is PPO
    cfg = AlignConfig(algo="ppo")
    assert (cfg.lr, cfg.prompts_per_iteration) == (1e-5, 16)
    _, ppo_cfg = build_configs({"algo": "ppo", "kl_coef": "0.1", "num_iterations": "4"})
    assert isinstance(ppo_cfg, PPOConfig) and (ppo_cfg.kl_coef, ppo_cfg.num_iterations) == (0.1, 4)
    for bad, match in (({"explore_hint": "auto"}, "on-policy"), ({"lam": 1.5}, "lam"),
                       ({"cliprange_value": 0}, "cliprange_value"), ({"kl_coef": -1}, "kl_coef")):
        with pytest.raises(ValueError, match=match):
            PPOConfig(**bad)
    help_text = CliRunner().invoke(main, ["align", "--algo", "ppo", "--help"]).output
    for option in ("--kl-beta", "--vf-coef", "--cliprange-value", "--gamma", "--gae-lambda",
                   "--whiten-advantages", "(also --kl-coef)", "(also --lam)"):
        assert option in help_text


def test_sample_is_k_on_policy_completions(tiny_model_path):
    class Sampler:
        def __init__(self):
            self.calls = []

        def generate(self, prompts, k, params):
            self.calls.append((list(prompts), k, params))
            return []

    sampler = Sampler()
    algo = _ppo(_policy(tiny_model_path), k=3, kl_coef=0.0)
    algo.sample(sampler, Batch(["a", "b"]), 1)
    assert sampler.calls == [(["a", "b"], 3, SAMPLING)]


def test_inspect_shows_the_ppo_metrics(tiny_model_path, tmp_path):
    from click.testing import CliRunner

    from raftkit.cli import main
    from raftkit.runs.rundir import RunWriter

    rollouts, scores = _group([[300, 301], [400]], [1.0, 0.0])
    metrics = _ppo(_policy(tiny_model_path), k=2).update(Batch(["p"]), rollouts, scores, 0).metrics
    writer = RunWriter.create(tmp_path / "run", {"algo": "ppo"}, "ppo")
    writer.write_metrics(1, {"reward/total/mean": 0.5, **metrics})
    writer.commit_iteration(1, {"reward/total/mean": 0.5, **metrics})
    writer.finish()
    out = CliRunner().invoke(main, ["inspect", str(tmp_path / "run")]).output
    header = next(line for line in out.splitlines() if line.startswith("iter "))
    for label in ("kl", "loss", "v loss", "clip"):
        assert label in header, label
