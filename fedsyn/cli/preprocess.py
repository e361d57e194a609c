"""`fedsyn preprocess` (being written)."""

import click


@click.command(name="preprocess")
def command() -> None:
    """Not available yet."""
    raise click.ClickException("'fedsyn preprocess' is not implemented yet.")
