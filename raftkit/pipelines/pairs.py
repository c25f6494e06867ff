"""Preference pairs (prompt, chosen, rejected) read from the common dataset formats.

Accepted rows (one JSON object per line, or a JSON list; other formats go through raftkit.datasets):

- ``{"prompt": ..., "chosen": "...", "rejected": "..."}``: the prompt is text or chat messages;
  ``messages`` is accepted as the prompt's column name too. Without a prompt the completions are the
  whole texts (an empty prompt).
- conversational (TRL's format): ``chosen`` / ``rejected`` are message lists. With a prompt they hold the
  assistant reply; without one the shared leading messages are the prompt and the final assistant turn
  is the completion.
- HH-RLHF text: ``chosen`` / ``rejected`` are whole dialogues with "\\n\\nHuman:" / "\\n\\nAssistant:"
  turns and no prompt column; their shared text up to the last "\\n\\nAssistant:" is the prompt.

Rows whose chosen and rejected completions are identical carry no preference and are skipped (counted).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftkit.rollouts import Prompt

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"


class PairsError(ValueError):
    """A pairs dataset that cannot be read; the message names the row and what is wrong."""


@dataclass(frozen=True)
class Pair:
    """One preference: ``chosen`` is the better completion of ``prompt`` (text or chat messages)."""

    prompt: Prompt
    chosen: str
    rejected: str


@dataclass
class PairSet:
    """The pairs of a dataset, the number of rows skipped (no preference), and where they came from."""

    pairs: list[Pair]
    skipped: int = 0
    source: str = ""


def _content(message: Any, where: str) -> str:
    if not isinstance(message, dict) or "content" not in message:
        raise PairsError(f"{where}: expected a chat message {{'role': ..., 'content': ...}}, "
                         f"got {message!r:.80}")
    return str(message["content"])


def _messages(value: Any, where: str) -> list[dict[str, str]]:
    for m in value:
        _content(m, where)
    return [{"role": str(m.get("role", "user")), "content": str(m["content"])} for m in value]


def _reply(messages: list[dict[str, str]], where: str) -> str:
    """The text of a completion given as messages: one assistant turn."""
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        roles = [m["role"] for m in messages]
        raise PairsError(f"{where}: a completion must be one assistant message, got roles {roles}")
    return messages[0]["content"]


def split_hh(chosen: str, rejected: str, where: str) -> tuple[str, str, str]:
    """(prompt, chosen reply, rejected reply) of two HH-RLHF dialogues: the prompt is their shared text up to
    and including the last "\\n\\nAssistant:" in it.

    >>> split_hh("\\n\\nHuman: hi\\n\\nAssistant: hello", "\\n\\nHuman: hi\\n\\nAssistant: go away", "row")
    ('\\n\\nHuman: hi\\n\\nAssistant:', ' hello', ' go away')
    """
    shared = os.path.commonprefix([chosen, rejected])  # noqa: RUF071 (character-wise is what is meant)
    cut = shared.rfind(ASSISTANT)
    if cut < 0:
        raise PairsError(f"{where}: HH-RLHF dialogues must share their turns up to a final "
                         "'\\n\\nAssistant:'")
    end = cut + len(ASSISTANT)
    return chosen[:end], chosen[end:], rejected[end:]


def parse_pair(row: dict[str, Any], where: str = "row") -> Pair:
    """One row as a Pair (see the module docstring for the accepted shapes)."""
    missing = [c for c in ("chosen", "rejected") if row.get(c) is None]
    if missing:
        raise PairsError(f"{where}: no {' / '.join(missing)} column (columns: {', '.join(row) or 'none'}); "
                         "a pairs dataset needs 'chosen' and 'rejected' (and optionally 'prompt')")
    chosen, rejected = row["chosen"], row["rejected"]
    prompt = row.get("prompt")
    if prompt is None:
        prompt = row.get("messages")
    if isinstance(prompt, list):
        prompt = _messages(prompt, f"{where} prompt")
    elif prompt is not None:
        prompt = str(prompt)
    if isinstance(chosen, list) != isinstance(rejected, list):
        raise PairsError(f"{where}: 'chosen' and 'rejected' must both be text or both be message lists")
    if isinstance(chosen, list):
        c_msgs, r_msgs = _messages(chosen, f"{where} chosen"), _messages(rejected, f"{where} rejected")
        if prompt is None:  # the shared leading turns are the prompt
            n = 0
            while n < min(len(c_msgs), len(r_msgs)) - 1 and c_msgs[n] == r_msgs[n]:
                n += 1
            prompt, c_msgs, r_msgs = c_msgs[:n], c_msgs[n:], r_msgs[n:]
        elif isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        return Pair(prompt, _reply(c_msgs, f"{where} chosen"), _reply(r_msgs, f"{where} rejected"))
    chosen, rejected = str(chosen), str(rejected)
    if prompt is None and HUMAN in chosen and ASSISTANT in chosen:
        prompt, chosen, rejected = split_hh(chosen, rejected, where)
    return Pair("" if prompt is None else prompt, chosen, rejected)


def parse_pairs(rows: Iterable[dict[str, Any]], source: str = "data") -> PairSet:
    """Every row as a Pair; rows whose two completions are equal are skipped and counted."""
    pairs, skipped = [], 0
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise PairsError(f"{source} row {n}: expected a JSON object, got {type(row).__name__}")
        pair = parse_pair(row, f"{source} row {n}")
        if pair.chosen == pair.rejected:
            skipped += 1
            continue
        pairs.append(pair)
    if not pairs:
        raise PairsError(f"{source}: no usable pairs ({skipped} rows had identical chosen and rejected)"
                         if skipped else f"{source}: the dataset has no rows")
    return PairSet(pairs, skipped, source)


def _read_rows(dataset: str) -> list[dict[str, Any]]:
    path = Path(dataset).expanduser()
    if path.is_file() and path.suffix.lower() in (".jsonl", ".json"):
        # Read directly: exact nested message lists, and no Arrow cache for a small local file.
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
            return json.loads(text)
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise PairsError(f"{path} line {n}: not valid JSON ({e.msg})") from None
        return rows
    from raftkit.datasets import DatasetError, _read_dataset

    try:
        table, _ = _read_dataset(dataset, "train")
    except DatasetError as e:
        raise PairsError(str(e)) from None
    names = list(table)
    return [{k: table[k][i] for k in names} for i in range(len(table[names[0]]) if names else 0)]


def load_pairs(dataset: str) -> PairSet:
    """The pairs of a .jsonl / .json file (or anything raftkit.datasets reads: csv, parquet, a hub id)."""
    return parse_pairs(_read_rows(dataset), str(dataset))


def split_heldout(pairs: Sequence[Pair], share: float, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """(train, held-out): a seeded random ``share`` of the pairs held out, at least one when share > 0 and
    there are two or more pairs, never all of them."""
    if not 0 <= share < 1:
        raise ValueError(f"heldout share must be in [0, 1), got {share}")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n = min(len(pairs) - 1, max(1, round(share * len(pairs)))) if share > 0 and len(pairs) > 1 else 0
    held = sorted(order[:n])
    keep = sorted(order[n:])
    return [pairs[i] for i in keep], [pairs[i] for i in held]
