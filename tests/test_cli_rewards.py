"""`raftkit rewards` and `raftkit score` through the real click commands."""

from __future__ import annotations

import importlib.metadata
import json
import math
import time

import pytest
from click.testing import CliRunner
from conftest import inline_plugin

from raftkit.cli import main
from raftkit.rewards import plugin_manager

ROWS = [
    {"prompt": "Capital of France?", "completion": "Paris! 🇫🇷😊", "answer": "Paris"},
    {
        "prompt": [{"role": "user", "content": "日本の首都は？"}],
        "completion": "東京です。人生の、人生の、人生の",
        "answer": "東京",
    },
    {"prompt": "Hi", "completion": "Sure!# :) :) ;) :D", "answer": None},
]


def run(*args: str, input: str | None = None):
    # A wide terminal, so rich does not wrap the table cells the assertions look for.
    return CliRunner().invoke(main, list(args), input=input, env={"COLUMNS": "250"})


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n", encoding="utf-8")
    return str(path)




# --------------------------------------------------------------------------- raftkit rewards


def test_rewards_table_lists_every_kind_with_parameters():
    result = run("rewards")
    assert result.exit_code == 0, result.output
    for text in (
        "emoji",
        "length",
        "stray_hash",
        "reward_model",
        "shout",
        "raftkit:rules",
        "filter",
        "neural",
        "max: int = 4",
        "(required)",
        "Number of emojis",
    ):
        assert text in result.output, text


def test_rewards_json():
    data = json.loads(run("rewards", "--json").output)
    by_name = {r["name"]: r for r in data["rewards"]}
    assert by_name["length"]["params"][:2] == [
        {"name": "target", "type": "int", "required": False, "default": 30},
        {"name": "alpha", "type": "float", "required": False, "default": 0.15},
    ]
    assert by_name["stray_hash"]["kind"] == "filter" and by_name["similarity"]["kind"] == "neural"
    assert data["failures"] == []


def test_rewards_lists_plugins_that_failed_to_load(monkeypatch):
    real = importlib.metadata.entry_points(group="raftkit")
    broken = importlib.metadata.EntryPoint(name="broken", value="raftkit_no_such_module_xyz", group="raftkit")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [broken, *real])
    plugin_manager.cache_clear()
    try:
        table, as_json = run("rewards"), run("rewards", "--json")
    finally:
        plugin_manager.cache_clear()
    assert table.exit_code == 0 and "1 plugin(s) failed to load" in table.output
    assert "broken: ModuleNotFoundError: No module named 'raftkit_no_such_module_xyz'" in table.output
    assert "emoji" in table.output  # the others still listed
    assert json.loads(as_json.output)["failures"][0]["plugin"] == "broken"


def test_duplicate_names_are_a_clean_cli_error():
    def emoji(completions, **kwargs):
        return [0.0] * len(completions)

    with inline_plugin(emoji):
        result = run("rewards")
    # One bad plugin does not take the command down: it is listed as a failure, the others still show.
    assert result.exit_code == 0 and "1 plugin(s) failed to load" in result.output
    assert "inline-test" in result.output and "RAFTKIT_LOAD_PLUGINS" in result.output
    assert "stray_hash" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("command", ["rewards", "score"])
def test_help_shows_examples(command):
    result = run(command, "--help")
    assert result.exit_code == 0 and "Examples:" in result.output and f"raftkit {command}" in result.output


# --------------------------------------------------------------------------- raftkit score


def test_score_json_one_object_per_row(jsonl):
    result = run(
        "score",
        "-r",
        "emoji",
        "-r",
        "length:target=10*2",
        "-r",
        "keyword:words=paris",
        "-f",
        "stray_hash",
        "-f",
        "emoticon_flood:action=drop",
        "-i",
        jsonl,
        "--json",
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert len(rows) == 3
    assert [r["emoji"] for r in rows] == [2.0, 0.0, 0.0]
    # "Paris! 🇫🇷😊" is 10 characters (the flag is two code points); "Sure!# :) :) ;) :D" is 18.
    assert rows[0]["length"] == 1.0 and rows[2]["length"] == pytest.approx(math.exp(-0.15 * 8))
    assert rows[0]["total"] == 2.0 + 2 * 1.0 + 1.0
    assert [r["stray_hash"] for r in rows] == [0, 0, 1] and [r["emoticon_flood"] for r in rows] == [0, 0, 2]
    assert [r["dropped"] for r in rows] == [False, False, True]
    assert set(rows[0]) == {"prompt", "completion", "emoji", "length", "keyword", "stray_hash",
                            "emoticon_flood", "total", "dropped"}
    # The text as the input held it: a chat prompt stays a list, its completion the plain string.
    assert [r["prompt"] for r in rows] == [ROWS[0]["prompt"], ROWS[1]["prompt"], "Hi"]
    assert [r["completion"] for r in rows] == [r["completion"] for r in ROWS]


def test_score_columns_reach_rewards_and_chat_prompts_get_chat_completions(tmp_path, jsonl):
    seen = {}

    def spy(prompts, completions, answer, **kwargs):
        seen.update(completions=completions, answer=answer)
        return [0.0] * len(completions)

    with inline_plugin(spy):
        result = run("score", "-r", "spy", "-i", jsonl, "--json")
    assert result.exit_code == 0, result.output
    assert seen["answer"] == ["Paris", "東京", None]
    assert seen["completions"][1] == [{"role": "assistant", "content": "東京です。人生の、人生の、人生の"}]
    assert seen["completions"][0] == "Paris! 🇫🇷😊"


def test_score_table(jsonl):
    result = run("score", "-r", "emoji", "-f", "repetition_loop", "-i", jsonl)
    assert result.exit_code == 0, result.output
    assert "scores of 3 completion(s)" in result.output and "mean" in result.output
    assert "0.667" in result.output and "1/3 hit" in result.output


def test_score_csv_and_stdin(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text('prompt,completion,answer\nq,"Hello, 😊😊",x\nq,plain,y\n', encoding="utf-8")
    from_csv = run("score", "-r", "emoji", "-i", str(path), "--json")
    assert [json.loads(line)["emoji"] for line in from_csv.output.splitlines()] == [2.0, 0.0]
    from_stdin = run("score", "-r", "emoji", "-i", "-", "--json", input=path.read_text(encoding="utf-8"))
    assert from_stdin.output == from_csv.output


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (["-r", "emoj"], None, "unknown reward or filter 'emoj'. Did you mean 'emoji'?"),
        (["-r", "length:target=far"], None, "parameter 'target' expects int, got 'far'"),
        ([], None, "give at least one --reward"),
        (["-r", "emoji", "-i", "/no/such/file.jsonl"], None, "/no/such/file.jsonl: no such file"),
        (["-r", "emoji"], '{"prompt": "q", "completion": "a"}\n{oops\n', "line 2: not valid JSON"),
        (["-r", "emoji"], '{"prompt": "q", "text": "a"}\n', "no 'completion' column (columns: prompt, text)"),
        (["-r", "emoji"], "[1, 2]\n", "expected a JSON list of objects"),
    ],
)
def test_score_errors_are_clean(tmp_path, args, content, message):
    if content is not None:
        path = tmp_path / "bad.jsonl"
        path.write_text(content, encoding="utf-8")
        args = [*args, "-i", str(path)]
    elif "-i" not in args and args:
        args = [*args, "-i", "-"]
    result = run("score", *args, input='{"prompt": "q", "completion": "a"}\n')
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output


def test_score_reward_error_names_reward_and_input_row(tmp_path):
    def picky(completions, **kwargs):
        return [1.0 / len(c) for c in completions]

    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps({"prompt": "q", "completion": c}) + "\n" for c in ["a", "b", "", "d"]))
    with inline_plugin(picky):
        result = run("score", "-r", "picky", "-i", str(path), "--batch-size", "2")
    assert result.exit_code == 1
    assert "reward 'picky' raised ZeroDivisionError" in result.output and "input row 3" in result.output


def test_score_reward_timeout(jsonl):
    def sleepy(completions, **kwargs):
        time.sleep(5)
        return [0.0] * len(completions)

    start = time.perf_counter()
    with inline_plugin(sleepy):
        result = run("score", "-r", "sleepy", "-i", jsonl, "--reward-timeout", "0.3")
    assert time.perf_counter() - start < 3
    assert result.exit_code == 1 and "reward 'sleepy' did not return within 0.3 s" in result.output


def test_preflight_on_a_dataset_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(
        "".join(
            json.dumps({"question": q, "answer": a}, ensure_ascii=False) + "\n"
            for q, a in [("Capital of Japan?", "Tokyo"), ("日本の首都は？", "東京")]
        )
    )

    def needs_answer(completions, answer, **kwargs):
        return [float(a in c) for c, a in zip(completions, answer, strict=True)]

    with inline_plugin(needs_answer):
        result = run(
            "score",
            "-r",
            "emoji",
            "-r",
            "needs_answer",
            "-r",
            "format",
            "-f",
            "repetition_loop",
            "--dataset",
            str(path),
            "--prompt-column",
            "question",
            "--json",
        )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == 2 and report["completions"] == 7  # every dummy completion used once
    by_name = {r["name"]: r for r in report["results"]}
    assert all(r["ok"] for r in report["results"])
    assert by_name["emoji"]["max"] == 2.0  # the emoji dummy
    assert by_name["repetition_loop"]["max"] >= 1  # the 2,000-token loop dummy
    assert by_name["format"]["max"] == 1.0  # the <think> dummy
    assert by_name["emoji"]["seconds_per_1000"] > 0


def test_preflight_reports_a_broken_reward(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "q"}\n')

    def wrong_length(completions, **kwargs):
        return [0.0]

    def strict_signature(prompts, completions):
        return [0.0] * len(completions)

    args = ["score", "-r", "wrong_length", "-r", "strict_signature", "-r", "emoji", "--dataset", str(path)]
    with inline_plugin(wrong_length, strict_signature):
        table, as_json = run(*args), run(*args, "--json")
    assert table.exit_code == as_json.exit_code == 1
    assert "FAILED" in table.output and "Error: pre-flight failed for wrong_length" in table.output
    results = {r["name"]: r for r in json.loads(as_json.stdout)["results"]}
    assert "reward 'wrong_length' returned 1 values for 7 completions" in results["wrong_length"]["error"]
    assert results["emoji"]["ok"]
    # Without **kwargs it cannot take the completion_ids every trainer passes.
    assert "unexpected keyword argument 'completion_ids'" in results["strict_signature"]["error"]


COUNT_IDS = '''
def n_ids(completion_ids, **kwargs):
    return [len(ids) for ids in completion_ids]
'''


def test_score_passes_completion_ids_from_the_models_tokenizer(tmp_path, default_tokenizer):
    (tmp_path / "ids.py").write_text(COUNT_IDS)
    rows = [{"prompt": "p", "completion": "Paris is the capital of France."}]
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n")
    result = run("score", "-r", f"{tmp_path}/ids.py:n_ids", "-i", str(path), "--json")
    assert result.exit_code == 0, result.output
    expected = len(default_tokenizer(rows[0]["completion"], add_special_tokens=False)["input_ids"])
    assert json.loads(result.output)["n_ids"] == expected > 3
    # A --model without a tokenizer is an error; a completion_ids column is used as it is.
    result = run("score", "-r", f"{tmp_path}/ids.py:n_ids", "-i", str(path), "--model", str(tmp_path))
    assert result.exit_code == 1 and f"--model {tmp_path}: no tokenizer loads from there" in result.output
    path.write_text(json.dumps({**rows[0], "completion_ids": [1, 2]}) + "\n")
    result = run("score", "-r", f"{tmp_path}/ids.py:n_ids", "-i", str(path), "--json")
    assert json.loads(result.output)["n_ids"] == 2


def has_ids(completions, **kwargs):
    return [float("completion_ids" in kwargs)] * len(completions)


def test_an_unprepared_default_model_is_not_converted_for_a_kwargs_reward(tmp_path, monkeypatch):
    import raftkit

    monkeypatch.setenv("RAFTKIT_CACHE", str(tmp_path))  # a machine where the bundled model is not ready
    assert raftkit.score(["p"], ["a b"], [has_ids])[0]["has_ids"] == 0.0
    assert list(tmp_path.iterdir()) == []  # nothing was converted for a reward that did not ask by name
