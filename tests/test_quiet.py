"""A quiet terminal: other libraries' output (Python warnings, native writes to fd 2) goes to
RUN_DIR/logs/terminal.log; raftkit's own output and its errors stay on the terminal; -v shows everything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raftkit.runs.quiet import foreign_output_to_log

NOISY_REWARD = '''
import os, warnings

def noisy(completions, **kwargs):
    warnings.warn("foreign python warning")
    os.write(2, b"foreign native write\\n")
    return [float(len(c)) for c in completions]
'''


def test_fd2_goes_to_the_run_log_and_comes_back(tmp_path, capfd):
    run = tmp_path / "run"
    with foreign_output_to_log(run):
        os.write(2, b"native noise\n")
        run.mkdir()  # the run directory appears during the run, as loop.run creates it
    os.write(2, b"after\n")
    assert (run / "logs" / "terminal.log").read_text() == "native noise\n"
    assert capfd.readouterr().err == "after\n"


def test_without_a_run_directory_the_log_is_kept_and_named(tmp_path, capfd):
    with foreign_output_to_log(tmp_path / "never-made"):
        os.write(2, b"lost?\n")
    err = capfd.readouterr().err
    kept = Path(err.split("this run: ")[1].split(")")[0])
    assert kept.read_text() == "lost?\n"
    kept.unlink()


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_align_keeps_foreign_output_off_the_terminal(tiny_model_path, tmp_path, verbose):
    reward = tmp_path / "noisy.py"
    reward.write_text(NOISY_REWARD)
    run = tmp_path / "run"
    cmd = [str(Path(sys.executable).with_name("raftkit")), "align", "--reward", f"{reward}:noisy",
           "--model", tiny_model_path, "--sampler", "hf", "--prompts-per-iteration", "2", "--k", "2",
           "--max-new-tokens", "4", "--iterations", "1", "--heldout", "0", "--output", str(run)]
    result = subprocess.run(cmd + (["-v"] if verbose else []), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    terminal = result.stdout + result.stderr
    assert "it 1/1" in result.stdout  # raftkit's own output is on the terminal either way
    for noise in ("foreign python warning", "foreign native write"):
        assert (noise in terminal) == verbose
        if not verbose:
            assert noise in (run / "logs" / "terminal.log").read_text()


@pytest.mark.slow
def test_the_python_api_sends_progress_bars_to_the_run_log(tiny_model_path, tmp_path, capfd):
    import raftkit

    run = raftkit.align(["length:target=5"], model=tiny_model_path, output=tmp_path / "run", sampler="hf",
                        iterations=1, prompts_per_iteration=2, k=2, max_new_tokens=4, heldout=0,
                        micro_batch_size=2, keep_answers=False)
    captured = capfd.readouterr()
    assert "it 1/1" in captured.out  # raftkit's own lines stay
    log = (run.path / "logs" / "terminal.log").read_text()
    for bar in ("Loading weights", "Writing model shards"):  # transformers' tqdm bars
        assert bar not in captured.out + captured.err
        assert bar in log
    # The terminal is back to normal afterwards: what is written now is seen.
    sys.stderr.write("after the run\n")
    assert "after the run" in capfd.readouterr().err
