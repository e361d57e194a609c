"""`fedsyn share` (being written)."""

import click


@click.command(name="share")
def command() -> None:
    """Not available yet."""
    raise click.ClickException("'fedsyn share' is not implemented yet.")
