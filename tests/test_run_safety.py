"""Run-directory safety (issue 11): what --resume, --output and --model refuse before writing anything,
repairs after a kill inside a folder swap, a full disk, and what `inspect` reports for killed runs.

Most tests build run directories by hand (no model is loaded); the `slow` ones run the loop on the tiny
model with the HF sampler."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from rich.console import Console

from raftkit import loop
from raftkit.algorithms.raft import RAFT, RaftConfig
from raftkit.cli import main
from raftkit.config import AlignConfig, to_dict
from raftkit.runs import checkpoint, rundir, runview
from raftkit.runs.rundir import RunDirError, RunWriter


def _cli(*args: str):
    return CliRunner(env={"COLUMNS": "250"}).invoke(main, ["align", *args])


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its content: equal snapshots mean nothing was changed."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _fake_model(tmp_path: Path) -> str:
    """A folder that passes the --model check (the refusals tested here come before model loading)."""
    path = tmp_path / "model-folder"
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text("{}")
    return str(path)


def _config(model: str, **overrides) -> dict:
    cfg = AlignConfig(model=model, sampler="hf", rewards=["length"], k=2, prompts_per_iteration=2,
                      max_new_tokens=4, heldout=0, iterations=overrides.pop("iterations", 4), **overrides)
    return to_dict(cfg, RaftConfig(micro_batch_size=2, epochs_per_iteration=1, keep_answers=False))


def _fake_checkpoint(path: Path, iteration: int | None) -> None:
    """A checkpoint folder; ``iteration=None`` leaves out its marker (a half-written one)."""
    path.mkdir(parents=True)
    (path / checkpoint.CHECKPOINT_WEIGHTS).write_bytes(b"weights")
    if iteration is not None:
        marker = {"iteration": iteration, "algorithm": "raft"}
        (path / rundir.CHECKPOINT_MARKER).write_text(json.dumps(marker))


def _fake_run(tmp_path: Path, iterations: int = 3, checkpoint: int | None = 3, **overrides) -> Path:
    """A run that committed ``iterations`` iterations, with its checkpoint at ``checkpoint`` (None: none)."""
    root = tmp_path / "run"
    writer = RunWriter.create(root, _config(_fake_model(tmp_path), **overrides), "raft")
    for it in range(1, iterations + 1):
        writer.write_iteration(it, [{"iteration": it, "completion": "x"}])
        writer.commit_iteration(it, {"reward/total/mean": 0.5})
    if checkpoint is not None:
        _fake_checkpoint(rundir.checkpoint_path(root), checkpoint)
    return root


# --------------------------------------------------------------------------- 1. no checkpoint, no silent loss


def test_resume_refuses_a_run_whose_checkpoint_is_gone_and_changes_nothing(tmp_path):
    root = _fake_run(tmp_path, iterations=8, checkpoint=None)
    before = _snapshot(root)
    result = _cli("--resume", str(root))
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = f"{root} has 8 finished iterations but no checkpoint/ (deleted?); nothing was changed"
    assert message in result.output
    assert "--restart" in result.output
    assert _snapshot(root) == before

    # a checkpoint folder without its marker is no checkpoint either
    _fake_checkpoint(rundir.checkpoint_path(root), None)
    with pytest.raises(RunDirError, match=r"incomplete checkpoint/ \(no state.json\)"):
        rundir.check_checkpoint(root, save_every=1, planned=8)


def test_iterations_before_the_first_save_point_are_redone_without_asking(tmp_path):
    root = _fake_run(tmp_path, iterations=2, checkpoint=None, save_every=5)
    rundir.check_checkpoint(root, save_every=5, planned=4)  # no checkpoint was due yet: no refusal
    with pytest.raises(RunDirError):
        rundir.check_checkpoint(root, save_every=5, planned=2)  # the last iteration always saves one


def test_restart_discards_the_iterations_and_checkpoints(tmp_path):
    root = _fake_run(tmp_path, iterations=3, checkpoint=None)
    (root / "checkpoint.old").mkdir()
    (root / "model").mkdir()
    loop.prepare_resume(root, _config(_fake_model(tmp_path)), restart=True, console=Console(quiet=True))
    assert not any((root / n).exists() for n in ("checkpoint", "checkpoint.old", "model"))
    RunWriter.resume(root, None)
    assert not list((root / "iterations").iterdir()) and (root / "metrics.jsonl").read_text() == ""

    result = _cli("--restart", "--reward", "length")
    assert result.exit_code == 2 and "--restart goes with --resume" in result.output


# --------------------------------------------------------------------------- 2. --output into a used folder


def test_output_into_a_folder_that_is_not_a_run_is_refused_before_writing(tmp_path):
    folder = tmp_path / "my-project"
    folder.mkdir()
    (folder / "config.yaml").write_text("mine: true\n")
    (folder / "model").mkdir()
    before = _snapshot(folder)
    result = _cli("--reward", "length", "--model", _fake_model(tmp_path), "--output", str(folder))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "is not empty and is not a raftkit run (it holds config.yaml, model)" in result.output
    assert _snapshot(folder) == before and not (folder / "run.json").exists()


def test_output_into_an_existing_run_says_to_resume(tmp_path):
    root = _fake_run(tmp_path)
    before = _snapshot(root)
    result = _cli("--reward", "length", "--model", _fake_model(tmp_path), "--output", str(root))
    assert result.exit_code == 1 and f"continue it with: raftkit align --resume {root}" in result.output
    assert _snapshot(root) == before


def test_output_into_an_empty_folder_or_a_run_killed_while_starting_is_fine(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    rundir.check_new_run_dir(empty)
    # 14. run.json is written first: a kill before config.yaml leaves only it (and a temporary file)
    started = tmp_path / "started"

    def killed(path, text):
        if path.name == "config.yaml":
            (path.parent / f".config.yaml.tmp-{os.getpid()}").write_text("half")
            raise KeyboardInterrupt
        real_write(path, text)

    real_write = rundir.atomic_write_text
    try:
        rundir.atomic_write_text = killed
        with pytest.raises(KeyboardInterrupt):
            RunWriter.create(started, {"iterations": 2}, "raft")
    finally:
        rundir.atomic_write_text = real_write
    assert (started / "run.json").is_file() and not (started / "config.yaml").exists()
    with pytest.raises(RunDirError, match=r"stopped while starting.*Start it again with: raftkit align"):
        rundir.check_resumable(started)
    RunWriter.create(started, {"iterations": 2}, "raft")  # starting it again works
    assert (started / "config.yaml").is_file()


def test_resume_of_a_folder_without_run_json_says_to_start_again(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    result = _cli("--resume", str(folder))
    assert result.exit_code == 1 and "stopped while starting" in result.output
    (folder / "notes.txt").write_text("x")
    result = _cli("--resume", str(folder))
    assert result.exit_code == 1 and "not a run directory" in result.output


# --------------------------------------------------------------------------- 3. resume keeps the settings


def test_resume_refuses_changed_settings_and_leaves_config_yaml_alone(tmp_path):
    root = _fake_run(tmp_path)
    before = _snapshot(root)
    result = _cli("--resume", str(root), "--k", "4", "--temperature", "1.0")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "k (saved: 2, now: 4); temperature (saved: 0.8, now: 1.0)" in result.output
    assert "Nothing was changed" in result.output
    assert _snapshot(root) == before


def test_a_failed_resume_does_not_rewrite_config_yaml(tmp_path):
    root = _fake_run(tmp_path)
    (Path(_fake_model(tmp_path)) / "config.json").unlink()  # the run's model is gone
    before = _snapshot(root)
    result = _cli("--resume", str(root), "--iterations", "9")
    assert result.exit_code == 1 and "no config.json" in result.output and "Traceback" not in result.output
    assert _snapshot(root) == before


def test_which_settings_a_resume_may_change(tmp_path):
    saved = _config("m")
    now = {**saved, "iterations": 20, "save_every": 2, "checkpoint_every": 5, "reward_timeout": 5.0,
           "sampler": "vllm", "output": "elsewhere"}
    assert rundir.changed_settings(saved, now) == []
    for key, value in [("model", "other"), ("lr", 1.0), ("rewards", ["emoji"]), ("eval_samples", 9),
                       ("heldout", 3), ("seed", 1), ("ranking", "top"), ("algo", "grpo")]:
        assert [c.split(" ")[0] for c in rundir.changed_settings(saved, {**saved, key: value})] == [key]
    # A run that recorded nothing yet (e.g. its reward crashed in iteration 1) may change anything.
    root = _fake_run(tmp_path, iterations=0, checkpoint=None)
    assert not rundir.has_results(root)


# --------------------------------------------------------------------------- 4. --model and --heldout


def test_a_bad_model_path_fails_before_the_run_directory_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _cli("--reward", "length", "--model", str(tmp_path / "no-such-model"))
    assert result.exit_code == 1 and "no such folder" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()

    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "latest").symlink_to("old-run")
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    result = _cli("--reward", "length", "--model", str(empty))
    assert result.exit_code == 1 and "no config.json" in result.output
    assert os.listdir(tmp_path / "runs") == ["latest"]
    assert os.readlink(tmp_path / "runs" / "latest") == "old-run"


def test_a_hub_id_must_be_cached_or_reachable(monkeypatch):
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    from raftkit.models import ModelError

    with pytest.raises(ModelError, match=r"--model someone/modle: .*not in the Hugging Face cache.*resolve"):
        loop.check_model("someone/modle")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: "/cache/config.json")
    loop.check_model("someone/model")  # cached: fine without a hub
    loop.check_model("default")


def test_heldout_is_scaled_down_with_a_note_when_it_leaves_too_little(tmp_path):
    from raftkit.datasets import PromptSet, load_prompts

    small = PromptSet.from_records([{"prompt": f"q{i}"} for i in range(45)], source="small.jsonl")
    console = Console(record=True, width=250)
    cfg = AlignConfig(heldout=40, prompts_per_iteration=8)
    assert loop.heldout_size(small, cfg, console) == 11
    assert "--heldout 40 would leave 5 of the 45 prompts in small.jsonl to train on; holding out 11" in \
        console.export_text()
    assert loop.heldout_size(small, AlignConfig(heldout=60, prompts_per_iteration=8), console) == 11
    assert loop.heldout_size(small, AlignConfig(heldout=10, prompts_per_iteration=8), console) == 10
    bundled = load_prompts()
    assert loop.heldout_size(bundled, AlignConfig(heldout=100), console) == 100  # split keeps the 40 marked
    assert "marks 40 rows as held out; evaluating on those 40" in console.export_text()


# --------------------------------------------------------------------------- 8. other algorithms' options


def test_an_option_of_another_algorithm_is_an_error(tmp_path):
    nowhere = str(tmp_path / "nope")  # should the check be missed, the run fails on the model, not trains
    result = _cli("--reward", "length", "--beta", "0.1", "--model", nowhere)
    owners = re.search(r"--beta is a ([\w/]+) setting; raft does not use it", result.output).group(1)
    assert result.exit_code == 1 and "grpo" in owners.split("/")  # every registered algorithm with a beta
    config = tmp_path / "c.yaml"
    config.write_text(f"beta: 0.1\nrewards: [length]\nmodel: {nowhere}\n")
    result = _cli("--config", str(config))
    assert result.exit_code == 1
    assert f"--config {config}: 'beta' is a {owners} setting; raft does not use it" in result.output
    result = _cli("--algo", "grpo", "--reward", "length", "--beta", "0.1", "--model", nowhere)
    assert result.exit_code == 1 and "beta" not in result.output and "no such folder" in result.output


# --------------------------------------------------------------------------- 11/12. a kill inside a swap


def test_a_half_done_swap_is_finished_on_resume(tmp_path):
    root = _fake_run(tmp_path, iterations=3, checkpoint=None)
    _fake_checkpoint(root / "checkpoint.old", 2)
    _fake_checkpoint(root / "checkpoint.tmp", 3)
    config = _config(_fake_model(tmp_path))
    loop.prepare_resume(root, config, restart=False, console=Console(quiet=True))  # no refusal
    marker = json.loads((root / "checkpoint" / "state.json").read_text())
    assert marker["iteration"] == 3
    assert not (root / "checkpoint.tmp").exists() and not (root / "checkpoint.old").exists()


def test_a_swap_whose_new_checkpoint_lacks_its_marker_restores_the_old_one(tmp_path):
    root = tmp_path / "r"
    _fake_checkpoint(root / "checkpoint.old", 2)
    _fake_checkpoint(root / "checkpoint.tmp", None)
    assert rundir.repair_swaps(root)
    assert json.loads((root / "checkpoint" / "state.json").read_text())["iteration"] == 2
    # and with checkpoint/ still in place next to a complete newer checkpoint.tmp, the newer one wins
    shutil.rmtree(root / "checkpoint.tmp")  # (the next save_checkpoint clears a half-written one)
    _fake_checkpoint(root / "checkpoint.tmp", 3)
    rundir.repair_swaps(root)
    assert json.loads((root / "checkpoint" / "state.json").read_text())["iteration"] == 3
    assert rundir.repair_swaps(root) == []  # nothing left to do


def test_a_missing_metrics_line_is_rebuilt_from_its_metrics_json(tmp_path):
    root = _fake_run(tmp_path, iterations=3, checkpoint=3)
    lines = (root / "metrics.jsonl").read_text().splitlines(keepends=True)
    (root / "metrics.jsonl").write_text("".join(lines[:2]))  # killed after the checkpoint, before the line
    rundir.check_checkpoint(root, save_every=1, planned=4)
    RunWriter.resume(root, 3)
    assert [r["iteration"] for r in rundir.read_jsonl(root / "metrics.jsonl")] == [1, 2, 3]


def test_a_killed_model_swap_is_reported_read_only_and_restored_on_resume(tmp_path):
    root = _fake_run(tmp_path, iterations=3, checkpoint=None)
    _fake_checkpoint(root / "checkpoint.tmp", 3)  # 12. killed in the last iteration's swap
    (root / "model.old").mkdir()
    (root / "model.old" / "config.json").write_text("{}")
    (root / "model.tmp").mkdir()  # half-written: the resumed run saves the model again
    info = json.loads((root / "run.json").read_text())
    (root / "run.json").write_text(json.dumps({**info, "status": "finished"}))
    before = _snapshot(root)
    summary = runview.load_summary(root)
    assert _snapshot(root) == before  # inspect stays read-only
    assert any(m.startswith("checkpoint/ (a kill interrupted") for m in summary.missing)
    assert any(m.startswith("model/ (a kill interrupted") for m in summary.missing)
    notes = rundir.repair_swaps(root)
    assert len(notes) == 2 and (root / "model" / "config.json").is_file()
    assert rundir.latest_checkpoint(root)[0] == root / "checkpoint"


def test_save_checkpoint_never_deletes_the_only_copy(tiny_policy, tmp_path, monkeypatch):
    algo = RAFT(tiny_policy, RaftConfig(), lr=1e-3, total_steps=3, k=2, sampling=None)
    loop.save_checkpoint(tmp_path, tiny_policy, algo, 3)
    os.replace(tmp_path / "checkpoint", tmp_path / "checkpoint.tmp")  # killed inside the swap
    _full_disk(monkeypatch)
    with pytest.raises(rundir.DiskFullError, match="while writing the checkpoint"):
        loop.save_checkpoint(tmp_path, tiny_policy, algo, 4)
    path, marker = rundir.latest_checkpoint(tmp_path)
    assert marker["iteration"] == 3 and path == tmp_path / "checkpoint"
    assert not (tmp_path / "checkpoint.tmp").exists()  # the half-written new one is cleaned up


# --------------------------------------------------------------------------- 13. a full disk


def _full_disk(monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(loop.torch, "save", no_space)


@pytest.fixture(scope="module")
def tiny_policy(tiny_model_path):
    from raftkit.policy import Policy

    return Policy(tiny_model_path, bf16=False)


def test_a_full_disk_still_marks_the_run_crashed(tmp_path, monkeypatch):
    root = _fake_run(tmp_path)
    writer = RunWriter(root, json.loads((root / "run.json").read_text()))

    def no_space(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir, "atomic_write_text", no_space)
    writer.finish("crashed", "no space left on device while writing the checkpoint of iteration 4")
    info = json.loads((root / "run.json").read_text())  # rewritten in place
    assert info["status"] == "crashed" and "no space" in info["error"]


def test_atomic_write_leaves_no_temporary_file_on_a_full_disk(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir.os, "fsync", no_space)
    with pytest.raises(OSError):
        rundir.write_jsonl(tmp_path / "crash.jsonl", [{"a": 1}])
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- 15. inspect on killed runs


def test_a_zombie_process_counts_as_killed_and_the_iteration_is_capped():
    child = subprocess.Popen(["true"])
    try:
        for _ in range(200):  # exited but not reaped yet
            with open(f"/proc/{child.pid}/status") as f:
                if "State:\tZ" in f.read():
                    break
            time.sleep(0.01)
        info = {"status": "running", "pid": child.pid, "host": __import__("socket").gethostname(),
                "last_iteration": 6, "iterations_planned": 6}
        metrics = [{"iteration": i} for i in range(1, 7)]
        status, line = runview._status(info, metrics, [], time.time(), time.time())
    finally:
        child.wait()
    assert status == "killed"
    assert "killed after iteration 6" in line and "iteration 7" not in line
    info.update(status="crashed", error="after iteration 6 (saving the model, evaluating): OSError: x")
    _, line = runview._status(info, metrics, [], time.time(), time.time())
    assert line.startswith("crashed after iteration 6 (saving the model, evaluating): OSError: x (6 iter")


# --------------------------------------------------------------------------- the loop itself (slow)


def _tiny_run(model: str, run: Path, **overrides):
    cfg = AlignConfig(model=model, sampler="hf", rewards=["length"], k=2, prompts_per_iteration=2,
                      max_new_tokens=4, heldout=0, lr=1e-3, **{"iterations": 1, **overrides})
    return cfg, RaftConfig(micro_batch_size=2, epochs_per_iteration=1, keep_answers=False)


@pytest.mark.slow
def test_a_full_disk_during_the_checkpoint_is_one_clear_line(tiny_model_path, tmp_path, monkeypatch):
    run = tmp_path / "run"
    cfg, algo = _tiny_run(tiny_model_path, run)
    real_write = rundir.atomic_write_text
    full = []

    def no_space(*args, **kwargs):
        full.append(True)
        raise OSError(errno.ENOSPC, "No space left on device")

    def write(path, text):  # once the disk is full, nothing new can be written
        if full:
            no_space()
        real_write(path, text)

    monkeypatch.setattr(loop.torch, "save", no_space)
    monkeypatch.setattr(rundir, "atomic_write_text", write)
    with pytest.raises(loop.RunError) as caught:
        loop.run(cfg, algo, run, console=Console(quiet=True))
    assert str(caught.value) == ("no space left on device while writing the checkpoint of iteration 1; free "
                                 f"space and resume with: raftkit align --resume {run}")
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "crashed" and info["error"] == str(caught.value)
    assert not (run / "checkpoint.tmp").exists()
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]


@pytest.mark.slow
def test_a_run_killed_in_its_last_swap_resumes_to_a_complete_run(tiny_model_path, tmp_path):
    run = tmp_path / "run"
    cfg, algo = _tiny_run(tiny_model_path, run)
    loop.run(cfg, algo, run, console=Console(quiet=True))
    # killed in the last checkpoint swap, then "resumed" by a version that never put it back
    os.replace(run / "checkpoint", run / "checkpoint.tmp")
    os.replace(run / "model", run / "model.old")
    loop.run(cfg, algo, run, resume=True, console=Console(quiet=True))
    assert json.loads((run / "checkpoint" / "state.json").read_text())["iteration"] == 1
    assert (run / "model" / "config.json").is_file() and not (run / "model.old").exists()
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert [r["iteration"] for r in rundir.read_jsonl(run / "metrics.jsonl")] == [1]


# --------------------------------------------------------------------------- untrusted run folders


class _Planted:
    """What a hostile state.pt holds: unpickling it calls open(marker, "w"), i.e. runs code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_that_would_run_code_is_refused_not_executed(tiny_policy, tmp_path):
    import torch

    algo = RAFT(tiny_policy, RaftConfig(), lr=1e-3, total_steps=3, k=2, sampling=None)
    loop.save_checkpoint(tmp_path, tiny_policy, algo, 2)
    path, marker = rundir.latest_checkpoint(tmp_path)
    planted = tmp_path / "planted-code-ran"
    torch.save({"algorithm_state": _Planted(planted), "rng": checkpoint.rng_state()},
               path / checkpoint.CHECKPOINT_STATE)
    with pytest.raises(checkpoint.CheckpointError, match=r"state.pt: refused to load: .*could run code"):
        checkpoint.load_checkpoint(path, marker, tiny_policy, algo)
    assert not planted.exists()


def test_checkpoints_written_by_raftkit_still_load_as_data(tiny_policy, tmp_path):
    import random

    import numpy as np
    import torch

    from raftkit.algorithms.grpo import GRPO, GRPOConfig

    grpo = GRPO(tiny_policy, GRPOConfig(), lr=1e-3, total_steps=3, k=2, sampling=None)
    grpo.floors = {"answer_match": 0.5, "emoji": float("inf")}
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    loop.save_checkpoint(tmp_path, tiny_policy, grpo, 2)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    grpo.floors = {}
    assert checkpoint.load_checkpoint(*rundir.latest_checkpoint(tmp_path), tiny_policy, grpo) == 2
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert grpo.floors == {"answer_match": 0.5, "emoji": float("inf")}
    raft = RAFT(tiny_policy, RaftConfig(), lr=1e-3, total_steps=3, k=2, sampling=None)
    (tmp_path / "raft").mkdir()
    loop.save_checkpoint(tmp_path / "raft", tiny_policy, raft, 1)
    assert checkpoint.load_checkpoint(*rundir.latest_checkpoint(tmp_path / "raft"), tiny_policy, raft) == 1


HOSTILE = "Sure!\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eevil\nline two\tend"


def test_inspect_shows_control_characters_instead_of_sending_them_to_the_terminal(tmp_path):
    root = tmp_path / "run"
    writer = RunWriter.create(root, _config(_fake_model(tmp_path)), "raft")
    record = {"iteration": 1, "prompt": f"Q{HOSTILE}", "completion": HOSTILE,
              "rewards": {"length": 0.5, "x\x1b[2J": 1.0}, "hits": {"f\x1b]0;t\x07": 1}, "total": 0.5,
              "selected": True}
    writer.write_iteration(1, [record])
    writer.commit_iteration(1, {"reward/total/mean": 0.5})
    writer.finish("crashed", f"iteration 2: ValueError: {HOSTILE}")
    runner = CliRunner(env={"COLUMNS": "250"})
    for args in ([str(root)], [str(root), "-i", "1"], [str(root), "-i", "1", "--full"],
                 [str(root / "iterations" / "000001" / "rollouts.jsonl")], [str(root), "-i", "1", "--json"],
                 [str(root), "--compare", "1", "1"]):
        result = runner.invoke(main, ["inspect", *args])
        assert result.exit_code == 0, result.output
        out = result.output
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", out), (args, repr(out[:300]))
        if "--json" not in args and args != [str(root)]:
            assert "\\x1b]0;pwned\\x07" in out, args  # shown, visibly
        assert "\\x0a" not in out and "\\x09" not in out  # newlines and tabs stay readable
    summary = runner.invoke(main, ["inspect", str(root)]).output
    assert "ValueError: Sure!\\x1b]0;pwned" in summary  # the recorded error too
    full = runner.invoke(main, ["inspect", str(root), "-i", "1", "--full"]).output
    assert re.search(r"\n[│ ]*line two", full)  # the completion's newline is a line break


# --------------------------------------------------------------------------- one writer per run folder


def _hold_lock_elsewhere(root: Path) -> subprocess.Popen:
    """Another process holding the run's lock, as a run still being written does."""
    code = ("import sys, time; from raftkit.runs import rundir; rundir.acquire_lock(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_run_being_written_cannot_be_resumed_or_started_over_by_a_second_process(tmp_path):
    root = _fake_run(tmp_path)
    rundir.release_lock(root)  # the test process wrote it; now another process is writing it
    holder = _hold_lock_elsewhere(root)
    try:
        before = _snapshot(root)
        result = _cli("--resume", str(root))
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert f"{root} is being written by another raftkit process (pid {holder.pid} on " in result.output
        assert "wait for it to end, or stop it" in result.output
        result = _cli("--reward", "length", "--model", _fake_model(tmp_path), "--output", str(root))
        assert result.exit_code == 1 and "is being written by another raftkit process" in result.output
        assert "--resume" not in result.output  # no longer suggested for a live run
        assert _snapshot(root) == before
    finally:
        holder.kill()  # the OS releases a dead process's lock
        holder.wait()
    rundir.acquire_lock(root)
    assert rundir.lock_holder(root) is None
    rundir.release_lock(root)


def test_inspect_flags_an_iteration_recorded_twice(tmp_path):
    root = _fake_run(tmp_path, iterations=2)
    with open(root / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"iteration": 2, "reward/total/mean": 0.9}) + "\n")
    result = CliRunner(env={"COLUMNS": "250"}).invoke(main, ["inspect", str(root)])
    assert result.exit_code == 0
    assert "metrics.jsonl:3: iteration 2 again (duplicated: two processes may have written this run)" in \
        result.output


# --------------------------------------------------------------------------- finished runs keep their record


def _finish(root: Path, eval_data: dict | None = None) -> None:
    """Mark the run finished after its last committed iteration, as planned, with its model/."""
    (root / "model").mkdir()
    (root / "model" / "config.json").write_text("{}")
    info = json.loads((root / "run.json").read_text())
    (root / "run.json").write_text(json.dumps({**info, "status": "finished"}))
    config = yaml.safe_load((root / "config.yaml").read_text())
    (root / "config.yaml").write_text(yaml.safe_dump({**config, "iterations": info["last_iteration"]}))
    if eval_data is not None:
        (root / "eval.json").write_text(json.dumps(eval_data))


def test_resuming_a_finished_run_changes_nothing_and_says_so(tmp_path):
    root = _fake_run(tmp_path, iterations=3, checkpoint=3)
    _finish(root, {"before": {"accuracy": 0.2}, "after": {"accuracy": 0.4}})
    before = _snapshot(root)
    result = _cli("--resume", str(root))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"--resume {root}: the run is finished (3 iterations); nothing was changed" in result.output
    assert "--iterations 6" in result.output
    assert _snapshot(root) == before
    holder = _hold_lock_elsewhere(root)  # a refused resume holds no lock
    holder.kill()
    holder.wait()


def test_extending_a_finished_run_keeps_its_evaluation_beside_the_new_one(tmp_path):
    root = _fake_run(tmp_path, iterations=3, checkpoint=3)
    old = {"before": {"accuracy": 0.2}, "after": {"accuracy": 0.4}}
    _finish(root, old)
    loop.prepare_resume(root, _config(_fake_model(tmp_path), iterations=5), restart=False,
                        console=Console(quiet=True))
    RunWriter.resume(root, 3, iterations_planned=5)
    assert json.loads((root / "eval-000003.json").read_text()) == old
    assert json.loads((root / "eval.json").read_text()) == old  # until the extended run evaluates
    rundir.release_lock(root)


# --------------------------------------------------------------------------- the data a run trained on


def test_a_resume_reading_other_data_is_refused_saying_what_changed(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, prompts in ((first, ["q1", "q2", "q3"]), (second, ["other"])):
        folder.mkdir()
        (folder / "data.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    monkeypatch.chdir(first)
    root = tmp_path / "run"
    config = _config(_fake_model(tmp_path), dataset="data.jsonl")
    writer = RunWriter.create(root, config, "raft")
    writer.commit_iteration(1, {"reward/total/mean": 0.5})
    _fake_checkpoint(rundir.checkpoint_path(root), 1)
    recorded = json.loads((root / "run.json").read_text())["data"]
    assert recorded["path"] == str(first / "data.jsonl") and recorded["bytes"] == 51
    rundir.check_same_data(root, "data.jsonl")  # the same file: fine

    monkeypatch.chdir(second)
    before = _snapshot(root)
    with pytest.raises(RunDirError) as caught:
        loop.prepare_resume(root, config, restart=False, console=Console(quiet=True))
    message = str(caught.value)
    assert f"dataset 'data.jsonl' is not the data the run trained on (then: {first / 'data.jsonl'}, 51 " \
        f"bytes, sha256 {recorded['sha256'][:12]}; now: {second / 'data.jsonl'}, 20 bytes" in message
    assert f"resume from the folder the run started in, or restore {first / 'data.jsonl'}" in message
    assert _snapshot(root) == before
    monkeypatch.chdir(first)
    (first / "data.jsonl").write_text(json.dumps({"prompt": "edited"}) + "\n")  # same path, new content
    with pytest.raises(RunDirError, match="is not the data the run trained on"):
        rundir.check_same_data(root, "data.jsonl")
    rundir.release_lock(root)


# --------------------------------------------------------------------------- one line, not a traceback


def test_output_paths_that_cannot_be_created_are_one_line_errors(tmp_path):
    model = _fake_model(tmp_path)
    dangling = tmp_path / "link"
    dangling.symlink_to(tmp_path / "gone")
    result = _cli("--reward", "length", "--model", model, "--output", str(dangling))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"--output {dangling} is a link to {tmp_path / 'gone'}, which does not exist" in result.output

    (tmp_path / "notes.txt").write_text("x")
    under_file = tmp_path / "notes.txt" / "run"
    result = _cli("--reward", "length", "--model", model, "--output", str(under_file))
    assert result.exit_code == 1 and f"{tmp_path / 'notes.txt'} is a file, not a folder" in result.output

    # A folder no one may create anything in, root included (sysfs); skipped where that is not so.
    read_only = Path("/sys/raftkit-test-run")
    try:
        read_only.mkdir()
        read_only.rmdir()
        pytest.skip("/sys is writable here")
    except OSError:
        pass
    result = _cli("--reward", "length", "--model", model, "--output", str(read_only))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"--output {read_only}: cannot create the folder (" in result.output
    assert "choose another --output" in result.output


def test_resume_of_a_run_folder_that_cannot_be_written_is_one_line(tmp_path):
    root = _fake_run(tmp_path)
    rundir.release_lock(root)
    # As root, permission bits do not stop a write; a lock file that cannot be opened for writing does
    # (a directory in its place), and takes the same path as a read-only folder.
    (root / rundir.LOCK_FILE).unlink()
    (root / rundir.LOCK_FILE).mkdir()
    before = _snapshot(root)
    result = _cli("--resume", str(root), "--iterations", "5")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{root}: cannot write in the run folder (Is a directory); make it writable" in result.output
    assert _snapshot(root) == before


def test_a_stop_during_start_up_is_recorded_as_such(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the run starts (here: while the trackers start)

    monkeypatch.setattr(loop, "Trackers", interrupted)
    cfg, algo = _tiny_run(_fake_model(tmp_path), tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        loop.run(cfg, algo, tmp_path / "run", console=Console(quiet=True))
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "stopped" and info["error"] == "interrupted during start-up"


@pytest.mark.slow
def test_a_finished_run_is_never_rewritten_and_extending_it_keeps_its_evaluation(tiny_model_path, tmp_path):
    import dataclasses

    run = tmp_path / "run"
    cfg, algo = _tiny_run(tiny_model_path, run)
    cfg = dataclasses.replace(cfg, heldout=2, eval_samples=1)  # the bundled set's marked rows
    loop.run(cfg, algo, run, console=Console(quiet=True))
    first = json.loads((run / "eval.json").read_text())
    before = _snapshot(run)
    with pytest.raises(RunDirError, match=r"the run is finished \(1 iteration\); nothing was changed"):
        loop.run(cfg, algo, run, resume=True, console=Console(quiet=True))
    assert _snapshot(run) == before  # eval.json, model/ and the rest untouched

    loop.run(dataclasses.replace(cfg, iterations=2), algo, run, resume=True, console=Console(quiet=True))
    assert json.loads((run / "eval-000001.json").read_text()) == first  # kept beside the new one
    now = json.loads((run / "eval.json").read_text())
    assert now["before"] == first["before"] and "after" in now
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["last_iteration"] == 2


def test_a_resume_that_fails_while_starting_leaves_the_run_unlocked(tmp_path, monkeypatch):
    root = tmp_path / "run"
    cfg, algo = _tiny_run(_fake_model(tmp_path), root, iterations=4)
    RunWriter.create(root, to_dict(cfg, algo), "raft").commit_iteration(1, {"reward/total/mean": 0.5})
    _fake_checkpoint(rundir.checkpoint_path(root), 1)

    def broken(*args, **kwargs):
        raise RuntimeError("the tracker cannot start")

    monkeypatch.setattr(loop, "Trackers", broken)
    with pytest.raises(loop.RunError, match="the tracker cannot start"):
        loop.run(cfg, algo, root, resume=True, console=Console(quiet=True))
    holder = _hold_lock_elsewhere(root)  # another process may continue it at once
    holder.kill()
    holder.wait()
