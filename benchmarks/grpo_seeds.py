"""GRPO's default run on several seeds, against the outcome targets, on held-out questions.

Each seed runs the plain command `raftkit align --algo grpo --reward emoji --reward length --seed S`
through the real CLI (every other setting at its default); each trained model is then evaluated with
`raftkit eval` on the measurement sets under benchmarks/data (questions with accepted answers, never
trained on), split by language, 4 samples per question at T 0.7. One row per seed says which targets it
meets: English answer accuracy at least 90% of the base model's, emoji reward at least 1.0 with an emoji
in at least 70% of English answers, degenerate share at most 5% in both languages, at most 20 minutes.

    .venv/bin/python benchmarks/grpo_seeds.py                  # seeds 0-2: about an hour on 2 CPU cores
    .venv/bin/python benchmarks/grpo_seeds.py --seeds 0 --sets d

Run it on an idle machine: wall times are measured, not estimated.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from algorithms import RAFTKIT, REWARDS, evaluate

HERE = Path(__file__).resolve().parent


def split_by_language(sets: str, out: Path) -> dict[str, Path]:
    """The chosen measurement sets' rows, one file per language (the targets are English ones)."""
    rows: dict[str, list[str]] = {}
    for name in sets:
        for line in (HERE / "data" / f"facts_{name}.jsonl").read_text(encoding="utf-8").splitlines():
            rows.setdefault(json.loads(line)["lang"], []).append(line)
    files = {}
    for lang, lines in sorted(rows.items()):
        files[lang] = out / f"heldout_{lang}.jsonl"
        files[lang].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return files


def measure(target: str, files: dict[str, Path]) -> dict[str, dict]:
    return {lang: evaluate(target, path, samples=4) for lang, path in files.items()}


def verdict(run: dict, base: dict, wall_s: float) -> list[tuple[str, bool]]:
    en, ja = run["en"], run.get("ja")
    degenerate = max(en["degenerate"], ja["degenerate"] if ja else 0.0)
    return [
        (f"accuracy {en['accuracy']:.1%} ({en['accuracy'] / base['en']['accuracy']:.0%} of base)",
         en["accuracy"] >= 0.9 * base["en"]["accuracy"]),
        (f"emoji {en['rewards']['emoji']:.2f}", en["rewards"]["emoji"] >= 1.0),
        (f"with one {en['positive']['emoji']:.0%}", en["positive"]["emoji"] >= 0.7),
        (f"degenerate {en['degenerate']:.1%}" + (f" / ja {ja['degenerate']:.1%}" if ja else ""),
         degenerate <= 0.05),
        (f"{wall_s / 60:.1f} min", wall_s <= 20 * 60),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sets", default="abcd", help="which facts_*.jsonl to measure on")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-grpo-seeds"))
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"{args.out} exists; pass --out to a new folder (nothing is overwritten)")
    args.out.mkdir(parents=True)
    files = split_by_language(args.sets, args.out)

    base = measure("default", files)
    lines = []
    for seed in args.seeds.split(","):
        run = args.out / f"seed{seed}"
        start = time.perf_counter()
        subprocess.run([*RAFTKIT, "align", "--algo", "grpo", *REWARDS, "--seed", seed, "--output", str(run)],
                       check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        checks = verdict(measure(str(run), files), base, wall)
        lines.append(f"| {seed} | " + " | ".join(f"{text} {'✓' if ok else '✗'}" for text, ok in checks)
                     + f" | {'all' if all(ok for _, ok in checks) else 'no'} |")
        print(f"seed {seed}: done in {wall / 60:.1f} min", file=sys.stderr)

    en = base["en"]
    print(f"\nheld-out: facts_{{{','.join(args.sets)}}}, {en['prompts']} English questions x 4 (T 0.7); base "
          f"model: accuracy {en['accuracy']:.1%}, degenerate {en['degenerate']:.1%}\n")
    print("| seed | English accuracy | emoji | answers with one | degenerate | wall | all targets |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
