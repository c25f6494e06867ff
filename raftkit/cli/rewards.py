"""`raftkit rewards`: what rewards and filters the installed plugins registered, and which plugins failed."""

from __future__ import annotations

import json
from typing import Any

import click

from raftkit.rewards import Registry, RegistryError, RewardInfo, load_registry


def _param_json(info: RewardInfo) -> list[dict[str, Any]]:
    return [
        {"name": p.name, "type": p.type_name, "required": p.required,
         "default": None if p.required else _jsonable(p.default)}
        for p in info.params.values()
    ]


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def registry_json(registry: Registry) -> dict[str, Any]:
    """The registry as plain data (what ``--json`` prints)."""
    return {
        "rewards": [
            {"name": r.name, "kind": r.kind, "plugin": r.plugin, "description": r.description,
             "params": _param_json(r)}
            for r in sorted(registry.rewards.values(), key=lambda r: (r.is_filter, r.name))
        ],
        "failures": [{"plugin": name, "error": error} for name, error in sorted(registry.failures.items())],
    }


@click.command("rewards")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")
def command(as_json: bool) -> None:
    """List the registered rewards and filters: name, kind, plugin, parameters, description.

    Plugins are found through the `raftkit` entry-point group (the built-ins too); set
    RAFTKIT_LOAD_PLUGINS=name,name to load only some of them. Plugins that failed to load are listed
    below the table with their error, as is a plugin that registers a name another plugin took first
    (the first keeps it; PLUGIN:NAME picks the other) or misspells a hook.

    \b
    Examples:
      raftkit rewards
      raftkit rewards --json | jq '.rewards[].name'
      RAFTKIT_LOAD_PLUGINS=rules raftkit rewards      # only the built-in rule rewards
    """
    try:
        registry = load_registry()
    except RegistryError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(registry_json(registry), ensure_ascii=False, indent=2))
        return

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    table = Table(title="raftkit rewards and filters", show_lines=False, expand=False)
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("kind")
    table.add_column("plugin", style="dim", overflow="fold")
    table.add_column("parameters")
    table.add_column("description")
    kind_style = {"rule": "green", "neural": "magenta", "filter": "yellow"}
    for r in sorted(registry.rewards.values(), key=lambda r: (r.is_filter, r.kind, r.name)):
        params = "\n".join(escape(p.describe()) for p in r.params.values()) or "-"
        if r.is_filter:
            params += "\n[dim]action: penalty|drop = 'penalty'\npenalty: float = -1.0[/dim]"
        table.add_row(escape(r.name), f"[{kind_style.get(r.kind, 'white')}]{r.kind}[/]", escape(r.plugin),
                      params, escape(r.description))
    console.print(table)
    if not registry.rewards:
        console.print("[yellow]No rewards registered.[/yellow] Is RAFTKIT_LOAD_PLUGINS set?")
    if registry.failures:
        console.print(f"[red]{len(registry.failures)} plugin(s) failed to load:[/red]")
        for name, error in sorted(registry.failures.items()):
            console.print(f"  [bold]{escape(name)}[/bold]: {escape(error)}", highlight=False)
    usage = "Use: --reward [PLUGIN:]NAME[:key=value,...][*WEIGHT]   --filter NAME[:action=drop,penalty=-1]"
    console.print(escape(usage), style="dim")
