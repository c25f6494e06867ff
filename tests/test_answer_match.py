"""The built-in answer_match reward on hand-made English and Japanese answers, and through the stack."""

from __future__ import annotations

from raftkit import RewardStack
from raftkit.rewards.builtin.rules import answer_match, normalize_answer
from raftkit.rollouts import Batch, Rollout


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_answer_match_english_answers_match_on_word_boundaries():
    cases = [
        ("The capital of France is Paris.", ["Paris"], 1.0),
        ("PARIS 🗼", ["Paris"], 1.0),
        ("Paris🗼is lovely", ["Paris"], 1.0),  # an emoji separates words
        ("Parisian food", ["Paris"], 0.0),  # a longer word is not the answer
        ("There are 17 days", ["7"], 0.0),
        ("It happened in 1789.", ["7"], 0.0),
        ("It is 3.5 metres", ["3"], 0.0),  # a decimal continues the number
        ("A week has 7 days.", ["7"], 1.0),
        ("7️⃣ days", ["7"], 1.0),  # a keycap emoji is its digit
        ("A category of its own", ["cat"], 0.0),
        ("Carbon dioxide (CO2) 🌱", ["carbon dioxide", "CO2"], 1.0),
        ("carbon   dioxide", ["Carbon Dioxide"], 1.0),  # whitespace collapsed
        ("No idea.", ["Paris"], 0.0),
    ]
    got = answer_match([c for c, _, _ in cases], answers=[a for _, a, _ in cases])
    assert got == [want for _, _, want in cases]


def test_answer_match_japanese_answers_match_as_substrings():
    cases = [
        ("一週間は７日です", ["7", "七"], 1.0),  # full-width digit, a CJK neighbour does not block it
        ("一週間は七日です", ["7", "七"], 1.0),
        ("一週間は17日です", ["7", "七"], 0.0),
        ("富士山の高さは3,776メートルです", ["3776"], 1.0),  # thousands separator
        ("富士山の高さは３，７７６メートル", ["3,776"], 1.0),  # and the other way round, full-width
        ("東京です🗼", ["東京", "Tokyo"], 1.0),
        ("京都です", ["東京", "Tokyo"], 0.0),
    ]
    got = answer_match([c for c, _, _ in cases], answers=[a for _, a, _ in cases])
    assert got == [want for _, _, want in cases]


def test_answer_match_rows_without_answers_are_none():
    assert answer_match(["Paris"]) == [None]  # no answers column at all: not an error
    assert answer_match(["Paris", "Paris", "Paris"], answers=[[], None, ["", None]]) == [None, None, None]


def test_answer_match_single_string_and_chat_completions():
    assert answer_match(["I live in Tokyo!", "Osaka"], answers=["Tokyo", "Tokyo"]) == [1.0, 0.0]
    assert answer_match([chat("東京です")], answers=[["東京"]]) == [1.0]
    assert answer_match(["The answer is 42"], answers=[[42]]) == [1.0]  # a number as the answer


def test_answer_match_normalize_answer():
    assert normalize_answer("  ＰＡＲＩＳ\t🗼 1,000,000 ") == "paris 1000000"
    assert normalize_answer("1,2,3") == "1,2,3"  # a list, not thousands


def test_answer_match_answers_column_reaches_answer_match_in_the_stack():
    stack = RewardStack.build(["answer_match"])
    assert stack.rewards[0].params == {}  # `answers` is the column, not a parameter
    scores = stack.score(
        ["Capital of France?", "一週間は何日？", "Say hi"],
        ["Paris 🗼", "17日", "hi"],
        {"answers": [["Paris"], ["7", "七"], None]},
    )
    assert scores.rewards["answer_match"] == [1.0, 0.0, None]
    assert scores.total == [1.0, 0.0, 0.0]
    # As the loop scores rollouts: each completion gets its prompt's row of the column.
    rollouts = [
        Rollout(prompt_index=p, prompt=q, completion=c, completion_ids=[1], logprobs=[0.0])
        for p, q, c in [(0, "A?", "It is Paris."), (0, "A?", "Lyon"), (1, "B?", "東京です")]
    ]
    batch = Batch(prompts=["A?", "B?"], columns={"answers": [["Paris"], ["東京", "Tokyo"]]})
    assert stack.score_rollouts(rollouts, batch).rewards["answer_match"] == [1.0, 0.0, 1.0]
    # A dataset without the column: None for every sample, not an error.
    assert stack.score(["q"], ["Paris"]).rewards["answer_match"] == [None]


def test_answer_match_gives_no_false_credit():
    cases = [
        ("I write C++ every day", ["C"]),  # + and # are word characters: C++ and C# are other words
        ("C# is my language", ["C"]),
        ("It is 7,5 m long", ["7"]),  # a decimal comma continues the number: 7.5
        ("The answer is -5.", ["5"]),  # a sign belongs to the number
        ("About −5 degrees", ["5"]),  # U+2212 MINUS SIGN too
        ("Three quarters: 3/4", ["3"]),  # a fraction is one number
        ("It grows as 10²", ["102"]),  # a superscript is an exponent, not a digit: 100
        ("It grows as 10²", ["2"]),
        ("Version 3.5.1", ["5"]),
    ]
    got = answer_match([c for c, _ in cases], answers=[a for _, a in cases])
    assert got == [0.0] * len(cases), [c for (c, _), g in zip(cases, got, strict=True) if g]


def test_answer_match_credits_what_it_used_to_miss():
    cases = [
        ("The capital is Pa\u200bris.", ["Paris"]),  # a zero-width space inside the word
        ("The city is İstanbul", ["Istanbul"]),  # dotted capital I casefolds to i + U+0307
        ("İSTANBUL", ["istanbul"]),
        ("Mount Fuji is 3\u2009776 m high", ["3776"]),  # thin space as a thousands separator
        ("Mount Fuji is 3\u202f776 m high", ["3776"]),  # narrow no-break space
        ("ارتفاعه ٣٧٧٦ مترا", ["3776"]),  # Arabic-Indic digits
        ("The answer: 🎉", ["🎉"]),  # an emoji-only answer is an answer, not a missing one
        ("Hearts ❤️ all round", ["❤"]),  # with or without the emoji variation selector
        ("It is 7,5 m long", ["7.5"]),  # the same number written with a decimal comma
        ("The answer is -5.", ["-5"]),
        ("About −5 degrees", ["-5"]),
        ("Three quarters: 3/4", ["0.75"]),  # numbers are compared as numbers
        ("It grows as 10²", ["100"]),
        ("I write C++ every day", ["C++"]),
        ("Pages 5-7", ["7"]),  # a hyphen after a digit is a range, not a sign
        ("1, 2, 3", ["2"]),
    ]
    got = answer_match([c for c, _ in cases], answers=[a for _, a in cases])
    assert got == [1.0] * len(cases), [c for (c, _), g in zip(cases, got, strict=True) if g != 1.0]
    assert answer_match(["no emoji here", "👍"], answers=[["🎉"], ["🎉"]]) == [0.0, 0.0]
