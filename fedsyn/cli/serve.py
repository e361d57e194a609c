"""`fedsyn serve` (being written)."""

import click


@click.command(name="serve")
def command() -> None:
    """Not available yet."""
    raise click.ClickException("'fedsyn serve' is not implemented yet.")
