"""Write the JSON-answer task: factual questions that ask for the answer as a JSON object.

    python examples/json-answer/make_data.py     # train.jsonl (the bundled English questions), heldout.jsonl

Training uses the English questions bundled with raftkit; the held-out set is other questions
(benchmarks/data/facts_a-c, English), none of them in training. Each row keeps its accepted ``answers``, so
`raftkit eval` reports whether the answers inside the JSON are still right.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ASK = ' Reply with only a JSON object: {"answer": "..."}.'


def rows(path: Path, split: str | None = None) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("lang") != "en" or (split and row.get("split") != split):
            continue
        question = row["prompt"][-1]["content"]
        out.append({"prompt": [{"role": "user", "content": question + ASK}], "answers": row["answers"]})
    return out


def main() -> None:
    train = rows(ROOT / "raftkit/data/prompts.jsonl", split="train")
    seen = {r["prompt"][-1]["content"] for r in train}
    heldout = [r for name in "abc" for r in rows(ROOT / f"benchmarks/data/facts_{name}.jsonl")
               if r["prompt"][-1]["content"] not in seen]
    for name, data in (("train", train), ("heldout", heldout)):
        with open(HERE / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in data)
        print(f"{name}.jsonl: {len(data)} rows")


if __name__ == "__main__":
    main()
