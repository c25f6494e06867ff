"""The built-in rule rewards, on hand-made examples (English, Japanese, chat messages, degenerate text)."""

from __future__ import annotations

import math
import time

import pytest

from raftkit import RewardStack
from raftkit.rewards.builtin.rules import contains, distinct, emoji, format, keyword, length, repetition


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


# --------------------------------------------------------------------------- emoji


def test_emoji_counts_and_caps_like_trls_example():
    texts = ["東京タワー🗼とお寿司🍣", "no emoji here", "🎉" * 9, "flags 🇯🇵 count once, 👍🏽 too"]
    assert emoji(texts) == [2.0, 0.0, 4.0, 2.0]
    assert emoji(texts, max=2) == [2.0, 0.0, 2.0, 2.0]


def test_emoji_on_chat_completions():
    assert emoji([chat("😀😀😀"), chat("")]) == [3.0, 0.0]


# --------------------------------------------------------------------------- length


def test_length_in_characters():
    # exp(-0.15 * |len - 30|): 30 chars -> 1; 20 -> exp(-1.5); Japanese counts characters, not bytes.
    values = length(["a" * 30, "a" * 20, "日本" * 15, chat("a" * 40)])
    assert values == pytest.approx([1.0, math.exp(-1.5), 1.0, math.exp(-1.5)])


def test_length_parameters():
    assert length(["abcd"], target=4, alpha=2.0) == [1.0]
    assert length(["abcdef"], target=4, alpha=2.0) == pytest.approx([math.exp(-4.0)])


def test_length_in_tokens_reads_completion_ids():
    got = length(["ignored text", "x"], unit="tokens", target=3, alpha=0.5, completion_ids=[[1, 2, 3], [1]])
    assert got == pytest.approx([1.0, math.exp(-1.0)])


@pytest.mark.slow
def test_length_in_tokens_without_ids_uses_the_bundled_tokenizer():
    from transformers import AutoTokenizer

    from raftkit.models import default_model_path

    text = "The capital of France is Paris."
    n = len(
        AutoTokenizer.from_pretrained(str(default_model_path()))(text, add_special_tokens=False)["input_ids"]
    )
    assert length([text], unit="tokens", target=n) == [1.0]


# --------------------------------------------------------------------------- format


def test_format_default_wants_think_then_answer():
    texts = [
        "<think>2+2=4</think> The answer is 4.",
        "  <think>multi\nline</think>\n答えは4です。",
        "The answer is 4.",  # no think block
        "<think>only thinking</think>",  # no answer
        "<think>a</think> b <think>again</think> c",  # a second block
        "<think>never closed",
        "x <think>a</think> b",  # not at the start
    ]
    assert format(texts) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert format([chat("<think>t</think> a")]) == [1.0]


def test_format_custom_pattern():
    assert format(["Answer: 42", "answer 42"], pattern=r"^Answer: \d+$") == [1.0, 0.0]


def test_format_is_linear_on_degenerate_text():
    texts = ["<think>" * 3000, "<think>" + "a" * 20000, "<think>x</think>" * 2000, " " * 20000]
    start = time.perf_counter()
    assert format(texts) == [0.0, 0.0, 0.0, 0.0]
    assert time.perf_counter() - start < 2.0  # ~1 ms here; generous for a loaded CI machine


# --------------------------------------------------------------------------- keyword / contains


def test_keyword_fraction_present_case_insensitive():
    texts = ["PARIS is the capital of France.", "Lyon.", "パリはフランスの首都です。", chat("paris")]
    assert keyword(texts, words="paris,france") == [1.0, 0.0, 0.0, 0.5]
    assert keyword(["パリはフランスの首都です。"], words="パリ|フランス|東京") == [pytest.approx(2 / 3)]


def test_keyword_whole_words():
    assert keyword(["a category", "a cat"], words="cat", whole_words=True) == [0.0, 1.0]
    assert keyword(["a category"], words="cat") == [1.0]


def test_keyword_needs_words():
    with pytest.raises(Exception, match=r"keyword.*needs parameter"):
        RewardStack.build(["keyword"])
    with pytest.raises(Exception, match="at least one word"):
        RewardStack.build(["keyword:words=,|"])


def test_contains_substring_and_regex():
    texts = ["The answer is 42.", "No idea.", chat("ANSWER: 7")]
    assert contains(texts, pattern="answer") == [1.0, 0.0, 0.0]
    assert contains(texts, pattern="answer", ignore_case=True) == [1.0, 0.0, 1.0]
    assert contains(texts, pattern=r"answer\W+\d+", regex=True, ignore_case=True) == [0.0, 0.0, 1.0]
    assert contains(["東京です"], pattern="東京") == [1.0]


# --------------------------------------------------------------------------- distinct / repetition


def test_distinct_n_of_each_completion():
    # "the cat sat on the mat": 5 bigrams, all different; "the the the the": 3 bigrams, 1 distinct.
    assert distinct(["the cat sat on the mat", "the the the the", "a"], n=2) == [
        1.0,
        pytest.approx(1 / 3),
        0.0,
    ]
    # Japanese without spaces falls back to characters: あいあい -> (あ,い),(い,あ),(あ,い): 2 of 3.
    assert distinct(["あいあい"], n=2) == [pytest.approx(2 / 3)]
    assert distinct([chat("a b c")], n=1) == [1.0]


def test_repetition_english_words():
    # I think I think I think: 4 word trigrams, 2 distinct -> -(1 - 2/4).
    assert repetition(["The cat sat on the mat.", "I think I think I think"]) == [0.0, -0.5]


def test_repetition_japanese_without_spaces():
    # 人生の、 x3 = 11 characters, 9 trigrams, 4 distinct -> -(1 - 4/9).
    assert repetition(["人生の、人生の、人生の"]) == [pytest.approx(-5 / 9)]
    assert repetition(["東京は日本の首都です。"]) == [0.0]
    # Spaces inside Japanese text do not hide the loop.
    assert repetition(["人生の、 人生の、 人生の"]) == [pytest.approx(-5 / 9)]


def test_repetition_bounds_and_short_text():
    values = repetition(["I think " * 1000, "hi", "", chat("a b c d e")], n=3)
    assert -1.0 <= values[0] < -0.99 and values[1:] == [0.0, 0.0, 0.0]
    assert str(values[1]) == "0.0"  # not -0.0 in the logs


def test_docstring_examples_hold():
    import doctest

    import raftkit.rewards.builtin.rules
    import raftkit.rewards.stack

    for module in (raftkit.rewards.builtin.rules, raftkit.rewards.stack):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__
