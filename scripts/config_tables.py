"""Print docs/configuration.md's option tables from the config dataclasses (their docstrings are the help).

    .venv/bin/python scripts/config_tables.py > /tmp/tables.md   # then paste over the tables section
"""

from raftkit import algorithms
from raftkit.config import AlignConfig, fields_of


def table(cls: type, skip: set[str] = frozenset()) -> str:
    rows = ["| option | config key | default | meaning |", "|---|---|---|---|"]
    for spec in fields_of(cls).values():
        if spec.name in skip:
            continue
        default = spec.default
        shown = ", ".join(map(str, default)) if isinstance(default, list | tuple) else default
        flag = spec.option.replace("_", "-")
        rows.append(f"| `--{flag}` | `{spec.name}` | `{'' if shown is None else shown}` | "
                    f"{spec.doc.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


DOCS = {"raft": "docs/raft.md", "grpo": "docs/grpo.md"}  # the others: docs/algorithms.md


def main() -> None:
    print("## Common options (AlignConfig)\n")
    print(table(AlignConfig))
    common = set(fields_of(AlignConfig))
    found, _ = algorithms.load_algorithms()
    for info in found.values():
        print(f"\n## {info.name} ({info.config.__name__}, `--algo {info.name}`)\n")
        doc = DOCS.get(info.name, "docs/algorithms.md")
        print(f"{info.description} Defaults: lr {info.cls.default_lr:g}, "
              f"{info.cls.default_prompts} prompts per iteration. See {doc}.\n")
        print(table(info.config, skip=common))


if __name__ == "__main__":
    main()
