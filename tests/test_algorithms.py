"""The algorithm registry, and RAFT++, Reinforce-Rej and GRPO's answer gate, exploration share and mismatch
correction against hand-computed numbers on a tiny model built here."""

from __future__ import annotations

import math
import types
from collections import defaultdict

import pluggy
import pytest
import torch
from test_grpo import PROMPT, _alone, _group, _policy, _with_ratios

from raftkit import algorithms
from raftkit.algorithms.grpo import GRPO, GRPOConfig, answer_gated_advantages, hint_floors, unearned_share
from raftkit.algorithms.losses import BatchSize, group_advantages
from raftkit.algorithms.raftpp import RAFTpp, RAFTppConfig
from raftkit.algorithms.reinforce_rej import ReinforceRej, ReinforceRejConfig, silent_prompts
from raftkit.rewards import Scores, hookspecs
from raftkit.rollouts import Batch, Rollout
from raftkit.sampling.sampler import SamplingParams

SAMPLING = SamplingParams(temperature=1.0, max_new_tokens=4)


def _make(cls, config, policy, k, lr=0.0):
    return cls(policy, config, lr=lr, total_steps=10, k=k, sampling=SAMPLING)


def _two_prompts(completions, rewards):
    """Prompt 0 gets the first half of the samples, prompt 1 the second."""
    rollouts, scores = _group(completions, rewards)
    for r in rollouts[len(rollouts) // 2:]:
        r.prompt_index = 1
    return rollouts, scores


# --------------------------------------------------------------------------- the registry


def test_builtin_algorithms_register_like_plugins():
    found, failures = algorithms.load_algorithms()
    assert {"raft", "raftpp", "reinforce_rej", "grpo"} <= set(found)
    assert found["grpo"].plugin.endswith("algorithms") and not failures
    assert algorithms.get("raftpp").config is RAFTppConfig


def test_a_third_party_algorithm_and_the_errors():
    class Echo(GRPO):
        """Echo: a plugin's algorithm."""

        name = "echo"

    def manager(*registers):
        pm = pluggy.PluginManager("raftkit")
        pm.add_hookspecs(hookspecs)
        for i, reg in enumerate(registers):
            module = types.SimpleNamespace(register_algorithms=hookspecs.hookimpl(reg))
            pm.register(module, name=f"plugin{i}")
        return pm

    pm = manager(lambda register: register(Echo))
    assert algorithms.get("echo", pm).cls is Echo
    assert algorithms.get("echo", pm).description == "Echo: a plugin's algorithm."
    with pytest.raises(algorithms.AlgorithmError, match="Did you mean 'echo'"):
        algorithms.get("ecko", pm)
    # Something that is not an algorithm is reported, and the other plugins still load.
    found, failures = algorithms.load_algorithms(manager(lambda register: register(len),
                                                         lambda register: register(Echo)))
    assert "echo" in found and "not an algorithm" in failures["plugin0"]
    with pytest.raises(algorithms.AlgorithmError, match="registered twice"):
        algorithms.load_algorithms(manager(lambda register: register(Echo), lambda register: register(Echo)))


def test_unknown_algo_is_a_config_error():
    from raftkit.config import AlignConfig, ConfigError

    with pytest.raises(ConfigError, match="Did you mean 'grpo'"):
        AlignConfig(algo="grpoo")
    assert AlignConfig(algo="raftpp").lr == RAFTpp.default_lr
    assert AlignConfig(algo="reinforce_rej").prompts_per_iteration == ReinforceRej.default_prompts


# --------------------------------------------------------------------------- Reinforce-Rej


def test_silent_prompts_by_hand():
    rollouts, _ = _two_prompts([[1]] * 4, [0.0] * 4)
    assert silent_prompts(rollouts, torch.tensor([0.5, -0.5, 0.0, 0.0])) == {1}
    assert silent_prompts(rollouts, torch.tensor([0.0, 0.0, 0.0, -1.0])) == {0}
    assert silent_prompts(rollouts, torch.zeros(4)) == {0, 1}


def _answered(completions, rewards, texts):
    """Two prompts of len(texts) // 2 samples each, whose accepted answer is 'Paris'."""
    rollouts, scores = _two_prompts(completions, rewards)
    for r, text in zip(rollouts, texts, strict=True):
        r.completion = text
    return Batch(["p", "q"], columns={"answers": [["Paris"], ["Paris"]]}), rollouts, scores


@pytest.mark.parametrize("advantage", ["centered", "reward"])
def test_reinforce_rej_rejects_a_prompt_whose_samples_all_missed_the_answer(tiny_model_path, advantage):
    # Prompt 0: totals (1, 0) but both samples lost the answer: the gate gives both advantage 0, so the
    # prompt has no signal and leaves the batch (and the loss normaliser) although its totals differ.
    # Prompt 1: both answer, totals (3, 1): centred (+1, -1), raw (3, 1); it stays.
    policy = _policy(tiny_model_path)
    batch, rollouts, scores = _answered([[300], [400], [500], [600]], [1.0, 0.0, 3.0, 1.0],
                                        ["Lyon", "Nice", "Paris", "It is Paris"])
    algo = _make(ReinforceRej, ReinforceRejConfig(is_correction="none", advantage=advantage), policy, k=2)
    target = algo.targets(batch, rollouts, scores)
    assert target.advantages.tolist() == {"centered": [0.0, 0.0, 1.0, -1.0],
                                          "reward": [0.0, 0.0, 3.0, 1.0]}[advantage]
    assert target.in_loss == [2, 3] and target.sequences == 2
    assert target.metrics["rejected_prompts"] == 1


def test_reinforce_rej_keeps_a_prompt_whose_misses_include_a_flood(tiny_model_path):
    # Every sample of prompt 0 misses, but a filter hit sample 0: the gate pushes it down (clean 0 against
    # the group's mean 1/2: -1/2), so the prompt has signal and stays. Prompt 1 ties (2, 2): rejected.
    policy = _policy(tiny_model_path)
    batch, rollouts, scores = _answered([[300], [400], [500], [600]], [1.0, 0.0, 2.0, 2.0],
                                        ["Lyon", "Nice", "Paris", "Paris"])
    scores.hits["repeat"] = [3, 0, 0, 0]
    algo = _make(ReinforceRej, ReinforceRejConfig(is_correction="none"), policy, k=2)
    target = algo.targets(batch, rollouts, scores)
    assert target.advantages.tolist() == [-0.5, 0.0, 0.0, 0.0]
    assert target.in_loss == [0, 1] and target.metrics["rejected_prompts"] == 1


def test_reinforce_rej_raw_reward_matches_the_authors_formula(tiny_model_path):
    # Xiong et al. 2025 (RLHFlow/Minimal-RL, compute_reinforce_rej_outcome_advantage): A = r where the
    # group's rewards differ (std > 0), else 0. Three groups of 2 with rewards (1, -1), (1, 1), (0.5, 0):
    #   A = (1, -1), (0, 0) and rejected, (0.5, 0).
    # lr 0, μ = 1, dapo: loss = -Σ A·tokens / kept tokens = -(1·3 - 1·1 + 0.5·2 + 0·1) / 7 = -3/7.
    policy = _policy(tiny_model_path)
    completions = [[300, 301, 302], [400], [500, 501], [600, 601], [700, 701], [800]]
    rewards = [1.0, -1.0, 1.0, 1.0, 0.5, 0.0]
    rollouts, scores = _group(completions, rewards)
    for i, r in enumerate(rollouts):
        r.prompt_index = i // 2
    assert ReinforceRejConfig().advantage == "reward"  # the authors' form is the default
    algo = _make(ReinforceRej, ReinforceRejConfig(is_correction="none"), policy, k=2)
    result = algo.update(Batch(["p", "q", "s"]), rollouts, scores, 1)
    groups = [rewards[i:i + 2] for i in (0, 2, 4)]
    authors = [r if torch.tensor(g).std() > 0 else 0.0 for g in groups for r in g]
    assert [s["advantage"] for s in result.per_sample] == authors == [1.0, -1.0, 0.0, 0.0, 0.5, 0.0]
    assert result.metrics["rejected_prompts"] == 1
    assert result.metrics["loss"] == pytest.approx(-3 / 7, abs=1e-6)
    with pytest.raises(ValueError, match="scale_rewards"):
        ReinforceRejConfig(scale_rewards="group")


@pytest.mark.parametrize("loss_type", ["dapo", "dr_grpo"])
def test_reinforce_rej_loss_by_hand(tiny_model_path, loss_type):
    # Prompt 0: rewards (1, 0), A = r - mean = (+.5, -.5), no std; its samples have 3 and 1 tokens.
    # Prompt 1: rewards (2, 2), tied: rejected, so neither its tokens nor its sequences count.
    # lr 0, μ = 1: per-token loss -A.  dapo: -(.5·3 - .5·1) / 4 tokens = -.25.
    # dr_grpo: the same sum / (2 kept sequences x 4 max tokens) = -.125. GRPO's normalisers would also count
    # prompt 1 (8 tokens, 4 sequences): -.125 and -.0625, which the second half checks.
    policy = _policy(tiny_model_path)
    completions = [[300, 301, 302], [400], [500, 501], [600, 601]]
    rollouts, scores = _two_prompts(completions, [1.0, 0.0, 2.0, 2.0])
    cfg = ReinforceRejConfig(loss_type=loss_type, is_correction="none", advantage="centered")
    result = _make(ReinforceRej, cfg, policy, k=2).update(Batch(["p", "q"]), rollouts, scores, 1)
    assert result.metrics["loss"] == pytest.approx({"dapo": -0.25, "dr_grpo": -0.125}[loss_type], abs=1e-6)
    assert result.metrics["rejected_prompts"] == 1
    assert [s["advantage"] for s in result.per_sample] == [0.5, -0.5, 0.0, 0.0]
    grpo_cfg = GRPOConfig(loss_type=loss_type, scale_rewards="none", beta=0.0, is_correction="none")
    rollouts, scores = _two_prompts(completions, [1.0, 0.0, 2.0, 2.0])
    plain = _make(GRPO, grpo_cfg, policy, k=2).update(Batch(["p", "q"]), rollouts, scores, 1)
    assert plain.metrics["loss"] == pytest.approx({"dapo": -0.125, "dr_grpo": -0.0625}[loss_type], abs=1e-6)


# --------------------------------------------------------------------------- RAFT++


def test_raftpp_selects_like_raft_and_its_first_step_is_sft(tiny_model_path):
    # Rewards (5, 1, 1, 0): local ranking keeps sample 0 alone, advantage 1, so at ratio 1 the loss is
    # -(1/N)·Σ_t r_t = -1 and its gradient is the SFT gradient of sample 0: -mean_t log π(y_t).
    policy = _policy(tiny_model_path)
    completions = [[300, 301, 302], [400, 401], [500], [600]]
    rollouts, scores = _group(completions, [5.0, 1.0, 1.0, 0.0])
    param = policy.model.model.layers[-1].mlp.down_proj.weight
    grads = []
    hook = param.register_post_accumulate_grad_hook(lambda p: grads.append(p.grad.clone()))
    try:
        algo = _make(RAFTpp, RAFTppConfig(num_iterations=1, is_correction="none"), policy, k=4)
        result = algo.update(Batch(["p"]), rollouts, scores, 1)
    finally:
        hook.remove()
    assert result.metrics["loss"] == pytest.approx(-1.0, abs=1e-6)
    assert result.metrics["n_selected"] == 1
    assert [s["selected"] for s in result.per_sample] == [True, False, False, False]
    assert [s["advantage"] for s in result.per_sample] == [1.0, 0.0, 0.0, 0.0]
    policy.model.zero_grad()
    sft_loss = -_alone(policy, PROMPT, completions[0]).mean()
    sft_loss.backward()
    torch.testing.assert_close(grads[0], param.grad, atol=1e-7, rtol=1e-4)


def test_raftpp_clips_after_the_first_step_by_hand(tiny_model_path):
    # On a later step of μ the selected sample's tokens stand at ratios (1.5, 1.1) to π_old. Advantage 1,
    # ε 0.2: the first is clipped at 1.2 (counted, no gradient), the second is not.
    # Loss over the 2 selected tokens: -(1.2 + 1.1) / 2 = -1.15; clipped high 1 of 2, low 0.
    policy = _policy(tiny_model_path)
    rollouts, scores = _group([[300, 301], [400, 401]], [1.0, 0.0])
    algo = _make(RAFTpp, RAFTppConfig(num_iterations=2, is_correction="none"), policy, k=2)
    target = algo.targets(Batch(["p"]), rollouts, scores)
    assert target.advantages.tolist() == [1.0, 0.0] and target.in_loss == [0]
    mb = _with_ratios(algo, policy, rollouts[:1], [1.0], [[1.5, 1.1]])
    sums, size = defaultdict(float), BatchSize(sequences=1, tokens=2, max_completion_length=4)
    loss = algo._backward(mb, size, False, sums, {}, defaultdict(float))
    assert loss == pytest.approx(-1.15, abs=1e-5)
    assert (sums["clip_high"], sums["clip_low"], sums["clip_tokens"]) == (1.0, 0.0, 2.0)


def test_raftpp_never_selects_a_sample_that_lost_the_answer(tiny_model_path):
    policy = _policy(tiny_model_path)
    rollouts, scores = _group([[300], [400]], [5.0, 1.0])
    rollouts[0].completion, rollouts[1].completion = "Lyon 😊😊", "It is Paris."
    batch = Batch(["capital of France?"], columns={"answers": [["Paris"]]})
    result = _make(RAFTpp, RAFTppConfig(is_correction="none"), policy, k=2).update(batch, rollouts, scores, 1)
    assert [s["selected"] for s in result.per_sample] == [False, True]


# --------------------------------------------------------------------------- GRPO: answer gate, exploration


def test_grpo_answer_gate_pushes_misses_down_and_ranks_the_answers_among_themselves(tiny_model_path):
    policy = _policy(tiny_model_path)
    rollouts, scores = _group([[300], [400], [500], [600]], [3.0, 1.0, 0.0, -2.0])
    for r, text in zip(rollouts, ("Lyon 😊", "Paris", "Paris!", "Lyon"), strict=True):
        r.completion = text
    batch = Batch(["capital of France?"], columns={"answers": [["Paris"]]})
    algo = _make(GRPO, GRPOConfig(beta=0.0, scale_rewards="none", is_correction="none"), policy, k=4)
    target = algo.targets(batch, rollouts, scores)
    # Keeping the answer (0, 1, 1, 0) against its mean 1/2: (-1/2, 1/2, 1/2, -1/2); the rewards among the
    # two answers (1, 0) against theirs: (0, 1/2, -1/2, 0). The miss with reward 3 is pushed down, not up.
    assert target.advantages.tolist() == pytest.approx([-0.5, 1.0, 0.0, -0.5])
    assert target.metrics["answer_miss/rate"] == 0.5
    off = _make(GRPO, GRPOConfig(beta=0.0, scale_rewards="none", keep_answers=False), policy, k=4)
    assert off.targets(batch, rollouts, scores).advantages.tolist() == pytest.approx([2.5, 0.5, -0.5, -2.5])


def test_grpo_counts_a_degenerate_answer_as_a_miss(tiny_model_path):
    """Regression: a flood that names the answer counted as keeping it, so in a group of misses the gate
    pushed it up (+3/4 here): measured, half the floods of a run's last batch sat in such groups."""
    rollouts, scores = _group([[300], [400], [500], [600]], [-1.0, 0.0, 0.0, 0.0])
    for r, text in zip(rollouts, ("Cairo 🐝🐝🐝🐝🐝🐝", "Lyon", "Nice", "Lyon."), strict=True):
        r.completion = text
    scores.hits["emoticon_flood"] = [1, 0, 0, 0]
    batch = Batch(["capital of Egypt?"], columns={"answers": [["Cairo"]]})
    algo = _make(GRPO, GRPOConfig(beta=0.0, scale_rewards="none", is_correction="none"),
                 _policy(tiny_model_path), k=4)
    target = algo.targets(batch, rollouts, scores)
    # Every sample missed, so the rewards say nothing; the flood is still pushed down for not being clean:
    # clean (0, 1, 1, 1) against its mean 3/4 gives (-3/4, 1/4, 1/4, 1/4), of which only the push down.
    assert target.advantages.tolist() == pytest.approx([-0.75, 0.0, 0.0, 0.0])
    assert target.metrics["answer_miss/rate"] == 1.0
    # A clean answer beside it: keeping the answer (0, 0, 0, 1) against its mean 1/4; the flood is a miss.
    rollouts[3].completion = "It is Cairo."
    advantages = algo.targets(batch, rollouts, scores).advantages
    assert advantages.tolist() == pytest.approx([-0.25, -0.25, -0.25, 0.75])


def test_grpo_never_pushes_a_hinted_sample_down(tiny_model_path):
    rollouts, scores = _group([[300], [400], [500], [600]], [1.0, 0.0, 3.0, 0.5])
    for r, text, hinted in zip(rollouts, ("Paris", "Lyon", "Paris 😊", "Paris."), (False, False, True, True),
                               strict=True):
        r.completion, r.hinted = text, hinted
    batch = Batch(["capital of France?"], columns={"answers": [["Paris"]]})
    algo = _make(GRPO, GRPOConfig(beta=0.0, scale_rewards="none", is_correction="none"),
                 _policy(tiny_model_path), k=4)
    # Keeping the answer (1, 0, 1, 1): (1/4, -3/4, 1/4, 1/4); the rewards among the answers (1, 3, 0.5),
    # mean 1.5: (-1/2, 0, 3/2, -1). Sums (-1/4, -3/4, 7/4, -3/4): the hinted -3/4 becomes 0, the plain
    # ones keep theirs.
    advantages = algo.targets(batch, rollouts, scores).advantages
    assert advantages.tolist() == pytest.approx([-0.25, -0.75, 1.75, 0.0])


def test_grpo_never_pushes_a_cut_off_sample_up_but_lets_it_go_down(tiny_model_path):
    """An unfinished completion is no example of how to answer, so it never goes up; a cut-off miss and a
    flood that ran to the limit are still examples of what not to do, so they go down."""
    rollouts, scores = _group([[300], [400], [500], [600]], [2.0, 1.0, 0.0, -1.0],
                              truncated=[False, True, True, True])
    for r, text in zip(rollouts, ("It is Paris.", "Paris, the city of", "Lyon is", "Paris 🐝🐝🐝🐝🐝🐝"),
                       strict=True):
        r.completion = text
    scores.hits["emoticon_flood"] = [0, 0, 0, 1]
    batch = Batch(["capital of France?"], columns={"answers": [["Paris"]]})
    policy = _policy(tiny_model_path)
    # Keeping the answer (1, 1, 0, 0): (1/2, 1/2, -1/2, -1/2); the rewards among the answers (2, 1):
    # (1/2, -1/2, 0, 0). Sums (1, 0, -1/2, -1/2): nothing positive is cut off, so nothing changes; the
    # cut-off miss "Lyon is" and the flood keep their -1/2.
    algo = _make(GRPO, GRPOConfig(scale_rewards="none", is_correction="none"), policy, k=4)
    target = algo.targets(batch, rollouts, scores)
    assert target.advantages.tolist() == pytest.approx([1.0, 0.0, -0.5, -0.5])
    assert target.metrics["truncated_neutral_n"] == 0
    scores.total[1] = scores.rewards["r"][1] = 3.0  # among the answers (2, 3): (-1/2, 1/2)
    # Sums (0, 1, -1/2, -1/2): the cut-off answer's +1 drops to 0.
    target = algo.targets(batch, rollouts, scores)
    assert target.advantages.tolist() == pytest.approx([0.0, 0.0, -0.5, -0.5])
    assert target.metrics["truncated_neutral_n"] == 1
    off = _make(GRPO, GRPOConfig(scale_rewards="none", is_correction="none", truncated_neutral=False),
                policy, k=4)
    assert off.targets(batch, rollouts, scores).advantages.tolist() == pytest.approx([0.0, 1.0, -0.5, -0.5])


def test_grpo_defaults_are_the_measured_ones_and_reinforce_rej_keeps_its_own():
    grpo, rr = GRPOConfig(), ReinforceRejConfig()
    assert (GRPO.default_lr, GRPO.explore_lr, GRPO.default_prompts) == (3e-5, 1e-4, 32)
    def measured(c):
        return c.beta, c.mini_batches, c.explore_prefill, c.truncated_neutral

    assert measured(grpo) == (0.0, 4, True, True)
    assert measured(rr) == (0.0, 1, False, False)


@pytest.mark.parametrize(("settings", "lr"), [
    ({"rewards": ["math_verify"]}, 3e-5),  # a verifier: no hint, so no exploration
    ({"rewards": ["emoji", "length"]}, 1e-4),  # the built-in hints: the run explores
    ({"rewards": ["emoji"], "explore_hint": ""}, 3e-5),  # exploration turned off
    ({"rewards": ["emoji"], "explore_share": 0.0}, 3e-5),
    ({"rewards": ["math_verify"], "explore_hint": " Show your work."}, 1e-4),  # the user's own hint
    ({"rewards": ["emoji"], "lr": 2e-5}, 2e-5),  # a given lr always wins
])
def test_grpo_picks_its_learning_rate_by_whether_the_run_explores(settings, lr):
    from raftkit.api import build_configs

    cfg, _ = build_configs({"algo": "grpo", **settings})
    assert cfg.lr == lr
    raft = {k: v for k, v in settings.items() if "explore" not in k}
    assert build_configs({"algo": "raft", **raft})[0].lr == settings.get("lr", 3e-5)


@pytest.mark.parametrize(("cls", "config"), [(RAFTpp, RAFTppConfig), (ReinforceRej, ReinforceRejConfig)])
def test_raftpp_and_reinforce_rej_sample_on_policy_by_default(tiny_model_path, cls, config):
    # The paper's algorithms train on the policy's own samples: with rewards a hint could be built from,
    # no sample is hinted unless --explore-hint asks (hinted ones are off-policy, and Reinforce-Rej never
    # pushes them down).
    policy = _policy(tiny_model_path)
    rewards = ["emoji", "length:target=30"]
    algo = cls(policy, config(), lr=0.0, total_steps=1, k=4, sampling=SAMPLING, rewards=rewards)
    assert config().explore_hint == "" and algo.hint == "" and algo.n_hinted == 0
    hinted = cls(policy, config(explore_hint="auto"), lr=0.0, total_steps=1, k=4, sampling=SAMPLING,
                 rewards=rewards)
    assert hinted.n_hinted == 2


def test_answer_gated_advantages_push_floods_down_where_every_sample_misses():
    rewards = torch.tensor([[2.0, 1.0, 0.0, 0.0], [2.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    misses = torch.tensor([[True] * 4, [True, False, True, True]])
    bad = torch.tensor([[True, True, False, False], [True, False, False, False]])
    # Row 1, all misses: clean (0, 0, 1, 1), mean 1/2, Bessel std sqrt(1/3) -> the two floods get
    # -1/2 / (sqrt(1/3) + 1e-4), the clean samples nothing. Row 2 has an answer: the gate as before.
    push = -0.5 / (math.sqrt(1 / 3) + 1e-4)
    out = answer_gated_advantages(rewards, misses, "group", bad)
    assert out[0].tolist() == pytest.approx([push, push, 0.0, 0.0], rel=1e-5)
    torch.testing.assert_close(out[1], answer_gated_advantages(rewards, misses)[1])
    # Without the degenerate flags (as before): no signal at all in the all-miss group.
    assert answer_gated_advantages(rewards, misses)[0].tolist() == [0.0] * 4


def test_answer_gated_advantages_by_hand():
    nan = float("nan")
    rewards = torch.tensor([[2.0, 1.0, 0.0, nan]], dtype=torch.float64)  # the last sample was dropped
    misses = torch.tensor([[False, False, True, False]])
    # kept (1, 1, 0): mean 2/3, Bessel std sqrt(1/3); among the answers (2, 1): mean 3/2, std sqrt(1/2).
    keep = [1 / 3 / (math.sqrt(1 / 3) + 1e-4)] * 2 + [-2 / 3 / (math.sqrt(1 / 3) + 1e-4)]
    among = [0.5 / (math.sqrt(0.5) + 1e-4), -0.5 / (math.sqrt(0.5) + 1e-4), 0.0]
    expected = [keep[0] + among[0], keep[1] + among[1], keep[2], 0.0]
    assert answer_gated_advantages(rewards, misses)[0].tolist() == pytest.approx(expected, rel=1e-5)
    # No misses: plain GRPO advantages.
    none = torch.zeros_like(misses)
    torch.testing.assert_close(answer_gated_advantages(rewards, none), group_advantages(rewards))


def _hinted_group(own_emoji, hinted_emoji):
    n_own, n_hint = len(own_emoji), len(hinted_emoji)
    rollouts = [Rollout(0, "p", "c", [1], [0.0], prompt_ids=list(PROMPT), hinted=i >= n_own)
                for i in range(n_own + n_hint)]
    values = [*own_emoji, *hinted_emoji]
    return rollouts, Scores({"emoji": values}, {"emoji": 1.0}, {}, list(values), [False] * len(values))


def _unearned(own_emoji, hinted_emoji, floors=None, degenerate=()):
    rollouts, scores = _hinted_group(own_emoji, hinted_emoji)
    for i in degenerate:
        scores.hits.setdefault("emoticon_flood", [0] * len(rollouts))[i] = 1
    return unearned_share(rollouts, scores, hint_floors(rollouts, scores, {}) if floors is None else floors)


def test_unearned_share_by_hand():
    assert _unearned([0.0, 0.0], [1.0, 2.0]) == 1.0  # nothing earned alone, signal with hints
    assert _unearned([0.0, 1.0, 0.0, 0.0], [1.0, 2.0]) == 0.75  # one own sample of four earns it
    assert _unearned([2.0, 1.0], [1.0, 2.0]) == 0.5  # the floor is the lowest value: 1 earns nothing here
    assert _unearned([2.0, 1.0], [1.0, 2.0], floors={"emoji": 0.0}) == 0.0  # ... but above a remembered 0
    assert _unearned([4.0, 1.0, 0.0, 0.0], [1.0, 2.0], degenerate=[0]) == 0.75  # a flood has not found it
    assert _unearned([3.0, 3.0], [3.0, 3.0]) == 0.0  # saturated: the hint brings nothing to find
    # No hinted samples: the rewards remembered from earlier iterations say what to look at.
    assert _unearned([0.0, 0.0], [], floors={"emoji": 0.0}) == 1.0
    assert _unearned([0.0, 0.0], [], floors={}) == 0.0
    assert _unearned([0.0, 0.0], [], floors={"length": 0.0}) == 0.0  # a reward this batch does not have


def test_hint_floors_remember_the_lowest_value():
    rollouts, scores = _hinted_group([3.0, 2.0], [1.0, 4.0])
    assert hint_floors(rollouts, scores, {}) == {"emoji": 1.0}  # hinted samples differ: a hint reward
    assert hint_floors(rollouts, scores, {"emoji": 0.0}) == {"emoji": 0.0}  # an earlier, lower floor stays
    flat, flat_scores = _hinted_group([0.0, 1.0], [3.0, 3.0])
    assert hint_floors(flat, flat_scores, {}) == {}  # hinted samples all equal: no signal from the hint
    assert hint_floors(flat, flat_scores, {"emoji": 2.0}) == {"emoji": 0.0}  # remembered: floor lowered


def test_grpo_exploration_fades_with_the_outcome(tiny_model_path):
    policy = _policy(tiny_model_path)
    algo = GRPO(policy, GRPOConfig(beta=0.0, is_correction="none"), lr=0.0, total_steps=10, k=4,
                sampling=SAMPLING, rewards=["emoji"])
    assert algo.n_hinted == 2  # explore_share 0.5 of k = 4, from the first iteration
    algo.targets(Batch(["p"]), *_hinted_group([0.0, 0.0], [1.0, 2.0]))
    assert algo.n_hinted == 2  # the policy earns nothing alone
    algo.targets(Batch(["p"]), *_hinted_group([0.0, 1.0], [1.0, 2.0]))
    assert algo.n_hinted == 1  # half its own samples earn it: 0.5 x 0.5 x 4
    algo.targets(Batch(["p"]), *_hinted_group([1.0, 2.0], [1.0, 2.0]))
    assert algo.n_hinted == 0  # all of them earn more than the remembered floor 0: no more hints
    assert algo.state_dict()["n_hinted"] == 0
    algo.targets(Batch(["p"]), *_hinted_group([1.0, 2.0, 1.0, 1.0], []))
    assert algo.n_hinted == 0  # on-policy, and it still earns the emoji
    algo.targets(Batch(["p"]), *_hinted_group([0.0] * 4, []))
    assert algo.n_hinted == 2  # it lost the emoji again: the hint comes back
    assert algo.state_dict()["hint_floors"] == {"emoji": 0.0}
    saved = {**algo.state_dict(), "n_hinted": 0}
    older = {**{k: v for k, v in saved.items() if k != "hint_floors"}, "hint_signal": ["emoji"]}
    for state in (saved, older):  # this version's checkpoint, and one from before hint_floors
        resumed = GRPO(policy, GRPOConfig(beta=0.0, is_correction="none"), lr=0.0, total_steps=10, k=4,
                       sampling=SAMPLING, rewards=["emoji"])
        resumed.load_state_dict(state)
        resumed.targets(Batch(["p"]), *_hinted_group([0.0] * 4, []))
        assert resumed.n_hinted == 2  # a resumed run remembers which rewards the hint brought
    fixed = GRPO(policy, GRPOConfig(beta=0.0, explore_adaptive=False), lr=0.0, total_steps=10, k=4,
                 sampling=SAMPLING, rewards=["emoji"])
    fixed.targets(Batch(["p"]), *_hinted_group([0.0, 1.0], [1.0, 2.0]))
    assert fixed.n_hinted == 2


# --------------------------------------------------------------------------- mismatch correction in the step


def test_mismatch_correction_masks_a_far_off_sample(tiny_model_path):
    # Rewards (1, 0): A = ±a. Sample 0's sampler log-probs sit log(4) above the trainer's on each of its 3
    # tokens: sequence ratio 4^-3 under the cap, so sequence_mask keeps it at weight 1/64; token_mask with
    # cap 3 keeps each token at 1/4. Sample 1's sampler log-probs are the trainer's own: weight 1.
    # dapo at ratio 1: -(a·w0·3 - a·1) / 4 tokens.
    a = 0.5 / (math.sqrt(0.5) + 1e-4)
    policy = _policy(tiny_model_path)
    completions = [[300, 301, 302], [400]]
    own = [_alone(policy, PROMPT, c).tolist() for c in completions]
    for mode, w0 in (("none", 1.0), ("token_truncate", 0.25), ("sequence_mask", 1 / 64)):
        rollouts, scores = _group(completions, [1.0, 0.0])
        rollouts[0].logprobs = [x + math.log(4) for x in own[0]]
        rollouts[1].logprobs = own[1]
        cfg = GRPOConfig(beta=0.0, is_correction=mode, is_cap=3.0)
        result = _make(GRPO, cfg, policy, k=2).update(Batch(["p"]), rollouts, scores, 1)
        assert result.metrics["loss"] == pytest.approx(-(a * w0 * 3 - a) / 4, abs=1e-5), mode
        if mode != "none":
            assert result.metrics["mismatch/abs_logp_diff_max"] == pytest.approx(math.log(4), abs=1e-4)
    # A sequence over the cap is masked out entirely: its tokens weigh 0.
    rollouts, scores = _group(completions, [1.0, 0.0])
    rollouts[0].logprobs = [x - math.log(4) for x in own[0]]  # ratio 4 per token, 64 per sequence
    rollouts[1].logprobs = own[1]
    cfg = GRPOConfig(beta=0.0, is_correction="sequence_mask", is_cap=3.0)
    result = _make(GRPO, cfg, policy, k=2).update(Batch(["p"]), rollouts, scores, 1)
    assert result.metrics["loss"] == pytest.approx(a / 4, abs=1e-5)
    assert result.metrics["mismatch/masked_share"] == pytest.approx(3 / 4)


@pytest.mark.parametrize(("algo", "rewards", "given", "gate"), [
    ("raft", ["emoji", "length"], None, True),  # the demonstration's style rewards keep the answers
    ("grpo", ["emoji"], None, True),
    ("raft", ["math_verify"], None, False),  # a verifier decides what is right
    ("grpo", ["emoji", "./reward.py:fmt"], None, False),  # a reward of the user's own is the objective
    ("grpo", ["math_verify"], True, True),  # asked for, it is on
    ("raft", ["emoji"], False, False),
])
def test_the_answer_gate_is_on_by_default_only_with_style_rewards(algo, rewards, given, gate, tmp_path,
                                                                   monkeypatch):
    from raftkit.api import build_configs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "reward.py").write_text("def fmt(completions, **kw):\n    return [1.0] * len(completions)\n")
    settings = {"algo": algo, "rewards": rewards, **({} if given is None else {"keep_answers": given})}
    assert build_configs(settings)[1].keep_answers is gate


def test_reinforce_rej_keeps_its_one_learning_rate_when_it_explores():
    from raftkit.api import build_configs

    for hint in ("", " Use emojis 😊."):
        cfg, _ = build_configs({"algo": "reinforce_rej", "rewards": ["emoji"], "explore_hint": hint})
        assert cfg.lr == 1e-5
