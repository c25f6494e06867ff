"""Write an arithmetic task as JSONL: a training split and a held-out split drawn with different seeds.

Each row is a chat prompt and its gold answer in the `solution` column (the column TRL's accuracy reward
reads), e.g. {"prompt": [{"role": "user", "content": "What is 23 + 14?"}], "solution": "37"}. Held-out rows
never repeat a training question.

    python examples/verifiable/make_data.py            # writes train.jsonl and heldout.jsonl beside this file
    python examples/verifiable/make_data.py --out data --train 2000 --heldout 200
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

TEMPLATES = ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "{a} {op} {b} = ?")


def question(rng: random.Random) -> tuple[str, str]:
    """One question and its answer: a sum or a difference of two numbers below 50, never negative."""
    a, b = rng.randint(2, 49), rng.randint(2, 49)
    op = rng.choice("+-")
    if op == "-" and b > a:
        a, b = b, a
    text = rng.choice(TEMPLATES).format(a=a, op=op, b=b)
    return text, str(a + b if op == "+" else a - b)


def rows(n: int, seed: int, exclude: set[str] = frozenset()) -> list[dict]:
    rng, seen, out = random.Random(seed), set(exclude), []
    while len(out) < n:
        text, answer = question(rng)
        if text not in seen:
            seen.add(text)
            out.append({"prompt": [{"role": "user", "content": text}], "solution": answer})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="folder to write into")
    parser.add_argument("--train", type=int, default=1000, help="training rows")
    parser.add_argument("--heldout", type=int, default=200, help="held-out rows")
    args = parser.parse_args()
    train = rows(args.train, seed=1)
    heldout = rows(args.heldout, seed=2, exclude={r["prompt"][0]["content"] for r in train})
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in (("train", train), ("heldout", heldout)):
        path = args.out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data), encoding="utf-8")
        print(f"{path}: {len(data)} rows")


if __name__ == "__main__":
    main()
