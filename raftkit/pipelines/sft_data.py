"""Supervised fine-tuning data: (prompt, completion) examples from prompt/completion columns or chat messages.

A row is either ``{"prompt": ..., "completion": ...}`` (each plain text or chat messages) or
``{"messages": [...]}``, whose last message must be the assistant's: it is the completion, and the
messages before it are the prompt. The loss covers the completion only (raftkit.algorithms.sft).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from raftkit.pipelines.pairs import PairsError, _read_rows
from raftkit.rollouts import Prompt


class SFTDataError(ValueError):
    """Rows that are not SFT examples; the message names the source and the row."""


@dataclass(frozen=True)
class SFTRow:
    prompt: Prompt
    completion: str


def _text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict) and "content" in value[-1]:
        return str(value[-1]["content"])  # an assistant-message list, as TRL writes completions
    raise SFTDataError(f"{where}: the completion must be text or assistant messages, got {value!r:.60}")


def parse_row(row: dict[str, Any], where: str, prompt_column: str = "prompt",
              completion_column: str = "completion") -> SFTRow:
    """One example from a row (see the module docstring)."""
    if prompt_column in row and completion_column in row:
        return SFTRow(row[prompt_column], _text(row[completion_column], where))
    messages = row.get("messages")
    if isinstance(messages, list) and len(messages) >= 2:
        last = messages[-1]
        if not isinstance(last, dict) or last.get("role") != "assistant":
            raise SFTDataError(f"{where}: the last message must be the assistant's (the completion)")
        return SFTRow([dict(m) for m in messages[:-1]], str(last.get("content", "")))
    raise SFTDataError(f"{where}: expected '{prompt_column}' and '{completion_column}' columns or a "
                       f"'messages' list; the row has {', '.join(map(str, row)) or 'nothing'}")


def parse_rows(rows: Iterable[dict[str, Any]], source: str, **columns: str) -> list[SFTRow]:
    """Every row as an example; an empty source is an error."""
    out = [parse_row(r, f"{source} row {i + 1}", **columns) for i, r in enumerate(rows)]
    if not out:
        raise SFTDataError(f"{source}: no rows")
    return out


def load_rows(dataset: str, **columns: str) -> list[SFTRow]:
    """The examples of a .jsonl/.json file or anything raftkit.datasets reads."""
    try:
        rows = _read_rows(dataset)
    except PairsError as e:
        raise SFTDataError(str(e)) from None
    return parse_rows(rows, str(dataset), **columns)
