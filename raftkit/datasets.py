"""Prompt sets: the bundled questions, or any local file / `datasets` dataset, as prompts plus columns.

Every column other than the prompt column travels with its prompt and reaches the rewards as a keyword
argument (the TRL reward contract), so a dataset's ``answer`` column becomes a reward's ``answer=``.

``load_prompts()`` reads the bundled set (``raftkit/data/prompts.jsonl``, English and Japanese questions,
40 of them marked ``split: heldout``); ``load_prompts("my.jsonl", prompt_column="question")`` reads a file.
Errors a user can cause raise ``DatasetError`` naming the file, the column and the row (counted from 1).
"""

from __future__ import annotations

import codecs
import contextlib
import difflib
import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from raftkit.chat import MAX_PROMPT_TOKENS, char_limit, prompt_chars
from raftkit.rewards import STACK_ARGUMENTS
from raftkit.rollouts import Batch, Prompt

BUNDLED = "bundled"
BUNDLED_FILE = "prompts.jsonl"
HELDOUT = "heldout"  # the value of the `split` column that marks a held-out row
# The column of accepted answers: answer_match reads it, and the answer gates and the evaluation hand a
# dataset's --answer-column to the rewards under this name.
ANSWER_COLUMN = "answers"
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
TEXT_SUFFIXES = (".json", ".jsonl", ".csv")  # read as UTF-8 text (checked first: see decode_utf8)
# The reward stack passes these itself; a column of the same name would silently replace them.
# Checked at load time to fail before any model loads; RewardStack.score enforces the same at call time.
# completion_ids too: the loop always passes the sampled ids under that name.
RESERVED_COLUMNS = (*STACK_ARGUMENTS, "completion_ids")


class DatasetError(ValueError):
    """A prompt set could not be loaded or used; the message says what and where (file, column, row)."""


@dataclass
class PromptSet:
    """Prompts with their other dataset columns, one value per prompt in each column."""

    prompts: list[Prompt]
    columns: dict[str, list[Any]] = field(default_factory=dict)
    source: str = "memory"  # where it came from, for logs
    rows: list[int] = field(default_factory=list)  # each prompt's row number in the source dataset

    def __post_init__(self) -> None:
        if not self.rows:
            self.rows = list(range(len(self.prompts)))
        for name, values in self.columns.items():
            if len(values) != len(self.prompts):
                raise DatasetError(f"{self.source}: column '{name}' has {len(values)} values "
                                   f"for {len(self.prompts)} prompts")

    def __len__(self) -> int:
        return len(self.prompts)

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]], *, prompt_column: str = "prompt",
                     source: str = "records") -> PromptSet:
        """Build from rows like ``{"prompt": ..., "answer": ...}``, validated as ``load_prompts`` does."""
        return _from_table(_records_to_table(records), prompt_column, source)

    def subset(self, indices: Sequence[int]) -> PromptSet:
        """The rows at ``indices`` (in that order), columns kept aligned."""
        idx = list(indices)
        return PromptSet([self.prompts[i] for i in idx],
                         {k: [v[i] for i in idx] for k, v in self.columns.items()}, self.source,
                         [self.rows[i] for i in idx])

    def batch(self, indices: Sequence[int]) -> Batch:
        """A sampler batch of the rows at ``indices``; ``Batch.indices`` holds their source row numbers."""
        sub = self.subset(indices)
        return Batch(sub.prompts, sub.columns, sub.rows)

    def batch_at(self, iteration: int, size: int, seed: int) -> Batch:
        """The batch of ``iteration``: a pure function of (seed, iteration, size).

        The rows are read as one endless stream made of a fresh seeded shuffle per epoch, and iteration i
        takes positions ``i*size .. i*size+size-1`` of it. Every prompt appears once per epoch, and a
        resumed run asks for the same iteration numbers, so it sees exactly the same batches.
        """
        if size < 1:
            raise ValueError(f"batch size must be at least 1, got {size}")
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0, got {iteration}")
        n = len(self)
        if n == 0:
            raise DatasetError(f"{self.source}: no prompts to draw a batch from")
        indices: list[int] = []
        start = iteration * size
        order: list[int] = []
        for pos in range(start, start + size):
            epoch, offset = divmod(pos, n)
            if offset == 0 or not order:  # entering an epoch: its shuffle depends on (seed, epoch) only
                order = epoch_order(n, seed, epoch)
            indices.append(order[offset])
        return self.batch(indices)

    def split_heldout(self, n: int, seed: int = 0) -> tuple[PromptSet, PromptSet]:
        """(train, heldout).

        When a ``split`` column marks rows ``"heldout"`` (the bundled set marks 40), those rows are the
        held-out set: the first ``n`` of them are returned and *none* of them is ever in train. Otherwise
        a seeded shuffle picks ``n`` rows. Both parts keep the original row order.
        """
        if n < 0:
            raise ValueError(f"held-out size must be >= 0, got {n}")
        marked = [i for i, s in enumerate(self.columns.get("split", ())) if s == HELDOUT]
        if marked:
            held, excluded = marked[:n], set(marked)
        else:
            if n >= len(self):
                raise DatasetError(f"{self.source}: cannot hold out {n} of {len(self)} prompts and still "
                                   "have prompts to train on; hold out fewer")
            held = sorted(random.Random(f"raftkit-heldout:{seed}").sample(range(len(self)), n))
            excluded = set(held)
        train = [i for i in range(len(self)) if i not in excluded]
        if not train:
            raise DatasetError(f"{self.source}: every row is marked split={HELDOUT!r}; "
                               "nothing is left to train on")
        return self.subset(train), self.subset(held)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The row order of one epoch. String seeds hash through SHA-512, stable across runs and machines."""
    order = list(range(n))
    random.Random(f"raftkit-epoch:{seed}:{epoch}").shuffle(order)
    return order


# --------------------------------------------------------------------------- loading


def load_prompts(dataset: str | None = None, *, prompt_column: str = "prompt", split: str = "train",
                 limit: int | None = None) -> PromptSet:
    """Load a prompt set.

    ``dataset`` is ``None`` / ``"bundled"`` (the questions shipped with raftkit), a local ``.json``,
    ``.jsonl``, ``.csv`` or ``.parquet`` file, a folder of such files (or a ``save_to_disk`` folder),
    or a ``datasets`` hub name (read with ``split``; this needs network). ``prompt_column`` holds plain
    strings or chat messages (a list of ``{"role", "content"}``, or a JSON string of one); the other
    columns go to ``PromptSet.columns``. ``limit`` keeps the first N rows.
    """
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be at least 1, got {limit}")
    if dataset is None or dataset == BUNDLED:
        table, source = _read_bundled()
    else:
        table, source = _read_dataset(dataset, split)
    if limit is not None:
        table = {k: v[:limit] for k, v in table.items()}
    return _from_table(table, prompt_column, source)


def _read_bundled() -> tuple[dict[str, list[Any]], str]:
    text = resources.files("raftkit.data").joinpath(BUNDLED_FILE).read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    return _records_to_table(records), f"bundled ({BUNDLED_FILE})"


def _records_to_table(records: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows to columns; a key some rows lack is None there (as Arrow does)."""
    names: dict[str, None] = {}  # union of the keys, in order of first appearance
    for r in records:
        names.update(dict.fromkeys(r))
    return {name: [r.get(name) for r in records] for name in names}


def _read_dataset(dataset: str, split: str) -> tuple[dict[str, list[Any]], str]:
    path = Path(dataset).expanduser()
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise DatasetError(f"{path}: unknown file type '{path.suffix}'; "
                               f"use one of {', '.join(FILE_BUILDERS)} (or a folder of them)")
        _check_utf8(path)
        # Split names belong to hub datasets; a single file is all one split.
        loaded = _load(path, lambda ds: ds.load_dataset(builder, data_files=[str(path)], split="train"))
        return _to_table(loaded), str(path)
    if path.is_dir():
        return _to_table(_load_folder(path, split)), str(path)
    if _looks_like_path(dataset):
        raise DatasetError(f"{dataset}: no such file or folder")
    return _to_table(_load_hub(dataset, split)), f"{dataset} (split {split})"


def fingerprint(dataset: Any) -> dict[str, Any] | None:
    """What identifies a prompt set, for a run to check that a resume reads the same prompts: a local
    file's (or a folder's files') absolute path, size in bytes and SHA-256; a hub dataset's name (its
    revision is the hub's); None for the bundled set, which is the installed package's."""
    if dataset is None or str(dataset) in ("", BUNDLED):
        return None
    path = Path(str(dataset)).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
    else:
        if _looks_like_path(str(dataset)):
            return {"path": str(path.absolute()), "bytes": None, "sha256": None}  # missing
        return {"name": str(dataset)}
    digest, size = hashlib.sha256(), 0
    for file in files:
        if file != path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    return {"path": str(path.resolve()), "bytes": size, "sha256": digest.hexdigest()}


def decode_utf8(data: bytes, source: str) -> str:
    """The text of a UTF-8 file, without the byte-order mark Excel writes; a file in another encoding
    (an Excel cp1252 export) is a DatasetError naming the line and the byte, not a UnicodeDecodeError."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _not_utf8(source, data.count(b"\n", 0, e.start) + 1, data[e.start], e.reason) from None


def _not_utf8(source: str, line: int, byte: int, reason: str) -> DatasetError:
    return DatasetError(
        f"{source} line {line}: not UTF-8 text (byte 0x{byte:02x}: {reason}); save it as UTF-8 (Excel: "
        "'CSV UTF-8'), or convert it, e.g. iconv -f cp1252 -t utf-8 IN > OUT")


def _check_utf8(path: Path) -> None:
    # Checked before the `datasets` library reads the file: it fails on other encodings with an
    # unlocated ArrowInvalid, or only later, while rows are read, with a bare UnicodeDecodeError.
    # Read in chunks: a large prompt file is never held whole in memory for this.
    if path.suffix.lower() not in TEXT_SUFFIXES:
        return
    decoder, line = codecs.getincrementaldecoder("utf-8")(), 1
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:  # e.object: the bytes held from the last chunk, then this one
                at = line + e.object.count(b"\n", 0, e.start)
                raise _not_utf8(str(path), at, e.object[e.start], e.reason) from None
            if not chunk:
                return
            line += chunk.count(b"\n")


def _looks_like_path(dataset: str) -> bool:
    """A name the hub could never hold: a file name with an extension, or an explicit path."""
    if dataset.startswith((".", "/", "~")) or "\\" in dataset:
        return True
    suffix = Path(dataset).suffix.lower()
    return suffix in FILE_BUILDERS or suffix in {".txt", ".tsv", ".arrow", ".gz", ".xlsx"}


def _load_folder(path: Path, split: str) -> Any:
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():  # save_to_disk output
        return _load(path, lambda ds: ds.load_from_disk(str(path)), split=split)
    files = [p for p in path.rglob("*")
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)]
    builders = {FILE_BUILDERS[p.suffix.lower()] for p in files if p.suffix.lower() in FILE_BUILDERS}
    if len(builders) > 1:
        raise DatasetError(f"{path}: the folder mixes file types ({', '.join(sorted(builders))}); "
                           "keep one type per folder")
    if not builders and not any(p.suffix == ".py" for p in files):
        found = ", ".join(sorted(p.name for p in files)[:8]) or "nothing"
        raise DatasetError(f"{path}: no {', '.join(FILE_BUILDERS)} files in this folder (found: {found})")
    for file in files:
        _check_utf8(file)
    # The `datasets` folder loader: it also understands train/test file names and dataset scripts.
    return _load(path, lambda ds: ds.load_dataset(str(path), split=split))


def _load_hub(name: str, split: str) -> Any:
    import datasets

    try:
        with _quiet(datasets):
            return datasets.load_dataset(name, split=split)
    except (ConnectionError, TimeoutError) as e:
        raise DatasetError(
            f"'{name}' is not a local file or folder, and the Hugging Face hub could not be reached to "
            f"load it ({type(e).__name__}: {e}). Use a local file instead, e.g. --dataset prompts.jsonl "
            f"(formats: {', '.join(FILE_BUILDERS)})") from None
    except Exception as e:  # the datasets library raises many types; the user needs the reason, not a trace
        raise DatasetError(f"could not load dataset '{name}' (split '{split}'): {_reason(e)}") from None


def _load(path: Path, fn: Any, split: str | None = None) -> Any:
    import datasets

    try:
        with _quiet(datasets):
            out = fn(datasets)
    except Exception as e:  # parse errors surface as several library types; report the root cause
        if _is_empty(path):  # the library fails on these in odd ways ("StopIteration")
            raise DatasetError(f"{path}: the dataset has no rows") from None
        raise DatasetError(f"could not read {path}: {_json_error(path) or _reason(e)}") from None
    if isinstance(out, datasets.DatasetDict):
        if split not in out:
            raise DatasetError(f"{path}: no split '{split}' (splits: {', '.join(out)})")
        out = out[split]
    return out


@contextlib.contextmanager
def _quiet(datasets: Any) -> Iterator[None]:
    """Hide the library's progress bars and error logs: loading a prompt file is instant, the CLI draws its
    own progress, and a failure is reported once, as a DatasetError."""
    was_enabled, verbosity = datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if was_enabled:
            datasets.enable_progress_bars()


def _is_empty(path: Path) -> bool:
    """An empty text file, an empty JSON array, or a CSV with a header line only."""
    if not path.is_file() or path.suffix.lower() not in (".json", ".jsonl", ".csv"):
        return False
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    if path.suffix.lower() == ".csv":
        return len(lines) <= 1
    return not lines or "".join(lines).replace(" ", "") == "[]"


def _json_error(path: Path) -> str | None:
    """Where a .json/.jsonl file stops being valid JSON (the library only says "row 1")."""
    if not path.is_file() or path.suffix.lower() not in (".json", ".jsonl"):
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    if path.suffix.lower() == ".json":
        try:
            json.loads(text)
            return None
        except json.JSONDecodeError as e:
            first = next((line for line in lines if line.strip()), "")
            if not _parses(first):  # one JSON document, not JSON lines: report where it broke
                return f"not valid JSON at line {e.lineno}, column {e.colno} ({e.msg})"
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                json.loads(line)
            except json.JSONDecodeError as e:
                return f"line {n} is not valid JSON ({e.msg}, column {e.colno})"
    return None


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _reason(e: BaseException) -> str:
    """The innermost cause's first line: the parse error, not the library's wrapper around it."""
    while (inner := e.__cause__ or e.__context__) is not None and str(inner).strip():
        e = inner
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _to_table(ds: Any) -> dict[str, list[Any]]:
    # Column by column through Arrow: iterating ``ds[name]`` formats every row in Python, 100x slower
    # (90 s for 100,000 rows on a 2-core CPU).
    return ds.to_dict()


# --------------------------------------------------------------------------- validation


def _from_table(table: dict[str, list[Any]], prompt_column: str, source: str) -> PromptSet:
    if not any(table.values()):
        raise DatasetError(f"{source}: the dataset has no rows")
    if prompt_column not in table:
        raise DatasetError(missing_column(prompt_column, list(table), source))
    values = table[prompt_column]
    if clash := [c for c in table if c in RESERVED_COLUMNS and c != prompt_column]:
        raise DatasetError(f"{source}: column(s) {clash} share a name with what every reward receives "
                           f"({', '.join(RESERVED_COLUMNS)}); rename them")
    where = f"{source}, column '{prompt_column}', row"
    prompts = [_as_prompt(v, f"{where} {i + 1}") for i, v in enumerate(values)]
    limit = char_limit()
    for i, p in enumerate(prompts):
        # Checked here, before anything tokenises it: a 50 MB line would take gigabytes of token ids.
        if (n := prompt_chars(p)) > limit:
            raise DatasetError(f"{where} {i + 1}: the prompt is {n:,} characters long; prompts are sampled "
                               f"up to {MAX_PROMPT_TOKENS} tokens, at most {limit:,} characters. Shorten it "
                               "or leave the row out")
    columns = {k: list(v) for k, v in table.items() if k != prompt_column}
    return PromptSet(prompts, columns, source)


def missing_column(wanted: str, names: list[str], source: str) -> str:
    """The message for a prompt column the data lacks: the columns it has, and the likeliest one."""
    lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(wanted, names, 1, 0.4)
    if wanted.lower() in lower:  # a case slip is the likeliest mistake
        close = [lower[wanted.lower()]]
    msg = f"{source}: no column '{wanted}'; the columns are: {', '.join(names) or '(none)'}."
    if close:
        msg += f" Did you mean '{close[0]}'? Pass --prompt-column {close[0]}"
    else:
        msg += " Pass the column holding the prompts with --prompt-column"
    return msg


def _as_prompt(value: Any, where: str) -> Prompt:
    """A plain string, or a validated list of chat messages (also when stored as a JSON string)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None  # ordinary text that happens to be bracketed
            if isinstance(parsed, list) and parsed and all(
                    isinstance(m, dict) and ("role" in m or "content" in m) for m in parsed):
                return _as_messages(parsed, where)
        if not text:
            raise DatasetError(f"{where}: the prompt is empty")
        return value
    if isinstance(value, list | tuple):
        return _as_messages(value, where)
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:59] + "…"
    raise DatasetError(f"{where}: a prompt must be a string or a list of chat messages "
                       f"[{{\"role\": ..., \"content\": ...}}], got {type(value).__name__} {shown}")


def _as_messages(value: Sequence[Any], where: str) -> list[dict[str, str]]:
    if not value:
        raise DatasetError(f"{where}: the message list is empty")
    messages = []
    for j, m in enumerate(value):
        if not isinstance(m, dict):
            raise DatasetError(f"{where}, message {j + 1}: expected {{\"role\": ..., \"content\": ...}}, "
                               f"got {type(m).__name__}")
        role, content = m.get("role"), m.get("content")
        if not isinstance(role, str) or not role:
            raise DatasetError(f"{where}, message {j + 1}: 'role' must be a non-empty string, got {role!r}")
        if not isinstance(content, str):
            raise DatasetError(f"{where}, message {j + 1}: 'content' must be a string, got {content!r}")
        # Parquet/Arrow fill keys other rows had with None; they are not part of this message.
        messages.append({k: v for k, v in m.items() if v is not None})
    return messages
