"""`raftkit algorithms`: the training algorithms installed, built-in and from plugins."""

import click
from rich.console import Console
from rich.table import Table


@click.command("algorithms")
def command() -> None:
    """List the training algorithms `raftkit align --algo` accepts, with their defaults.

    \b
    Examples:
      raftkit algorithms
      raftkit align --algo raftpp --reward emoji --reward length
    """
    from raftkit import algorithms

    found, failures = algorithms.load_algorithms()
    table = Table("name", "lr", "prompts", "plugin", "description", box=None)
    for info in found.values():
        table.add_row(info.name, info.lr_text, str(info.cls.default_prompts), info.plugin,
                      info.description)
    console = Console()
    console.print(table)
    for plugin, error in failures.items():
        console.print(f"[red]plugin {plugin} failed to register algorithms:[/red] {error}")
