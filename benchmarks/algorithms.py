"""RAFT, RAFT++, Reinforce-Rej and GRPO on equal budgets, measured on held-out questions with answers.

Each algorithm trains the bundled model with the same rewards, seed, samples per iteration (prompts x k)
and iterations, through the real CLI; then every trained model is evaluated with `raftkit eval` on the two
measurement sets under benchmarks/data (questions with accepted answers, never trained on). The table
gives, per algorithm: emoji reward and the share of answers with an emoji, answer accuracy, the share of
degenerate completions, distinct-2, and the training wall time. The base model's row comes first.

    .venv/bin/python benchmarks/algorithms.py                     # about an hour on 2 CPU cores
    .venv/bin/python benchmarks/algorithms.py --iterations 2 --algos raft,grpo   # a quick look

Run it on an idle machine: wall times are measured, not estimated.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RAFTKIT = [str(Path(sys.executable).with_name("raftkit"))]  # the CLI installed beside this Python
SETS = [HERE / "data" / "facts_a.jsonl", HERE / "data" / "facts_b.jsonl"]
REWARDS = ["--reward", "emoji", "--reward", "length"]


def align(algo: str, out: Path, args: argparse.Namespace) -> float:
    """Train with one algorithm; returns the wall time in seconds."""
    cmd = [*RAFTKIT, "align", "--algo", algo, *REWARDS, "--output", str(out), "--seed", str(args.seed),
           "--iterations", str(args.iterations), "--prompts-per-iteration", str(args.prompts),
           "--k", str(args.k), "--heldout", "0"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def evaluate(target: str, data: Path, samples: int = 2) -> dict:
    """`raftkit eval` of a run (or 'default', the base model) on one measurement set, as JSON."""
    cmd = [*RAFTKIT, "eval", target, "--base", "none", "--dataset", str(data), *REWARDS,
           "--samples", str(samples), "--temperature", "0.7", "--max-new-tokens", "40", "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["model_eval"]


def pooled(evals: list[dict]) -> dict[str, float]:
    """The measurement sets' figures, weighted by their samples."""
    n = sum(e["samples"] for e in evals)

    def mean(get) -> float:
        return sum(get(e) * e["samples"] for e in evals) / n

    return {
        "emoji": mean(lambda e: e["rewards"]["emoji"]),
        "has_emoji": mean(lambda e: e["positive"]["emoji"]),
        "accuracy": mean(lambda e: e["accuracy"]),
        "degenerate": mean(lambda e: e["degenerate"]),
        "distinct_2": mean(lambda e: e["distinct_2"]),
        "length": mean(lambda e: e["length_chars"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", default="raft,raftpp,reinforce_rej,grpo")
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=32)  # RAFT, RAFT++ and GRPO default to 32
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-algorithms"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"{args.out} exists; pass --out to a new folder (nothing is overwritten)")
    args.out.mkdir(parents=True)

    rows = {"base": {**pooled([evaluate("default", s) for s in SETS]), "wall_s": 0.0}}
    for algo in args.algos.split(","):
        run = args.out / algo
        wall = align(algo, run, args)
        rows[algo] = {**pooled([evaluate(str(run), s) for s in SETS]), "wall_s": wall}
        print(f"{algo}: done in {wall / 60:.1f} min", file=sys.stderr)

    print(f"\n{args.iterations} iterations x {args.prompts} prompts x k={args.k}, seed {args.seed}; "
          f"held-out: {', '.join(s.name for s in SETS)} (2 samples per question, T 0.7)\n")
    print("| algorithm | emoji | with emoji | accuracy | degenerate | distinct-2 | length | wall |")
    print("|---|---|---|---|---|---|---|---|")
    base_acc = rows["base"]["accuracy"]
    for name, r in rows.items():
        kept = f" ({r['accuracy'] / base_acc:.0%} of base)" if name != "base" and base_acc else ""
        wall = f"{r['wall_s'] / 60:.1f} min" if r["wall_s"] else "-"
        print(f"| {name} | {r['emoji']:.2f} | {r['has_emoji']:.0%} | {r['accuracy']:.1%}{kept} | "
              f"{r['degenerate']:.1%} | {r['distinct_2']:.3f} | {r['length']:.0f} | {wall} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
