"""`raftkit sft`: data formats, and a tiny model fine-tuned on demonstrations it then prefers."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from raftkit.cli import main
from raftkit.pipelines.sft_data import SFTDataError, parse_row, parse_rows


def test_rows_from_columns_and_from_messages():
    assert parse_row({"prompt": "Hi?", "completion": "Hello 👋"}, "r").completion == "Hello 👋"
    chat = parse_row({"messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Capital of France?"},
                                   {"role": "assistant", "content": "Paris 🇫🇷"}]}, "r")
    assert chat.completion == "Paris 🇫🇷" and [m["role"] for m in chat.prompt] == ["system", "user"]
    renamed = parse_row({"q": "2+2?", "a": [{"role": "assistant", "content": "4"}]}, "r",
                        prompt_column="q", completion_column="a")
    assert (renamed.prompt, renamed.completion) == ("2+2?", "4")


@pytest.mark.parametrize(("row", "message"), [
    ({"text": "x"}, "expected 'prompt' and 'completion'"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, "assistant's"),
    ({"prompt": "a", "completion": 3}, "must be text"),
])
def test_bad_rows_name_the_row(row, message):
    with pytest.raises(SFTDataError, match=message):
        parse_rows([{"prompt": "ok", "completion": "ok"}, row], "data.jsonl")
    with pytest.raises(SFTDataError, match="row 2"):
        parse_rows([{"prompt": "ok", "completion": "ok"}, row], "data.jsonl")


@pytest.mark.slow
def test_sft_learns_the_demonstrations_and_writes_a_model(tiny_model_path, tmp_path):
    data = tmp_path / "demos.jsonl"
    rows = [{"prompt": f"Question {i}?", "completion": "Yes 😊"} for i in range(12)]
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    out = tmp_path / "sft"
    result = CliRunner().invoke(main, ["sft", "--dataset", str(data), "--model", tiny_model_path,
                                       "--output", str(out), "--epochs", "3", "--lr", "3e-3",
                                       "--heldout-share", "0.25"])
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["heldout/loss"] < metrics[0]["heldout/loss"] - 0.5  # held-out demos got likelier
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert (out / "model" / "config.json").is_file()
    again = CliRunner().invoke(main, ["sft", "--dataset", str(data), "--output", str(out)])
    assert again.exit_code != 0 and "not a new or empty folder" in again.output  # nothing overwritten
