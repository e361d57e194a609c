"""Exceptions of fedsyn and the exit codes the CLI maps them to.

Every error a user can cause derives from :class:`FedsynError` and carries an
``exit_code``. The CLI (``fedsyn.cli``) maps them to messages and exit codes in
one place; library code never calls ``sys.exit``.
"""

from __future__ import annotations


class FedsynError(Exception):
    """Base class of all errors fedsyn reports to its users."""

    exit_code: int = 1


class InputError(FedsynError, ValueError):
    """Bad input data: unreadable, malformed, or violating a stated requirement.

    The message names the file and, where it applies, the row, column or gene.
    """

    exit_code = 2


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
