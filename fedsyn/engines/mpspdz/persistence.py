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
the ``d`` fixed-point values then the ``L`` one-hot label indicators
(:meth:`fedsyn.holder.SharedHolder.rows_pair`); the rows of all holders back to
back. Several holders' files are concatenated per party under a single header
(:func:`append_persistence_shares`).

This module only serializes: the shares come from the holder role
(:func:`fedsyn.holder.share_holder`), the same pairs the rep3 engine's bundles
carry.
"""

from __future__ import annotations

import os
import struct
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
    "write_holder_persistence",
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
    from ...atomic import atomic_path

    with atomic_path(path, mode=0o600) as tmp:
        with open(tmp, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)


def write_holder_persistence(
    shared,
    *,
    holder_id: str,
    out_dir: str | os.PathLike,
    security: Security = "passive",
) -> list[Path]:
    """Serialize one holder's sharing as the three servers' Persistence files.

    Writes ``<out_dir>/<holder_id>/Transactions-P<i>.data`` (send file ``i`` to
    server ``i`` only) and a ``manifest.json`` with the public facts the files
    cannot carry (shape, genes, label domain, fractional bits, sharing id).

    Parameters
    ----------
    shared : fedsyn.holder.SharedHolder
    holder_id : str
    out_dir : path-like
    security : {"passive", "active"}, default "passive"
        Header for ``replicated-ring-party.x`` or ``malicious-rep-ring-party.x``.

    Returns
    -------
    list of Path
        The three share files, then the manifest.
    """
    from ...atomic import write_json_atomic
    from ...bundle import check_holder_id, gene_digest

    check_holder_id(holder_id)
    target = Path(out_dir) / holder_id
    paths = write_persistence_shares([shared.rows_pair(i) for i in range(3)], target, security=security)
    genes = shared.gene_names
    info = {
        "holder_id": holder_id, "shape": [shared.n_samples, len(genes)], "n_labels": len(shared.label_names),
        "frac_bits": shared.frac_bits, "label_names": list(shared.label_names), "gene_names": list(genes),
        "gene_digest": gene_digest(genes), "row_layout": "d values then L one-hot labels",
        "security": security, "clip": None if shared.clip is None else list(shared.clip),
        "sharing_id": shared.sharing_id,
    }
    paths.append(write_json_atomic(target / "manifest.json", info))
    return paths


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


def read_output_shares(
    path: str | os.PathLike, *, start: int, count: int, security: Security = "passive"
) -> tuple[np.ndarray, np.ndarray]:
    """Read the ``count`` output pairs ``protocol1.mpc`` wrote at share position ``start``.

    The program writes this party's ``(s_i, s_{i-1})`` of every output after the
    ``start = N * (D + L)`` input shares of the same file
    (``sint.write_to_file(..., position=start)``).

    Raises
    ------
    ProtocolError
        The file does not hold ``start + count`` shares (the program did not
        finish writing, or another program wrote the file).
    """
    from ...errors import ProtocolError

    head = header(security)
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            if fh.read(len(head)) != head:
                raise ProtocolError(f"{path}: not an MP-SPDZ {security} Persistence file (header mismatch).")
            fh.seek(len(head) + 16 * start)
            body = fh.read(16 * count)
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot read the output shares ({exc.strerror or exc}).") from exc
    if len(body) != 16 * count:
        raise ProtocolError(
            f"{path}: holds {len(body) // 16} of the {count} output shares expected after {start} input shares."
        )
    arr = np.frombuffer(body, dtype="<u8").reshape(-1, 2).astype(np.uint64)
    return arr[:, 0].copy(), arr[:, 1].copy()
