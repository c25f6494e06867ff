"""The data path on a large prompt file: 100,000 rows against the bundled set.

For each prompt set, in its own process: the time `load_prompts` takes and the process's peak RSS after it;
then a one-iteration `raftkit align` (4 prompts x k 2 x 8 tokens, no held-out evaluation) with its wall
time and the peak RSS its metrics record. The difference between the two rows is what the file costs.

    .venv/bin/python benchmarks/data_path.py            # writes a 100,000-row JSONL to a temporary folder
    .venv/bin/python benchmarks/data_path.py --rows 20000

The results are in docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOAD = """
import resource, sys, time
from raftkit.datasets import load_prompts
t = time.perf_counter()
p = load_prompts(None if sys.argv[1] == "bundled" else sys.argv[1])
print(len(p.prompts), time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def write_rows(path: Path, n: int) -> None:
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            a, b = rng.randint(1, 999), rng.randint(1, 999)
            row = {"prompt": [{"role": "user", "content": f"What is {a} + {b}? (question {i})"}],
                   "solution": str(a + b)}
            f.write(json.dumps(row) + "\n")


def measure(dataset: str, out: Path) -> dict[str, float]:
    rows, load_s, load_rss = subprocess.run([sys.executable, "-c", LOAD, dataset], check=True,
                                            capture_output=True, text=True).stdout.split()
    raftkit = Path(sys.executable).with_name("raftkit")
    start = time.perf_counter()
    subprocess.run([str(raftkit), "align", "--dataset", dataset, "--reward", "length", "--iterations", "1",
                    "--prompts-per-iteration", "4", "--k", "2", "--max-new-tokens", "8", "--heldout", "0",
                    "--output", str(out)], check=True, capture_output=True)
    wall = time.perf_counter() - start
    metrics = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return {"rows": int(rows), "load_s": float(load_s), "load_rss_mib": float(load_rss), "run_s": wall,
            "run_iteration_s": metrics["time/iteration"], "run_peak_rss_gib": metrics["memory/peak_rss_gib"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.jsonl"
        write_rows(big, args.rows)
        results = {name: measure(dataset, Path(tmp) / f"run-{name}")
                   for name, dataset in (("bundled", "bundled"), (f"{args.rows} rows", str(big)))}
    print(f"{'prompt set':>14} {'rows':>8} {'load s':>7} {'load RSS MiB':>13} {'run s':>7} "
          f"{'(iteration s)':>13} {'run peak RSS GiB':>17}")
    for name, r in results.items():
        print(f"{name:>14} {r['rows']:>8} {r['load_s']:>7.1f} {r['load_rss_mib']:>13.0f} {r['run_s']:>7.1f} "
              f"{r['run_iteration_s']:>13.1f} {r['run_peak_rss_gib']:>17.2f}")
    base, big_run = results["bundled"], results[f"{args.rows} rows"]
    print(f"the large file costs {big_run['run_s'] - base['run_s']:+.1f} s of start-up and "
          f"{big_run['run_peak_rss_gib'] - base['run_peak_rss_gib']:+.2f} GiB of peak RSS")


if __name__ == "__main__":
    main()
