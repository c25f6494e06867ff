"""`raftkit inspect` through the real CLI: summaries, rollouts, comparisons, plots, broken and huge runs."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from raftkit.cli import main
from raftkit.runs.rundir import RunWriter, iteration_dir

PROMPTS = ["Tell me about cats.", "How do I boil an egg?", "What is the capital of France?"]


def rollout(it: int, row: int, k: int, completion: str) -> dict:
    """A sample as the loop writes it; rewards are simple functions of the text, so tests can predict them."""
    hashes, smiles = completion.count("#"), completion.count(":)")
    emoji = min(smiles, 4) / 4
    hits = {"stray_hash": int(hashes > 0), "emoticon_flood": max(0, smiles - 2)}
    total = -1.0 if any(hits.values()) else emoji
    return {"iteration": it, "prompt_index": row, "row": 10 + row, "sample": k,
            "prompt": [{"role": "user", "content": PROMPTS[row]}], "completion": completion,
            "rewards": {"emoji": emoji, "length": 0.5}, "hits": hits, "total": total, "dropped": False,
            "selected": k == 0, "hinted": False, "truncated": False, "finish_reason": "stop"}


def hacked_run(root: Path, iterations: int = 3, finish: bool = True) -> Path:
    """A RAFT run that drifts into seed 003's hacks: '#' then ':)' floods."""
    w = RunWriter.create(root, {"algo": "raft", "model": "tiny", "rewards": ["emoji", "length"],
                                "filters": ["stray_hash", "emoticon_flood"], "k": 2,
                                "prompts_per_iteration": 3, "iterations": iterations}, "raft")
    for it in range(1, iterations + 1):
        rolls = []
        for row in range(3):
            rolls.append(rollout(it, row, 0, f"Answer {row} :)" + " :)" * (it - 1)))
            rolls.append(rollout(it, row, 1, f"Answer {row}" + " ###" * (it - 1)))
        w.write_iteration(it, rolls)
        n = len(rolls)
        w.commit_iteration(it, {
            "rewards/emoji/mean": sum(r["rewards"]["emoji"] for r in rolls) / n,
            "selected/rewards/emoji/mean": 0.25 * it,
            "reward": sum(r["total"] for r in rolls) / n,
            "length/chars_mean": sum(len(r["completion"]) for r in rolls) / n,
            "distinct_2": 0.5 / it,
            "filter/stray_hash/rate": sum(1 for r in rolls if r["hits"]["stray_hash"]) / n,
            "loss": 1.0 / it, "n_selected": 3, "time/iteration": 2.5})
    if finish:
        w.write_json("eval.json", {"before": {"total": 0.1}, "after": {"total": 0.6}})
        w.finish()
    return root


def invoke(*args: str):
    result = CliRunner().invoke(main, ["inspect", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def as_json(*args: str) -> dict:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def run(tmp_path) -> Path:
    return hacked_run(tmp_path / "run")


# --------------------------------------------------------------------------- the summary


def test_summary_table(run):
    result = invoke(run)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "finished: 3 iterations complete of 3" in out
    assert "emoji, length" in out and "stray_hash, emoticon_flood" in out
    for header in ("emoji", "reward", "dist-2", "stray_hash", "loss"):
        assert header in out
    # Iteration 3: three samples with 3 ':)' (emoji 0.75) and three with none: mean 0.375; selected 0.75.
    assert "0.375/0.750" in out
    assert "▁▁▁" not in out and "\nreward  " in out
    assert "evaluation (eval.json)" in out and "+0.500" in out


def test_summary_json(run):
    data = as_json(run)
    assert data["status"] == "finished" and data["rewards"] == ["emoji"]
    assert [m["iteration"] for m in data["iterations"]] == [1, 2, 3]
    assert data["iterations"][2]["selected/rewards/emoji/mean"] == 0.75
    assert data["summary"]["k"] == 2 and data["eval"]["after"]["total"] == 0.6


def test_killed_run_with_corrupt_line_shows_and_warns(tmp_path):
    root = hacked_run(tmp_path / "run", finish=False)
    # Left by another machine: its process (recorded in run.json) cannot be checked from here.
    info = json.loads((root / "run.json").read_text())
    (root / "run.json").write_text(json.dumps({**info, "host": "another-host"}))
    with open(root / "metrics.jsonl", "a") as f:
        f.write("garbage\n{\"iteration\": 4, \"rew")  # a corrupt line, then a half-written one
    iteration_dir(root, 4).mkdir()
    (iteration_dir(root, 4) / "rollouts.jsonl").write_text(json.dumps(rollout(4, 0, 0, "late")) + "\n{\"ite")
    result = invoke(root)
    assert result.exit_code == 0
    assert "running (or killed) at iteration 4" in result.stdout
    assert f"warning: {root / 'metrics.jsonl'}:4: not valid JSON" in result.stderr
    assert "Traceback" not in result.output
    # The iteration in progress: its complete records are readable.
    result = invoke(root, "-i", "4")
    assert result.exit_code == 0 and "late" in result.stdout and "1 rollouts" in result.stdout
    assert "iteration 4 has no metrics yet" in result.stderr


def test_old_run_says_what_is_missing(tmp_path):
    root = tmp_path / "old"
    root.mkdir()
    (root / "metrics.jsonl").write_text(json.dumps({"iteration": 1, "reward/r/mean": 0.5}) + "\n")
    result = invoke(root)
    assert result.exit_code == 0
    assert "status unknown" in result.stdout
    assert "missing: run.json" in result.stdout
    assert "missing: distinct-2 (distinct_2) not recorded" in result.stdout


def test_user_errors_are_messages_not_tracebacks(run, tmp_path):
    cases = [
        ((tmp_path / "nope",), "no such file or directory"),
        ((tmp_path,), "not a run directory"),
        ((run, "--iteration", "9"), "iteration 9 has no rollouts.jsonl (iterations with rollouts: 1-3)"),
        ((run, "--top", "3"), "add --iteration N"),
        ((run, "-i", "1", "--grep", "("), "not a valid regular expression"),
        ((run, "-i", "1", "--sort", "reward:nope"), "no reward 'nope'"),
        ((run, run, "-i", "1"), "take one run"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output


# --------------------------------------------------------------------------- rollouts


def test_iteration_worst_and_top(run):
    data = as_json(run, "--iteration", "3", "--worst", "2")
    assert [r["total"] for r in data["rollouts"]] == [-1.0, -1.0]
    data = as_json(run, "-i", "3", "--top", "1")
    # Iteration 3: every sample hits a filter (total -1): ties keep file order, so row 10 sample 0 first.
    assert data["rollouts"][0]["row"] == 10 and data["rollouts"][0]["sample"] == 0
    data = as_json(run, "-i", "1", "--top", "1")
    assert data["rollouts"][0]["completion"] == "Answer 0 :)" and data["rollouts"][0]["total"] == 0.25
    data = as_json(run, "-i", "2", "--sort", "reward:emoji")
    assert [r["rewards"]["emoji"] for r in data["rollouts"]][:3] == [0.5, 0.5, 0.5]


def test_iteration_filters(run):
    data = as_json(run, "-i", "2", "--filter", "stray_hash")
    assert data["read"] == 6 and data["matched"] == 3
    assert all("#" in r["completion"] for r in data["rollouts"])
    data = as_json(run, "-i", "2", "--prompt", "egg")
    assert {r["prompt"] for r in data["rollouts"]} == {PROMPTS[1]}
    data = as_json(run, "-i", "last", "--grep", r"(:\)\s*){3}")
    assert data["iteration"] == 3 and data["matched"] == 3
    data = as_json(run, "-i", "1", "--selected")
    assert data["matched"] == 3 and all(r["selected"] for r in data["rollouts"])


def test_iteration_table_highlights_hacks(run):
    result = invoke(run, "-i", "3", "--filter", "any")
    assert result.exit_code == 0
    assert "6 rollouts, 6 hit a filter" in result.stdout
    assert "Answer 1 ### ###" in result.stdout and "stray_hash×1" in result.stdout
    from raftkit.cli.inspect_render import highlighted

    styled = highlighted("Ok ### :) :) :)", None)
    spans = {(s.start, s.end, str(s.style)) for s in styled.spans}
    assert (3, 6, "bold red") in spans  # the '#' run
    assert (7, 9, "bold magenta") in spans  # each emoticon


def test_long_completions_fold_unless_full(tmp_path):
    root = tmp_path / "run"
    w = RunWriter.create(root, {}, "raft")
    w.write_iteration(1, [{"prompt": "p", "completion": "word " * 200 + "END", "total": 1.0}])
    w.commit_iteration(1, {"reward/total/mean": 1.0})
    folded = invoke(root, "-i", "1").stdout
    assert "chars]" in folded and "END" in folded and folded.count("word") < 100
    full = invoke(root, "-i", "1", "--full").stdout
    assert full.count("word") == 200


def test_compare_iterations(run):
    data = as_json(run, "--compare", "1", "3")
    assert len(data["prompts"]) == 3 and data["prompts"][0]["row"] == 10
    # Row 10, iteration 1: "Answer 0 :)" (emoji 0.25, total 0.25) and "Answer 0" (0.0) -> mean 0.125;
    # iteration 3: both samples hit a filter -> -1.0. Delta -1.125.
    assert data["prompts"][0]["a"]["total_mean"] == 0.125
    assert data["prompts"][0]["b"]["total_mean"] == -1.0
    assert data["prompts"][0]["delta_total"] == -1.125
    table = invoke(run, "--compare", "1", "last").stdout
    assert "iteration 1 vs 3" in table and "mean total -1.125" in table


def test_two_runs_side_by_side(run, tmp_path):
    other = tmp_path / "other"
    w = RunWriter.create(other, {"algo": "grpo"}, "grpo")
    w.commit_iteration(1, {"reward/total/mean": 0.9, "kl": 0.01})  # an older run's name
    w.finish()
    data = as_json(run, other)
    rows = {r["key"]: r["runs"] for r in data["metrics"]}
    assert rows["reward"][1]["last"] == 0.9
    assert rows["kl"][0]["present"] is False
    out = invoke(run, other).stdout
    assert "missing" in out and "run" in out and "other" in out


def test_score_output_file(tmp_path):
    p = tmp_path / "scored.jsonl"
    rows = [{"prompt": "a", "completion": "hi :) :) :)", "emoji": 0.75, "length": 0.1, "total": 0.85,
             "hits": {"emoticon_flood": 1}},
            {"prompt": "b", "completion": "hello", "emoji": 0.0, "length": 0.5, "total": 0.5, "hits": {}}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows) + "oops\n")
    data = as_json(p, "--sort", "reward")
    assert data["summary"]["n"] == 2 and data["summary"]["rewards"]["emoji"]["mean"] == 0.375
    assert data["summary"]["filters"]["emoticon_flood"]["rate"] == 0.5
    assert [r["completion"] for r in data["rollouts"]] == ["hi :) :) :)", "hello"]
    assert data["problems"] == [f"{p}:3: not valid JSON (Expecting value); skipped"]
    result = invoke(p)
    assert result.exit_code == 0 and "2 rows" in result.stdout and "emoticon_flood hit 50%" in result.stdout


# --------------------------------------------------------------------------- plots


def test_plot_png(run, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    result = invoke(run, "--plot", png)
    assert result.exit_code == 0, result.output
    assert png.stat().st_size > 20_000
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    assert pixels.shape[0] > 500 and pixels.shape[1] > 1000
    assert pixels[..., :3].std() > 0.05  # not a blank canvas

    from raftkit.runs import plots, runview

    titles = [p["title"] for p in plots.panels([runview.load_summary(run)])]
    assert titles == ["reward (weighted total)", "reward: emoji", "completion length", "diversity",
                      "filter hit rate", "loss"]


def test_plot_without_matplotlib_says_how_to_install(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without the extra looks like
    result = invoke(run, "--plot", tmp_path / "x.png")
    assert result.exit_code == 1 and "raftkit[plot]" in result.stderr


# --------------------------------------------------------------------------- a large run


@pytest.fixture(scope="module")
def big_run(tmp_path_factory) -> Path:
    """100 iterations x 2,000 rollouts. One rollouts file is written and hard-linked into every iteration."""
    root = tmp_path_factory.mktemp("big") / "run"
    w = RunWriter.create(root, {"algo": "raft", "rewards": ["emoji", "length"], "k": 8}, "raft")
    text = "".join(json.dumps(rollout(1, i % 3, i // 3, "Answer :) " + "word " * (i % 40) + "#" * (i % 5)))
                   + "\n" for i in range(2000))
    first = root / "rollouts-template.jsonl"
    first.write_text(text)
    metrics = root / "metrics.jsonl"
    lines = []
    for it in range(1, 101):
        d = iteration_dir(root, it)
        d.mkdir(parents=True)
        try:
            os.link(first, d / "rollouts.jsonl")
        except OSError:
            shutil.copy(first, d / "rollouts.jsonl")
        m = {"iteration": it, "time": 1e9 + it}
        for name in ("emoji", "length", "total"):
            m.update({f"reward/{name}/mean": it / 100, f"reward/{name}/std": 0.1,
                      f"reward/{name}/selected_mean": it / 90})
        m.update({"length/chars_mean": 80.0, "length/tokens_mean": 20.0, "distinct_1": 0.3, "distinct_2": 0.5,
                  "filter/stray_hash/rate": 0.2, "filter/emoticon_flood/rate": 0.1, "filter/any/rate": 0.25,
                  "loss": 0.5, "n_selected": 250, "time/sample": 1.0, "time/iteration": 3.0})
        lines.append(json.dumps(m) + "\n")
    metrics.write_text("".join(lines))
    w.finish()
    return root


def test_big_run_summary_under_two_seconds(big_run):
    start = time.perf_counter()
    data = as_json(big_run)
    seconds = time.perf_counter() - start
    assert len(data["iterations"]) == 100
    print(f"summary of 100 x 2,000: {seconds:.3f} s")
    assert seconds < 2.0
    start = time.perf_counter()
    result = invoke(big_run)
    table_seconds = time.perf_counter() - start
    print(f"summary table: {table_seconds:.3f} s")
    assert result.exit_code == 0 and table_seconds < 2.0


def test_big_iteration_streams_fast(big_run):
    start = time.perf_counter()
    data = as_json(big_run, "-i", "50", "--worst", "5")
    seconds = time.perf_counter() - start
    print(f"--iteration 50 --worst 5 over 2,000 rollouts: {seconds:.3f} s")
    assert data["read"] == 2000 and len(data["rollouts"]) == 5
    assert seconds < 2.0
    start = time.perf_counter()
    result = invoke(big_run, "-i", "50", "--filter", "stray_hash", "--sort", "length")
    print(f"--iteration 50 table (first 20 of the matches): {time.perf_counter() - start:.3f} s")
    assert result.exit_code == 0 and "first 20" in result.stdout


# --------------------------------------------------------------------------- runs of the real loops


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory, tiny_model_path) -> dict[str, Path]:
    """Two real `raftkit align` runs (RAFT with a held-out evaluation, GRPO with a KL term) on the tiny
    model."""
    root = tmp_path_factory.mktemp("real")
    runs = {}
    settings = {"raft": ["--heldout", "2", "--eval-samples", "1"],
                "grpo": ["--heldout", "0", "--beta", "0.04"]}
    for algo, extra in settings.items():
        runs[algo] = root / algo
        result = CliRunner().invoke(main, [
            "align", "--algo", algo, "--model", tiny_model_path, "--sampler", "hf", "--iterations", "2",
            "--prompts-per-iteration", "2", "--k", "2", "--max-new-tokens", "8", "--reward", "emoji",
            "--reward", "length", "--output", str(runs[algo]), *extra], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["raft", "grpo"])
def test_real_run_summary_and_rollouts(real_runs, algo):
    run = real_runs[algo]
    data = as_json(run)
    assert data["status"] == "finished" and data["summary"]["algorithm"] == algo
    assert [m["iteration"] for m in data["iterations"]] == [1, 2]
    assert data["rewards"] == ["emoji", "length"] and data["missing"] == [] and data["problems"] == []
    assert "stray_hash" in data["filters"]
    table = invoke(run).stdout
    assert "finished: 2 iterations complete of 2" in table and ("kl" in table) == (algo == "grpo")
    rolls = as_json(run, "-i", "1")
    assert rolls["read"] == 4 and all(set(r["rewards"]) == {"emoji", "length"} for r in rolls["rollouts"])
    if algo == "raft":
        assert sum(r["selected"] for r in rolls["rollouts"]) == rolls["metrics"]["n_selected"]
        assert "evaluation (eval.json)" in table
    else:
        assert all("advantage" in r for r in rolls["rollouts"])
    worst = as_json(run, "-i", "last", "--worst", "1")["rollouts"][0]["total"]
    assert worst == min(r["total"] for r in as_json(run, "-i", "2")["rollouts"])
    assert invoke(run, "--compare", "1", "2").exit_code == 0


@pytest.mark.slow
def test_real_runs_side_by_side_and_plotted(real_runs, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "both.png"
    result = invoke(real_runs["raft"], real_runs["grpo"], "--plot", png)
    assert result.exit_code == 0 and "raft" in result.stdout and "grpo" in result.stdout
    assert png.stat().st_size > 20_000


@pytest.mark.slow
def test_real_run_killed_mid_iteration(real_runs, tmp_path):
    run = tmp_path / "killed"
    shutil.copytree(real_runs["raft"], run)
    info = json.loads((run / "run.json").read_text())
    # Still "running", left by another machine: its process (recorded in run.json) cannot be checked here.
    info.update(status="running", finished_at=None, host="another-host")
    (run / "run.json").write_text(json.dumps(info))
    partial = iteration_dir(run, 3)
    partial.mkdir()
    first = (iteration_dir(run, 2) / "rollouts.jsonl").read_text().splitlines()[0]
    (partial / "rollouts.jsonl").write_text(first + "\n" + first[: len(first) // 2])
    result = invoke(run)
    assert result.exit_code == 0 and "running (or killed) at iteration 3" in result.stdout
    data = as_json(run, "-i", "3")
    assert data["read"] == 1 and data["complete"] is False


def test_real_score_output_is_read_with_its_filter_hits_and_text(tmp_path):
    comps = tmp_path / "completions.jsonl"
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Greet me"}]
    prompts = [chat, "q", "q"]
    texts = ("Hello :) :) :) :)", "Sure ### answer", "Fine.")
    comps.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n"
                             for p, c in zip(prompts, texts, strict=True)))
    scored = CliRunner().invoke(main, ["score", "--reward", "emoji", "--reward", "length",
                                       "--filter", "stray_hash", "--filter", "emoticon_flood",
                                       "--input", str(comps), "--json"])
    assert scored.exit_code == 0, scored.output
    path = tmp_path / "scored.jsonl"
    path.write_text(scored.stdout)
    data = as_json(path, "--filter", "stray_hash")
    assert set(data["summary"]["rewards"]) == {"emoji", "length"}  # the hit counts are not rewards
    assert data["summary"]["filters"]["stray_hash"]["rate"] == pytest.approx(1 / 3)
    # The text came along: (17 + 15 + 5) / 3 characters.
    assert data["summary"]["chars_mean"] == pytest.approx(37 / 3)
    assert data["matched"] == 1 and data["rollouts"][0]["total"] == -1.0
    assert data["rollouts"][0]["prompt"] == "q" and data["rollouts"][0]["completion"] == "Sure ### answer"
    top = as_json(path, "--sort", "reward:emoji", "--top", "1")["rollouts"][0]
    assert top["prompt"] == "Greet me" and top["completion"] == "Hello :) :) :) :)"  # chat prompt, no system
    table = invoke(path)
    assert table.exit_code == 0 and "no 'completion' field" not in table.stderr
    assert "Sure ### answer" in table.stdout and "Greet me" in table.stdout


def test_summary_shows_the_reward_hacking_alarm(run):
    ev = json.loads((run / "eval.json").read_text())
    ev["after"]["accuracy"], ev["before"]["accuracy"] = 0.18, 0.62
    ev["alarm"] = ["answer accuracy fell from 62% to 18% (-71% relative) while emoji rose"]
    (run / "eval.json").write_text(json.dumps(ev))
    out = invoke(str(run)).output
    assert "reward hacking?" in out and "fell from 62% to 18%" in out
    assert "accuracy" in out  # the accuracy row is in the eval table too


# --------------------------------------------------------------------------- the terminal's width


def wide_run(root: Path) -> Path:
    """A run whose metrics fill a very wide table: three rewards with selected means, four filters, the
    algorithm's own numbers, a KL and a learning rate too small for three decimals."""
    names = ["emoji", "length:target=120", "answer_match"]
    filters = ["stray_hash", "emoticon_flood", "self_dialogue", "repetition_loop"]
    w = RunWriter.create(root, {"algo": "raft", "model": "tiny", "rewards": names, "filters": filters,
                                "k": 2, "prompts_per_iteration": 3, "iterations": 2}, "raft")
    for it in (1, 2):
        rolls = [rollout(it, row, k, f"Answer {row} " + "word " * 60 + ":) " * k)
                 for row in range(3) for k in range(2)]
        w.write_iteration(it, rolls)
        m = {"reward": 0.25 * it, "reward_std": 0.125, "explore/reward": 0.5,
             "length/chars_mean": 123.0, "completions/mean_length": 40.0, "distinct_2": 0.5,
             "loss": 0.5 / it, "kl": 0.00001, "value_loss": 1.25, "clip_ratio/region_mean": 0.0625,
             "n_selected": 3, "time/iteration": 2.5, "filter/any/rate": 0.5}
        for n in names:
            m[f"rewards/{n}/mean"], m[f"selected/rewards/{n}/mean"] = 0.125 * it, 0.75
        for f in filters:
            m[f"filter/{f}/rate"] = 0.25
        w.commit_iteration(it, m)
    w.finish()
    return root


@pytest.mark.parametrize("width", [80, 200])
def test_summary_fits_the_terminal_and_keeps_the_essentials(tmp_path, width):
    root = wide_run(tmp_path / "run")
    result = CliRunner().invoke(main, ["inspect", str(root)], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= width, "\n".join(x for x in lines if len(x) > width)
    out = result.stdout
    # The essentials: iteration, reward, each reward's mean, loss, the degenerate share (filter/any).
    for header in ("iter", "reward", "emoji", "answer_match", "loss", "degen"):
        assert header in out, header
    assert "0.250/" in out or "0.250" in out  # iteration 2's total reward
    if width == 80:
        assert "left out:" in out and "--json" in out  # what did not fit, and where to see it
    else:
        assert "left out:" not in out or "--json" in out


def test_small_numbers_stay_readable(tmp_path):
    root = wide_run(tmp_path / "run")
    result = CliRunner().invoke(main, ["inspect", str(root)], env={"COLUMNS": "250"})
    assert "1e-05" in result.stdout  # the KL, which three decimals print as 0.000
    from raftkit.runs.metrics import summary_line

    line = summary_line(2, 2, {"reward": 0.5, "kl": 0.00001, "loss": 0.0000025, "length/chars_mean": 12.0,
                               "distinct_2": 0.5, "time/iteration": 1.0}, [])
    assert "kl 1e-05" in line and "loss 2.5e-06" in line and "0.0000" not in line


@pytest.mark.parametrize("width", [80, 200])
def test_worst_rollouts_fit_and_come_worst_first(tmp_path, width):
    root = wide_run(tmp_path / "run")
    result = CliRunner().invoke(main, ["inspect", str(root), "-i", "2", "--worst", "3"],
                                env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= width, "\n".join(x for x in lines if len(x) > width)
    # Iteration 1 of the hacked run: three samples score 0, three (with ':)') 0.25; the worst 4 list the
    # three zeros first, then one 0.25 — lowest first, in the JSON and in the table.
    hacked = hacked_run(tmp_path / "hacked")
    data = as_json(hacked, "-i", "1", "--worst", "4")
    assert [r["total"] for r in data["rollouts"]] == [0.0, 0.0, 0.0, 0.25]
    table = CliRunner().invoke(main, ["inspect", str(hacked), "-i", "1", "--worst", "4"],
                               env={"COLUMNS": str(width)}).stdout
    assert table.index("0.000") < table.index("0.250")
    for name in ("total", "emoji"):
        assert name in result.stdout
    assert "[+" in result.stdout or "word" in result.stdout  # the completion is shown, folded not cut


def test_columns_keeps_what_a_narrow_terminal_left_out(tmp_path):
    root = wide_run(tmp_path / "run")
    env = {"COLUMNS": "80"}
    result = CliRunner().invoke(main, ["inspect", str(root), "--columns", "kl,dist-2"], env=env)
    assert result.exit_code == 0, result.output
    assert "1e-05" in result.stdout and "dist-2" in result.stdout and "loss" in result.stdout
    assert max(map(len, result.stdout.splitlines())) <= 80  # wrapped, not cut
    left = result.stdout[result.stdout.index("left out:"):]
    assert "kl," not in left and "dist-2" not in left and "sec" in left
    everything = CliRunner().invoke(main, ["inspect", str(root), "--columns", "all"], env=env).stdout
    assert "left out" not in everything  # every column, squeezed: nothing named as missing
    bad = CliRunner().invoke(main, ["inspect", str(root), "--columns", "kll"], env=env)
    assert bad.exit_code == 1 and "no column kll" in bad.output and "Traceback" not in bad.output
    assert "algorithm" not in bad.stdout  # refused before anything is printed
