"""`fedsyn release` (being written)."""

import click


@click.command(name="release")
def command() -> None:
    """Not available yet."""
    raise click.ClickException("'fedsyn release' is not implemented yet.")
