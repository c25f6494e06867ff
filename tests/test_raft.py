"""RAFT selection on hand-made scores, exploration sampling, and seed 003's stray-'#' lesson."""

from __future__ import annotations

import pytest

from raftkit.algorithms.raft import (
    RAFT,
    RaftConfig,
    answer_misses,
    empty_groups,
    exclusions,
    hinted_count,
    ineligible,
    resolve_hint,
    select_local,
    select_top,
)
from raftkit.config import ConfigError
from raftkit.rewards import RewardStack, info_for, load_registry, reward
from raftkit.rollouts import Batch, Rollout

# --------------------------------------------------------------------------- select_local


def test_local_keeps_the_best_of_each_prompt():
    # prompt 0: samples 0..2, best is 1 (0.9); prompt 1: samples 3..5, best is 5 (0.7)
    totals = [0.1, 0.9, 0.5, 0.2, 0.3, 0.7]
    groups = [0, 0, 0, 1, 1, 1]
    assert select_local(totals, groups, [False] * 6, m=1) == [1, 5]


def test_local_m_keeps_the_best_m_per_prompt():
    totals = [0.1, 0.9, 0.5, 0.2, 0.3, 0.7]
    groups = [0, 0, 0, 1, 1, 1]
    assert select_local(totals, groups, [False] * 6, m=2) == [1, 2, 4, 5]
    # m larger than the group keeps the whole group
    assert select_local(totals, groups, [False] * 6, m=5) == [0, 1, 2, 3, 4, 5]


def test_local_ties_go_to_the_earlier_sample():
    totals = [0.5, 0.5, 0.5, 0.0, 0.0]
    groups = [0, 0, 0, 1, 1]
    assert select_local(totals, groups, [False] * 5) == [0, 3]
    assert select_local(totals, groups, [False] * 5, m=2) == [0, 1, 3, 4]


def test_local_never_selects_dropped_and_empty_prompts_contribute_nothing():
    totals = [9.0, 0.1, 5.0, 6.0, 0.2]
    groups = [0, 0, 1, 1, 2]
    dropped = [True, False, True, True, False]
    # prompt 0's best (9.0) is dropped -> 0.1 is kept; prompt 1 is all dropped -> nothing; prompt 2 -> 4
    assert select_local(totals, groups, dropped) == [1, 4]
    assert empty_groups(groups, dropped) == 1


def test_local_groups_need_not_be_contiguous():
    assert select_local([0.3, 0.8, 0.9, 0.1], [0, 1, 0, 1], [False] * 4) == [1, 2]


def test_local_checks_lengths():
    with pytest.raises(ValueError):
        select_local([0.1], [0, 1], [False])


# --------------------------------------------------------------------------- select_top


def test_top_keeps_the_best_fraction_of_the_whole_batch():
    # b=2 prompts x k=4: the top 1/k of 8 samples is 2, taken across prompts (both from prompt 0 here)
    totals = [0.9, 0.8, 0.1, 0.0, 0.3, 0.2, 0.1, 0.0]
    assert select_top(totals, [False] * 8, 1 / 4) == [0, 1]
    # local on the same scores would keep one per prompt
    assert select_local(totals, [0, 0, 0, 0, 1, 1, 1, 1], [False] * 8) == [0, 4]


def test_top_ties_and_dropped():
    totals = [0.5, 0.7, 0.7, 0.7, 0.1, 0.0]
    assert select_top(totals, [False] * 6, 2 / 6) == [1, 2]  # three tied at 0.7: the earliest two
    # the two best are dropped: the next eligible ones are kept, still 2 of them
    assert select_top(totals, [False, True, True, False, False, False], 2 / 6) == [0, 3]
    # fewer eligible than the quota: only the eligible ones
    assert select_top(totals, [True, True, True, True, True, False], 0.5) == [5]
    assert select_top(totals, [True] * 6, 0.5) == []


def test_top_keeps_at_least_one_and_checks_fraction():
    assert select_top([0.1, 0.2, 0.3], [False] * 3, 0.1) == [2]
    with pytest.raises(ValueError):
        select_top([0.1], [False], 0.0)


# --------------------------------------------------------------------------- exploration


def test_auto_hint_comes_from_the_rewards():
    assert (
        resolve_hint("auto", ["emoji", "length:target=30*2"])
        == " Answer in one short sentence. Use emojis 😊."
    )
    assert resolve_hint("auto", ["emoji:max=4"]) == " Use emojis 😊."
    assert resolve_hint("auto", ["my_reward"]) == ""
    assert resolve_hint("auto", [{"name": "emoji", "weight": 2}]) == " Use emojis 😊."
    assert resolve_hint(" Be polite.", ["emoji"]) == " Be polite."


def test_hinted_count():
    assert hinted_count(8, 0.5) == 4
    assert hinted_count(8, 0.0) == 0
    assert hinted_count(8, 1.0) == 8
    assert hinted_count(3, 0.5) == 2  # rounds half up
    with pytest.raises(ValueError):
        hinted_count(8, 1.5)


class _EchoSampler:
    """A stand-in sampler for the regrouping logic: completion = the prompt text it was given."""

    def __init__(self):
        self.calls = []
        self.skipped = []

    def generate(self, prompts, k, params):
        self.calls.append((list(prompts), k))
        return [Rollout(i, p, f"{p}#{j}", [1], [0.0]) for i, p in enumerate(prompts) for j in range(k)]


class _LengthLimitedSampler(_EchoSampler):
    """Skips prompts longer than ``limit`` characters, as a sampler skips over-long prompts."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def generate(self, prompts, k, params):
        self.skipped = [i for i, p in enumerate(prompts) if len(p) > self.limit]
        return [r for r in super().generate(prompts, k, params) if r.prompt_index not in self.skipped]


def test_only_prompts_without_any_sample_count_as_skipped():
    """Regression: a prompt whose hinted copy alone was too long was counted as skipped too."""
    from raftkit.algorithms.explore import sample_with_hint

    batch = Batch(["short", "a much longer prompt", "x" * 40], {}, [0, 1, 2])
    sampled = sample_with_hint(_LengthLimitedSampler(limit=25), batch, 4, 2, " Use emojis please.", None)
    # prompt 1: plain fits (20 chars), hinted does not (39): plain samples only; prompt 2: nothing fits.
    assert sampled.skipped == [2]
    assert [(r.prompt_index, r.hinted) for r in sampled.rollouts] == [
        (0, False), (0, False), (0, True), (0, True), (1, False), (1, False)]


def test_raft_sample_mixes_hinted_samples_and_keeps_the_original_prompt():
    algo = RAFT(
        policy=None,
        config=RaftConfig(explore_hint=" Use emojis.", explore_share=0.25, explore_prefill=False),
        lr=1e-5,
        total_steps=1,
        k=4,
        sampling=None,
    )
    sampler = _EchoSampler()
    rollouts = algo.sample(sampler, Batch(["Q0", "Q1"]), iteration=1)
    assert [c[1] for c in sampler.calls] == [3, 1]  # 3 plain + 1 hinted per prompt
    assert sampler.calls[1][0] == ["Q0 Use emojis.", "Q1 Use emojis."]
    # prompt-major, k per prompt, hinted ones marked; rewards and training see the original prompt
    assert [(r.prompt_index, r.hinted) for r in rollouts] == [
        (0, False),
        (0, False),
        (0, False),
        (0, True),
        (1, False),
        (1, False),
        (1, False),
        (1, True),
    ]
    assert all(r.prompt == f"Q{r.prompt_index}" for r in rollouts)
    assert rollouts[3].sample_prompt == "Q0 Use emojis." and rollouts[3].completion == "Q0 Use emojis.#0"


def test_raft_sample_with_an_even_split_uses_one_engine_call():
    algo = RAFT(
        None, RaftConfig(explore_hint=" Hint.", explore_share=0.5, explore_prefill=False), lr=1e-5,
        total_steps=1, k=4, sampling=None,
    )
    sampler = _EchoSampler()
    rollouts = algo.sample(sampler, Batch(["Q0", "Q1"]), iteration=1)
    assert sampler.calls == [(["Q0", "Q1", "Q0 Hint.", "Q1 Hint."], 2)]
    assert [(r.prompt_index, r.prompt, r.hinted) for r in rollouts] == [
        (0, "Q0", False),
        (0, "Q0", False),
        (0, "Q0", True),
        (0, "Q0", True),
        (1, "Q1", False),
        (1, "Q1", False),
        (1, "Q1", True),
        (1, "Q1", True),
    ]
    assert rollouts[2].sample_prompt == "Q0 Hint."


def test_raft_without_hint_samples_only_the_plain_prompt():
    algo = RAFT(policy=None, config=RaftConfig(explore_hint=""), lr=1e-5, total_steps=1, k=4, sampling=None)
    sampler = _EchoSampler()
    rollouts = algo.sample(sampler, Batch(["Q0"]), iteration=1)
    assert sampler.calls == [(["Q0"], 4)] and not any(r.hinted for r in rollouts)


def test_raft_config_validation():
    with pytest.raises(ConfigError, match="explore-share"):
        RaftConfig(explore_share=2.0)
    with pytest.raises(ConfigError, match="keep-per-prompt"):
        RaftConfig(keep_per_prompt=0)


# --------------------------------------------------------------------------- seed 003's lesson


@reward(name="likes_hash")
def likes_hash(completions, **kwargs):
    """A reward blind to the '#' problem: it *likes* '#' (seed 003's reward model could not see them)."""
    return [1.0 + c.count("#") for c in completions]


def test_stray_hash_filter_keeps_hash_out_of_the_selection():
    registry = load_registry()
    registry.add(info_for(likes_hash, plugin="test"))
    completions = [
        "The capital is Paris. ###",  # prompt 0: the reward's favourite
        "The capital is Paris.",
        "Tokyo # is # big",  # prompt 1
        "Tokyo is big.",
        "# Rome",  # prompt 2: a markdown heading is not a stray '#'
        "Rome",
    ]
    groups = [0, 0, 1, 1, 2, 2]
    prompts = ["q0", "q0", "q1", "q1", "q2", "q2"]

    blind = RewardStack.build(["likes_hash"], [], registry=registry).score(prompts, completions)
    chosen_blind = select_local(blind.total, groups, blind.dropped)
    assert any("#" in completions[i] and not completions[i].startswith("# ") for i in chosen_blind)

    for action in ("penalty", "drop"):
        stack = RewardStack.build(["likes_hash"], [f"stray_hash:action={action}"], registry=registry)
        scores = stack.score(prompts, completions)
        for chosen in (
            select_local(scores.total, groups, scores.dropped),
            select_top(scores.total, scores.dropped, 0.5),
        ):
            stray = [completions[i] for i in chosen if scores.hits["stray_hash"][i]]
            assert stray == [], f"{action}: selected {stray}"
            assert chosen, "something must still be selected"


def test_a_prompt_whose_samples_all_hit_a_filter_contributes_nothing():
    # With action=penalty the hit samples still have a total (-1); local ranking alone would pick the best
    # of them. RAFT imitates what it selects, so ineligible() keeps every filtered sample out.
    registry = load_registry()
    registry.add(info_for(likes_hash, plugin="test"))
    completions = ["Paris ###", "Paris # #", "Tokyo is big.", "Tokyo # big"]
    groups = [0, 0, 1, 1]
    stack = RewardStack.build(["likes_hash"], ["stray_hash"], registry=registry)
    scores = stack.score(["q0", "q0", "q1", "q1"], completions)
    assert scores.total[:2] == [-1.0, -1.0] and scores.dropped == [False] * 4
    assert select_local(scores.total, groups, scores.dropped) == [0, 2]  # the penalised "best" of prompt 0
    excluded = ineligible(scores)
    assert excluded == [True, True, False, True]
    assert select_local(scores.total, groups, excluded) == [2]
    assert empty_groups(groups, excluded) == 1


def test_answer_misses_where_the_prompt_has_answers():
    batch = Batch(["capital of France?", "a joke?", "capital of Peru?"],
                  {"answers": [["Paris"], None, ["Lima"]]}, [0, 1, 2])
    texts = ["Paris 🗼", "🇫🇷🎉 France!", "ha", "no", "Cusco 🦙", "Lima 🇵🇪"]
    rollouts = [Rollout(prompt_index=i // 2, prompt=batch.prompts[i // 2], completion=t, completion_ids=[1],
                        logprobs=[0.0]) for i, t in enumerate(texts)]
    assert answer_misses(rollouts, batch) == [False, True, False, False, True, False]
    assert answer_misses(rollouts, Batch(batch.prompts, {}, [0, 1, 2])) == [False] * 6


def test_keep_answers_never_selects_a_sample_that_lost_the_answer():
    """The emoji string outscores the answer on the rewards, yet the answer is what RAFT keeps."""
    stack = RewardStack.build(["emoji"], [])
    batch = Batch(["capital of France?"], {"answers": [["Paris"]]}, [0])
    texts = ["🇫🇷🎉🥖 France!", "Paris 🗼"]
    rollouts = [Rollout(prompt_index=0, prompt=batch.prompts[0], completion=t, completion_ids=[1],
                        logprobs=[0.0]) for t in texts]
    scores = stack.score_rollouts(rollouts, batch)
    assert scores.total[0] > scores.total[1] and ineligible(scores) == [False, False]
    excluded, misses = exclusions(rollouts, batch, scores, RaftConfig())
    assert misses == [True, False] and excluded == [True, False]
    assert select_local(scores.total, [0, 0], excluded) == [1]
    assert exclusions(rollouts, batch, scores, RaftConfig(keep_answers=False)) == ([False] * 2, [False] * 2)


def test_summary_line_of_an_iteration_that_trained_on_nothing():
    from raftkit.runs.metrics import summary_line

    line = summary_line(1, 8, {"rewards/emoji/mean": 0.5, "loss": None, "kl": None, "time/iteration": 3.0},
                        ["emoji"])
    assert "emoji 0.500" in line and "loss" not in line and "kl" not in line
