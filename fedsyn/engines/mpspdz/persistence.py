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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

from ...errors import BundleError, InputError

if TYPE_CHECKING:
    from ...bundle import BundleManifest

Security = Literal["passive", "active"]

RING_BITS = 64
#: The holder's manifest beside its three Persistence files.
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "fedsyn-mp-spdz-persistence"
MANIFEST_VERSION = 1
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
    "read_output_shares",
    "PersistenceInput",
    "find_persistence_inputs",
    "load_persistence_input",
    "load_server_inputs",
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
    run_id: str | None = None,
) -> list[Path]:
    """Serialize one holder's sharing as the three servers' Persistence files.

    Writes ``<out_dir>/<holder_id>/Transactions-P<i>.data`` (send file ``i`` to
    server ``i`` only) and a ``manifest.json`` with the public facts the files
    cannot carry (:data:`MANIFEST_FORMAT`: shape, genes, label domain,
    fractional bits, run id, sharing id and the SHA-256 of each file's share
    body, so that a server detects a corrupted or swapped file before it
    computes). Send server ``i`` the manifest with file ``i``.

    Parameters
    ----------
    shared : fedsyn.holder.SharedHolder
    holder_id : str
    out_dir : path-like
    security : {"passive", "active"}, default "passive"
        Header for ``replicated-ring-party.x`` or ``malicious-rep-ring-party.x``
        (servers convert when they concatenate the holders' files, so either works).
    run_id : str or None, default None
        Session tag of the run; servers of a deployment with a ``session``
        refuse files of another run.

    Returns
    -------
    list of Path
        The three share files, then the manifest.
    """
    import hashlib

    from ...atomic import write_json_atomic
    from ...bundle import check_holder_id, gene_digest

    check_holder_id(holder_id)
    target = Path(out_dir) / holder_id
    pairs = [shared.rows_pair(i) for i in range(3)]
    paths = write_persistence_shares(pairs, target, security=security)
    genes = shared.gene_names
    info = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
        "holder_id": holder_id, "shape": [shared.n_samples, len(genes)], "n_labels": len(shared.label_names),
        "ring_bits": RING_BITS, "frac_bits": shared.frac_bits, "label_names": list(shared.label_names),
        "gene_names": list(genes), "gene_digest": gene_digest(genes), "row_layout": "d values then L one-hot labels",
        "security": security, "clip": None if shared.clip is None else list(shared.clip),
        "run_id": run_id, "sharing_id": shared.sharing_id,
        "payload_sha256": {str(i): hashlib.sha256(_body(pairs[i])).hexdigest() for i in range(3)},
    }
    paths.append(write_json_atomic(target / MANIFEST_NAME, info))
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


# ---------------------------------------------------------------------------
# A computing server's inputs: every holder's file for this server
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PersistenceInput:
    """One holder's Persistence file for one server, checked against its manifest.

    Quacks like :class:`fedsyn.bundle.Bundle` where servers need it
    (:mod:`fedsyn.serving`): ``manifest`` is a
    :class:`fedsyn.bundle.BundleManifest` for this server.

    Attributes
    ----------
    path : pathlib.Path
        ``Transactions-P<i>.data`` of this holder.
    manifest : fedsyn.bundle.BundleManifest
    header_bytes : int
        Length of the file's header (passive and active headers differ).
    """

    path: Path
    manifest: "BundleManifest"
    header_bytes: int

    @property
    def n_samples(self) -> int:
        return self.manifest.n_samples

    @property
    def party(self) -> int:
        return self.manifest.party


def find_persistence_inputs(sources: Sequence[str | os.PathLike], *, party: int) -> list[Path]:
    """Holder directories (each with ``manifest.json``) among ``sources``.

    A source is a holder's directory (``<holder_id>/`` as ``fedsyn share
    --format mp-spdz`` writes it, holding ``manifest.json`` and at least
    ``Transactions-P<party>.data``), a directory of such directories, or a
    ``manifest.json`` file.

    Raises
    ------
    BundleError
        A source holds no holder directory.
    """
    out: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_file() and p.name == MANIFEST_NAME:
            out.append(p.parent)
        elif p.is_dir() and (p / MANIFEST_NAME).is_file():
            out.append(p)
        elif p.is_dir():
            found = sorted(q.parent for q in p.glob(f"*/{MANIFEST_NAME}"))
            if not found:
                raise BundleError(f"{p}: no MP-SPDZ holder directories (<holder>/{MANIFEST_NAME} with "
                                  f"Transactions-P{party}.data) for server {party}.")
            out.extend(found)
        elif p.exists():
            raise BundleError(f"{p}: not a holder's {MANIFEST_NAME} or directory.")
        else:
            raise BundleError(f"{p}: no such file or directory.")
    if not out:
        raise BundleError(f"No MP-SPDZ inputs given for server {party}.")
    return out


def load_persistence_input(
    holder_dir: str | os.PathLike,
    *,
    party: int,
    expected_gene_digest: str | None = None,
    expected_labels: Sequence[str] | None = None,
    expected_frac_bits: int | None = None,
    expected_run_id: str | None = None,
) -> PersistenceInput:
    """Check one holder's manifest and its file for server ``party`` (nothing is loaded into memory).

    Raises
    ------
    BundleError
        Naming the file: unreadable or malformed manifest, missing file, a
        header of neither protocol, a body whose size does not match the
        manifest's shape or whose SHA-256 differs from the manifest's, or a
        gene list, label domain, fractional bits or run id other than expected.
    """
    import hashlib
    import json

    from ...bundle import BundleManifest, check_manifest

    d = Path(holder_dir)
    mpath = d / MANIFEST_NAME
    try:
        meta = json.loads(mpath.read_text(encoding="utf-8"))
        if meta.get("format", MANIFEST_FORMAT) != MANIFEST_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}")
        if int(meta.get("version", MANIFEST_VERSION)) != MANIFEST_VERSION:
            raise ValueError(f"unknown version {meta.get('version')!r}")
        n, g = (int(x) for x in meta["shape"])
        clip = meta.get("clip")
        digests = meta.get("payload_sha256") or {}
        m = BundleManifest(
            party=int(party), holder_id=str(meta["holder_id"]), n_samples=n, n_genes=g,
            n_labels=int(meta["n_labels"]), frac_bits=int(meta["frac_bits"]),
            ring_bits=int(meta.get("ring_bits", RING_BITS)),
            gene_names=tuple(str(x) for x in meta["gene_names"]), gene_digest=str(meta["gene_digest"]),
            label_names=tuple(str(x) for x in meta["label_names"]),
            run_id=None if meta.get("run_id") is None else str(meta["run_id"]),
            clip=None if clip is None else (float(clip[0]), float(clip[1])),
            payload_sha256=str(digests.get(str(party), "")),
            sharing_id=None if meta.get("sharing_id") is None else str(meta["sharing_id"]),
        )
        if n < 1 or g < 1 or m.n_labels < 2 or len(m.gene_names) != g or len(m.label_names) != m.n_labels:
            raise ValueError("impossible shape, or gene or label names that do not match it")
    except OSError as exc:
        raise BundleError(f"{mpath}: cannot read the holder's manifest ({exc.strerror or exc}).") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{mpath}: malformed MP-SPDZ input manifest ({exc}).") from exc
    from ...bundle import check_holder_id

    try:
        check_holder_id(m.holder_id)
    except Exception as exc:  # noqa: BLE001 - InputError: name the file
        raise BundleError(f"{mpath}: {exc}") from exc
    path = persistence_path(d, party)
    fail = lambda what: BundleError(f"{path}: {what}")  # noqa: E731
    check_manifest(m, path, what="input", manifest_path=mpath, expected_gene_digest=expected_gene_digest,
                   expected_labels=expected_labels, expected_frac_bits=expected_frac_bits,
                   expected_run_id=expected_run_id)
    heads = [header("passive"), header("active")]
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            start = fh.read(max(map(len, heads)))
            found = next((h for h in heads if start.startswith(h)), None)
            if found is None:
                raise fail("not an MP-SPDZ Persistence file of fedsyn (header mismatch).")
            want = 16 * n * (g + m.n_labels)
            if size - len(found) != want:
                raise fail(f"holds {size - len(found)} bytes of shares, the manifest's shape {n} x ({g} + "
                           f"{m.n_labels}) needs {want}: truncated, or another holder's file.")
            if m.payload_sha256:
                fh.seek(len(found))
                h = hashlib.sha256()
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
                if h.hexdigest() != m.payload_sha256:
                    raise fail("checksum mismatch: the shares are corrupted or not this holder's "
                               "(re-copy them from the holder).")
    except FileNotFoundError:
        raise fail(f"missing: server {party} needs Transactions-P{party}.data beside {MANIFEST_NAME}.") from None
    except OSError as exc:
        raise fail(f"cannot read ({exc.strerror or exc}).") from exc
    return PersistenceInput(path=path, manifest=m, header_bytes=len(found))


def load_server_inputs(
    sources: Sequence[str | os.PathLike],
    *,
    party: int,
    frac_bits: int | None = None,
    label_names: Sequence[str] | None = None,
    run_id: str | None = None,
    clip: tuple[float, float] | None = None,
    check_clip: bool = False,
) -> list[PersistenceInput]:
    """Every holder's checked input for server ``party``, sorted by holder id (the canonical order).

    As :func:`fedsyn.bundle.load_server_bundles` for bundles: the holders must
    agree on genes, labels, fractional bits and run, and have distinct ids.

    Raises
    ------
    BundleError
        Naming the first file that disagrees.
    """
    inputs: list[PersistenceInput] = []
    first: PersistenceInput | None = None
    seen: dict[str, Path] = {}
    for d in find_persistence_inputs(sources, party=party):
        b = load_persistence_input(
            d, party=party,
            expected_gene_digest=None if first is None else first.manifest.gene_digest,
            expected_labels=label_names if first is None else first.manifest.label_names,
            expected_frac_bits=frac_bits if first is None else first.manifest.frac_bits,
            expected_run_id=run_id if first is None else first.manifest.run_id,
        )
        if check_clip and b.manifest.clip != (None if clip is None else tuple(map(float, clip))):
            raise BundleError(f"{b.path}: values clipped to {b.manifest.clip}, the run needs {clip}.")
        if b.manifest.holder_id in seen:
            raise BundleError(f"{b.path}: holder {b.manifest.holder_id!r} already given in {seen[b.manifest.holder_id]}.")
        seen[b.manifest.holder_id] = b.path
        first = first or b
        inputs.append(b)
    return sorted(inputs, key=lambda b: b.manifest.holder_id)
