"""`--report-to`: metrics, samples and the evaluation mirrored to TensorBoard, W&B, MLflow, trackio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from raftkit.api import build_configs
from raftkit.cli import main
from raftkit.config import ConfigError
from raftkit.runs import trackers
from raftkit.runs.trackers import Trackers

METRICS = {"iteration": 1, "rewards/length/mean": 0.25, "rewards/length:target=10/mean": 0.5,
           "total/mean": None, "selected": True, "note": "text"}
RECORDS = [{"prompt": [{"role": "user", "content": "Hi?"}], "completion": "Hello | there\nfriend",
            "total": 0.5, "selected": True, "rewards": {"length": 0.25}}]
EVALS = {"before": {"accuracy": 0.2, "rewards": {"length": {"mean": 0.1}}},
         "after": {"accuracy": 0.1, "rewards": {"length": {"mean": 0.3}}},
         "delta": {"accuracy": -0.1}, "alarm": ["accuracy fell"]}


def _report(names, root):
    t = Trackers(names, root, {"algo": "raft", "rewards": ["length"]})
    t.log_metrics(1, METRICS)
    t.log_samples(1, RECORDS)
    t.log_metrics(2, {**METRICS, "iteration": 2, "rewards/length/mean": 0.75})
    t.log_eval(EVALS)
    t.close()


def test_sample_tables_carry_the_columns_rewards_logged():
    records = [{**RECORDS[0], "extra": {"grade": 0.5}}, {**RECORDS[0], "rewards": {}}]
    columns, rows = trackers._sample_rows(records)
    assert columns == ["prompt", "completion", "total", "selected", "length", "grade"]
    assert [row[-1] for row in rows] == [0.5, None] and rows[0][0] == "Hi?"


def test_parse_and_check_before_the_run():
    assert trackers.parse(["tensorboard,wandb", " none", "wandb"]) == ["tensorboard", "wandb"]
    assert trackers.parse("none") == [] and trackers.parse(None) == []
    with pytest.raises(trackers.TrackerError, match="Did you mean 'tensorboard'"):
        trackers.parse(["tensorbord"])
    cfg, _ = build_configs({"report_to": ["tensorboard,none"]})
    assert cfg.report_to == ["tensorboard"]


def test_a_missing_package_names_the_extra(monkeypatch, tmp_path):
    real = trackers.importlib.util.find_spec
    monkeypatch.setattr(trackers.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"--report-to mlflow: the mlflow package is not installed; "
                                          r"pip install 'raftkit\[mlflow\]'"):
        build_configs({"report_to": ["mlflow"]})
    result = CliRunner().invoke(main, ["align", "--reward", "length", "--report-to", "mlflow",
                                       "--output", str(tmp_path / "run")])
    assert result.exit_code != 0 and "raftkit[mlflow]" in result.output
    assert not (tmp_path / "run").exists()  # refused before the run directory


def test_no_trackers_is_a_no_op(tmp_path):
    _report([], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_tracker_is_switched_off_not_fatal(tmp_path, capsys):
    class Broken(trackers._Tracker):
        name = "broken"

        def metrics(self, step, values):
            raise OSError("disk gone")

    t = Trackers([], tmp_path)
    t.active = [Broken()]
    t.log_metrics(1, METRICS)
    t.log_metrics(2, METRICS)
    assert t.active == [] and capsys.readouterr().err.count("broken: logging metrics failed") == 1


def test_tensorboard_events_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _report(["tensorboard"], tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"tensors": 0}).Reload()
    scalars = events.Tags()["scalars"]
    assert "rewards/length/mean" in scalars and "iteration" not in scalars and "note" not in scalars
    assert [(e.step, e.value) for e in events.Scalars("rewards/length/mean")] == [(1, 0.25), (2, 0.75)]
    assert [e.value for e in events.Scalars("eval/after/rewards/length/mean")] == [pytest.approx(0.3)]
    assert events.Scalars("eval/delta/accuracy")[0].step == 2  # at the last iteration
    texts = {tag: events.Tensors(tag) for tag in events.Tags()["tensors"]}
    samples = texts["samples/text_summary"][0].tensor_proto.string_val[0].decode()
    assert "Hello \\| there ⏎ friend" in samples and "Hi?" in samples
    assert "accuracy fell" in texts["eval/alarm/text_summary"][0].tensor_proto.string_val[0].decode()


def test_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    _report(["wandb"], tmp_path / "run")
    [run] = (tmp_path / "wandb").glob("offline-run-*")
    # wandb 0.31 has no public reader for offline runs: look for the values in its record log.
    [log] = run.glob("run-*.wandb")
    wanted = [b"rewards/length/mean", b"accuracy fell"]
    for _ in range(100):  # the wandb-core process may still be writing the log when finish() returns
        data = log.read_bytes()
        if all(w in data for w in wanted):
            break
        time.sleep(0.1)
    for text in ("rewards/length/mean", "rewards/length:target=10/mean", "eval/after/accuracy",
                 "accuracy fell", "rewards", "algo"):
        assert text.encode() in data, text
    [table] = (run / "files" / "media" / "table").glob("samples_1_*.table.json")
    assert json.loads(table.read_text())["data"][0][:2] == ["Hi?", "Hello | there\nfriend"]


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")  # MLflow on SQLAlchemy 2.1
def test_mlflow_sqlite_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")  # set before the import, which starts it
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'raftkit[mlflow]')")
    from mlflow.tracking import MlflowClient

    # MLflow's default store (sqlite:///mlflow.db, artifacts in ./mlruns), inside tmp_path.
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    _report(["mlflow"], tmp_path / "run")
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("raftkit").experiment_id])
    assert (run.info.run_name, run.info.status) == ("run", "FINISHED")

    def history(key):
        return [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]

    assert set(run.data.metrics) == {"rewards/length/mean", "rewards/length_target_10/mean", "selected",
                                     "eval/before/accuracy", "eval/before/rewards/length/mean",
                                     "eval/after/accuracy", "eval/after/rewards/length/mean",
                                     "eval/delta/accuracy"}  # no iteration, None or text
    assert history("rewards/length/mean") == [(1, 0.25), (2, 0.75)]
    assert history("rewards/length_target_10/mean") == [(1, 0.5), (2, 0.5)]
    assert history("selected") == [(1, 1.0), (2, 1.0)]
    assert history("eval/after/rewards/length/mean") == [(2, pytest.approx(0.3))]  # at the last iteration
    assert history("eval/delta/accuracy") == [(2, pytest.approx(-0.1))]
    assert run.data.params == {"algo": "raft", "rewards": "['length']"}
    assert run.data.tags["eval.alarm"] == "accuracy fell"
    [artifact] = client.list_artifacts(run.info.run_id, "samples")
    assert artifact.path == "samples/iteration-000001.json"
    local = client.download_artifacts(run.info.run_id, artifact.path, str(tmp_path))
    with open(local, encoding="utf-8") as f:
        samples = json.load(f)
    assert samples == {
        "prompt": ["Hi?"], "completion": ["Hello | there\nfriend"], "total": [0.5], "selected": [True],
        "length": [0.25]}
    assert run.info.artifact_uri.startswith(str(tmp_path / "mlruns"))


def test_trackio_local(tmp_path):
    """Metrics reach trackio's local SQLite store and read back through trackio's own storage API. In a
    subprocess: trackio reads TRACKIO_DIR once, when it is first imported."""
    pytest.importorskip("trackio", reason="trackio is not installed (pip install 'raftkit[trackio]')")
    script = f"""
import json
from pathlib import Path
from raftkit.runs.trackers import Trackers
t = Trackers(["trackio"], Path({str(tmp_path / "run")!r}), {{"algo": "raft"}})
t.log_metrics(1, {METRICS!r})
t.log_samples(1, {RECORDS!r})
t.log_metrics(2, {{**{METRICS!r}, "iteration": 2, "rewards/length/mean": 0.75}})
t.close()
from trackio.sqlite_storage import SQLiteStorage
print(json.dumps(SQLiteStorage.get_logs("raftkit-test", "run"), default=str))
"""
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "TRACKIO_PROJECT": "raftkit-test"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    logs = [row for row in json.loads(done.stdout.splitlines()[-1]) if "rewards/length/mean" in row]
    assert [(row["step"], row["rewards/length/mean"]) for row in logs] == [(1, 0.25), (2, 0.75)]
    assert (tmp_path / "trackio" / "raftkit-test.db").exists()


@pytest.mark.slow
def test_align_reports_to_tensorboard(tiny_model_path, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = ["align", "--model", tiny_model_path, "--sampler", "hf", "--iterations", "1",
            "--prompts-per-iteration", "2", "--k", "2", "--max-new-tokens", "4", "--heldout", "0",
            "--micro-batch-size", "2", "--epochs-per-iteration", "1", "--no-keep-answers",
            "--reward", "length", "--report-to", "tensorboard", "--output", str(tmp_path / "run")]
    result = CliRunner(env={"COLUMNS": "250"}).invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("rewards/length/mean")] == [1]
