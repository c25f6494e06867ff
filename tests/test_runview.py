"""runview, rolloutview and highlight: reading run directories and rollout files, on runs built here
(finished, killed, crashed, old, corrupt) and on hand-computed numbers."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from raftkit import highlight
from raftkit.runs import rolloutview, runview
from raftkit.runs.rundir import RunWriter, iteration_dir


def sample(it: int, row: int, k: int, completion: str, total: float, **extra) -> dict:
    rec = {"iteration": it, "prompt_index": row, "row": row, "sample": k, "prompt": f"question {row}",
           "completion": completion, "rewards": {"emoji": total, "length": 0.0}, "hits": {"stray_hash": 0},
           "total": total, "dropped": False, "selected": False}
    rec.update(extra)
    return rec


def metrics(it: int, total: float, **extra) -> dict:
    return {"rewards/emoji/mean": total, "selected/rewards/emoji/mean": total + 1, "reward": total,
            "length/chars_mean": 10.0, "distinct_2": 0.5, "filter/stray_hash/rate": 0.25, **extra}


def make_run(root: Path, iterations: int = 3, finish: str | None = "finished",
             error: str | None = None) -> Path:
    w = RunWriter.create(root, {"algo": "raft", "model": "tiny", "rewards": ["emoji", "length:target=30"],
                                "filters": ["stray_hash"], "k": 2, "prompts_per_iteration": 2,
                                "iterations": iterations}, "raft")
    for it in range(1, iterations + 1):
        rolls = [sample(it, r, k, f"answer {r}.{k} at {it}", float(r + k + it))
                 for r in range(2) for k in range(2)]
        w.write_iteration(it, rolls)
        w.commit_iteration(it, metrics(it, float(it)))
    if finish:
        w.finish(finish, error)
    return root


def from_another_host(root: Path) -> Path:
    """The run as another machine left it: its process (recorded in run.json) cannot be checked from here."""
    info = json.loads((root / "run.json").read_text())
    info["host"] = "another-host"
    (root / "run.json").write_text(json.dumps(info))
    return root


# --------------------------------------------------------------------------- small helpers


def test_sparkline_by_hand():
    # lo 0, hi 7: (v - lo) / 7 * 8 -> 0, 1.14, 2.29, 3.43, 8 (clamped to 7): blocks 0, 1, 2, 3, 7.
    assert runview.sparkline([0, 1, 2, 3, None, 7]) == "▁▂▃▄ █"
    assert runview.sparkline([2.0, 2.0]) == "▅▅"  # a flat series sits in the middle
    assert runview.sparkline([None, float("nan")]) == "  "


def test_fold_keeps_head_and_tail():
    text, cut = highlight.fold("a" * 50 + "TAIL", 20, tail=4)
    assert text == "a" * 15 + " … TAIL" and cut == 54 - 19
    assert highlight.fold("short", 20) == ("short", 0)


def test_group_keys_by_prefix_with_labels_holding_slashes():
    g = runview.group_keys([{"iteration": 1, "rewards/emoji/mean": 1, "rewards/a/b/std": 2,
                             "reward": 3, "selected/reward": 4, "explore/rewards/emoji/mean": 0.5,
                             "filter/stray_hash/rate": 0.1, "kl": 0.2, "weird/key": 1}])
    assert g.rewards == ["emoji", "a/b"]
    assert g.reward_stats == {"emoji": ["mean", "explore_mean"], "a/b": ["std"],
                              "total": ["mean", "selected_mean"]}
    assert g.filters == ["stray_hash"] and g.has_total
    assert g.other == ["kl", "weird/key"]


def test_prompt_text_of_chat_messages_skips_system():
    chat = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]
    assert rolloutview.prompt_text(chat) == "hi"
    assert rolloutview.completion_text([{"role": "assistant", "content": "yo"}]) == "yo"


def test_highlight_spans_find_seed_003_hacks():
    text = "Paris. ### :) :) :)\n###Human: more"
    names = [name for _, _, name in highlight.hit_spans(text)]
    assert names.count("stray_hash") == 2
    assert names.count("emoticon_flood") == 3
    assert "self_dialogue" in names
    assert highlight.hit_spans("The time is 10:30, see http://x.y") == []


def test_highlight_uses_the_filters_patterns_and_falls_back(monkeypatch):
    from raftkit.rewards.builtin.filters import PATTERNS
    from raftkit.text import SELF_DIALOGUE

    highlight.highlight_patterns.cache_clear()
    assert highlight.highlight_patterns() == PATTERNS  # the very same compiled patterns, no copies
    # A filters module that cannot be imported leaves the shared self-dialogue pattern.
    monkeypatch.setitem(sys.modules, "raftkit.rewards.builtin.filters", None)
    highlight.highlight_patterns.cache_clear()
    try:
        assert highlight.highlight_patterns() == {"self_dialogue": SELF_DIALOGUE}
        assert [n for _, _, n in highlight.hit_spans("ok ### :) :)\nUser: hi")] == ["self_dialogue"]
    finally:
        monkeypatch.undo()
        highlight.highlight_patterns.cache_clear()


# --------------------------------------------------------------------------- run summaries


def test_finished_run_summary(tmp_path):
    s = runview.load_summary(make_run(tmp_path / "run"))
    assert s.status == "finished" and s.status_line.startswith("finished: 3 iterations complete of 3")
    assert s.iterations() == [1, 2, 3]
    assert s.series("reward") == [1.0, 2.0, 3.0]
    assert s.groups.rewards == ["emoji"] and s.groups.filters == ["stray_hash"]
    assert s.missing == [] and s.problems == [] and s.partial == []
    cfg = s.config_summary()
    assert cfg["algorithm"] == "raft" and cfg["k"] == 2 and cfg["rewards"] == ["emoji", "length:target=30"]


def test_killed_run_mid_iteration(tmp_path):
    root = from_another_host(make_run(tmp_path / "run", finish=None))
    # Iteration 4 was being written when the process died: rollouts, no metrics, a half line at the end.
    d = iteration_dir(root, 4)
    d.mkdir()
    (d / "rollouts.jsonl").write_text(json.dumps(sample(4, 0, 0, "x", 1.0)) + "\n" + '{"iteration": 4, "comp')
    with open(root / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 4, "reward/total/me')  # unfinished last line: skipped silently
    s = runview.load_summary(root)
    assert s.status == "running (or killed)"
    assert "at iteration 4" in s.status_line and "last update" in s.status_line
    assert s.partial == [4] and s.iterations() == [1, 2, 3] and s.problems == []
    problems: list = []
    rollouts = rolloutview.rollouts_path(root, 4)
    assert [x.completion for x in rolloutview.iter_samples(rollouts, problems)] == ["x"]
    assert problems == []


def test_running_status_checks_the_process_when_it_can(tmp_path):
    root = make_run(tmp_path / "run", finish=None)
    info = json.loads((root / "run.json").read_text())
    info.update(pid=os.getpid(), host=socket.gethostname())
    (root / "run.json").write_text(json.dumps(info))
    assert runview.load_summary(root).status == "running"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    info["pid"] = dead.pid
    (root / "run.json").write_text(json.dumps(info))
    s = runview.load_summary(root)
    assert s.status == "killed" and f"process {dead.pid} is gone" in s.status_line


def test_crashed_and_stopped_runs(tmp_path):
    s = runview.load_summary(make_run(tmp_path / "a", finish="crashed",
                                      error="iteration 4: ValueError: boom"))
    assert s.status == "crashed"
    assert s.status_line.startswith("crashed at iteration 4: ValueError: boom")
    s = runview.load_summary(make_run(tmp_path / "b", finish="stopped",
                                      error="interrupted during iteration 4"))
    assert s.status == "stopped" and "--resume" in s.status_line


def test_corrupt_metrics_line_is_reported_and_skipped(tmp_path):
    root = make_run(tmp_path / "run")
    lines = (root / "metrics.jsonl").read_text().splitlines()
    lines[1] = "{not json"
    (root / "metrics.jsonl").write_text("\n".join([*lines, '{"no_iteration": 1}', "[1, 2]"]) + "\n")
    s = runview.load_summary(root)
    assert s.iterations() == [1, 3]
    where = str(root / "metrics.jsonl")
    assert any(p.startswith(f"{where}:2: not valid JSON") for p in s.problems), s.problems
    assert any(p.startswith(f"{where}:4: no integer 'iteration'") for p in s.problems), s.problems
    assert any(p.startswith(f"{where}:5: not a JSON object") for p in s.problems), s.problems


def test_older_run_missing_files_and_fields(tmp_path):
    root = tmp_path / "old"
    d = iteration_dir(root, 1)
    d.mkdir(parents=True)
    record = {"prompt": "p", "completion": "c", "rewards": {"r": 1}}
    (d / "rollouts.jsonl").write_text(json.dumps(record) + "\n")
    (d / "metrics.json").write_text(json.dumps({"iteration": 1, "reward/r/mean": 1.0}))
    s = runview.load_summary(root)
    assert s.status == "unknown" and s.iterations() == [1]
    text = " | ".join(s.missing)
    for what in ("run.json", "config.yaml", "metrics.jsonl", "distinct_2", "length/chars_mean",
                 "reward (reward) not recorded"):
        assert what in text
    assert not s.groups.has_total


def test_not_a_run(tmp_path):
    with pytest.raises(runview.InspectError, match="not a run directory"):
        runview.load_summary(tmp_path)
    with pytest.raises(runview.InspectError, match="no such file"):
        runview.load_summary(tmp_path / "nope")


def test_bad_run_json_and_config(tmp_path):
    root = make_run(tmp_path / "run")
    (root / "run.json").write_text("{oops")
    (root / "config.yaml").write_text("a: [1,\n")
    s = runview.load_summary(root)
    assert any("run.json:1" in p and "not valid JSON" in p for p in s.problems)
    assert any("config.yaml" in p and "not valid YAML" in p for p in s.problems)
    assert s.iterations() == [1, 2, 3]


def test_resolve_iteration(tmp_path):
    root = make_run(tmp_path / "run")
    assert rolloutview.resolve_iteration(root, "last") == 3
    assert rolloutview.resolve_iteration(root, "-2") == 2
    with pytest.raises(runview.InspectError, match=r"iterations with rollouts: 1-3"):
        rolloutview.resolve_iteration(root, "9")
    with pytest.raises(runview.InspectError, match="a number or 'last'"):
        rolloutview.resolve_iteration(root, "x")


# --------------------------------------------------------------------------- rollouts


def samples_of(totals_and_texts):
    return [rolloutview.normalise(sample(1, i, 0, text, t), position=i)
            for i, (t, text) in enumerate(totals_and_texts)]


def test_select_top_worst_sort_and_filters():
    s = samples_of([(0.5, "a"), (2.0, "bbbb"), (-1.0, "cc ###"), (1.0, "ddd")])
    s[2].hits["stray_hash"] = 1
    top, matched, total = rolloutview.select_samples(iter(s), rolloutview.Query(top=2))
    assert [x.total for x in top] == [2.0, 1.0] and (matched, total) == (4, 4)
    worst, _, _ = rolloutview.select_samples(iter(s), rolloutview.Query(worst=1))
    assert [x.total for x in worst] == [-1.0]
    both, _, _ = rolloutview.select_samples(iter(s), rolloutview.Query(top=1, worst=1))
    assert [x.total for x in both] == [2.0, -1.0]
    by_len, _, _ = rolloutview.select_samples(iter(s), rolloutview.Query(sort="length"))
    assert [x.completion for x in by_len] == ["cc ###", "bbbb", "ddd", "a"]
    hit, matched, _ = rolloutview.select_samples(iter(s), rolloutview.Query(filter="stray_hash"))
    assert [x.completion for x in hit] == ["cc ###"] and matched == 1
    grep, _, _ = rolloutview.select_samples(iter(s), rolloutview.Query(grep=r"^d+$"))
    assert [x.completion for x in grep] == ["ddd"]
    prompt, _, _ = rolloutview.select_samples(iter(s), rolloutview.Query(prompt="QUESTION 1"))
    assert [x.completion for x in prompt] == ["bbbb"]
    limited, matched, _ = rolloutview.select_samples(iter(s), rolloutview.Query(limit=2))
    assert len(limited) == 2 and matched == 4


def test_sort_by_named_reward_and_bad_queries():
    s = samples_of([(0.5, "a"), (2.0, "b")])
    s[0].rewards["length"] = 9.0
    out, _, _ = rolloutview.select_samples(iter(s), rolloutview.Query(sort="reward:length"))
    assert [x.completion for x in out] == ["a", "b"]
    with pytest.raises(runview.InspectError, match=r"no reward 'nope'.*emoji, length"):
        rolloutview.select_samples(iter(s), rolloutview.Query(sort="reward:nope"))
    with pytest.raises(runview.InspectError, match="--sort expects"):
        rolloutview.select_samples(iter(s), rolloutview.Query(sort="speed"))
    with pytest.raises(runview.InspectError, match="not a valid regular expression"):
        rolloutview.select_samples(iter(s), rolloutview.Query(grep="("))


def test_normalise_flat_score_output():
    s = rolloutview.normalise({"prompt": "p", "completion": "c :)", "emoji": 0.25, "length": None,
                               "total": 0.25, "hits": {"emoticon_flood": 1}, "row": 3, "label": "x"})
    assert s.rewards == {"emoji": 0.25, "length": None}
    assert s.hits == {"emoticon_flood": 1} and s.total == 0.25 and s.row == 3
    # No total recorded: the sum of the rewards that apply.
    assert rolloutview.normalise({"completion": "c", "a": 1.0, "b": 2, "c": None}).total == 3.0
    # Odd field types never break reading: an unhashable row falls back to the prompt as the key.
    odd = rolloutview.normalise({"prompt": {"x": 1}, "row": [1], "rewards": {"r": "high"},
                                 "hits": {"f": "x"}})
    assert odd.key == ("prompt", "{'x': 1}") and odd.rewards == {"r": None} and odd.hits == {}


def test_iter_samples_reports_bad_lines(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"completion": "a", "total": 1}\n\n{broken\n"str"\n'
                 '{"completion": "b", "total": 2}\n{"compl')
    problems: list = []
    got = list(rolloutview.iter_samples(p, problems))
    assert [(x.completion, x.line) for x in got] == [("a", 1), ("b", 5)]
    assert [(b.line, b.error.split(" (")[0]) for b in problems] == [
        (3, "not valid JSON"), (4, "not a JSON object; skipped")]


def test_rollout_stats_by_hand():
    s = samples_of([(1.0, "a b c"), (3.0, "a b d")])
    s[1].hits["stray_hash"] = 2
    st = rolloutview.rollout_stats(s)
    assert st.n == 2 and st.total["mean"] == 2.0 and st.total["std"] == 1.0
    assert st.filters["stray_hash"] == {"rate": 0.5, "hits": 2.0}
    assert st.chars_mean == 5.0
    assert st.distinct_2 == pytest.approx(3 / 4)  # bigrams: (a b), (b c), (a b), (b d)


# --------------------------------------------------------------------------- comparisons


def test_compare_iterations_by_row(tmp_path):
    root = make_run(tmp_path / "run")
    pairs = rolloutview.compare_iterations(root, 1, 3, [])
    assert [p.key for p in pairs] == [("row", 0), ("row", 1)]
    # Row 0 at iteration 1: totals 1, 2 (mean 1.5); at 3: 3, 4 (mean 3.5).
    assert pairs[0].a.total_mean == 1.5 and pairs[0].b.total_mean == 3.5 and pairs[0].delta == 2.0
    assert pairs[0].b.best.completion == "answer 0.1 at 3"


def test_compare_falls_back_to_prompt_text(tmp_path):
    root = tmp_path / "run"
    for it, row in ((1, 5), (2, None)):
        d = iteration_dir(root, it)
        d.mkdir(parents=True)
        (d / "rollouts.jsonl").write_text(json.dumps({"prompt": "same", "row": row, "completion": str(it),
                                                      "total": float(it)}) + "\n")
    pairs = rolloutview.compare_iterations(root, 1, 2, [])
    assert len(pairs) == 1 and pairs[0].delta == 1.0


def test_compare_runs_last_and_best(tmp_path):
    a = runview.load_summary(make_run(tmp_path / "a"))
    root_b = tmp_path / "b"
    w = RunWriter.create(root_b, {}, "grpo")
    # A run recorded under the older names compares with a current one under the current names.
    w.commit_iteration(1, {"reward/total/mean": 5.0, "filter/stray_hash/rate": 0.5, "kl": 0.1})
    w.commit_iteration(2, {"reward/total/mean": 4.0, "filter/stray_hash/rate": 0.1, "kl": 0.2})
    b = runview.load_summary(root_b)
    data = runview.compare_runs([a, b])
    rows = {r["key"]: r["runs"] for r in data["metrics"]}
    assert "reward/total/mean" not in rows
    assert rows["reward"][0] == {"last": 3.0, "best": 3.0, "present": True}
    assert rows["reward"][1] == {"last": 4.0, "best": 5.0, "present": True}
    assert rows["filter/stray_hash/rate"][1]["best"] == 0.1  # lower is better for filter rates
    assert rows["kl"][0]["present"] is False and rows["kl"][1]["best"] is None
    assert data["total_by_iteration"][2] == {"iteration": 3, "total": [3.0, None]}


def test_eval_rows_before_after():
    ev = {"before": {"prompts": 4, "rewards": {"emoji": 0.0}, "total": 0.5, "examples": []},
          "after": {"prompts": 4, "rewards": {"emoji": 0.75}, "total": 0.25}, "delta": {"total": -0.25}}
    assert runview.eval_rows(ev) == [
        {"key": "rewards/emoji", "before": 0.0, "after": 0.75, "delta": 0.75},
        {"key": "total", "before": 0.5, "after": 0.25, "delta": -0.25},
    ]
    assert runview.eval_rows([1, 2]) == []


def test_the_closing_line_explains_the_short_names_and_says_what_next(tmp_path):
    from raftkit.runs.metrics import closing_line, summary_line

    m = {"reward": 0.5, "selected/reward": 0.75, "length/chars_mean": 12.0, "distinct_2": 0.5, "kl": 0.1,
         "filter/stray_hash/rate": 0.25, "time/iteration": 3.0}
    shown = summary_line(1, 1, m, [])
    line = closing_line("runs/x", m)
    assert "\n" not in line
    for short in ("sel", "len", "d2", "kl", "filters"):
        assert re.search(rf"\b{short}\b", shown) and f"{short} = " in line, short
    for command in ("inspect", "report", "eval"):
        assert f"raftkit {command} runs/x" in line
    plain = closing_line("r", {"reward": 0.5})  # GRPO: no selection, no KL term
    assert "sel =" not in plain and "kl =" not in plain
    root = tmp_path / "run"  # None: the names of the run's last metrics line
    w = RunWriter.create(root, {}, "grpo")
    w.commit_iteration(1, {"reward": 0.5, "kl": 0.01})
    assert "kl = " in closing_line(root) and "sel =" not in closing_line(root)
