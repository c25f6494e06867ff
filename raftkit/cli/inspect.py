"""`raftkit inspect` (placeholder until its issue lands)."""

import click


@click.command("inspect")
def command() -> None:
    """Not built yet."""
    raise click.ClickException("raftkit inspect is not built yet")
