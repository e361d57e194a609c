"""Command-line interface: a thin layer of click commands over the library API.

Each subcommand lives in its own module and only parses options and calls the
library. Errors are mapped to messages and exit codes in one place,
:func:`main` (the codes are listed in :mod:`fedsyn.errors`). The global
options ``-v``, ``-q`` and ``--log-format`` are accepted before and after the
subcommand (``fedsyn -q run ...`` and ``fedsyn run -q ...``).
"""

from __future__ import annotations

import logging
import os
import sys

import click

from .._version import __version__
from ..errors import USAGE_EXIT_CODE, FedsynError
from ..logs import configure_logging, level_for

log = logging.getLogger("fedsyn")

#: Subcommand modules, in the order ``fedsyn --help`` lists them.
_COMMANDS = ("simulate", "preprocess", "lists", "run", "evaluate", "plan", "share", "serve", "release", "certs")

_VERBOSE_HELP = "More log output (-vv for debug); also accepted after the subcommand."
_QUIET_HELP = "Only errors; no progress output; also accepted after the subcommand."
_LOG_FORMAT_HELP = ("text: 'LEVEL logger: message' lines; json: one JSON object a line (time, level, logger, "
                    "message), for unattended servers. Also accepted after the subcommand.")


def progress_enabled(quiet: bool) -> bool:
    """Show progress only on a terminal, without --quiet, and not under CI."""
    return not quiet and sys.stderr.isatty() and not os.environ.get("CI")


def _apply_logging(ctx: click.Context) -> None:
    state = ctx.obj
    level = level_for(verbose=state["verbose"], quiet=state["quiet"], progress=progress_enabled(state["quiet"]))
    configure_logging(level, fmt=state["log_format"])


def _restore_logging(level: int) -> None:
    """Remove the CLI's log handler when the command is over (the CLI may be invoked in-process)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_fedsyn", False)]:
        root.removeHandler(handler)
    root.setLevel(level)


class _Group(click.Group):
    """The ``fedsyn`` group: logs an error's traceback at DEBUG (``-vv``) while logging is set up."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (FedsynError, OSError):
            log.debug("traceback of the error below", exc_info=True)
            raise


def _state(ctx: click.Context) -> dict:
    if ctx.obj is None:
        ctx.obj = {"quiet": False, "verbose": 0, "log_format": "text"}
    return ctx.obj


def _sub_verbose(ctx: click.Context, _param, value: int) -> None:
    if value:
        _state(ctx)["verbose"] += value
        _apply_logging(ctx)


def _sub_quiet(ctx: click.Context, _param, value: bool) -> None:
    if value:
        _state(ctx)["quiet"] = True
        _apply_logging(ctx)


def _sub_log_format(ctx: click.Context, _param, value: str | None) -> None:
    if value:
        _state(ctx)["log_format"] = value
        _apply_logging(ctx)


def _global_options_for_subcommand() -> list[click.Option]:
    """``-v``/``-q``/``--log-format`` for a subcommand: they refine the group's settings."""
    return [
        click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_sub_verbose,
                     help="More log output (-vv for debug); as `fedsyn -v COMMAND`."),
        click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_sub_quiet,
                     help="Only errors; no progress output; as `fedsyn -q COMMAND`."),
        click.Option(["--log-format"], type=click.Choice(["text", "json"]), default=None, expose_value=False,
                     callback=_sub_log_format,
                     help="text, or json: one JSON object a line (time, level, logger, message) for unattended "
                          "servers; as `fedsyn --log-format json COMMAND`."),
    ]


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fedsyn")
@click.option("-v", "--verbose", count=True, help=_VERBOSE_HELP)
@click.option("-q", "--quiet", is_flag=True, help=_QUIET_HELP)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help=_LOG_FORMAT_HELP)
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, log_format: str) -> None:
    """fedsyn: differentially private synthetic RNA-seq data from several
    hospitals, computed by three MPC servers that never see the raw data.

    Exit codes: 0 success, 1 other error, 2 command-line usage, 3
    configuration, 4 share bundle, 5 MPC protocol, 6 engine unavailable,
    7 release, 8 input data, 130 interrupted.
    """
    ctx.obj = {"quiet": quiet, "verbose": verbose, "log_format": log_format}
    ctx.call_on_close(lambda level=logging.getLogger().level: _restore_logging(level))
    _apply_logging(ctx)


def _register() -> None:
    import importlib

    for name in _COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        command = module.command
        command.params.extend(_global_options_for_subcommand())
        cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map fedsyn errors to exit codes (see :mod:`fedsyn.errors`)."""
    try:
        cli.main(args=argv, prog_name="fedsyn", standalone_mode=False)
    except FedsynError as exc:
        click.echo(f"fedsyn: error: {exc.cli_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("fedsyn: aborted.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("fedsyn: interrupted; no partial outputs were written.", err=True)
        sys.exit(130)
    except click.exceptions.UsageError as exc:
        exc.show()
        sys.exit(USAGE_EXIT_CODE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except OSError as exc:  # unwritable output, full disk, vanished peer: one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"fedsyn: error: {where}{exc.strerror or exc}", err=True)
        sys.exit(FedsynError.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(0)
