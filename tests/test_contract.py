"""The reward contract: how the stack calls rewards, checks their values and combines them; TRL both ways."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from conftest import inline_plugin, tiny_llama_config

from raftkit import RewardError, RewardStack
from raftkit import filter as raftkit_filter
from raftkit.rewards import completion_text
from raftkit.rollouts import Batch, Rollout


def stack_of(*fns, rewards, filters=(), timeout=10.0):
    """Build a stack over inline rewards (plus the built-ins) through the real registry."""
    with inline_plugin(*fns):
        return RewardStack.build(list(rewards), list(filters), timeout=timeout)


# --------------------------------------------------------------------------- rewards as TRL users write them


def reward_len(completions, **kwargs):
    """Exactly as in TRL's docs: closer to 20 characters is better."""
    return [-abs(20 - len(completion)) for completion in completions]


def correct(prompts, completions, ground_truth, **kwargs):
    """Reads a dataset column by name, as TRL passes columns; None where there is no answer."""
    return [None if gt is None else float(gt in c) for c, gt in zip(completions, ground_truth, strict=True)]


def test_weighted_sum_with_none_left_out():
    stack = stack_of(reward_len, correct, rewards=["reward_len*0.5", "correct*2"])
    scores = stack.score(
        ["q1", "q2", "q3"],
        ["x" * 20, "Paris" + "y" * 10, "z" * 30],
        {"ground_truth": ["nope", "Paris", None]},
    )
    assert scores.rewards == {"reward_len": [0.0, -5.0, -10.0], "correct": [0.0, 1.0, None]}
    assert scores.weights == {"reward_len": 0.5, "correct": 2.0}
    assert scores.total == [0.0, -0.5, -5.0]  # 0.5*-5 + 2*1; 0.5*-10 + (None left out)
    assert scores.sample(2) == {
        "rewards": {"reward_len": -10.0, "correct": None},
        "hits": {},
        "total": -5.0,
        "dropped": False,
    }


def test_all_none_sums_to_zero():
    scores = stack_of(correct, rewards=["correct"]).score(["q"], ["a"], {"ground_truth": [None]})
    assert scores.total == [0.0] and scores.rewards["correct"] == [None]


def test_string_and_chat_completions_give_the_same_values():
    stack = RewardStack.build(["emoji", "length:target=5", "keyword:words=tokyo"], ["repetition_loop"])
    texts = ["Tokyo 🗼", "人生の、人生の、人生の"]
    as_text = stack.score(["q", "q"], texts)
    chat_prompts = [[{"role": "user", "content": "q"}]] * 2
    as_chat = stack.score(chat_prompts, [[{"role": "assistant", "content": t}] for t in texts])
    assert as_text.rewards == as_chat.rewards and as_text.hits == as_chat.hits
    assert as_text.rewards["emoji"] == [1.0, 0.0] and as_text.hits["repetition_loop"] == [0, 1]


def test_columns_and_completion_ids_arrive_as_kwargs():
    seen = {}

    def spy(prompts, completions, **kwargs):
        seen.update(kwargs, prompts=prompts, completions=completions)
        return [0.0] * len(completions)

    rollouts = [
        Rollout(prompt_index=i // 2, prompt=p, completion=c, completion_ids=ids, logprobs=[0.0] * len(ids))
        for i, (p, c, ids) in enumerate(
            [("A?", "a", [1]), ("A?", "aa", [1, 1]), ("B?", "b", [2]), ("B?", "bb", [2, 2])]
        )
    ]
    batch = Batch(prompts=["A?", "B?"], columns={"answer": ["a", "b"], "level": [1, 2]})
    stack_of(spy, rewards=["spy"]).score_rollouts(rollouts, batch)
    assert seen["prompts"] == ["A?", "A?", "B?", "B?"]
    assert seen["completions"] == ["a", "aa", "b", "bb"]
    assert seen["answer"] == ["a", "a", "b", "b"] and seen["level"] == [1, 1, 2, 2]
    assert seen["completion_ids"] == [[1], [1, 1], [2], [2, 2]]


def test_length_in_tokens_uses_completion_ids():
    scores = RewardStack.build(["length:target=2,unit=tokens,alpha=1"]).score(
        ["q", "q"], ["whatever text", "x"], completion_ids=[[5, 6], [5, 6, 7, 8]]
    )
    assert scores.rewards["length"] == [1.0, pytest.approx(math.exp(-2))]


def test_column_length_and_name_clash_are_errors():
    stack = RewardStack.build(["length"])
    with pytest.raises(RewardError, match="column 'answer' has 1 values for 2 completions"):
        stack.score(["q", "q"], ["a", "b"], {"answer": ["x"]})
    with pytest.raises(
        RewardError, match=r"column\(s\) \['target'\] share a name with parameter\(s\) of reward"
    ):
        stack.score(["q"], ["a"], {"target": [3]})


# --------------------------------------------------------------------------- malformed output


def short(completions, **kwargs):
    return [0.0] * (len(completions) - 1)


def text_value(completions, **kwargs):
    return [1.0, "high", 0.5][: len(completions)]


def nan_value(completions, **kwargs):
    return [0.0, 0.0, float("nan")][: len(completions)]


def inf_value(completions, **kwargs):
    return [float("-inf")] + [0.0] * (len(completions) - 1)


def not_a_list(completions, **kwargs):
    return 1.0


def raises_on_empty(completions, **kwargs):
    return [1.0 / len(c) for c in completions]


@pytest.mark.parametrize(
    ("fn", "message", "index"),
    [
        (short, r"reward 'short' returned 2 values for 3 completions", None),
        (
            text_value,
            r"reward 'text_value' returned a non-number 'high' \(str\) at batch index 1 "
            r"\(completion: bb\)",
            1,
        ),
        (nan_value, r"reward 'nan_value' returned nan at batch index 2 \(completion: \)", 2),
        (inf_value, r"reward 'inf_value' returned -inf at batch index 0 \(completion: a\)", 0),
        (not_a_list, r"reward 'not_a_list' returned float, expected a list", None),
        (
            raises_on_empty,
            r"reward 'raises_on_empty' raised ZeroDivisionError: float division by zero at batch "
            r"index 2 \(completion: \)",
            2,
        ),
    ],
)
def test_malformed_output_names_reward_index_and_value(fn, message, index):
    stack = stack_of(fn, rewards=[fn.__name__])
    with pytest.raises(RewardError, match=message) as err:
        stack.score(["p"] * 3, ["a", "bb", ""])
    assert err.value.reward == fn.__name__ and err.value.index == index


def test_numpy_and_torch_values_are_accepted():
    np = pytest.importorskip("numpy")

    def as_numpy(completions, **kwargs):
        return np.array([0.5] * len(completions), dtype=np.float32)

    scores = stack_of(as_numpy, rewards=["as_numpy"]).score(["p", "p"], ["a", "b"])
    assert scores.rewards["as_numpy"] == [0.5, 0.5]


@raftkit_filter(name="bad_filter")
def bad_filter(completions, **kwargs):
    return [0, -1][: len(completions)]


def test_filter_must_return_hit_counts():
    stack = stack_of(bad_filter, rewards=[], filters=["bad_filter"])
    with pytest.raises(
        RewardError, match=r"filter 'bad_filter' returned -1 at batch index 1; a filter returns a hit"
    ):
        stack.score(["p", "p"], ["a", "b"])


# --------------------------------------------------------------------------- timeouts and async


def slow_sync(completions, **kwargs):
    time.sleep(5)
    return [0.0] * len(completions)


async def slow_async(completions, **kwargs):
    await asyncio.sleep(5)
    return [0.0] * len(completions)


@pytest.mark.parametrize("fn", [slow_sync, slow_async])
def test_timeout_names_the_reward_and_returns_promptly(fn):
    stack = stack_of(fn, rewards=["emoji", fn.__name__], timeout=0.3)
    start = time.perf_counter()
    with pytest.raises(
        RewardError, match=rf"reward '{fn.__name__}' did not return within 0.3 s on a batch of 2"
    ):
        stack.score(["p", "p"], ["a", "b"])
    assert time.perf_counter() - start < 2.0


def test_degenerate_completion_does_not_stall_regex_rewards():
    # Seed 003's failure mode at its worst: a 2,000-token loop, through every regex-based built-in.
    stack = RewardStack.build(
        ["format", "repetition", "keyword:words=life", "contains:pattern=x"],
        ["stray_hash", "emoticon_flood", "repetition_loop", "self_dialogue"],
        timeout=30,
    )
    loops = ["人生の、" * 1000, "I think " * 1000, "<think>" * 1000, "#" * 4000 + ":)" * 1000]
    start = time.perf_counter()
    scores = stack.score(["p"] * len(loops), loops)
    assert time.perf_counter() - start < 5.0  # ~0.05 s here
    assert scores.hits["repetition_loop"][:3] == [1, 1, 1] and scores.rewards["format"] == [0.0] * 4


async def sleepy_a(completions, **kwargs):
    await asyncio.sleep(0.5)
    return [1.0] * len(completions)


async def sleepy_b(completions, **kwargs):
    await asyncio.sleep(0.5)
    return [2.0] * len(completions)


def test_async_rewards_are_awaited_concurrently():
    stack = stack_of(sleepy_a, sleepy_b, rewards=["sleepy_a", "sleepy_b"])
    start = time.perf_counter()
    scores = stack.score(["p"], ["a"])
    elapsed = time.perf_counter() - start
    assert scores.total == [3.0]
    assert elapsed < 0.9, f"two 0.5 s async rewards took {elapsed:.2f} s: not concurrent"


def test_async_reward_error_names_the_reward():
    async def async_boom(completions, **kwargs):
        raise KeyError("missing")

    with pytest.raises(RewardError, match=r"reward 'async_boom' raised KeyError: 'missing' on a batch of 1"):
        stack_of(async_boom, rewards=["async_boom"]).score(["p"], ["a"])


def test_scoring_works_inside_a_running_event_loop():
    async def main():
        return RewardStack.build(["emoji"]).score(["p"], ["🎉"])

    assert asyncio.run(main()).total == [1.0]


# --------------------------------------------------------------------------- filters


def test_filter_penalty_caps_total_and_drop_excludes():
    texts = ["Fine answer 😊", "Bad# answer 😊", "I think I think I think 😊"]
    stack = RewardStack.build(["emoji*2"], ["stray_hash:penalty=-3", "repetition_loop:action=drop"])
    scores = stack.score(["p"] * 3, texts)
    assert scores.hits == {"stray_hash": [0, 1, 0], "repetition_loop": [0, 0, 1]}
    assert scores.total == [2.0, -3.0, 2.0]
    assert scores.dropped == [False, False, True]
    assert scores.rewards["emoji"] == [1.0, 1.0, 1.0]  # raw values are kept for the logs


def test_penalty_never_raises_a_lower_total():
    scores = RewardStack.build(["repetition*10"], ["repetition_loop"]).score(
        ["p"], ["I think I think I think"]
    )
    assert scores.total == [-5.0]  # 10 * -0.5 is already below the default penalty -1


def test_filter_penalty_must_be_a_number():
    with pytest.raises(Exception, match="penalty must be a number"):
        RewardStack.build([], ["stray_hash:penalty=low"])


# --------------------------------------------------------------------------- TRL compatibility


def test_trl_style_reward_works_unchanged_in_the_stack():
    stack = stack_of(reward_len, rewards=["reward_len"])
    assert stack.score(["p"], ["x" * 25]).rewards["reward_len"] == [-5.0]


def test_configured_builtin_is_a_trl_reward_function():
    from transformers import TrainerState

    stack = RewardStack.build(["length:target=3,alpha=1", "emoji:max=1"], ["stray_hash"])
    length_fn, emoji_fn, hash_fn = (e.fn for e in stack.entries)
    assert (length_fn.__name__, emoji_fn.__name__, hash_fn.__name__) == ("length", "emoji", "stray_hash")
    # Called exactly as GRPOTrainer._calculate_rewards calls a sync reward function.
    trl_kwargs = {
        "prompts": ["Hi", "Yo"],
        "completions": ["abc", "abcde 😊😊"],
        "completion_ids": [[1, 2, 3], [4]],
        "ground_truth": ["x", "y"],
        "trainer_state": TrainerState(),
        "log_extra": lambda *a, **k: None,
        "log_metric": lambda *a, **k: None,
    }
    assert length_fn(**trl_kwargs) == [1.0, pytest.approx(math.exp(-5))]  # "abcde 😊😊" is 8 characters
    assert emoji_fn(**trl_kwargs) == [0.0, 1.0]
    assert hash_fn(**trl_kwargs) == [0, 0]
    chat = {**trl_kwargs, "completions": [[{"role": "assistant", "content": "abc"}]] * 2}
    assert length_fn(**chat) == [1.0, 1.0]


@pytest.mark.slow
def test_trl_grpo_trainer_runs_raftkit_rewards(tmp_path, default_tokenizer):
    """The real thing: TRL's GRPOTrainer takes configured raftkit rewards, scores with them, trains a step."""
    from datasets import Dataset
    from transformers import LlamaForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = default_tokenizer  # has a pad token, so TRL leaves the shared tokenizer as it is
    stack = RewardStack.build(["length:target=20", "emoji"], ["stray_hash"])
    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=4,
        report_to=[],
        use_cpu=True,
        max_steps=1,
        save_strategy="no",
    )
    trainer = GRPOTrainer(
        model=LlamaForCausalLM(tiny_llama_config(tokenizer)),
        reward_funcs=[e.fn for e in stack.entries],
        args=args,
        train_dataset=Dataset.from_list([{"prompt": "Hi", "ground_truth": "x"}] * 4),
        processing_class=tokenizer,
    )
    assert trainer.reward_func_names == ["length", "emoji", "stray_hash"]
    completions = ["hello # world 😊", "x" * 20]
    got = trainer._calculate_rewards(
        [{"prompt": "Hi", "ground_truth": "x"}] * 2, ["Hi", "Hi"], completions, [[1, 2], [3]]
    )
    ours = stack.score(["Hi", "Hi"], completions)
    assert got[:, 0].tolist() == pytest.approx(ours.rewards["length"])
    assert got[:, 1].tolist() == ours.rewards["emoji"] == [1.0, 0.0]
    assert got[:, 2].tolist() == ours.hits["stray_hash"] == [1, 0]
    trainer.train()
    assert "rewards/length/mean" in trainer.state.log_history[0]


def test_a_column_named_like_a_stack_argument_is_refused_not_silently_used():
    # Checked where the call is built: otherwise this column would replace the prompts every reward sees.
    stack = RewardStack.build(["length"])
    with pytest.raises(RewardError, match=r"\['prompts'\].*rename"):
        stack.score(["q"], ["a"], {"prompts": ["other"]})
    with pytest.raises(RewardError, match=r"\['completion_ids'\].*rename"):
        stack.score(["q"], ["a"], {"completion_ids": [[1]]}, completion_ids=[[2]])
    # Without a clash, a completion_ids column is an ordinary column (raftkit score documents it).
    assert len(stack.score(["q"], ["a"], {"completion_ids": [[1]]})) == 1


@pytest.mark.parametrize("spec", ["length*1e999", "length*-1e999"])
def test_a_non_finite_weight_is_refused(spec):
    """Regression: `length*1e999` was accepted and made every total infinite."""
    from raftkit.rewards import RegistryError, RewardSpec

    with pytest.raises(RegistryError, match="finite"):
        RewardSpec.parse(spec)
    with pytest.raises(RegistryError, match="finite"):
        RewardSpec.coerce({"name": "length", "weight": float("inf")})
    with pytest.raises(RegistryError, match="finite"):
        RewardSpec.coerce({"name": "length", "weight": float("nan")})  # a config's `weight: .nan`


# --------------------------------------------------------------------------- rewards that misbehave


async def blocking_async(completions, **kwargs):
    time.sleep(3)  # blocks its event loop: no await point for a timeout to cancel at
    return [0.0] * len(completions)


async def stubborn_async(completions, **kwargs):
    try:
        await asyncio.sleep(3)
    except asyncio.CancelledError:
        await asyncio.sleep(0.5)
        return [99.0] * len(completions)  # a late value: must never be used
    return [99.0] * len(completions)


@pytest.mark.parametrize("fn", [blocking_async, stubborn_async])
def test_an_async_reward_cannot_outlast_its_timeout(fn):
    stack = stack_of(fn, rewards=["emoji", fn.__name__], timeout=0.5)
    start = time.perf_counter()
    with pytest.raises(RewardError, match=rf"reward '{fn.__name__}' did not return within 0.5 s"):
        stack.score(["p", "p"], ["a", "b"])
    assert time.perf_counter() - start < 1.5


def quits(completions, **kwargs):
    import sys

    sys.exit(3)


async def quits_async(completions, **kwargs):
    import sys

    sys.exit(3)


@pytest.mark.parametrize("fn", [quits, quits_async])
def test_a_reward_calling_sys_exit_is_an_error_naming_it(fn):
    stack = stack_of(fn, rewards=[fn.__name__])
    with pytest.raises(RewardError, match=rf"reward '{fn.__name__}' called sys.exit\(3\); a reward must "):
        stack.score(["p"], ["a"])


def huge(completions, **kwargs):
    return [10**400] * len(completions)


def test_a_value_too_large_for_a_float_names_the_reward_and_index():
    with pytest.raises(RewardError, match=r"reward 'huge' returned 1e400 or so, too large for a float, at "
                                          r"batch index 0; return values within"):
        stack_of(huge, rewards=["huge"]).score(["p"], ["a"])


def vandal(completions, **kwargs):
    out = [float(len(completion_text(c))) for c in completions]
    completions[0] = "x" * 50  # edits the list it was given...
    if isinstance(completions[1], list):
        completions[1][0]["content"] = "y" * 50  # ...and a chat message inside it
    return out


def text_length(completions, **kwargs):
    return [float(len(completion_text(c))) for c in completions]


def test_a_reward_editing_its_arguments_does_not_change_what_others_score():
    stack = stack_of(vandal, text_length, rewards=["vandal", "text_length", "length:target=2"])
    completions = ["ab", [{"role": "assistant", "content": "abc"}]]
    for _ in range(3):  # whichever reward's thread runs first
        scores = stack.score(["p", "q"], completions)
        assert scores.rewards["vandal"] == scores.rewards["text_length"] == [2.0, 3.0]
        assert scores.rewards["length"][0] == 1.0
    assert completions == ["ab", [{"role": "assistant", "content": "abc"}]]  # the caller's lists too
