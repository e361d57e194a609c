"""Exceptions of fedsyn and the exit codes the CLI maps them to.

Every error a user can cause derives from :class:`FedsynError` and carries an
``exit_code``. The CLI (``fedsyn.cli``) maps them to messages and exit codes in
one place; library code never calls ``sys.exit``.

========= ====================================================================
exit code meaning
========= ====================================================================
0         success
1         any other error (an unwritable output, a full disk, ...)
2         command-line usage: unknown option, missing or out-of-range value
          (click's own usage errors)
3         :class:`ConfigError`: inconsistent options, configuration or
          parameter files, outputs that would replace something
4         :class:`BundleError`: a share bundle is refused
5         :class:`ProtocolError`: the MPC protocol failed (a peer, a timeout)
6         :class:`EngineUnavailableError`
7         :class:`ReleaseError`: fitting or sampling failed
8         :class:`InputError`: the input data (a matrix, a list file, a sample
          sheet) is unreadable or breaks a rule of ``docs/input.md``
130       interrupted (Ctrl-C)
========= ====================================================================

Messages that tell the user what to pass are written once for both
audiences with :func:`hint`: ``str(error)`` reads in the Python API's words
(``label_column=``), :meth:`FedsynError.cli_message` in the command line's
(``--label-column``).
"""

from __future__ import annotations

import re

__all__ = [
    "hint",
    "FedsynError",
    "InputError",
    "ConfigError",
    "BundleError",
    "ProtocolError",
    "EngineUnavailableError",
    "ReleaseError",
    "USAGE_EXIT_CODE",
]

#: Exit code of command-line usage errors (click's convention).
USAGE_EXIT_CODE = 2

_HINT = re.compile("\x02([^\x1f\x03]*)\x1f([^\x02\x03]*)\x03")


def hint(python: str, cli: str) -> str:
    """A piece of an error message that names an option in the caller's words.

    Parameters
    ----------
    python : str
        The words of the Python API, e.g. ``"label_column="``.
    cli : str
        The words of the command line, e.g. ``"--label-column"``.

    Returns
    -------
    str
        A marked string to embed in a :class:`FedsynError` message; the
        error renders it as ``python`` in ``str(error)`` and as ``cli`` in
        :meth:`FedsynError.cli_message`.

    Examples
    --------
    >>> str(InputError(f"x.csv: no label column; pass {hint('label_column=', '--label-column')}."))
    'x.csv: no label column; pass label_column=.'
    >>> InputError(f"pass {hint('label_column=', '--label-column')}").cli_message()
    'pass --label-column'
    """
    return f"\x02{python}\x1f{cli}\x03"


def _render(text: str, *, cli: bool) -> str:
    return _HINT.sub(lambda m: m.group(2 if cli else 1), text)


class FedsynError(Exception):
    """Base class of all errors fedsyn reports to its users."""

    exit_code: int = 1

    @property
    def raw(self) -> str:
        """The message with its :func:`hint` marks, to embed in another fedsyn error."""
        return Exception.__str__(self)

    def __str__(self) -> str:
        return _render(self.raw, cli=False)

    def cli_message(self) -> str:
        """The message in the command line's words (``--label-column``, not ``label_column=``)."""
        return _render(self.raw, cli=True)


class InputError(FedsynError, ValueError):
    """Bad input data: unreadable, malformed, or violating a stated requirement.

    The message names the file and, where it applies, the row, column or gene.
    """

    exit_code = 8


class ConfigError(FedsynError, ValueError):
    """Inconsistent options or configuration files."""

    exit_code = 3


class BundleError(FedsynError, ValueError):
    """A share bundle that is malformed, corrupted or meant for another run or server."""

    exit_code = 4


class ProtocolError(FedsynError, RuntimeError):
    """An MPC protocol failed: a peer vanished, timed out, or sent malformed data."""

    exit_code = 5


class EngineUnavailableError(FedsynError, RuntimeError):
    """The requested engine cannot run here (e.g. MP-SPDZ not installed)."""

    exit_code = 6


class ReleaseError(FedsynError, RuntimeError):
    """Fitting or sampling the synthetic data failed."""

    exit_code = 7
