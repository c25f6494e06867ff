"""Several processes (raftkit.distributed): torchrun runs of RAFT and GRPO on the tiny model, the 2-process
update against the 1-process one, resuming on another world size, a failing rank; and the one-process
no-ops. The torchrun tests are slow (two processes load torch each, ~20 s on two cores)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from raftkit import distributed
from raftkit.cli import main
from raftkit.rewards import Scores

WORKER = Path(__file__).with_name("dist_worker.py")
SMALL = ["--k", "2", "--max-new-tokens", "4", "--heldout", "0", "--sampler", "hf"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    # One thread per process: the two ranks share the machine's cores. Never fetch anything.
    return {**env, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(_free_port()), *args]
    return subprocess.run(cmd, env=_env(), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _align(*args: str) -> subprocess.CompletedProcess:
    return _torchrun("-m", "raftkit", "align", *args)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------- one process: no-ops


def test_one_process_changes_nothing(monkeypatch):
    for name in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.init() == 1 and not torch.distributed.is_initialized()
    assert distributed.world() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert distributed.shard([1, 2, 3]) == [1, 2, 3]
    assert distributed.all_reduce_sum(2.0, 5.0) == (2.0, 5.0)
    assert distributed.gather_objects("x") == ["x"] and distributed.all_gather_flat([1, 2]) == ([1, 2], 0)
    assert distributed.rank_seed(7, 5) == 7
    scores = Scores({"r": [1.0]}, {"r": 1.0}, {}, [1.0], [False])
    assert distributed.gather_scored([], scores, 1) == ([], scores)
    p = torch.nn.Parameter(torch.ones(2))
    distributed.average_gradients([p])
    assert p.grad is None  # no gradient made up where there was none


def test_shards_are_contiguous_and_equal(monkeypatch):
    monkeypatch.setattr(distributed, "world", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    assert distributed.shard([0, 1, 2, 3]) == [2, 3]
    assert distributed.shard([0, 1, 2], strict=False) == [2]  # the first rank takes the extra one
    with pytest.raises(ValueError, match="not divisible by the number of processes"):
        distributed.check_divisible(3)


def test_metrics_of_ranks_are_merged():
    merged = distributed.merge_metrics([
        {"loss": 1.0, "n_selected": 2, "time/train": 3.0, "note": "a"},
        {"loss": 3.0, "n_selected": 1, "time/train": 5.0, "note": "b"},
    ])
    assert merged == {"loss": 2.0, "n_selected": 3, "time/train": 5.0, "note": "a"}
    a = Scores({"r": [1.0]}, {"r": 1.0}, {"f": [0]}, [1.0], [False], {"r": 0.5})
    b = Scores({"r": [None]}, {"r": 1.0}, {"f": [2]}, [0.0], [True], {"r": 1.5})
    both = distributed.concat_scores([a, b])
    assert both.rewards == {"r": [1.0, None]} and both.hits == {"f": [0, 2]} and both.dropped == [False, True]
    assert both.seconds == {"r": 1.5}


# --------------------------------------------------------------------------- torchrun


@pytest.mark.slow
def test_update_with_two_processes_equals_one(tmp_path, tiny_model_path):
    """The first GRPO update (μ = 1; one mini-batch, then two), a RAFT update (two epochs, micro-batches
    of one, --ranking top) and an online DPO step (2 pairs on one rank, 1 on the other) with the batch split
    over 2 processes give the 1-process weights; both ranks end identical."""
    one = subprocess.run([sys.executable, str(WORKER), tiny_model_path, str(tmp_path / "one")], env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _torchrun(str(WORKER), tiny_model_path, str(tmp_path / "two"))
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-3000:]
    for algo in ("grpo", "grpo_mini_batches", "raft", "online_dpo"):
        ref = torch.load(tmp_path / "one" / f"{algo}-rank0.pt")
        r0 = torch.load(tmp_path / "two" / f"{algo}-rank0.pt")
        r1 = torch.load(tmp_path / "two" / f"{algo}-rank1.pt")
        for name, w in ref.items():
            assert torch.equal(r0[name], r1[name]), f"{algo}: the ranks' {name} differ"
            assert torch.allclose(r0[name], w, atol=1e-5, rtol=0), f"{algo}: {name} differs from 1 process"
        info = [json.loads((tmp_path / d / f"{algo}-rank{r}.json").read_text())
                for d, r in (("one", 0), ("two", 0), ("two", 1))]
        assert info[0]["loss"] == pytest.approx(info[1]["loss"], abs=1e-5) == info[2]["loss"]
        if algo == "raft":  # the best 3 of all 8 samples, ranked over both ranks' samples together
            assert info[0]["selected"] == [0, 1, 5] == info[1]["selected"] + info[2]["selected"]
        if algo == "online_dpo":  # the chosen side of each prompt's pair; prompt 3 ties
            assert info[0]["selected"] == [0, 3, 5] == info[1]["selected"] + info[2]["selected"]
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_path).state_dict()
    moved = torch.load(tmp_path / "one" / "grpo-rank0.pt")
    assert any(not torch.allclose(base[n], moved[n]) for n in base)  # the update did change the weights


@pytest.mark.slow
def test_raft_with_two_processes_writes_one_run_directory(tmp_path, tiny_model_path):
    run = tmp_path / "run"
    done = _align("--algo", "raft", "--reward", "length", "--model", tiny_model_path, "--iterations", "2",
                  "--prompts-per-iteration", "4", *SMALL, "--no-filters", "--no-keep-answers",
                  "--ranking", "top", "--output", str(run))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert sorted(p.name for p in run.iterdir() if p.name != "logs") == [
        "checkpoint", "config.yaml", "iterations", "metrics.jsonl", "model", "run.json", "run.lock"]
    from raftkit.datasets import load_prompts

    train, _ = load_prompts(None).split_heldout(0, seed=0)
    metrics = _lines(run / "metrics.jsonl")
    assert [m["iteration"] for m in metrics] == [1, 2]
    for it in (1, 2):
        rollouts = _lines(run / "iterations" / f"{it:06d}" / "rollouts.jsonl")
        # Every prompt of the iteration, both ranks' shares, in the one-process order.
        assert [r["prompt_index"] for r in rollouts] == [0, 0, 1, 1, 2, 2, 3, 3]
        assert [r["row"] for r in rollouts[::2]] == train.batch_at(it - 1, 4, 0).indices
        # --ranking top ranks all 8 samples together: the best 1/k = 4 of them.
        assert len(_lines(run / "iterations" / f"{it:06d}" / "selected.jsonl")) == 4
        assert sum(r["selected"] for r in rollouts) == 4 and metrics[it - 1]["n_selected"] == 4


@pytest.mark.slow
def test_grpo_with_two_processes_then_resumed_with_one(tmp_path, tiny_model_path):
    run = tmp_path / "run"
    done = _align("--algo", "grpo", "--reward", "length", "--model", tiny_model_path, "--iterations", "1",
                  "--prompts-per-iteration", "2", *SMALL, "--no-keep-answers", "--no-truncated-neutral",
                  "--output", str(run))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rollouts = _lines(run / "iterations" / "000001" / "rollouts.jsonl")
    assert [r["prompt_index"] for r in rollouts] == [0, 0, 1, 1]
    pushed = []
    for p in (0, 1):  # each group's advantages are relative to its own mean, on the rank that drew it
        group = [r for r in rollouts if r["prompt_index"] == p]
        (plain,), (hinted,) = ([r["advantage"] for r in group if r["hinted"] == h] for h in (False, True))
        # A pair's advantages are opposite, except that a hinted sample is never pushed down. (Samples this
        # short are all cut off; --no-truncated-neutral keeps a cut-off one from losing its push up.)
        assert hinted == pytest.approx(max(-plain, 0.0), abs=1e-5)
        pushed.append(plain)
    assert any(pushed)  # not every group tied

    # The checkpoint is a full state dict: one process continues what two started.
    resumed = CliRunner().invoke(main, ["align", "--resume", str(run), "--iterations", "2"])
    assert resumed.exit_code == 0, resumed.output + repr(resumed.exception)
    assert [m["iteration"] for m in _lines(run / "metrics.jsonl")] == [1, 2]
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_a_failing_rank_takes_the_job_down(tmp_path, tiny_model_path):
    reward = tmp_path / "fail.py"
    reward.write_text(
        "import os\n\n\ndef boom(completions, **kwargs):\n"
        "    if os.environ.get('RANK') == '1':\n        raise RuntimeError('boom on purpose')\n"
        "    return [0.0] * len(completions)\n"
    )
    run = tmp_path / "run"
    t0 = time.monotonic()
    done = _align("--reward", f"{reward}:boom", "--model", tiny_model_path, "--iterations", "2",
                  "--prompts-per-iteration", "2", *SMALL, "--output", str(run))
    assert time.monotonic() - t0 < 60
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "rank 1: iteration 1: RewardError" in out and "boom on purpose" in out
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "crashed" and info["error"].startswith("rank 1: ") and "boom" in info["error"]
