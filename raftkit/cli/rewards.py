"""`raftkit rewards` (placeholder until its issue lands)."""

import click


@click.command("rewards")
def command() -> None:
    """Not built yet."""
    raise click.ClickException("raftkit rewards is not built yet")
