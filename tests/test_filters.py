"""The built-in degeneracy filters on seed 003's failure cases, their false-positive guards, and speed."""

from __future__ import annotations

import time

import pytest

from raftkit import RewardStack
from raftkit.rewards.builtin.filters import (
    PATTERNS,
    broken_char,
    emoji_density,
    emoticon_flood,
    emoticons,
    mention_spam,
    no_words,
    repetition_loop,
    repetition_loops,
    self_dialogue,
    stray_hash,
)
from raftkit.text import self_dialogue_cut

ALL_FILTERS = (stray_hash, emoticon_flood, repetition_loop, self_dialogue, emoji_density, mention_spam,
               broken_char, no_words)


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


# --------------------------------------------------------------------------- stray_hash


def test_stray_hash_seed_003_cases():
    texts = [
        "Sure! Here is the answer.#",  # glued to text
        "The answer is 42 ###",  # trailing run
        "###\n###\nOK",  # lines of hashes
        "## Title ##",  # a heading's closing sequence counts, its marker does not
        "#hashtag #another",
        "C# is a language",
    ]
    assert stray_hash(texts) == [1, 1, 2, 1, 2, 1]


def test_stray_hash_allows_headings_code_and_numbers():
    texts = [
        "# Title\n\n## Section\n\nText.\n   ### Indented heading",
        "```python\n# a comment\nx = 1  # another\n```\nDone.",
        "~~~\n#!/bin/sh\n~~~",
        "Use `#include <stdio.h>` or ``a#b``.",
        "See issue #12 and step #3.",
        "```\n# unclosed fence keeps going\n#",
        "東京は日本の首都です。",
    ]
    assert stray_hash(texts) == [0, 0, 0, 0, 0, 0, 0]
    assert stray_hash([chat("Sure!#")]) == [1]


def test_stray_hash_counts_outside_a_closed_fence():
    assert stray_hash(["```\n# code\n```\nafter# and ##"]) == [2]


# --------------------------------------------------------------------------- emoticon_flood


def test_emoticon_flood_seed_003_cases():
    texts = [
        "Thanks :)",  # under the threshold
        "Thanks :) :) :) :) :)",  # PPO's :) habit: 5, threshold 2 -> 3
        "Sure ;) ;) ;) ;)",  # then ;)
        "Hi :D :P XD ^_^ (^^) :-) (*^^*)",  # a mix: 7 -> 5
        "Great!:):):)",  # glued together
    ]
    assert emoticon_flood(texts) == [0, 3, 2, 5, 1]
    assert emoticon_flood(texts, threshold=0) == [1, 5, 4, 7, 3]


def test_emoticon_flood_false_positive_guards():
    texts = [
        "Meet at 10:30 or 11:45.",
        "See http://example.com/a:b",
        "f(x)=(y+1)",
        "Note:Pay attention",
        "ratio 3:2 (see 8)",
        "x^2 + y^2",
        '{"a":(1, 2)}',
        "XDR protocol",
        "東京：晴れ（最高気温）",
    ]
    assert [emoticons(t) for t in texts] == [[]] * len(texts)
    assert emoticon_flood(texts, threshold=0) == [0] * len(texts)


# --------------------------------------------------------------------------- repetition_loop


def test_repetition_loop_seed_cases():
    texts = [
        "人生の、人生の、人生の",  # the Japanese loop
        "I think I think I think that is right.",
        "The the the end",  # case-insensitive
        "Paris.\n" + "It is a beautiful city with many museums and parks to visit.\n" * 4,  # a repeated line
        "とても、とても、とても、とても良い。そして人生の、人生の、人生の",  # two loops
    ]
    assert repetition_loop(texts) == [1, 1, 1, 1, 2]
    assert repetition_loop([chat("ok ok ok")]) == [1]


def test_repetition_loop_catches_emoji_loops():
    # What a 135M model trained on an emoji reward collapsed into (a real RAFT run's held-out output).
    collapsed = ["👏👍👏👍👏👍👏👍👏👍👏👍👏", "🎉🎉🎉🎉🎉🎉", "Sure 😊🙏 😊🙏 😊🙏 😊🙏"]
    assert repetition_loop(collapsed) == [1, 1, 1]
    # A few emojis in an answer, or a repeat short of the threshold, are not loops.
    fine = ["Tofu is made from soybeans 🌱😊", "Great job 👍👍👍", "👏👍 nice 👏👍"]
    assert repetition_loop(fine) == [0, 0, 0]


def test_emoticon_flood_counts_emoji_runs_beyond_the_cap():
    # Held-out output of a RAFT run on emoji + length before this check existed: emoji strings, no answer.
    collapsed = ["👥👿👁👒💫👤👈👮", "Namaste.👌👍👏👑👥👦", "安心 👍👏👧 👦👨👩"]
    assert emoticon_flood(collapsed) == [4, 2, 2]
    # Answers with up to four emojis in a row, or several short runs, are what the emoji reward asks for.
    fine = ["Tofu is made from soybeans 🌱😊🎉✨", "🇯🇵 Tokyo 🗼, then Kyoto ⛩️🍵", "🎉 yes 🎉 yes 🎉 yes"]
    assert emoticon_flood(fine) == [0, 0, 0]
    assert emoticon_flood(collapsed, emoji_run=0) == [0, 0, 0]
    assert emoticon_flood(["👏👏👏👏👏👏"], emoji_run=5, emoji_repeat=0) == [1]


def test_emoticon_flood_counts_one_emoji_used_again_and_again():
    # What the strict-gate RAFT run's held-out answers turned into (docs/raft.md): the cap of 4 reached
    # with one emoji, on the way to a flood.
    repeated = ["🍨🌈 Japanese script is Hanja 🌈 🌈 🌈 🌈", "Sydney. 📘📘 📘📘", "🎉 yes 🎉 yes 🎉 yes 🎉"]
    assert emoticon_flood(repeated) == [2, 1, 1]
    assert emoticon_flood(repeated, emoji_repeat=0) == [0, 0, 0]  # runs of at most 4: unseen before
    assert emoticon_flood(["Tokyo 🗼🗼🗼"]) == [0]
    with pytest.raises(ValueError, match="emoji_repeat"):
        emoticon_flood(["x"], emoji_repeat=-1)


def test_repetition_loop_threshold_and_guards():
    assert repetition_loop(["I think I think"], min_repeats=3) == [0]
    assert repetition_loop(["I think I think"], min_repeats=2) == [1]
    clean = [
        "Paris is the capital of France.",
        "1,000,000,000 yen",
        "...... wait",
        "Mississippi banana",
        "Step 1. Step 2. Step 3.",
        "ありがとうございます。ありがとうございます。",
        "東京は日本の首都です。",
    ]
    assert repetition_loop(clean) == [0] * len(clean)
    with pytest.raises(Exception, match="at least 2"):
        repetition_loop(["x"], min_repeats=1)


# --------------------------------------------------------------------------- self_dialogue


def test_self_dialogue_counts_leaked_turns():
    texts = [
        "Paris is the capital.###Human: and Spain?###Assistant: Madrid.",
        "Paris.\nUser: thanks\nAssistant: you're welcome",
        "Paris. ### Human: more",
        "Paris.<|im_start|>user\nmore",
        "Paris is the capital. A user: someone who uses.",  # not at a line start: not a turn
        "Paris.",
    ]
    assert self_dialogue(texts) == [2, 2, 1, 1, 0, 0]
    # It agrees with the truncation helper the sampler uses: a hit exactly where there is a cut.
    assert [h > 0 for h in self_dialogue(texts)] == [self_dialogue_cut(t) is not None for t in texts]
    assert self_dialogue([chat("ok###Human: hi")]) == [1]


# --------------------------------------------------------------------------- emoji-era reward hacks

# Held-out outputs of a 135M model trained with an emoji reward, which the four filters above mostly miss.
HACKED_PROMPTS = [
    "What gas do plants absorb from the air for photosynthesis?",
    "光の速さは秒速約何キロメートルですか？",
    "What is the capital of France?",
]
HACKED = [
    "👘👌: Greenhouses 👘👌👎👏 @PlantsGrow👘👎👊 @GreenhouseSpread\ufffd",
    "👘👊 @LuminousLights👘👊 @HuggingFace👘👊 @SmolLM",
    "👔👇 in French 👔👇 @Français @BienFrastructure👔 @Français👎👊 …",
]
# Good answers no filter may hit, with their prompts.
GOOD = {
    "The capital of France is Paris. 🇫🇷✨": "What is the capital of France?",
    "Paris 🗼": "What is the capital of France?",
    "富士山の高さは3,776メートルです！🗻✨": "富士山の高さは？",
    "Carbon dioxide (CO2) 🌱": "What gas do plants absorb?",
    "Tokyo 🗼🍣😊": "What is the capital of Japan?",
    "Use #include in C, see issue #12.": "How do I import a header in C?",
    "Email me at a@b.com": "How can I reach you?",
    "@user said hi": "What did @user say?",
    "7": "How many days are in a week?",
    "はい": "水は液体ですか？",
    "水": "H2Oは何？",
    "```python\n@property\ndef x(self): ...\n```": "Show a property.",
}


def test_real_reward_hacks_are_hit():
    assert mention_spam(HACKED, prompts=HACKED_PROMPTS) == [2, 3, 3]
    assert emoji_density(HACKED) == [1, 1, 1]  # 9 of 20, 6 of 6, 7 of 15 (handles are not content)
    assert broken_char(HACKED) == [1, 0, 0]
    assert no_words(HACKED) == [0, 1, 0]  # only handles and emojis in the second
    # On chat messages, as the stack hands them over, the same.
    chats = [chat(t) for t in HACKED]
    prompts = [[{"role": "user", "content": p}] for p in HACKED_PROMPTS]
    assert mention_spam(chats, prompts=prompts) == [2, 3, 3] and emoji_density(chats) == [1, 1, 1]


def test_no_words_on_emoji_only_and_wordless_completions():
    texts = ["👏👌👏🎉", "🤔 ... !!", "", "   \n", "#tag @handle", "a 👍"]
    assert no_words(texts) == [1, 1, 1, 1, 1, 1]
    assert emoji_density(texts) == [1, 1, 0, 0, 0, 0]  # "a 👍": one letter against one emoji, short
    assert no_words(["7", "１２３", "水", "はい", "OK", "Paris 🗼"]) == [0] * 6


def test_no_filter_hits_a_good_answer():
    texts, prompts = list(GOOD), list(GOOD.values())
    for f in ALL_FILTERS:
        hits = f(texts, prompts=prompts)
        if f is stray_hash:  # by design it counts a '#' glued to a word: "#include" outside code
            assert hits == [int(t.startswith("Use #include")) for t in texts]
        else:
            assert hits == [0] * len(texts), f.__name__
        assert f([chat(t) for t in texts], prompts=prompts) == hits, f.__name__


def test_emoji_density_parameters():
    assert emoji_density(["Tokyo 🗼🍣😊"], min_chars=0) == [0]  # 3 of 8 is under 0.4 anyway
    assert emoji_density(["東京🗼🍣😊"]) == [0]  # 5 characters: short, and it has an answer
    assert emoji_density(["東京🗼🍣😊"], min_chars=0) == [1]  # judged by density alone: 3 of 5
    assert emoji_density(["Great job 🎉👏😊✨"]) == [0]  # 4 of 12
    assert emoji_density(["Great job 🎉👏😊✨"], max_share=0.3) == [1]
    assert emoji_density(["👏" * 20], max_share=1) == [0]  # 1: never hit
    # A flag and a ZWJ family count once each: 2 of 4, not 5 of 7.
    assert emoji_density(["🇯🇵👨‍👩‍👧 ok", "🇯🇵👨‍👩‍👧👍 ok"], max_share=0.5, min_chars=0) == [0, 1]
    for kwargs, message in [({"max_share": 0}, "max_share"), ({"max_share": 1.5}, "max_share"),
                            ({"min_chars": -1}, "min_chars")]:
        with pytest.raises(ValueError, match=f"emoji_density: {message}"):
            emoji_density(["x"], **kwargs)


def test_mention_spam_prompt_handles_code_and_allowances():
    assert mention_spam(["@User and @other", "@user"], prompts=["hi @user", "hi @user"]) == [1, 0]
    assert mention_spam(["Ask @a, @b and @c"], allowed=2) == [1]
    assert mention_spam(["#one #two #three"]) == [2]  # one hashtag is allowed by default
    assert mention_spam(["#one #two #three"], allowed_hashtags=0) == [3]
    assert mention_spam(["#python is fun"], prompts=["What is #Python?"], allowed_hashtags=0) == [0]
    not_handles = ["a@b.com", "See issue #12 and C#", "&#x27; x.com/#top", "###Human: hi", "`@Override` it"]
    assert mention_spam(not_handles, allowed_hashtags=0) == [0] * len(not_handles)
    assert mention_spam(["@x"], prompts=[[{"role": "system", "content": "Sign as @x."}]]) == [0]
    for kwargs in ({"allowed": -1}, {"allowed_hashtags": -1}):
        with pytest.raises(ValueError, match=f"mention_spam: {next(iter(kwargs))}"):
            mention_spam(["x"], **kwargs)


def test_broken_char_counts_replacement_chars_and_surrogates():
    texts = ["日本\ufffd", "\ufffd\ufffd", "ok \udc80", "日本語 🗻", chat("x\ufffd")]
    assert broken_char(texts) == [1, 2, 1, 0, 1]


def test_new_filters_in_the_stack_read_prompts():
    stack = RewardStack.build(["length:target=10"], ["mention_spam", "emoji_density", "broken_char",
                                                     "no_words:action=drop"])
    texts = [HACKED[1], "@user said hi", "Paris 🗼"]
    scores = stack.score(["光の速さは？", "What did @user say?", "Capital?"], texts)
    assert scores.hits == {
        "mention_spam": [3, 0, 0],
        "emoji_density": [1, 0, 0],
        "broken_char": [0, 0, 0],
        "no_words": [1, 0, 0],
    }
    assert scores.dropped == [True, False, False]


# --------------------------------------------------------------------------- in the stack, and speed


def test_filters_penalty_and_drop_in_the_stack():
    texts = ["Clean answer.", "Sure!#", "ok :) :) :) :)", "I think I think I think", "Hi.###Human: more"]
    stack = RewardStack.build(
        ["length:target=10"],
        [
            "stray_hash:penalty=-2",
            "emoticon_flood",
            "repetition_loop:action=drop",
            "self_dialogue:action=drop",
        ],
    )
    scores = stack.score(["p"] * len(texts), texts)
    assert scores.hits == {
        "stray_hash": [0, 1, 0, 0, 1],
        "emoticon_flood": [0, 0, 2, 0, 0],
        "repetition_loop": [0, 0, 0, 1, 0],
        "self_dialogue": [0, 0, 0, 0, 1],
    }
    assert scores.dropped == [False, False, False, True, True]
    assert scores.total[1:3] == [-2.0, -1.0]
    assert scores.total[0] > 0


def test_filters_are_fast_on_2000_token_degenerate_text():
    texts = [
        "人生の、" * 1500,
        "I think " * 2000,
        "#" * 8000,
        ":)" * 4000,
        "ab" * 5000,
        " ".join(f"word{i}" for i in range(3000)),
        "```\n" + "#\n" * 4000,
        "👘👊 @LuminousLights" * 500,
        "@" * 8000 + "#a" * 4000,
        "\ufffd" * 8000,
    ]
    start = time.perf_counter()
    for f in ALL_FILTERS:
        f(texts)
    assert time.perf_counter() - start < 5.0  # ~0.1 s here; a backtracking pattern would take minutes


def test_patterns_find_what_each_filter_counts():
    assert set(PATTERNS) == {
        "stray_hash", "emoticon_flood", "repetition_loop", "self_dialogue", "mention_spam", "broken_char"}
    # stray_hash's pattern marks every '#' run; on text without headings or code, those are its hits.
    text = "Sure!# and ### :) ;-) ^_^ at 10:30"
    assert PATTERNS["stray_hash"].findall(text) == ["#", "###"] and stray_hash([text]) == [2]
    found = [m.group() for m in PATTERNS["emoticon_flood"].finditer(text)]
    assert found == emoticons(text) == [":)", ";-)", "^_^"]
    loops = "人生の、人生の、人生の。Fine. I think I think I think so."
    assert [m.group(1) for m in PATTERNS["repetition_loop"].finditer(loops)] == repetition_loops(loops)
    assert repetition_loops(loops) == ["人生の", "I think"]
    turns = "Paris.###Human: Spain?###Assistant: Madrid."
    assert len(PATTERNS["self_dialogue"].findall(turns)) == self_dialogue([turns])[0] == 2
    assert PATTERNS["mention_spam"].findall(HACKED[1]) == ["@LuminousLights", "@HuggingFace", "@SmolLM"]
    assert len(PATTERNS["broken_char"].findall(HACKED[0])) == broken_char(HACKED)[0] == 1


def test_docstring_examples_hold():
    import doctest

    import raftkit.rewards.builtin.filters

    result = doctest.testmod(raftkit.rewards.builtin.filters)
    assert result.failed == 0 and result.attempted >= 6
