"""`fedsyn evaluate` (being written)."""

import click


@click.command(name="evaluate")
def command() -> None:
    """Not available yet."""
    raise click.ClickException("'fedsyn evaluate' is not implemented yet.")
