"""Command-line interface: a thin layer of click commands over the library API.

Each subcommand lives in its own module and only parses options and calls the
library. Errors are mapped to messages and exit codes in one place,
:func:`main`.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from .._version import __version__
from ..errors import FedsynError

log = logging.getLogger("fedsyn")

#: Subcommand modules, in the order ``fedsyn --help`` lists them.
_COMMANDS = ("simulate", "preprocess", "run", "evaluate", "plan", "share", "serve", "release", "certs")


def progress_enabled(quiet: bool) -> bool:
    """Show progress only on a terminal, without --quiet, and not under CI."""
    return not quiet and sys.stderr.isatty() and not os.environ.get("CI")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fedsyn")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress output.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """fedsyn: differentially private synthetic RNA-seq data from several
    hospitals, computed by three MPC servers that never see the raw data."""
    if quiet:
        level = logging.ERROR
    elif verbose:
        level = logging.DEBUG if verbose > 1 else logging.INFO
    else:
        # Step-by-step progress on a terminal; only warnings under CI or when piped.
        level = logging.INFO if progress_enabled(quiet) else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(level)
    ctx.obj = {"quiet": quiet, "verbose": verbose}


def _register() -> None:
    import importlib

    for name in _COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        cli.add_command(module.command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map fedsyn errors to exit codes."""
    try:
        cli.main(args=argv, prog_name="fedsyn", standalone_mode=False)
    except FedsynError as exc:
        click.echo(f"fedsyn: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("fedsyn: aborted.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("fedsyn: interrupted; no partial outputs were written.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except OSError as exc:  # unwritable output, full disk, vanished peer: one line, not a traceback
        log.debug("operating-system error", exc_info=True)
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"fedsyn: error: {where}{exc.strerror or exc}", err=True)
        sys.exit(FedsynError.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(0)
