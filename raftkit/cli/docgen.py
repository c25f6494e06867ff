"""docs/configuration.md's option tables, generated from the config dataclasses (their field docstrings,
the same text as `raftkit align --help`).

    python -m raftkit.cli.docgen            # print the tables
    python -m raftkit.cli.docgen --write    # replace them in docs/configuration.md
    python -m raftkit.cli.docgen --check    # exit 1 when docs/configuration.md is out of date

Only the part between the markers below is generated; the prose around it is written by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BEGIN = "<!-- generated: options (python -m raftkit.cli.docgen --write) -->"
END = "<!-- end generated: options -->"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
GUIDES = {"raft": "docs/raft.md", "grpo": "docs/grpo.md"}  # the others: docs/algorithms.md


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(cls: type, skip: frozenset[str] = frozenset()) -> str:
    """One row per option of ``cls``: the option (and its old name), the config key, default, meaning."""
    from raftkit.options import option_specs

    rows = ["| option | config key | default | meaning |", "|---|---|---|---|"]
    for option, spec in option_specs(cls).items():
        if option in skip:
            continue
        default = spec.default
        shown = ", ".join(map(str, default)) if isinstance(default, list | tuple) else default
        flag = f"`--{option.replace('_', '-')}`"
        old = "".join(f" (or `--{n.replace('_', '-')}`)" for n in spec.old_names)
        shown = "" if shown is None else shown
        rows.append(f"| {flag}{old} | `{spec.name}` | `{shown}` | {_cell(spec.doc)} |")
    return "\n".join(rows)


def renamed() -> str:
    """The clear option names and the field names they stand for, per algorithm."""
    from raftkit import algorithms
    from raftkit.config import AlignConfig
    from raftkit.options import option_specs

    found, _ = algorithms.load_algorithms()
    by_option: dict[str, dict[str, list[str]]] = {}
    for cls, name in ((AlignConfig, "all"), *((info.config, info.name) for info in found.values())):
        for option, spec in option_specs(cls).items():
            for old in spec.old_names:
                by_option.setdefault(option, {}).setdefault(old, []).append(name)
    rows = ["| option | also accepted (config.yaml key) | algorithms |", "|---|---|---|"]
    for option, olds in by_option.items():
        for old, names in olds.items():
            rows.append(f"| `--{option.replace('_', '-')}` | `--{old.replace('_', '-')}` (`{old}`) | "
                        f"{', '.join(names)} |")
    return "\n".join(rows)


def generate() -> str:
    """The generated section, markers included."""
    from raftkit import algorithms
    from raftkit.config import AlignConfig
    from raftkit.options import option_specs

    parts = [BEGIN, "", "## Clear names", "",
             "Options whose field names are ambiguous have a clear name; the field name stays accepted as "
             "an option, a `--config` key and a `raftkit.align` keyword, and is what `RUN_DIR/config.yaml` "
             "records.", "", renamed(), "", "## Common options (AlignConfig)", "", table(AlignConfig)]
    common = frozenset(option_specs(AlignConfig))
    found, _ = algorithms.load_algorithms()
    for info in found.values():
        guide = GUIDES.get(info.name, "docs/algorithms.md")
        parts += ["", f"## {info.name} ({info.config.__name__}, `--algo {info.name}`)", "",
                  f"{info.description} Defaults: lr {info.lr_text}, {info.cls.default_prompts} "
                  f"prompts per iteration. See {guide}.", "", table(info.config, skip=common)]
    return "\n".join([*parts, "", END])


def updated(text: str) -> str:
    """``text`` (docs/configuration.md) with its generated section replaced by a fresh one."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"{DOCS}: the markers {BEGIN!r} and {END!r} are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + generate() + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raftkit.cli.docgen", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="replace the tables in docs/configuration.md")
    mode.add_argument("--check", action="store_true", help="exit 1 when docs/configuration.md is stale")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        print(generate())
        return 0
    text = DOCS.read_text(encoding="utf-8")
    try:
        new = updated(text)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.write:
        if new != text:
            DOCS.write_text(new, encoding="utf-8")
        return 0
    if new != text:
        print(f"{DOCS} is out of date; run: python -m raftkit.cli.docgen --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
