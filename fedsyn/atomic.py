"""Atomic output files: the one writer every fedsyn output goes through.

A temporary file in the target's directory replaces the target only when
writing succeeded (``os.replace``), so an error or Ctrl-C never leaves a
truncated file behind, and the old file, if any, stays intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "save_npz_atomic",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, mode: int = 0o666) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` only if the block succeeds.

    The temporary file lives in the target's directory (created if missing) and
    keeps the target's suffixes, so writers that infer a format from the name
    behave the same. On normal exit it is flushed to disk and ``os.replace``-d
    onto ``path``; on any exception, ``KeyboardInterrupt`` included, it is
    removed and the old ``path`` (if any) is left untouched.

    Parameters
    ----------
    path : str or path-like
        The final file.
    mode : int, default 0o666
        Permission bits of the new file before the umask (use ``0o600`` for
        files that must stay private, such as share bundles).

    Yields
    ------
    pathlib.Path
        The temporary path to write to (it already exists, empty).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{secrets.token_hex(6)}-{target.name}"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    os.close(fd)
    try:
        yield tmp
        with contextlib.suppress(OSError):
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, mode: int = 0o666) -> Path:
    """Atomically write ``data`` to ``path`` (see :func:`atomic_path`)."""
    with atomic_path(path, mode=mode) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, *, mode: int = 0o666) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path`` (see :func:`atomic_path`)."""
    return write_bytes_atomic(path, text.encode("utf-8"), mode=mode)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def write_json_atomic(
    path: str | os.PathLike, obj: Any, *, indent: int | None = 2, mode: int = 0o666
) -> Path:
    """Atomically write ``obj`` as JSON (numpy scalars/arrays and paths converted).

    Non-finite floats are refused (strict JSON), with a ``ValueError``.
    """
    text = json.dumps(obj, indent=indent, default=_json_default, allow_nan=False, sort_keys=False)
    return write_text_atomic(path, text + "\n", mode=mode)


def save_npz_atomic(path: str | os.PathLike, /, **arrays: Any) -> Path:
    """Atomically save ``arrays`` with :func:`numpy.savez` to exactly ``path``.

    Unlike ``np.savez(name)``, no ``.npz`` suffix is appended to ``path``.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return Path(path)
