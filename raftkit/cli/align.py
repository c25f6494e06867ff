"""`raftkit align` (placeholder until its issue lands)."""

import click


@click.command("align")
def command() -> None:
    """Not built yet."""
    raise click.ClickException("raftkit align is not built yet")
