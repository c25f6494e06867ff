"""`raftkit score`: score completions from a file with a reward stack, or pre-flight-check the stack.

Scoring a file is how a plugin author tries a reward before training. With ``--dataset`` and no
completions it is the pre-flight check before a long run: every reward and filter runs on real dataset
rows with a few varied dummy completions (Japanese, markdown, a 2,000-token degenerate loop...), through
the same validation as training, and its time per 1,000 completions is printed.
"""

from __future__ import annotations

import csv
import difflib
import functools
import inspect
import io
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from raftkit.rewards import DEFAULT_TIMEOUT, STACK_ARGUMENTS, RegistryError, RewardError, RewardStack, Scores

# Varied on purpose: each one has tripped up some reward (empty text, no spaces, code, emoticons,
# a self-dialogue leak, and a 2,000-token loop that would stall a backtracking regex).
DEGENERATE = "I think " * 600 + "人生の、" * 250
DUMMY_COMPLETIONS = [
    "Paris is the capital of France. 🇫🇷😊",
    "東京は日本の首都です。人口は約1400万人です。",
    "",
    "## Answer\n\nHere is some code:\n```python\nprint('#hi')\n```\nDone :) :) ;) :D",
    "<think>The user asks a question; 6*7=42.</think> The answer is 42.",
    "Sure!###Human: and what next?###Assistant: I don't know.\nUser: ok",
    DEGENERATE,
]


# --------------------------------------------------------------------------- reading input


def _maybe_json(value: Any) -> Any:
    """CSV cells are text: a cell holding a JSON list (chat messages, token ids) is read as one."""
    if isinstance(value, str) and value[:1] == "[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _read_jsonl(text: str, source: str) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise click.ClickException(f"{source} line {number}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise click.ClickException(
                f"{source} line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _read_text(path: str) -> tuple[str, str, str]:
    """(text, source, suffix) of a file or stdin (``-``): UTF-8, a byte-order mark dropped."""
    from raftkit.datasets import DatasetError, decode_utf8

    if path == "-":
        data, source, suffix = sys.stdin.buffer.read(), "<stdin>", ""  # bytes: decoded as files are
    else:
        p = Path(path)
        if not p.is_file():
            raise click.ClickException(f"{path}: no such file")
        try:
            data, source, suffix = p.read_bytes(), path, p.suffix.lower()
        except OSError as e:
            raise click.ClickException(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        return decode_utf8(data, source), source, suffix
    except DatasetError as e:
        raise click.ClickException(str(e)) from None


def read_rows(path: str) -> list[dict[str, Any]]:
    """Rows of a JSONL, JSON (a list of objects) or CSV file; ``-`` reads stdin (JSONL or CSV)."""
    text, source, suffix = _read_text(path)
    if suffix in (".csv", ".tsv") or (not suffix and text.lstrip()[:1] not in ("{", "[", "")):
        dialect = "excel-tab" if suffix == ".tsv" else "excel"
        reader = csv.DictReader(io.StringIO(text), dialect=dialect)
        rows = [{k: _maybe_json(v) for k, v in r.items()} for r in reader]
    elif text.lstrip()[:1] == "[":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise click.ClickException(f"{source}: not valid JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise click.ClickException(f"{source}: expected a JSON list of objects")
    else:
        rows = _read_jsonl(text, source)
    if not rows:
        raise click.ClickException(f"{source}: no rows")
    return rows


def rows_to_batch(rows: list[dict[str, Any]], prompt_column: str, completion_column: str, source: str,
                  prompt_given: bool = True):
    """(prompts, completions, columns) from rows; chat prompts get their completion as assistant messages.

    A missing prompt column is an error when ``prompt_given`` (the user named it) or when a column looks
    like a slip of it (``Prompt``); otherwise the file holds completions only and prompts are empty.
    """
    from raftkit.datasets import missing_column

    names: dict[str, None] = {}
    for r in rows:
        names.update(dict.fromkeys(r))
    if completion_column not in names:
        raise click.ClickException(
            f"{source}: no '{completion_column}' column (columns: {', '.join(names) or 'none'}); "
            "use --completion-column, or --dataset for a pre-flight check without completions")
    lookalike = difflib.get_close_matches(prompt_column.lower(), [n.lower() for n in names], 1, 0.8)
    if prompt_column not in names and (prompt_given or lookalike):
        raise click.ClickException(missing_column(prompt_column, list(names), source))
    prompts = [r.get(prompt_column) or "" for r in rows]
    completions = []
    for number, (p, r) in enumerate(zip(prompts, rows, strict=True), 1):
        c = r.get(completion_column)
        if c is None:
            raise click.ClickException(f"{source} row {number}: '{completion_column}' is empty")
        # TRL's convention: for chat prompts the completion is a list of assistant messages.
        if isinstance(p, list) and isinstance(c, str):
            c = [{"role": "assistant", "content": c}]
        completions.append(c)
    columns = {k: [r.get(k) for r in rows] for k in names if k not in (prompt_column, completion_column)}
    for reserved in STACK_ARGUMENTS:
        if reserved in columns:
            raise click.ClickException(
                f"{source}: a column may not be called '{reserved}' (the reward contract's own argument)")
    return prompts, completions, columns


# --------------------------------------------------------------------------- output


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _short(text: Any, limit: int = 40) -> str:
    from raftkit.rewards import completion_text

    t = completion_text(text).replace("\n", "⏎")
    return t if len(t) <= limit else t[: limit - 1] + "…"


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float as None: ``json.dumps`` would write bare ``NaN`` and
    ``Infinity``, which are not JSON (a weight of 1e308 overflows a total to inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(_finite(value), ensure_ascii=False, allow_nan=False)


def _row_json(scores: Scores, i: int, prompt: Any, completion: Any) -> dict[str, Any]:
    """One output row: the text as given (so `raftkit inspect` can show it), then every score."""
    row: dict[str, Any] = {"prompt": prompt, "completion": completion}
    row.update({label: values[i] for label, values in scores.rewards.items()})
    row.update({label: values[i] for label, values in scores.hits.items()})
    row["total"] = scores.total[i]
    row["dropped"] = scores.dropped[i]
    return row


def _merge(parts: list[Scores]) -> Scores:
    first = parts[0]
    return Scores(
        rewards={k: [v for p in parts for v in p.rewards[k]] for k in first.rewards},
        weights=first.weights,
        hits={k: [v for p in parts for v in p.hits[k]] for k in first.hits},
        total=[v for p in parts for v in p.total],
        dropped=[v for p in parts for v in p.dropped],
        seconds={k: sum(p.seconds.get(k, 0.0) for p in parts) for k in first.seconds},
    )


def _print_table(scores: Scores, completions: list[Any], max_rows: int) -> None:
    """The scores as a table. The total comes first and every number column keeps the width of its
    widest value (long headers fold), so at 80 columns (any pipe) the numbers stay whole; the completion
    text comes last, and goes below the table when the numbers leave it too little room."""
    from rich import box
    from rich.cells import cell_len
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    shown = range(min(len(scores), max_rows))
    columns = _number_columns(scores, shown)
    console = Console()
    # Every number column gets a fixed width, so rich never squeezes one: its header's when the text
    # keeps room for 20 characters, else its widest value's (the header folds); with still no room the
    # text goes below the table. Without vertical lines a column costs its width and two spaces.
    room = console.width - 4 - 2 * (len(columns) + 1) - 20
    value_widths = [max(cell_len(c) for c in cells) for _, cells, _ in columns]
    header_widths = [max(w, cell_len(h)) for w, (h, _, _) in zip(value_widths, columns, strict=True)]
    widths = header_widths if sum(header_widths) <= room else value_widths
    text_below = sum(widths) > room

    table = Table(title=f"scores of {len(scores)} completion(s)", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, collapse_padding=True)
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    for (header, _, style), width in zip(columns, widths, strict=True):
        table.add_column(escape(header), justify="right", style=style, overflow="fold", width=width)
    if not text_below:
        table.add_column("completion", overflow="fold", max_width=42)
    for i in shown:
        text = [] if text_below else [escape(_short(completions[i]))]
        table.add_row(str(i), *(escape(cells[i]) for _, cells, _ in columns), *text)
    if len(scores) > 1:
        table.add_section()
        means = [cells[-1] for _, cells, _ in columns]
        table.add_row("[bold]mean[/bold]", *means, *([] if text_below else [""]))
    console.print(table)
    if text_below:
        for i in shown:
            console.print(f"[dim]{i:>4}[/dim] {escape(_short(completions[i], max(20, console.width - 6)))}",
                          highlight=False)
    if len(scores) > max_rows:
        console.print(f"[dim]… {len(scores) - max_rows} more rows (use --json for all of them)[/dim]")


def _number_columns(scores: Scores, shown: range) -> list[tuple[str, list[str], str | None]]:
    """(header, cells, style) of the total, each reward and each filter; the cells end with the mean."""
    columns: list[tuple[str, list[str], str | None]] = [
        ("total", ["dropped" if scores.dropped[i] else _fmt(scores.total[i]) for i in shown], "bold")]
    for label, values in scores.rewards.items():
        weight = scores.weights[label]
        header = label + (f" ×{weight:g}" if weight != 1 else "")
        columns.append((header, [_fmt(values[i]) for i in shown], None))
    for label, hits in scores.hits.items():
        columns.append((label, [_fmt(hits[i]) if hits[i] else "·" for i in shown], "yellow"))
    if len(scores) > 1:
        for (_, cells, _), mean in zip(columns, _mean_row(scores), strict=True):
            cells.append(mean)
    return columns


def _mean_row(scores: Scores) -> list[str]:
    """Mean total (of the samples kept), mean of each reward, share of samples each filter hit."""
    kept = [t for t, d in zip(scores.total, scores.dropped, strict=True) if not d]
    cells = [_fmt(sum(kept) / len(kept)) if kept else "—"]
    for values in scores.rewards.values():
        present = [v for v in values if v is not None]
        cells.append(_fmt(sum(present) / len(present)) if present else "—")
    cells += [f"{sum(1 for h in v if h)}/{len(v)} hit" for v in scores.hits.values()]
    return cells


# --------------------------------------------------------------------------- pre-flight


def _signature_warning(fn: Any, names: set[str]) -> str:
    """What a function cannot take of the keyword arguments raftkit and TRL pass, if anything."""
    target = inspect.unwrap(fn)
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return ""
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return ""
    missing = sorted((names | {"trainer_state"}) - set(params))
    if not missing:
        return ""
    return f"no **kwargs: cannot take {', '.join(missing)} (TRL passes every column and trainer_state)"


@functools.cache
def _tokenizer(model: str = "default") -> Any:
    """The tokenizer of ``model``: 'default' (the bundled model), a model folder, or a run directory (its
    trained model, else the model it started from). Loaded from disk only; None where none loads."""
    try:
        from transformers import AutoTokenizer

        from raftkit.models import default_model_path

        path = Path(model)
        if model != "default" and (path / "config.yaml").is_file():  # a run directory
            from raftkit.config import load_file

            trained = path / "model"
            model = str(trained) if (trained / "config.json").is_file() else str(
                load_file(path / "config.yaml").get("model", "default"))
        folder = str(default_model_path()) if model == "default" else model
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception:  # no model prepared yet, or no tokenizer there: scoring goes on without ids
        return None


def _dummy_ids(completions: list[str], model: str = "default") -> list[list[int]] | None:
    """Token ids of the dummies with ``model``'s tokenizer, so `completion_ids` readers run too."""
    tok = _tokenizer(model)
    return None if tok is None else [tok(c, add_special_tokens=False)["input_ids"] for c in completions]


def _takes(fn: Any, name: str, by_name: bool = False) -> bool:
    """Whether ``fn`` accepts the keyword argument ``name``: by name, or (unless ``by_name``) through
    ``**kwargs``."""
    try:
        params = inspect.signature(inspect.unwrap(fn)).parameters.values()
    except (TypeError, ValueError):
        return not by_name
    return any(p.name == name or (not by_name and p.kind is inspect.Parameter.VAR_KEYWORD) for p in params)


def _default_model_ready() -> bool:
    """Whether the bundled model is converted already (preparing it takes a while: only for a reward
    that names ``completion_ids``, not for every reward that merely takes ``**kwargs``)."""
    from raftkit.models import _MARKER, DEFAULT_MODEL_NAME, cache_dir

    return (cache_dir() / "models" / DEFAULT_MODEL_NAME / _MARKER).is_file()


def completion_ids(stack: RewardStack, completions: list[Any], columns: dict[str, Any],
                   model: str | None = "default") -> dict[str, list[list[int]]]:
    """``{"completion_ids": ...}``, the completions tokenised as in training, for the rewards that can take
    them (TRL passes them to every reward); {} where the input has a ``completion_ids`` column, no reward
    takes them, ``model`` is None, or its tokenizer does not load (then a reward that needs them says so).
    """
    from raftkit.rewards import completion_text

    if model is None or "completion_ids" in columns or not any(
            _takes(e.info.fn, "completion_ids") for e in stack.entries):
        return {}
    if model == "default" and not _default_model_ready() and not any(
            _takes(e.info.fn, "completion_ids", by_name=True) for e in stack.entries):
        return {}
    tok = _tokenizer(str(model))
    if tok is None:
        return {}
    return {"completion_ids": [tok(completion_text(c), add_special_tokens=False)["input_ids"]
                               for c in completions]}


_MISSING = re.compile(r"missing \d+ required (?:positional |keyword-only )?arguments?: (.+)$")


def missing_argument_hint(error: RewardError, column_hint: str) -> str:
    """For a reward that raised because a keyword argument was not passed (``solution``), what to give:
    a dataset column of that name (``column_hint`` says where), or for ``completion_ids`` a tokenizer."""
    cause = error.__cause__
    found = _MISSING.search(str(cause)) if isinstance(cause, TypeError) else None
    if not found:
        return ""
    names = re.findall(r"'(\w+)'", found.group(1))
    hints = []
    for name in names:
        if name == "completion_ids":
            hints.append("'completion_ids' come from the tokenizer of the model (--model / model=; default: "
                         "the bundled model, which must be prepared), or from a 'completion_ids' column")
        else:
            where = column_hint.format(name=name)
            hints.append(f"'{name}' comes from the dataset column of that name: {where}")
    return f" (it needs the keyword argument(s) {', '.join(repr(n) for n in names)}: {'; '.join(hints)})"


def preflight(stack: RewardStack, dataset: str, prompt_column: str, limit: int, as_json: bool,
              model: str = "default") -> None:
    """Run each configured reward and filter on real rows with dummy completions; report checks and timing."""
    from raftkit.datasets import load_prompts

    try:
        prompt_set = load_prompts(dataset, prompt_column=prompt_column, limit=limit)
    except Exception as e:  # DatasetError and anything a loader raises on a user's file
        raise click.ClickException(f"cannot load dataset {dataset!r}: {e}") from None
    if not len(prompt_set):
        raise click.ClickException(f"dataset {dataset!r} has no rows")
    n = max(len(prompt_set), len(DUMMY_COMPLETIONS))
    rows = [i % len(prompt_set) for i in range(n)]
    prompts = [prompt_set.prompts[r] for r in rows]
    texts = [DUMMY_COMPLETIONS[i % len(DUMMY_COMPLETIONS)] for i in range(n)]
    completions = [[{"role": "assistant", "content": t}] if isinstance(p, list) else t
                   for p, t in zip(prompts, texts, strict=True)]
    columns = {k: [v[r] for r in rows] for k, v in prompt_set.columns.items()}
    extra: dict[str, Any] = {}
    if (ids := _dummy_ids(texts, model)) is not None:
        extra["completion_ids"] = ids

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress
    from rich.table import Table

    console = Console(stderr=as_json)
    results = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("pre-flight", total=len(stack.entries))
        for entry in stack.entries:
            progress.update(task, description=f"checking {entry.label}")
            single = RewardStack([entry], timeout=stack.timeout)
            result: dict[str, Any] = {
                "name": entry.label, "kind": entry.info.kind, "plugin": entry.info.plugin, "ok": True,
                "error": None, "warning": _signature_warning(entry.info.fn, set(columns) | set(extra))}
            try:
                start = time.perf_counter()
                single.score(prompts, completions, columns, **extra)  # validates; loads models
                result["first_call_s"] = time.perf_counter() - start
                # Timed again after the warm-up, a few times: the fastest call is the one least
                # disturbed by whatever else the machine is doing.
                calls: list[float] = []
                while len(calls) < 5 and sum(calls) < 1.0:
                    start = time.perf_counter()
                    scores = single.score(prompts, completions, columns, **extra)
                    calls.append(time.perf_counter() - start)
                seconds = min(calls)
                values = (scores.hits if entry.is_filter else scores.rewards)[entry.label]
                present = [v for v in values if v is not None]
                result.update(
                    seconds_per_1000=seconds / n * 1000, n=n,
                    min=min(present) if present else None, max=max(present) if present else None,
                    mean=sum(present) / len(present) if present else None, none=len(values) - len(present))
            except (RewardError, RegistryError) as e:
                hint = "add a '{name}' column to the dataset" if isinstance(e, RewardError) else ""
                result.update(ok=False, error=str(e) + (missing_argument_hint(e, hint) if hint else ""))
            results.append(result)
            progress.advance(task)

    if as_json:
        click.echo(_dumps({"dataset": prompt_set.source, "rows": len(prompt_set), "completions": n,
                           "results": results}))
    else:
        table = Table(title=f"pre-flight: {n} dummy completions on {len(prompt_set)} rows of "
                            f"{prompt_set.source}")
        table.add_column("reward", overflow="fold", min_width=12)
        for col in ("kind", "check"):
            table.add_column(col, overflow="fold")
        for col in ("min", "mean", "max", "per 1,000", "first call"):
            table.add_column(col, justify="right")
        for r in results:
            if r["ok"]:
                check = "[green]ok[/green]"
                if r["warning"]:
                    check += f"\n[yellow]{escape(r['warning'])}[/yellow]"
                table.add_row(escape(r["name"]), r["kind"], check, _fmt(r["min"]), _fmt(r["mean"]),
                              _fmt(r["max"]), f"{r['seconds_per_1000']:.3f} s", f"{r['first_call_s']:.2f} s")
            else:
                table.add_row(escape(r["name"]), r["kind"], f"[red]FAILED[/red] {escape(r['error'])}",
                              "", "", "", "", "")
        console.print(table)
        if "completion_ids" not in extra:
            console.print(f"[dim]completion_ids were not passed (no tokenizer loads from --model "
                          f"{escape(model)}).[/dim]")
    failed = [r["name"] for r in results if not r["ok"]]
    if failed:
        raise click.ClickException(f"pre-flight failed for {', '.join(failed)}")


# --------------------------------------------------------------------------- the command


@click.command("score")
@click.option("--reward", "-r", "rewards", multiple=True, metavar="SPEC",
              help="A reward: [PLUGIN:]NAME[:key=value,...][*WEIGHT], or a plain function as "
                   "FILE.py:FN or package.module:FN (same parameters and weight). Repeat for several "
                   "(weighted sum).")
@click.option("--filter", "-f", "filters", multiple=True, metavar="SPEC",
              help="A degeneracy filter: NAME[:action=penalty|drop,penalty=-1.0,...]. Repeatable.")
@click.option("--input", "-i", "input_path", metavar="FILE",
              help="JSONL, JSON or CSV with prompt and completion columns (others become keyword "
                   "arguments); - reads stdin.")
@click.option("--dataset", metavar="NAME_OR_FILE",
              help="Pre-flight check: run the rewards on these prompts with dummy completions "
                   "('bundled' = raftkit's prompts).")
@click.option("--prompt-column", default="prompt", show_default=True, help="Column holding the prompt.")
@click.option("--completion-column", default="completion", show_default=True,
              help="Column holding the completion (with --input).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Use the first N rows (pre-flight default: 8).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per row: prompt, completion, each reward's raw value, each filter's "
                   "hits, total, dropped (`raftkit inspect FILE` reads it).")
@click.option("--reward-timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT,
              show_default=True, help="Seconds one reward call may take before it is an error.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Completions per reward call.")
@click.option("--max-rows", type=click.IntRange(min=1), default=50, show_default=True,
              help="Rows shown in the table.")
@click.option("--model", default="default", show_default=True, metavar="MODEL_OR_RUN",
              help="Whose tokenizer gives the rewards `completion_ids` (as in training): a model folder, a "
                   "run directory (its model), or 'default' (the bundled model). A `completion_ids` column "
                   "in the input is used instead.")
def command(rewards, filters, input_path, dataset, prompt_column, completion_column, limit, as_json,
            reward_timeout, batch_size, max_rows, model) -> None:
    """Score completions with rewards and filters, or pre-flight-check them on a dataset.

    The input has a `prompt` and a `completion` column; every other column reaches the rewards as a
    keyword argument, as in training (a `completion_ids` column too). Chat prompts (lists of
    messages) get their completion as assistant messages, as TRL passes them.

    \b
    Examples:
      raftkit score --reward emoji --reward length:target=30 --input samples.jsonl
      raftkit score -r 'emoji:max=4*2' -f stray_hash -f repetition_loop:action=drop -i samples.csv --json
      echo '{"prompt": "Hi", "completion": "Hello! 😊"}' | raftkit score -r emoji -i -
      raftkit score -r emoji -r length --dataset bundled --limit 16     # pre-flight before a long run
      raftkit score -r similarity:column=answer --dataset qa.jsonl --prompt-column question
    """
    if not rewards and not filters:
        raise click.ClickException("give at least one --reward (or --filter); `raftkit rewards` lists them")
    if bool(input_path) == bool(dataset):
        raise click.ClickException("give either --input FILE (completions to score, - for stdin) "
                                   "or --dataset NAME_OR_FILE (a pre-flight check with dummy completions)")
    try:
        stack = RewardStack.build(list(rewards), list(filters), timeout=reward_timeout)
    except RegistryError as e:
        raise click.ClickException(str(e)) from None

    if dataset:
        preflight(stack, dataset, prompt_column, limit or 8, as_json, model)
        return

    rows = read_rows(input_path)[:limit]
    source = "<stdin>" if input_path == "-" else input_path
    given = click.get_current_context().get_parameter_source("prompt_column") is ParameterSource.COMMANDLINE
    prompts, completions, columns = rows_to_batch(rows, prompt_column, completion_column, source, given)
    extra = completion_ids(stack, completions, columns, model)
    if not extra and model != "default" and "completion_ids" not in columns and _tokenizer(model) is None:
        raise click.ClickException(f"--model {model}: no tokenizer loads from there (give a model folder "
                                   "or a run directory)")
    hint = "add a '{name}' column to " + source
    parts: list[Scores] = []
    try:
        from rich.console import Console
        from rich.progress import Progress

        # The progress bar goes to stderr, so --json output stays clean on stdout.
        quiet = len(rows) <= batch_size
        with Progress(console=Console(stderr=True), transient=True, disable=quiet) as progress:
            task = progress.add_task("scoring", total=len(rows))
            for start in range(0, len(rows), batch_size):
                end = min(start + batch_size, len(rows))
                chunk_cols = {k: v[start:end] for k, v in columns.items()}
                chunk_extra = {k: v[start:end] for k, v in extra.items()}
                try:
                    parts.append(stack.score(prompts[start:end], completions[start:end], chunk_cols,
                                             **chunk_extra))
                except RewardError as e:
                    if e.index is not None:  # the message's index is within the chunk: point at the row
                        row = start + e.index + 1
                        raise click.ClickException(f"{e} — input row {row} of {source}"
                                                   f"{missing_argument_hint(e, hint)}") from None
                    raise
                progress.advance(task, end - start)
    except RewardError as e:
        raise click.ClickException(f"{e}{missing_argument_hint(e, hint)}") from None
    scores = _merge(parts)
    if as_json:
        for i, row in enumerate(rows):
            # The completion as the input held it (not wrapped into chat messages for the rewards).
            out = _row_json(scores, i, prompts[i], row.get(completion_column))
            click.echo(_dumps(out))
    else:
        _print_table(scores, completions, max_rows)
