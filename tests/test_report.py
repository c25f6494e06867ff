"""`raftkit report`: the self-contained HTML page, through the builder, the CLI and a headless browser."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_inspect import PROMPTS, hacked_run, rollout

from raftkit.cli import main
from raftkit.runs import report
from raftkit.runs.rundir import RunWriter, iteration_dir, write_jsonl

EXTRA = "A longer answer, with a </script> tag inside"  # must not end the embedded JSON early


def evaluation(acc_before: float, acc_after: float, alarm: list[str]) -> dict:
    def side(acc: float, emoji: float, deg: float) -> dict:
        return {"prompts": 4, "samples": 16, "temperature": 0.7, "max_new_tokens": 64, "accuracy": acc,
                "degenerate": deg, "rewards": {"emoji": emoji, "length": 0.5}, "positive": {"emoji": emoji},
                "total": emoji + 0.5, "filters": {"stray_hash": deg, "emoticon_flood": 0.0},
                "distinct_2": 0.4, "length_chars": 40.0, "examples": []}

    before, after = side(acc_before, 0.1, 0.0), side(acc_after, 0.6, 0.25)
    return {"before": before, "after": after, "delta": {"accuracy": acc_after - acc_before}, "alarm": alarm}


def make_run(root: Path, alarm: bool = True) -> Path:
    """seed 003's drift (tests/test_inspect.py), an evaluation, and iteration 2 with two more rollouts."""
    hacked_run(root)
    path = iteration_dir(root, 2) / "rollouts.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records += [rollout(2, 0, 2, EXTRA), rollout(2, 1, 2, "Short one")]
    write_jsonl(path, records)
    alarms = ["answer accuracy fell from 60% to 20% (-67% relative) while emoji rose"] if alarm else []
    (root / "eval.json").write_text(json.dumps(evaluation(0.6, 0.2, alarms)))
    return root


def scale_rewards(root: Path, factor: float) -> Path:
    """Another run's curves: the rewards of every metrics line scaled (the rollouts stay as they are)."""
    lines = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    for m in lines:
        m.update({k: v * factor for k, v in m.items() if k == "reward" or k.startswith("rewards/")})
    write_jsonl(root / "metrics.jsonl", lines)
    return root


def embedded(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def invoke(*args: object):
    result = CliRunner().invoke(main, ["report", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


@pytest.fixture
def run(tmp_path) -> Path:
    return make_run(tmp_path / "run")


# --------------------------------------------------------------------------- the page


def test_page_is_self_contained(run):
    page = report.build_report([run])
    assert not re.search(r"https?:|//cdn|<link|\bsrc=|@import", page)
    assert page.count("<script") == 2 and page.count("</script>") == 2  # the one in a completion is escaped
    data = embedded(page)["runs"][0]
    assert [it["iteration"] for it in data["iterations"]] == [1, 2, 3]
    assert [it["count"] for it in data["iterations"]] == [6, 8, 6]
    assert EXTRA in [r["completion"] for r in data["iterations"][1]["rows"]]


def test_curves_are_svg_polylines_per_metric(run):
    page = report.build_report([run])
    for key in ("reward", "rewards/emoji/mean", "filter/stray_hash/rate", "length/chars_mean",
                "distinct_2", "loss", "n_selected"):
        chart = re.search(rf'<svg class="chart" data-key="{re.escape(key)}".*?</svg>', page, re.S)
        assert chart, key
        points = re.findall(r'<polyline[^>]*points="([^"]+)"', chart.group(0))
        assert len(points) == 1 and len(points[0].split()) == 3, key  # one run, three iterations


def test_evaluation_accuracy_first_and_alarm_in_red(run):
    page = report.build_report([run])
    table = re.search(r'<table id="eval">.*?</table>', page, re.S).group(0)
    metrics = re.findall(r'<tr data-metric="([^"]+)"', table)
    assert metrics[:2] == ["accuracy", "degenerate"]
    assert {"rewards-emoji", "total", "filters-stray_hash"} <= set(metrics)
    assert "60.0%" in table and "20.0%" in table and '<span class="change bad">-40.0 pp</span>' in table
    assert '<div class="alarm"><strong>Reward hacking?' in page and "answer accuracy fell" in page
    assert page.index('class="alarm"') < page.index('<table id="eval">')  # at the top, not buried


def test_no_alarm_no_eval_no_rollouts(tmp_path):
    quiet = make_run(tmp_path / "quiet", alarm=False)
    assert 'class="alarm"' not in report.build_report([quiet])
    (quiet / "eval.json").unlink()
    shutil.rmtree(quiet / "iterations")
    page = report.build_report([quiet])
    assert "no eval.json" in page and embedded(page)["runs"][0]["iterations"] == []
    assert "<polyline" in page  # the curves come from metrics.jsonl


def test_a_run_that_recorded_nothing_yet(tmp_path):
    RunWriter.create(tmp_path / "new", {"algo": "raft", "iterations": 3}, "raft")
    (tmp_path / "new" / "metrics.jsonl").write_text('{"iteration": 1, "reward/total/mean": NaN}\n')
    page = report.build_report([tmp_path / "new"])
    assert "No metrics recorded yet" in page and "no eval.json" in page and "<svg" not in page


def test_rollouts_capped_and_hits_marked(run):
    data = embedded(report.build_report([run], max_rollouts=4))["runs"][0]
    it3 = data["iterations"][2]
    assert it3["count"] == 6 and len(it3["rows"]) == 4
    hashed = next(r for r in it3["rows"] if "###" in r["completion"])
    assert hashed["hits"] == {"stray_hash": 1}
    assert hashed["selected"] is False and hashed["total"] == -1.0


def test_several_runs_side_by_side(tmp_path):
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b", alarm=False)
    page = report.build_report([a, b])
    chart = re.search(r'<svg class="chart" data-key="rewards/emoji/mean".*?</svg>', page, re.S).group(0)
    assert re.findall(r'data-run="([^"]+)"', chart) == ["a", "b"]
    header = re.search(r'<table id="eval"><thead>(.*?)</thead>', page, re.S).group(1)
    assert header.count("<th>") == 3 and ">a<br>" in header and ">b<br>" in header
    assert '<select id="run-select">' in page and page.count('class="alarm"') == 1
    assert [r["label"] for r in embedded(page)["runs"]] == ["a", "b"]


def test_same_folder_names_use_paths(tmp_path):
    assert report.run_labels([tmp_path / "x" / "run", tmp_path / "y" / "run"]) == [
        str(tmp_path / "x" / "run"), str(tmp_path / "y" / "run")]


# --------------------------------------------------------------------------- the command


def test_cli_writes_into_the_run_and_refuses_to_overwrite(run):
    result = invoke(run)
    assert result.exit_code == 0, result.output
    assert (run / "report.html").read_text().startswith("<!DOCTYPE html>")
    again = invoke(run)
    assert again.exit_code == 1 and "already exists; use --force" in again.output
    assert invoke(run, "--force").exit_code == 0


def test_cli_several_runs_default_to_the_working_directory(tmp_path, monkeypatch):
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    monkeypatch.chdir(tmp_path)
    assert invoke(a, b).exit_code == 0 and (tmp_path / "report.html").exists()
    out = tmp_path / "sub" / "cmp.html"
    assert invoke(a, b, "-o", out).exit_code == 0 and out.exists()


def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "notrun").mkdir()
    for path, said in ((tmp_path / "notrun", "is not a run directory"),
                       (tmp_path / "missing", "no such file or directory")):
        result = invoke(path)
        assert result.exit_code == 1 and said in result.output and "Traceback" not in result.output


# --------------------------------------------------------------------------- in a real browser


def chrome(tmp_path: Path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    for exe in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not Path(exe).exists():
            pytest.skip(f"{exe} missing (scripts/install.sh installs chromium and chromium-driver as root)")
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={tmp_path / 'chrome-profile'}",
                "--window-size=1400,1600"):
        opts.add_argument(arg)
    opts.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


@pytest.mark.slow
def test_report_in_headless_chromium(tmp_path):
    run = make_run(tmp_path / "run")
    other = scale_rewards(make_run(tmp_path / "other", alarm=False), 0.6)
    page = tmp_path / "report.html"
    assert invoke(run, other, "-o", page).exit_code == 0
    driver = chrome(tmp_path)
    try:
        from selenium.webdriver.common.by import By

        driver.get(page.as_uri())
        assert driver.execute_script("return document.readyState") == "complete"
        for key in ("reward", "rewards/emoji/mean"):
            lines = driver.find_elements(By.CSS_SELECTOR, f'svg.chart[data-key="{key}"] polyline')
            assert len(lines) == 2 and all(len(p.get_attribute("points").split()) == 3 for p in lines)
        acc = driver.find_element(By.CSS_SELECTOR, '#eval tr[data-metric="accuracy"]')
        assert acc.text.startswith("answer accuracy") and "60.0%" in acc.text
        assert driver.find_element(By.CSS_SELECTOR, ".alarm").value_of_css_property("color") == \
            "rgba(170, 0, 0, 1)"

        driver.find_element(By.CSS_SELECTOR, '#iterations button[data-iteration="2"]').click()
        rows = driver.find_elements(By.CSS_SELECTOR, "#rollouts tbody tr")
        assert len(rows) == 8
        assert EXTRA in driver.find_element(By.ID, "rollouts").text
        assert "8 rollouts" in driver.find_element(By.ID, "rollout-note").text
        assert len(driver.find_elements(By.CSS_SELECTOR, "#rollouts tr.hit")) == 3  # the '###' ones
        assert driver.find_elements(By.CSS_SELECTOR, "#rollouts tr.hit mark")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#rollouts tr.sel")) == 3

        def column(name: str) -> list[str]:
            heads = [th.text.rstrip(" ▲▼") for th in driver.find_elements(By.CSS_SELECTOR, "#rollouts th")]
            i = heads.index(name) + 1
            return [td.text for td in driver.find_elements(By.CSS_SELECTOR, f"#rollouts td:nth-child({i})")]

        heads = driver.find_elements(By.CSS_SELECTOR, "#rollouts th")
        next(th for th in heads if th.text == "total").click()
        totals = [float(t) for t in column("total")]
        assert totals == sorted(totals, reverse=True) and totals[0] > totals[-1]
        driver.find_element(By.CSS_SELECTOR, "#rollouts th.desc").click()
        assert [float(t) for t in column("total")] == sorted(totals)

        driver.find_element(By.CSS_SELECTOR, '#iterations button[data-iteration="3"]').click()
        assert len(driver.find_elements(By.CSS_SELECTOR, "#rollouts tbody tr")) == 6
        driver.find_element(By.CSS_SELECTOR, '#iterations button[data-iteration="2"]').click()
        shot = tmp_path / "report.png"
        for _ in range(2):  # the rollout table's height follows the window's
            driver.set_window_size(1400, driver.execute_script("return document.body.scrollHeight") + 400)
        driver.execute_script("window.scrollTo(0, 0)")
        assert driver.save_screenshot(str(shot))
        shutil.copy(shot, "/tmp/report-screenshot.png")
    finally:
        driver.quit()


# --------------------------------------------------------------------------- training health, every rollout

HEALTH = {"loss": 0.5, "learning_rate": 1e-06, "kl": 0.002, "entropy": 1.5, "clip_ratio/low_mean": 0.01,
          "clip_ratio/high_mean": 0.02, "clip_ratio/region_mean": 0.03, "grad_norm": 0.75,
          "mismatch/ratio_mean": 1.001, "mismatch/abs_logp_diff_max": 0.25}


def grpo_run(root: Path, iterations: int = 2, samples: int = 256) -> Path:
    """A GRPO run logging TRL's training-health metrics, with ``samples`` rollouts per iteration; the
    worst sample of each iteration is the last one in its file."""
    w = RunWriter.create(root, {"algo": "grpo", "rewards": ["emoji"], "k": 8, "iterations": iterations},
                         "grpo")
    for it in range(1, iterations + 1):
        rolls = [{**rollout(it, i % 3, i // 3, f"Answer {i}"), "selected": False, "advantage": 0.0,
                  "total": 0.5 + (i % 7) / 100} for i in range(samples)]
        rolls[-1].update(completion="the worst answer", total=-5.0)
        w.write_iteration(it, rolls)
        w.commit_iteration(it, {"reward": 0.5 * it, "rewards/emoji/mean": 0.25 * it,
                                **{k: v * it for k, v in HEALTH.items()}})
    w.finish()
    return root


def test_training_health_charts_for_a_grpo_run(tmp_path):
    page = report.build_report([grpo_run(tmp_path / "run")])
    health = page[page.index('id="health"'):page.index("</div>", page.index('id="health"'))]
    for key in HEALTH:
        assert f'data-key="{key}"' in health, key
    assert "Training health" in page
    # The reward charts stay; the health metrics are not repeated under "every other metric".
    assert 'data-key="reward"' in page and page.count('data-key="grad_norm"') == 1


def test_every_rollout_is_embedded_compactly(tmp_path):
    data = embedded(report.build_report([grpo_run(tmp_path / "run")]))["runs"][0]
    it2 = data["iterations"][1]
    assert it2["count"] == 256 and len(it2["rows"]) == 256  # not the first 200: the worst is the last
    assert it2["rows"][-1]["completion"] == "the worst answer" and it2["rows"][-1]["total"] == -5.0
    assert len(it2["prompts"]) == 3  # each prompt once, rows point at it
    assert it2["prompts"][it2["rows"][4]["p"]] == PROMPTS[1]
    assert "hits" not in it2["rows"][0] and "marks" not in it2["rows"][0]  # no empty fields
    capped = embedded(report.build_report([tmp_path / "run"], max_rollouts=10))["runs"][0]
    assert len(capped["iterations"][0]["rows"]) == 10 and capped["iterations"][0]["count"] == 256


@pytest.mark.slow
def test_training_health_and_the_last_rollout_in_headless_chromium(tmp_path):
    run = grpo_run(tmp_path / "run")
    page = tmp_path / "report.html"
    assert invoke(run, "-o", page).exit_code == 0
    driver = chrome(tmp_path)
    try:
        from selenium.webdriver.common.by import By

        driver.get(page.as_uri())
        for key in ("loss", "learning_rate", "kl", "entropy", "clip_ratio/low_mean", "grad_norm",
                    "mismatch/ratio_mean"):
            line = driver.find_elements(By.CSS_SELECTOR, f'#health svg.chart[data-key="{key}"] polyline')
            assert len(line) == 1 and len(line[0].get_attribute("points").split()) == 2, key
        rows = driver.find_elements(By.CSS_SELECTOR, "#rollouts tbody tr")
        assert len(rows) == 100 and "rows 1–100 of 256" in driver.find_element(By.ID, "page-info").text
        driver.find_element(By.ID, "page-last").click()
        assert "the worst answer" in driver.find_element(By.ID, "rollouts").text  # sample 256 is reachable
        heads = driver.find_elements(By.CSS_SELECTOR, "#rollouts th")
        next(th for th in heads if th.text == "total").click()  # highest first...
        driver.find_element(By.CSS_SELECTOR, "#rollouts th.desc").click()  # ...then lowest first
        first = driver.find_element(By.CSS_SELECTOR, "#rollouts tbody tr")
        assert "the worst answer" in first.text and "-5.000" in first.text
        assert "rows 1–100 of 256" in driver.find_element(By.ID, "page-info").text
        driver.set_window_size(1400, driver.execute_script("return document.body.scrollHeight") + 200)
        driver.execute_script("window.scrollTo(0, 0)")
        assert driver.save_screenshot(str(tmp_path / "health.png"))
    finally:
        driver.quit()
