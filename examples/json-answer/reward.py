"""A format verifier written as a plain TRL reward function: 1.0 when the completion is a JSON object with a
non-empty string "answer", and nothing else (a Markdown code fence around it is allowed).

    raftkit align --dataset examples/json-answer/train.jsonl \
        --reward examples/json-answer/reward.py:json_answer

It checks the form only; whether the answer inside is right is what the held-out evaluation's answer
accuracy measures (the ``answers`` column).
"""

from __future__ import annotations

import json
import re

FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def json_answer(completions, **kwargs):
    """1.0 for a completion that parses as {"answer": "<non-empty text>"} (other keys allowed), else 0.0."""
    scores = []
    for completion in completions:
        text = completion if isinstance(completion, str) else completion[-1]["content"]
        text = text.strip()
        fenced = FENCE.match(text)
        try:
            obj = json.loads(fenced.group(1) if fenced else text)
        except ValueError:
            obj = None
        ok = isinstance(obj, dict) and isinstance(obj.get("answer"), str) and obj["answer"].strip() != ""
        scores.append(float(ok))
    return scores
