"""MP-SPDZ Persistence files: secret inputs written by the data holders.

MP-SPDZ programs read secret shares with ``sint.read_from_file(start, n)`` from
``Persistence/Transactions-P<i>.data`` in the party's working directory. A data
holder therefore never becomes a computing party: it writes (or sends) one file
per server, and the server's party binary reads its own file.

File format (MP-SPDZ v0.4.2, ``Processor/Binary_File_IO.hpp`` and
``Tools/Buffer.h``: ``file_signature<T>()`` written by ``octetStream::output``)::

    N (8 bytes, little endian)        length of the signature
    type string                       "replicated Z2^64" (passive) or
                                      "malicious replicated Z2^64" (active)
    64 (4 bytes, little endian)       Z2<64>::specification: the ring bits
    shares                            back to back, no metadata: each share is
                                      two 8-byte little-endian ring elements

so ``N = 20`` (passive) or ``N = 30`` (active). A secret ``x`` is split as
``x = s0 + s1 + s2 mod 2^64`` and party ``i`` stores ``(s_i, s_{(i-1) mod 3})``
-- the convention of :mod:`fedsyn.engines.rep3.sharing`, so the same pairs work
for both engines. Fixed-point values are stored as ``round(x * 2^f)`` in two's
complement; ``f`` is not stored, so writer and program must agree on it.

Matrix layout expected by ``mpc_programs/protocol1.mpc``: one row per sample,
the ``d`` fixed-point values then the ``L`` one-hot label indicators; the rows
of all holders back to back (:func:`holder_rows`). Several holders' files are
concatenated per party under a single header (:func:`append_persistence_shares`).
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from ...errors import BundleError, InputError

Security = Literal["passive", "active"]

RING_BITS = 64
_TYPE_STRINGS = {
    "passive": b"replicated Z2^64",
    "active": b"malicious replicated Z2^64",
}

__all__ = [
    "header",
    "holder_rows",
    "share_matrix",
    "write_persistence_shares",
    "append_persistence_shares",
    "read_persistence_shares",
    "persistence_path",
]


def header(security: Security) -> bytes:
    """The file signature MP-SPDZ's ``check_file_signature`` expects.

    >>> header("passive")[:8]
    b'\\x14\\x00\\x00\\x00\\x00\\x00\\x00\\x00'
    >>> len(header("active"))
    38
    """
    try:
        spec = _TYPE_STRINGS[security] + struct.pack("<I", RING_BITS)
    except KeyError:
        raise InputError(f"Unknown security {security!r}; use 'passive' or 'active'.") from None
    return struct.pack("<Q", len(spec)) + spec


def persistence_path(directory: str | os.PathLike, party: int) -> Path:
    """``<directory>/Transactions-P<party>.data``."""
    return Path(directory) / f"Transactions-P{int(party)}.data"


def holder_rows(values_fp: np.ndarray, labels: np.ndarray, n_labels: int) -> np.ndarray:
    """The secret matrix of one holder in the program's layout.

    Parameters
    ----------
    values_fp : ndarray of int64, shape (n, d)
        Fixed-point values (:func:`fedsyn.fixedpoint.encode`).
    labels : ndarray of int, shape (n,)
        Labels in ``0..n_labels-1``.
    n_labels : int

    Returns
    -------
    ndarray of int64, shape (n, d + n_labels)
        Values, then the one-hot labels, per row.
    """
    from ...reference import label_onehot

    x = np.asarray(values_fp)
    if x.ndim != 2 or x.dtype != np.int64:
        raise InputError("holder_rows needs an (n, d) int64 fixed-point matrix.")
    y = label_onehot(labels, n_labels)
    if y.shape[0] != x.shape[0]:
        raise InputError(f"{x.shape[0]} rows of values but {y.shape[0]} labels.")
    return np.concatenate([x, y], axis=1)


def _random_words(shape) -> np.ndarray:
    count = int(np.prod(shape, dtype=np.int64))
    return np.frombuffer(os.urandom(8 * count), dtype="<u8").astype(np.uint64).reshape(shape)


def share_matrix(
    secret, *, rng: np.random.Generator | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Replicated shares of an integer matrix, one ``(s_i, s_{i-1})`` pair per party.

    Parameters
    ----------
    secret : array_like of int64 or uint64
        Ring elements (negative values in two's complement).
    rng : numpy.random.Generator or None, default None
        ONLY for reproducible tests. By default the random shares come from the
        operating system's CSPRNG (``os.urandom``).

    Returns
    -------
    list of three (ndarray of uint64, ndarray of uint64)
    """
    arr = np.asarray(secret)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"Only integer arrays can be shared, got dtype {arr.dtype}.")
    x = arr.astype(np.int64).view(np.uint64) if arr.dtype != np.uint64 else arr
    if rng is None:
        s1, s2 = _random_words(x.shape), _random_words(x.shape)
    else:
        s1 = rng.integers(0, 2**64, size=x.shape, dtype=np.uint64)
        s2 = rng.integers(0, 2**64, size=x.shape, dtype=np.uint64)
    s0 = x - s1 - s2
    shares = (s0, s1, s2)
    return [(shares[i], shares[(i - 1) % 3]) for i in range(3)]


def _pair_arrays(pair) -> tuple[np.ndarray, np.ndarray]:
    """Accept ``(a, b)`` tuples or objects with ``.a``/``.b`` (rep3 ``AShare``)."""
    if hasattr(pair, "a") and hasattr(pair, "b"):
        a, b = pair.a, pair.b
    else:
        a, b = pair
    a = np.ascontiguousarray(a, dtype=np.uint64).reshape(-1)
    b = np.ascontiguousarray(b, dtype=np.uint64).reshape(-1)
    if a.shape != b.shape:
        raise InputError(f"A share pair has halves of different sizes ({a.size} and {b.size}).")
    return a, b


def _body(pair) -> bytes:
    a, b = _pair_arrays(pair)
    body = np.empty((a.size, 2), dtype="<u8")
    body[:, 0] = a
    body[:, 1] = b
    return body.tobytes()


def _atomic_write(path: Path, chunks: Sequence[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_persistence_shares(
    pairs_by_party: Sequence,
    out_dir: str | os.PathLike,
    *,
    security: Security = "passive",
    parties: Sequence[int] | None = None,
) -> list[Path]:
    """Write each party's pairs as ``Transactions-P<i>.data`` in ``out_dir``.

    Parameters
    ----------
    pairs_by_party : sequence of pairs
        ``pairs_by_party[i]`` is party ``i``'s ``(s_i, s_{i-1})`` (two uint64
        arrays of the same size, flattened in C order) or an object with ``.a``
        and ``.b`` (:class:`fedsyn.engines.rep3.sharing.AShare`). Several holders'
        matrices may be given as a list of pairs per party; they are written
        back to back (rows of holder 0 first).
    out_dir : path
        Directory to write into (a party's ``Persistence`` directory).
    security : {"passive", "active"}, default "passive"
        Selects the header of the party binary that will read the file.
    parties : sequence of int or None, default None
        Party indices of ``pairs_by_party`` (default ``0, 1, 2``); a holder that
        writes only one server's file passes e.g. ``[1]`` and one pair.

    Returns
    -------
    list of Path
        The files written (atomically).
    """
    parties = list(range(len(pairs_by_party))) if parties is None else list(parties)
    if len(parties) != len(pairs_by_party):
        raise InputError("parties and pairs_by_party differ in length.")
    head = header(security)
    written = []
    for party, pairs in zip(parties, pairs_by_party):
        if not 0 <= party < 3:
            raise InputError(f"Party index must be 0, 1 or 2, got {party}.")
        blocks = pairs if isinstance(pairs, list) else [pairs]
        path = persistence_path(out_dir, party)
        _atomic_write(path, [head] + [_body(p) for p in blocks])
        written.append(path)
    return written


def append_persistence_shares(
    files: Sequence[str | os.PathLike], target: str | os.PathLike, *, security: Security = "passive"
) -> Path:
    """Concatenate several holders' files of ONE party under a single header.

    Passive and active files hold the same ``(s_i, s_{i-1})`` pairs and differ
    only in the header, so files of either kind are accepted and the result
    carries the header of ``security`` (holders need not know which binary the
    servers will run).

    Parameters
    ----------
    files : sequence of path
        One party's files, in holder order.
    target : path
        File to write (atomically).
    security : {"passive", "active"}, default "passive"
        Header of the written file.

    Raises
    ------
    BundleError
        If a file has neither header or a torn body.
    """
    head = header(security)
    chunks = [head]
    heads = [header("passive"), header("active")]
    for file in files:
        data = Path(file).read_bytes()
        found = next((h for h in heads if data.startswith(h)), None)
        if found is None:
            raise BundleError(f"{file}: not an MP-SPDZ Persistence file of fedsyn (header mismatch).")
        body = data[len(found):]
        if len(body) % 16:
            raise BundleError(f"{file}: body is not a whole number of 16-byte shares.")
        chunks.append(body)
    target = Path(target)
    _atomic_write(target, chunks)
    return target


def read_persistence_shares(
    path: str | os.PathLike, *, security: Security = "passive"
) -> tuple[np.ndarray, np.ndarray]:
    """Read one party's file back as its ``(s_i, s_{i-1})`` arrays (for tests and checks)."""
    data = Path(path).read_bytes()
    head = header(security)
    if not data.startswith(head):
        raise BundleError(f"{path}: not an MP-SPDZ {security} Persistence file (header mismatch).")
    body = data[len(head):]
    if len(body) % 16:
        raise BundleError(f"{path}: body of {len(body)} bytes is not a whole number of 16-byte shares.")
    arr = np.frombuffer(body, dtype="<u8").reshape(-1, 2).astype(np.uint64)
    return arr[:, 0].copy(), arr[:, 1].copy()
