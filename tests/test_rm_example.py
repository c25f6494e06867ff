"""The reward-model example: the shipped preference set (scripts/make_preferences.py) and the pipeline
examples/reward_model_pipeline.sh (train-rm -> align with the RM -> eval) at a tiny budget."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import emoji
import pytest

from raftkit.datasets import HELDOUT
from raftkit.pipelines.pairs import load_pairs
from raftkit.rewards.builtin.rules import answer_match

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ROOT / "benchmarks" / "data" / "preferences.jsonl"
SCRIPT = ROOT / "examples" / "reward_model_pipeline.sh"


def _maker():
    path = ROOT / "scripts" / "make_preferences.py"
    spec = importlib.util.spec_from_file_location("make_preferences", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_shipped_preferences_are_the_scripts_output(tmp_path):
    maker = _maker()
    maker.main(["--output", str(tmp_path / "again.jsonl")])
    assert (tmp_path / "again.jsonl").read_bytes() == PAIRS.read_bytes()  # rerun it after changing it
    maker.main(["--output", str(tmp_path / "seed1.jsonl"), "--seed", "1"])
    assert (tmp_path / "seed1.jsonl").read_bytes() != PAIRS.read_bytes()
    maker.main(["--output", str(tmp_path / "few.jsonl"), "--limit", "8"])
    assert _rows(tmp_path / "few.jsonl") == _rows(PAIRS)[:8]
    three = maker.make_pairs(per_prompt=3)
    assert len(three) == 3 * len(_rows(PAIRS))
    assert {r["kind"] for r in three[:3]} == set(maker.KINDS)  # each kind once per prompt


def test_the_shipped_preferences_are_valid_pairs_from_train_prompts_only():
    pairs = load_pairs(str(PAIRS))  # the reader train-rm and dpo use
    rows = _rows(PAIRS)
    assert len(pairs.pairs) == len(rows) == 220 and pairs.skipped == 0

    bundled = _rows(ROOT / "raftkit" / "data" / "prompts.jsonl")
    held = {json.dumps(r["prompt"]) for r in bundled if r.get("split") == HELDOUT}
    train = {json.dumps(r["prompt"]) for r in bundled if r.get("split") != HELDOUT}
    used = [json.dumps(r["prompt"]) for r in rows]
    assert len(held) == 40 and not held & set(used)  # never a held-out prompt
    assert sorted(used) == sorted(train)  # every train prompt, one pair each

    kinds = Counter((r["lang"], r["kind"]) for r in rows)
    assert set(kinds) == {(lang, k) for lang in ("en", "ja") for k in ("ramble", "spam", "wrong_answer")}
    assert max(kinds.values()) - min(kinds.values()) <= 1  # balanced within each language

    answers = [r["answers"] for r in rows]
    chosen = [r["chosen"] for r in rows]
    assert answer_match(chosen, answers=answers) == [1.0] * len(rows)
    assert all(1 <= emoji.emoji_count(c) <= 2 and len(c) < 60 for c in chosen)
    for r in rows:
        rejected, n_emoji = r["rejected"], emoji.emoji_count(r["rejected"])
        keeps_answer = answer_match([rejected], answers=[r["answers"]])[0]
        if r["kind"] == "ramble":
            assert n_emoji == 0 and len(rejected) > 3 * len(r["chosen"]) and keeps_answer == 1.0
        elif r["kind"] == "spam":
            assert n_emoji >= 10 and "@everyone" in rejected and keeps_answer == 1.0
        else:  # the same sentence and emojis with another row's answer
            assert keeps_answer == 0.0 and n_emoji == emoji.emoji_count(r["chosen"])
            assert emoji.distinct_emoji_list(rejected) == emoji.distinct_emoji_list(r["chosen"])
        if r["lang"] == "ja":
            assert any("\u3040" <= ch <= "\u30ff" for ch in r["chosen"])  # a Japanese sentence


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="the example is a bash script")
def test_the_reward_model_pipeline_runs_tiny(tiny_model_path, tmp_path):
    from raftkit.rewards.builtin.neural import reward_model

    out = tmp_path / "rm-pipeline"
    env = {**os.environ, "SIZE": "tiny", "MODEL": tiny_model_path, "PYTHON": sys.executable,
           "RAFTKIT": str(Path(sys.executable).with_name("raftkit")), "COLUMNS": "200"}
    run = subprocess.run(["bash", str(SCRIPT), str(out)], env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "RM held-out pair accuracy (2 pairs)" in run.stdout and "answer accuracy" in run.stdout

    # 1. The preference file the tiny run made is the shipped set's first 8 pairs, valid for pairs.py.
    assert _rows(out / "preferences.jsonl") == _rows(PAIRS)[:8]
    assert len(load_pairs(str(out / "preferences.jsonl")).pairs) == 8
    # 2. train-rm finished, with the epoch-0 baseline and one epoch; its folder works as a reward.
    info = json.loads((out / "rm" / "run.json").read_text())
    assert info["status"] == "finished" and info["pairs"] == {"train": 6, "heldout": 2, "skipped": 0}
    epochs = [json.loads(line) for line in (out / "rm" / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [0, 1] and 0 <= epochs[-1]["heldout/accuracy"] <= 1
    row = _rows(PAIRS)[0]
    scores = reward_model([row["prompt"]] * 2, [row["chosen"], row["rejected"]],
                          model=str(out / "rm" / "model"))
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores) and scores[0] != scores[1]
    # 3. align ran one iteration with the RM as its reward, and wrote a run directory with metrics.
    align = out / "align"
    assert json.loads((align / "run.json").read_text())["status"] == "finished"
    metrics = [json.loads(line) for line in (align / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and math.isfinite(metrics[0]["rewards/reward_model/mean"])
    assert (align / "model" / "config.json").is_file()
    # 4. eval compared base and aligned model on held-out prompts with the RM, emoji and answer accuracy.
    results = json.loads((out / "eval.json").read_text())
    for side in ("base_eval", "model_eval"):
        got = results[side]
        assert got["prompts"] == 2 and set(got["rewards"]) == {"reward_model", "emoji"}
        assert got["accuracy"] is not None and got["answered_samples"] == 2
    bundled = _rows(ROOT / "raftkit" / "data" / "prompts.jsonl")
    rows = [e["row"] for e in results["model_eval"]["examples"]]
    assert rows and all(bundled[i]["split"] == HELDOUT for i in rows)  # the held-out prompts only
