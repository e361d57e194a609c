"""`fedsyn simulate` (being written)."""

import click


@click.command(name="simulate")
def command() -> None:
    """Not available yet."""
    raise click.ClickException("'fedsyn simulate' is not implemented yet.")
