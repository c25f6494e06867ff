"""`raftkit prepare-model`: convert the bundled default model once, so the first run starts fast."""

import click

from raftkit.models import ModelError, resolve_model


@click.command("prepare-model")
@click.option("--model", default=None,
              help="Model folder or hub id (default: the bundled SmolLM2-135M-Instruct).")
def command(model: str | None) -> None:
    """Prepare a model folder that transformers and vLLM both load, and print where it is.

    \b
    Examples:
      raftkit prepare-model                 # converts the bundled GGUF once into ~/.cache/raftkit
      RAFTKIT_CACHE=/data/cache raftkit prepare-model
    """
    try:
        click.echo(resolve_model(model))
    except ModelError as e:
        raise click.ClickException(str(e)) from None
