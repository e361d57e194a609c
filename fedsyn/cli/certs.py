"""`fedsyn certs` (being written)."""

import click


@click.command(name="certs")
def command() -> None:
    """Not available yet."""
    raise click.ClickException("'fedsyn certs' is not implemented yet.")
