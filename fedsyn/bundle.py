"""Engine-neutral share bundles: what a data holder sends to each computing server.

This module only serializes: the holder role (:mod:`fedsyn.holder`) aligns,
encodes and splits a holder's matrix into the three servers' replicated pairs
``(s_i, s_{(i-1) mod 3})``; :func:`write_holder_bundles` writes server ``i``'s
pair of the values and of the one-hot labels as one *bundle*. The MP-SPDZ
engine's Persistence files (:mod:`fedsyn.engines.mpspdz.persistence`) are the
other serializer of the same pairs.

Security: one bundle is two of the three additive shares, jointly uniform
whatever the data; no single server learns anything about the values from its
bundle. Two colluding servers learn everything (honest majority).

The byte-level format is specified in ``docs/bundle-format.md``: a magic string,
a version, a JSON manifest, the four share arrays as little-endian ``uint64``
and a trailing SHA-256 over everything before it. :func:`load_bundle` checks
every field against what the server expects and refuses a bundle with
:class:`fedsyn.errors.BundleError` naming the file before any computation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import BundleError, InputError
from .fixedpoint import RING_BITS
from .holder import N_SERVERS as N_PARTIES
from .holder import SharedHolder

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Bundle",
    "BundleManifest",
    "gene_digest",
    "check_holder_id",
    "write_holder_bundles",
    "write_bundle",
    "load_bundle",
    "find_bundles",
    "load_server_bundles",
]

#: First 8 bytes of every bundle file.
MAGIC = b"FSYNBNDL"
#: Version of the byte layout; readers refuse any other.
FORMAT_VERSION = 1
BUNDLE_SUFFIX = ".fsb"
_PREAMBLE = struct.Struct("<8sII")  # magic, version, manifest length
_DIGEST_BYTES = 32
_ARRAYS = ("values_a", "values_b", "labels_a", "labels_b")
_HOLDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def gene_digest(gene_names: Sequence[str]) -> str:
    """SHA-256 (hex) of the ordered gene list, one UTF-8 name per line.

    Parameters
    ----------
    gene_names : sequence of str
        The genes in column order.

    Returns
    -------
    str
        64 hex digits; equal digests mean the same genes in the same order.
    """
    return hashlib.sha256("".join(f"{g}\n" for g in gene_names).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class BundleManifest:
    """Public metadata of one bundle (the JSON manifest of the file).

    Attributes
    ----------
    party : int
        Index ``i`` of the server the bundle is for.
    holder_id : str
        Identifier of the data holder.
    n_samples, n_genes, n_labels : int
        ``n_k``, ``d`` and ``L``.
    frac_bits : int
        Fixed-point fractional bits of the values.
    ring_bits : int
        Always 64.
    gene_names : tuple of str
        The ``d`` genes in column order (public: agreed by all holders).
    gene_digest : str
        :func:`gene_digest` of ``gene_names``.
    label_names : tuple of str
        The public label domain.
    run_id : str or None
        Session tag binding the bundle to one run, if the holder gave one.
    clip : tuple of float or None
        Public value range the holder clipped to before encoding, if any.
    payload_sha256 : str
        SHA-256 (hex) of the four share arrays' bytes, in file order.
    sharing_id : str or None
        Random tag common to the three bundles of one sharing (one
        :func:`share_holder` call), so that servers can check before computing
        that their bundles come from the same sharing; ``None`` in bundles
        written without one.
    """

    party: int
    holder_id: str
    n_samples: int
    n_genes: int
    n_labels: int
    frac_bits: int
    ring_bits: int
    gene_names: tuple[str, ...]
    gene_digest: str
    label_names: tuple[str, ...]
    run_id: str | None
    clip: tuple[float, float] | None
    payload_sha256: str
    sharing_id: str | None = None

    def to_json(self) -> dict:
        return {
            "format": "fedsyn-share-bundle",
            "version": FORMAT_VERSION,
            "party": self.party,
            "holder_id": self.holder_id,
            "ring_bits": self.ring_bits,
            "frac_bits": self.frac_bits,
            "shape": [self.n_samples, self.n_genes],
            "n_labels": self.n_labels,
            "label_names": list(self.label_names),
            "gene_digest": self.gene_digest,
            "gene_names": list(self.gene_names),
            "run_id": self.run_id,
            "clip": list(self.clip) if self.clip is not None else None,
            "arrays": [
                {"name": "values_a", "share": f"s_{self.party}", "dtype": "<u8", "shape": [self.n_samples, self.n_genes]},
                {"name": "values_b", "share": f"s_{(self.party - 1) % 3}", "dtype": "<u8", "shape": [self.n_samples, self.n_genes]},
                {"name": "labels_a", "share": f"s_{self.party}", "dtype": "<u8", "shape": [self.n_samples, self.n_labels]},
                {"name": "labels_b", "share": f"s_{(self.party - 1) % 3}", "dtype": "<u8", "shape": [self.n_samples, self.n_labels]},
            ],
            "payload_sha256": self.payload_sha256,
            "sharing_id": self.sharing_id,
        }


@dataclass(frozen=True)
class Bundle:
    """One server's replicated shares of one holder's data.

    Attributes
    ----------
    path : pathlib.Path or None
        File the bundle was read from.
    manifest : BundleManifest
    values : tuple of ndarray
        ``(s_i, s_{i-1})`` of the fixed-point values, uint64, shape ``(n_k, d)``.
    labels : tuple of ndarray
        ``(s_i, s_{i-1})`` of the one-hot labels, uint64, shape ``(n_k, L)``.
    """

    path: Path | None
    manifest: BundleManifest
    values: tuple[np.ndarray, np.ndarray]
    labels: tuple[np.ndarray, np.ndarray]

    @property
    def party(self) -> int:
        return self.manifest.party

    @property
    def n_samples(self) -> int:
        return self.manifest.n_samples


# ---------------------------------------------------------------------------
# One holder's three bundles
# ---------------------------------------------------------------------------


def write_holder_bundles(
    shared: SharedHolder,
    *,
    holder_id: str,
    out_dir: str | os.PathLike,
    run_id: str | None = None,
) -> list[Path]:
    """Serialize one holder's sharing (:func:`fedsyn.holder.share_holder`) as three bundles.

    Parameters
    ----------
    shared : SharedHolder
        The replicated pairs of the three servers.
    holder_id : str
        Identifier of the holder (letters, digits, ``_.-``; at most 64).
    out_dir : path-like
        Directory for ``<holder_id>.server<i>.fsb`` (created if missing).
    run_id : str or None, default None
        Optional session tag; servers refuse bundles of another run.

    Returns
    -------
    list of pathlib.Path
        The three bundle files, server 0 to 2, each written atomically with mode
        0600 and carrying the sharing's ``sharing_id``.
    """
    check_holder_id(holder_id)
    out = Path(out_dir)
    paths = []
    for i in range(N_PARTIES):
        path = out / f"{holder_id}.server{i}{BUNDLE_SUFFIX}"
        write_bundle(
            path,
            party=i,
            holder_id=holder_id,
            values=shared.values[i],
            labels=shared.labels[i],
            frac_bits=shared.frac_bits,
            gene_names=shared.gene_names,
            label_names=shared.label_names,
            run_id=run_id,
            clip=shared.clip,
            sharing_id=shared.sharing_id,
        )
        paths.append(path)
    logger.info(
        "Shared holder %s: %d samples x %d genes, %d labels -> %s",
        holder_id, shared.n_samples, len(shared.gene_names), len(shared.label_names), out,
    )
    return paths


def check_holder_id(holder_id: str) -> str:
    """Refuse holder ids that are unsafe in file names."""
    if not _HOLDER_ID.match(holder_id):
        raise InputError(
            f"holder id {holder_id!r} must be 1-64 letters, digits, '_', '.' or '-' "
            "(it becomes part of file names)."
        )
    return holder_id


# ---------------------------------------------------------------------------
# Writing and reading
# ---------------------------------------------------------------------------


def write_bundle(
    path: str | os.PathLike,
    *,
    party: int,
    holder_id: str,
    values: tuple[np.ndarray, np.ndarray],
    labels: tuple[np.ndarray, np.ndarray],
    frac_bits: int,
    gene_names: Sequence[str],
    label_names: Sequence[str],
    run_id: str | None = None,
    clip: tuple[float, float] | None = None,
    sharing_id: str | None = None,
) -> Path:
    """Write one server's bundle atomically (mode 0600). See ``docs/bundle-format.md``.

    ``sharing_id`` (default None) should be one random tag for the three
    bundles of a sharing (:func:`share_holder` draws one).
    """
    from .atomic import atomic_path

    arrays = [np.ascontiguousarray(a, dtype="<u8") for a in (*values, *labels)]
    n, d = arrays[0].shape
    n_labels = arrays[2].shape[1]
    if arrays[1].shape != (n, d) or arrays[3].shape != (n, n_labels) or arrays[2].shape[0] != n:
        raise InputError("Share arrays of a bundle have inconsistent shapes.")
    if len(gene_names) != d or len(label_names) != n_labels:
        raise InputError("Gene or label names do not match the share arrays.")
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).data.cast("B"))
    manifest = BundleManifest(
        party=int(party),
        holder_id=holder_id,
        n_samples=int(n),
        n_genes=int(d),
        n_labels=int(n_labels),
        frac_bits=int(frac_bits),
        ring_bits=RING_BITS,
        gene_names=tuple(gene_names),
        gene_digest=gene_digest(gene_names),
        label_names=tuple(label_names),
        run_id=run_id,
        clip=(float(clip[0]), float(clip[1])) if clip is not None else None,
        payload_sha256=h.hexdigest(),
        sharing_id=sharing_id,
    )
    mbytes = json.dumps(manifest.to_json(), separators=(",", ":")).encode("utf-8")
    file_hash = hashlib.sha256()
    path = Path(path)
    with atomic_path(path, mode=0o600) as tmp:
        with open(tmp, "wb") as fh:
            pre = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(mbytes))
            chunks: list[bytes | memoryview] = [pre, mbytes, *(np.ascontiguousarray(a).data.cast("B") for a in arrays)]
            for chunk in chunks:
                fh.write(chunk)
                file_hash.update(chunk)
            fh.write(file_hash.digest())
    return path


def _fail(path: Path, what: str) -> BundleError:
    return BundleError(f"{path}: {what}")


def check_manifest(
    m: "BundleManifest",
    path: Path,
    *,
    what: str,
    manifest_path: Path | None = None,
    expected_gene_digest: str | None = None,
    expected_labels: Sequence[str] | None = None,
    expected_frac_bits: int | None = None,
    expected_run_id: str | None = None,
) -> None:
    """The checks of a holder's input that do not depend on its format (rep3 bundle or MP-SPDZ input).

    Ring, gene list against its digest, and the run's expectations: gene
    list, label domain, fractional bits, run id. ``what`` names the input in
    the message ("bundle", "input"); ``manifest_path`` is the file that holds
    the gene list when it is not ``path``.

    Raises
    ------
    BundleError
        Naming ``path`` (or ``manifest_path``) and what differs.
    """
    if m.ring_bits != RING_BITS:
        raise _fail(path, f"ring of {m.ring_bits} bits; fedsyn computes in Z_2^{RING_BITS}.")
    if gene_digest(m.gene_names) != m.gene_digest:
        raise _fail(manifest_path or path, "gene list does not match its digest in the manifest.")
    if expected_gene_digest is not None and m.gene_digest != expected_gene_digest:
        raise _fail(
            path,
            f"different gene list (digest {m.gene_digest[:12]}..., expected "
            f"{expected_gene_digest[:12]}...): holders must share the same genes in the same order.",
        )
    if expected_labels is not None and tuple(expected_labels) != m.label_names:
        raise _fail(
            path,
            f"different label domain ({', '.join(m.label_names)}; expected "
            f"{', '.join(expected_labels)}).",
        )
    if expected_frac_bits is not None and m.frac_bits != expected_frac_bits:
        raise _fail(
            path, f"values have {m.frac_bits} fractional bits, the run uses {expected_frac_bits}."
        )
    if expected_run_id is not None and m.run_id != expected_run_id:
        raise _fail(path, f"{what} belongs to run {m.run_id!r}, not {expected_run_id!r} (fedsyn share --run-id).")


def load_bundle(
    path: str | os.PathLike,
    *,
    expected_party: int,
    expected_gene_digest: str | None = None,
    expected_labels: Sequence[str] | None = None,
    expected_frac_bits: int | None = None,
    expected_run_id: str | None = None,
) -> Bundle:
    """Read and validate one bundle; refuse anything a server must not compute on.

    Parameters
    ----------
    path : path-like
        The bundle file.
    expected_party : int
        Index of the server reading it.
    expected_gene_digest : str or None, default None
        :func:`gene_digest` of the run's gene list; ``None`` skips the check.
    expected_labels : sequence of str or None, default None
        The run's label domain; ``None`` skips the check.
    expected_frac_bits : int or None, default None
        The run's fractional bits; ``None`` skips the check.
    expected_run_id : str or None, default None
        The run's session tag; ``None`` skips the check.

    Returns
    -------
    Bundle

    Raises
    ------
    BundleError
        Naming the file: unreadable, truncated, corrupted (checksum), unknown
        format version, meant for another server, or a gene list, label domain,
        fractional bits or run id other than expected.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _fail(path, f"cannot read share bundle ({exc.strerror or exc}).") from exc
    if len(raw) < _PREAMBLE.size + _DIGEST_BYTES:
        raise _fail(path, f"truncated share bundle ({len(raw)} bytes).")
    magic, version, mlen = _PREAMBLE.unpack_from(raw, 0)
    if magic != MAGIC:
        raise _fail(path, "not a fedsyn share bundle (bad magic bytes).")
    if version != FORMAT_VERSION:
        raise _fail(
            path, f"unknown bundle format version {version}; this fedsyn reads version {FORMAT_VERSION}."
        )
    body_end = len(raw) - _DIGEST_BYTES
    if _PREAMBLE.size + mlen > body_end:
        raise _fail(path, "truncated share bundle (manifest cut off).")
    try:
        meta = json.loads(raw[_PREAMBLE.size : _PREAMBLE.size + mlen].decode("utf-8"))
        manifest = _parse_manifest(meta)
    except (ValueError, KeyError, TypeError) as exc:
        raise _fail(path, f"malformed bundle manifest ({exc}).") from exc
    m = manifest
    sizes = [m.n_samples * m.n_genes] * 2 + [m.n_samples * m.n_labels] * 2
    payload_start = _PREAMBLE.size + mlen
    expected_len = payload_start + 8 * sum(sizes) + _DIGEST_BYTES
    if len(raw) < expected_len:
        raise _fail(path, f"truncated share bundle ({len(raw)} of {expected_len} bytes).")
    if len(raw) > expected_len:
        raise _fail(path, f"share bundle has {len(raw) - expected_len} trailing bytes.")
    view = memoryview(raw)
    if hashlib.sha256(view[:body_end]).digest() != bytes(view[body_end:]):
        raise _fail(path, "checksum mismatch: the bundle is corrupted (re-copy it from the holder).")
    if hashlib.sha256(view[payload_start:body_end]).hexdigest() != m.payload_sha256:
        raise _fail(path, "checksum mismatch of the share arrays: the bundle is corrupted.")
    if m.party != expected_party:
        raise _fail(path, f"bundle is for server {m.party}, but this is server {expected_party}.")
    check_manifest(m, path, what="bundle", expected_gene_digest=expected_gene_digest,
                   expected_labels=expected_labels, expected_frac_bits=expected_frac_bits,
                   expected_run_id=expected_run_id)
    arrays = []
    off = payload_start
    shapes = [(m.n_samples, m.n_genes)] * 2 + [(m.n_samples, m.n_labels)] * 2
    for size, shape in zip(sizes, shapes):
        a = np.frombuffer(raw, dtype="<u8", count=size, offset=off).astype(np.uint64).reshape(shape)
        arrays.append(a)
        off += 8 * size
    return Bundle(path=path, manifest=m, values=(arrays[0], arrays[1]), labels=(arrays[2], arrays[3]))


def _parse_manifest(meta: dict) -> BundleManifest:
    if meta.get("format") != "fedsyn-share-bundle":
        raise ValueError("not a fedsyn-share-bundle manifest")
    n, d = (int(x) for x in meta["shape"])
    clip = meta.get("clip")
    m = BundleManifest(
        party=int(meta["party"]),
        holder_id=str(meta["holder_id"]),
        n_samples=n,
        n_genes=d,
        n_labels=int(meta["n_labels"]),
        frac_bits=int(meta["frac_bits"]),
        ring_bits=int(meta["ring_bits"]),
        gene_names=tuple(str(g) for g in meta["gene_names"]),
        gene_digest=str(meta["gene_digest"]),
        label_names=tuple(str(x) for x in meta["label_names"]),
        run_id=None if meta.get("run_id") is None else str(meta["run_id"]),
        clip=None if clip is None else (float(clip[0]), float(clip[1])),
        payload_sha256=str(meta["payload_sha256"]),
        sharing_id=None if meta.get("sharing_id") is None else str(meta["sharing_id"]),
    )
    if n < 0 or d < 1 or m.n_labels < 2 or m.party not in range(N_PARTIES):
        raise ValueError("impossible shape, label count or party index")
    if len(m.gene_names) != d or len(m.label_names) != m.n_labels:
        raise ValueError("gene or label names do not match the shape")
    return m


def find_bundles(sources: Sequence[str | os.PathLike], *, party: int) -> list[Path]:
    """Expand files and directories into the bundle files for server ``party``.

    A directory contributes its ``*.server<party>.fsb`` files (sorted); a file
    is taken as given (its manifest is checked by :func:`load_bundle`).
    """
    out: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            found = sorted(p.glob(f"*server{party}{BUNDLE_SUFFIX}"))
            if not found:
                raise BundleError(f"{p}: no bundles for server {party} (*.server{party}{BUNDLE_SUFFIX}).")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise BundleError(f"{p}: no such bundle file or directory.")
    if not out:
        raise BundleError(f"No share bundles given for server {party}.")
    return out


def load_server_bundles(
    paths: Sequence[str | os.PathLike],
    *,
    party: int,
    frac_bits: int | None = None,
    label_names: Sequence[str] | None = None,
    run_id: str | None = None,
    clip: tuple[float, float] | None = None,
    check_clip: bool = False,
) -> list[Bundle]:
    """Load every holder's bundle for server ``party`` and check they agree.

    All bundles must carry the same gene list, label domain, fractional bits
    and run id (and ``frac_bits``/``label_names``/``run_id`` if given) and
    distinct holder ids. With ``check_clip``, each must have been clipped to
    exactly ``clip``. A bundle that differs from the others is named with the
    holder and what differs (the first gene, label, value): the one that
    differs from the majority, or both when two bundles disagree.

    Returns
    -------
    list of Bundle
        Sorted by holder id: the canonical holder order, so that the three
        servers pool the holders' rows identically whatever order their files
        were given in.

    Raises
    ------
    BundleError
        Naming the file and holder that differs, and how.
    """
    from .metadata import describe_genes, describe_labels, odd_ones

    bundles: list[Bundle] = []
    seen: dict[str, Path] = {}
    for p in paths:
        b = load_bundle(p, expected_party=party, expected_labels=label_names, expected_frac_bits=frac_bits,
                        expected_run_id=run_id)
        if check_clip and b.manifest.clip != (None if clip is None else tuple(map(float, clip))):
            raise _fail(Path(p), f"holder {b.manifest.holder_id!r}: values clipped to {b.manifest.clip}, the run "
                                 f"needs {clip}.")
        if b.manifest.holder_id in seen:
            raise _fail(Path(p), f"holder {b.manifest.holder_id!r} already given in {seen[b.manifest.holder_id]}.")
        seen[b.manifest.holder_id] = Path(p)
        bundles.append(b)
    if not bundles:
        raise BundleError(f"No share bundles given for server {party}.")
    checks = (
        ("gene list", lambda m: m.gene_names, lambda a, b: f"its gene list {describe_genes(a.gene_names, b.gene_names)}"),
        ("label domain", lambda m: m.label_names,
         lambda a, b: f"its label domain {describe_labels(a.label_names, b.label_names)}"),
        ("fractional bits", lambda m: m.frac_bits,
         lambda a, b: f"its values have {a.frac_bits} fractional bits, not {b.frac_bits}"),
        ("run", lambda m: m.run_id, lambda a, b: f"it belongs to run {a.run_id!r}, not {b.run_id!r}"),
        ("clip range", lambda m: m.clip, lambda a, b: f"its values are clipped to {a.clip}, not {b.clip}"),
    )
    for _what, key, describe in checks:
        agree, differ = odd_ones(bundles, key=lambda b: key(b.manifest))
        if not differ:
            continue
        bad, ref = bundles[differ[0]], bundles[agree[0]]
        diff = describe(bad.manifest, ref.manifest)
        if len(bundles) == 2:
            where = (f"compared with holder {ref.manifest.holder_id!r} ({ref.path}); with two bundles fedsyn cannot "
                     "tell which one is wrong")
        else:
            names = [repr(bundles[j].manifest.holder_id) for j in agree]
            where = f"compared with the other holders ({', '.join(names[:3])}{' ...' if len(names) > 3 else ''})"
        raise _fail(bad.path or Path("?"), f"holder {bad.manifest.holder_id!r}: {diff}, {where}. Every holder must "
                                           "share with the same genes.txt, labels.txt, --frac-bits and --run-id.")
    return sorted(bundles, key=lambda b: b.manifest.holder_id)
