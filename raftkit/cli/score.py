"""`raftkit score` (placeholder until its issue lands)."""

import click


@click.command("score")
def command() -> None:
    """Not built yet."""
    raise click.ClickException("raftkit score is not built yet")
