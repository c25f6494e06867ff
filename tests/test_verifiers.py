"""The built-in math_verify reward and the example's own verifier, on hand-checked answers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from raftkit.rewards import RewardError, RewardStack
from raftkit.rewards.builtin.verifiers import math_verify

EXAMPLE = Path(__file__).parent.parent / "examples" / "verifiable"


def test_math_verify_compares_values_and_reads_the_last_expression():
    completions = ["So 3 + 4 = 7.", "4 + 3 = 7", "It is 14/2.", "\\boxed{7}", "seven", "7 or 8"]
    assert math_verify(completions, solution=["7", "4", "7", "7", "7", "7"]) == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0]


def test_math_verify_gives_none_where_the_gold_answer_does_not_parse_and_reads_chat_messages():
    chat = [[{"role": "assistant", "content": "The answer is 12."}]] * 2
    assert math_verify(chat, solution=["12", "no answer here"]) == [1.0, None]


def test_math_verify_names_its_column_when_it_is_missing():
    stack = RewardStack.build(["math_verify"], [])
    with pytest.raises(RewardError, match=r"column named 'solution'.*math_verify:column=NAME"):
        stack.score(["q"], ["7"])
    other = RewardStack.build(["math_verify:column=gold"], [])
    assert other.score(["q"], ["7"], {"gold": ["7"]}).total == [1.0]


def test_math_verify_runs_on_the_stacks_worker_threads():
    """Its library times parsing with signal.alarm, which fails off the main thread: the reward turns that
    off, and the stack (which calls every reward on a thread of its own) gets a value."""
    stack = RewardStack.build(["math_verify"], [], timeout=30)
    assert stack.score(["q", "q"], ["2 + 2 = 4", "5"], {"solution": ["4", "4"]}).total == [1.0, 0.0]


def test_the_example_verifier_and_its_data():
    spec = importlib.util.spec_from_file_location("example_reward", EXAMPLE / "reward.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = module.last_number(["3 + 4 = 7.", "It is 1,000", "no"], solution=["7", "1000", "x"])
    assert found == [1.0, 1.0, None]
    train = (EXAMPLE / "train.jsonl").read_text().splitlines()
    heldout = (EXAMPLE / "heldout.jsonl").read_text().splitlines()
    assert (len(train), len(heldout)) == (1000, 200)
    assert not set(train) & set(heldout)


def test_an_answer_that_restates_the_question_earns_nothing():
    """math-verify evaluates the trailing `49 - 12` to 37: a policy trained on arithmetic learnt to end with
    the question's expression after a wrong answer, and was credited. The restatement earns nothing now; a
    worked answer that ends in the value still earns 1."""
    prompts = [[{"role": "user", "content": "Compute 49 - 12."}]] * 6
    completions = ["…which gives us 18. So, 49 - 12 = ", "49-12", "12 is the answer to 49 - 12.",
                   "31 is 12 + 49 - 12 - 12.", "49 - 12 = 37", "It is 37."]
    assert math_verify(completions, solution=["37"] * 6, prompts=prompts) == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    stack = RewardStack.build(["math_verify"], [])
    assert stack.score(prompts[:1], completions[:1], {"solution": ["37"]}).total == [0.0]


JSON_EXAMPLE = Path(__file__).parent.parent / "examples" / "json-answer"


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_json_answer_reward_takes_the_object_alone():
    json_answer = _module(JSON_EXAMPLE / "reward.py").json_answer
    completions = ['{"answer": "Na"}', '```json\n{"answer": "Na", "note": "x"}\n```',
                   'Here it is: {"answer": "Na"}', '{"answer": ""}', '{"answer": 11}', '["Na"]',
                   [{"role": "assistant", "content": ' {"answer":"Earth"} '}]]
    assert json_answer(completions) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def test_the_json_answer_data_keeps_the_held_out_questions_apart(tmp_path, monkeypatch):
    make_data = _module(JSON_EXAMPLE / "make_data.py")
    monkeypatch.setattr(make_data, "HERE", tmp_path)
    make_data.main()
    rows = {name: [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
            for name in ("train", "heldout")}
    questions = {name: {r["prompt"][-1]["content"] for r in data} for name, data in rows.items()}
    assert len(rows["train"]) == 110 and len(rows["heldout"]) >= 100
    assert not questions["train"] & questions["heldout"]
    assert all(q.endswith(make_data.ASK) and r["answers"] for data in rows.values() for r in data
               for q in [r["prompt"][-1]["content"]])
