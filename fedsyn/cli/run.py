"""`fedsyn run` (being written)."""

import click


@click.command(name="run")
def command() -> None:
    """Not available yet."""
    raise click.ClickException("'fedsyn run' is not implemented yet.")
