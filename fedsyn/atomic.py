"""Atomic output files, and the rule that no output ever destroys an input.

A temporary file in the target's directory replaces the target only when
writing succeeded (``os.replace``), so an error or Ctrl-C never leaves a
truncated file behind, and the old file, if any, stays intact.

The output rule of every command (``docs/input.md``, "Outputs"): an output
never replaces or deletes an input, nor anything fedsyn did not write itself.

* Output **directories** (``run``, ``release``, ``evaluate``):
  :func:`staged_directory`.
* Output **files** (``simulate``, ``preprocess``, ``lists``, ``share``):
  :func:`output_files` -- a file that exists is refused unless ``overwrite``
  is given, and even then only if fedsyn wrote it (it is listed, with its size
  and modification time, in the marker file ``.fedsyn-output.json`` of its
  directory and unchanged since); an input of the command is refused even
  with ``overwrite``. The checks run before any work is done.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "save_npz_atomic",
    "staged_directory",
    "check_output_files",
    "record_output_files",
    "output_files",
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


# ---------------------------------------------------------------------------
# Output directories
# ---------------------------------------------------------------------------

#: Marker file listing what fedsyn wrote into an output directory.
MARKER = ".fedsyn-output.json"


@contextlib.contextmanager
def staged_directory(
    out_dir: str | os.PathLike, *, overwrite: bool = False, protect: Sequence[str | os.PathLike] = ()
) -> Iterator[Path]:
    """Write a whole output directory atomically, never deleting anything fedsyn did not write.

    Yields a fresh staging directory next to ``out_dir``; when the block
    succeeds the staging directory becomes ``out_dir`` (with a marker file
    listing its files), otherwise it is removed and ``out_dir`` is untouched.

    Rules (checked before the block runs, so no work is lost to a refusal):

    * ``out_dir`` may not exist yet, or be empty;
    * if it holds files, ``overwrite`` must be given AND every file in it must
      be one fedsyn wrote there (listed in its marker); anything else is
      refused, naming the file;
    * no path in ``protect`` (the command's inputs) may lie inside ``out_dir``,
      and ``out_dir`` may not be the current directory or contain it.

    Parameters
    ----------
    out_dir : path-like
        The output directory.
    overwrite : bool, default False
        Replace an earlier fedsyn output of the same kind.
    protect : sequence of path-like
        Inputs that must survive.

    Raises
    ------
    ConfigError
        A rule above is broken.
    """
    from .errors import ConfigError

    out = Path(out_dir)
    target = out.resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or cwd.is_relative_to(target):
        raise ConfigError(f"{out_dir}: refusing to write outputs into the current directory or one of its "
                          "parents; give a new or empty directory.")
    for p in protect:
        q = Path(p).resolve()
        if q == target or q.is_relative_to(target):
            raise ConfigError(f"{out_dir}: the output directory holds the input {p}; give another directory "
                              "(fedsyn never deletes or replaces its inputs).")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out_dir}: exists and is not a directory.")
    existing = sorted(q.name for q in out.iterdir()) if out.is_dir() else []
    if existing:
        if not overwrite:
            raise ConfigError(f"{out_dir}: exists and is not empty; pass --overwrite to replace an earlier "
                              "fedsyn output there, or give a new directory.")
        ours = set(_marker_files(out)) | {MARKER}
        foreign = [name for name in existing if name not in ours]
        if foreign:
            raise ConfigError(f"{out_dir}: holds {foreign[0]!r}, which fedsyn did not write there; --overwrite "
                              "replaces only fedsyn's own outputs. Give a new directory.")
        prints = _read_marker(out).get("fingerprints", {})
        changed = [name for name in existing if name in prints and list(prints[name]) != _fingerprint(out / name)]
        if changed:
            raise ConfigError(f"{out_dir}: {changed[0]!r} was changed after fedsyn wrote it; --overwrite "
                              "replaces only fedsyn's own, unchanged outputs. Give a new directory.")
    stage = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    stage.mkdir(parents=True, mode=0o700)
    try:
        yield stage
        files = sorted(q.name for q in stage.iterdir())
        write_json_atomic(stage / MARKER, {"written_by": "fedsyn", "files": files})
        os.chmod(stage, 0o755)
        if out.exists():
            trash = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
            os.replace(out, trash)
            os.replace(stage, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _marker_files(directory: Path) -> list[str]:
    try:
        data = json.loads((directory / MARKER).read_text(encoding="utf-8"))
        return [str(x) for x in data.get("files", [])]
    except (OSError, ValueError, AttributeError):
        return []


# ---------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------


def _fingerprint(path: Path) -> list[int]:
    st = path.lstat()
    return [int(st.st_size), int(st.st_mtime_ns)]


def _read_marker(directory: Path) -> dict:
    try:
        data = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_files(
    paths: Sequence[str | os.PathLike], *, overwrite: bool = False, protect: Sequence[str | os.PathLike] = ()
) -> list[Path]:
    """Refuse output files that would replace an input or a file fedsyn did not write.

    Parameters
    ----------
    paths : sequence of path-like
        The files a command is about to write.
    overwrite : bool, default False
        Replace files that an earlier fedsyn command wrote (and that nobody
        changed since).
    protect : sequence of path-like
        The command's inputs: never replaced, whatever ``overwrite`` says
        (symbolic and hard links to them included).

    Returns
    -------
    list of pathlib.Path
        ``paths`` as paths.

    Raises
    ------
    ConfigError
        Naming the file and what to do instead.
    """
    from .errors import ConfigError, hint

    out = [Path(p) for p in paths]
    for p in out:
        for q in protect:
            if _same_file(p, Path(q)):
                raise ConfigError(f"{p}: is the input {q}; fedsyn never replaces its inputs (not even with "
                                  f"{hint('overwrite=True', '--overwrite')}). Give another output name.")
        if p.is_dir():
            raise ConfigError(f"{p}: is a directory; give a file name.")
        if not (p.exists() or p.is_symlink()):
            continue
        if not overwrite:
            raise ConfigError(f"{p}: exists; pass {hint('overwrite=True', '--overwrite')} to replace an earlier "
                              "fedsyn output, or give a new name.")
        marker = _read_marker(p.parent)
        known = marker.get("fingerprints", {})
        if p.is_symlink() or p.name not in known:
            raise ConfigError(f"{p}: exists and fedsyn did not write it; "
                              f"{hint('overwrite=True', '--overwrite')} replaces only fedsyn's own outputs. "
                              "Give a new name, or move the file away yourself.")
        if list(known[p.name]) != _fingerprint(p):
            raise ConfigError(f"{p}: was changed after fedsyn wrote it; "
                              f"{hint('overwrite=True', '--overwrite')} replaces only fedsyn's own, unchanged "
                              "outputs. Give a new name, or move the file away yourself.")
    return out


def record_output_files(paths: Sequence[str | os.PathLike]) -> None:
    """List freshly written files in their directories' marker (``.fedsyn-output.json``)."""
    by_dir: dict[Path, list[Path]] = {}
    for p in map(Path, paths):
        by_dir.setdefault(p.parent, []).append(p)
    for directory, files in by_dir.items():
        marker = _read_marker(directory)
        names = [str(x) for x in marker.get("files", [])]
        prints = dict(marker.get("fingerprints", {}))
        for p in files:
            if p.name not in names:
                names.append(p.name)
            prints[p.name] = _fingerprint(p)
        marker.update({"written_by": "fedsyn", "files": sorted(names), "fingerprints": prints})
        write_json_atomic(directory / MARKER, marker)


@contextlib.contextmanager
def output_files(
    paths: Sequence[str | os.PathLike], *, overwrite: bool = False, protect: Sequence[str | os.PathLike] = ()
) -> Iterator[list[Path]]:
    """Check output files before the work (:func:`check_output_files`), record them after it.

    Use around a command's whole job so that a refusal costs no computation::

        with output_files([out], overwrite=overwrite, protect=[input_path]):
            data = load_expression(input_path)
            write_expression(process(data), out)

    The block must write every file in ``paths`` (atomically); they are then
    recorded as fedsyn's (:func:`record_output_files`). Nothing is recorded if
    the block fails.
    """
    out = check_output_files(paths, overwrite=overwrite, protect=protect)
    yield out
    record_output_files([p for p in out if p.exists()])
