"""Log output of the command line: levels from ``-q``/``-v``, text or JSON lines.

The library only logs through ``logging.getLogger(__name__)``; this module is
what the CLI uses to decide where those records go. ``--log-format json``
writes one JSON object per line (``time``, ``level``, ``logger``,
``message``, and ``exception`` when there is one), for servers that run
unattended and whose logs are collected by a machine. Logs never hold data,
shares or output values (the modules that log make sure of that), so the
JSON lines carry only what the text lines carry.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from typing import Literal

__all__ = ["LogFormat", "JsonFormatter", "TEXT_FORMAT", "level_for", "configure_logging"]

LogFormat = Literal["text", "json"]

#: Layout of a text log line.
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``.

    An exception attached to the record is added as ``exception`` (its
    formatted traceback, one string).

    Examples
    --------
    >>> rec = logging.LogRecord("fedsyn.x", logging.INFO, __file__, 1, "block %d of %d", (1, 3), None)
    >>> out = json.loads(JsonFormatter().format(rec))
    >>> out["level"], out["logger"], out["message"]
    ('INFO', 'fedsyn.x', 'block 1 of 3')
    """

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": _dt.datetime.fromtimestamp(record.created, tz=_dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def level_for(*, verbose: int = 0, quiet: bool = False, progress: bool = False) -> int:
    """The root log level: ``quiet`` errors only; ``-v`` info, ``-vv`` debug; else info with progress, warnings without."""
    if quiet:
        return logging.ERROR
    if verbose:
        return logging.DEBUG if verbose > 1 else logging.INFO
    return logging.INFO if progress else logging.WARNING


def configure_logging(level: int, *, fmt: LogFormat = "text") -> logging.Handler:
    """Send log records of ``level`` and above to standard error, as text or JSON lines.

    Replaces the handler an earlier call installed (so options given after
    the subcommand can refine those given before it); handlers installed by
    others are left alone.

    Parameters
    ----------
    level : int
        A :mod:`logging` level.
    fmt : {"text", "json"}, default "text"

    Returns
    -------
    logging.Handler
        The installed handler.
    """
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {fmt!r}.")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_fedsyn", False)]:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler._fedsyn = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    return handler
