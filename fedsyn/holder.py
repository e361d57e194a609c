"""The data holder's role: agree, encode, secret-share.

A hospital (data holder) never computes with the servers. It

1. **aligns** its matrix to the consortium's agreed gene list (column order)
   and public label domain (:func:`align_holders`, :func:`encode_holder`);
2. **encodes** it: values clipped to the public range (if the run has one),
   fixed point ``round(x 2^f)`` in Z_2^64 (:mod:`fedsyn.fixedpoint`), labels
   one-hot over the domain;
3. **splits** both into three additive shares ``x = s0 + s1 + s2 mod 2^64``
   with the one share splitter of fedsyn (:func:`split_shares`) and hands
   server ``i`` the replicated pair ``(s_i, s_{i-1})`` (Araki et al. 2016; the
   layout of MP-SPDZ's replicated ring protocols).

Every engine goes through this module: the plaintext engine pools the encoded
matrices, the rep3 engine serializes the pairs as share bundles
(:mod:`fedsyn.bundle`), the MP-SPDZ engine as Persistence files
(:mod:`fedsyn.engines.mpspdz.persistence`). Both serializers write the *same*
pairs.

Share randomness
----------------
:class:`ShareStream`: AES-128 in counter mode under a key and nonce from
:func:`secrets.token_bytes` (the OS CSPRNG); two words per secret element.
One server's pair is two of the three shares, jointly uniform whatever the
secret; two servers together learn everything (honest majority). A numpy
generator may be passed instead, for reproducible tests only.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from .data import ExpressionData
from .errors import ConfigError, InputError
from .fixedpoint import DEFAULT_FRAC_BITS, encode, to_ring

logger = logging.getLogger(__name__)

__all__ = [
    "N_SERVERS",
    "ShareStream",
    "split_shares",
    "replicated_pairs",
    "EncodedHolder",
    "SharedHolder",
    "align_holders",
    "encode_holder",
    "encode_holders",
    "share_holder",
    "share_to_files",
    "looks_like_counts",
]

#: Computing servers of the replicated scheme.
N_SERVERS = 3

Pair = tuple[np.ndarray, np.ndarray]


class ShareStream:
    """Uniform 64-bit words from AES-128-CTR under a fresh random key (the share CSPRNG).

    Parameters
    ----------
    rng : numpy.random.Generator or None, default None
        ``None`` (the default, and the only choice for real data): key and
        nonce from :func:`secrets.token_bytes`. A generator only for
        reproducible tests.
    """

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        self._rng = rng
        self._enc = None
        if rng is None:
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

            key, nonce = secrets.token_bytes(16), secrets.token_bytes(16)
            self._enc = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()

    def words(self, shape) -> np.ndarray:
        """Uniform uint64 words of ``shape``."""
        if self._enc is None:
            assert self._rng is not None
            return self._rng.integers(0, 2**64, size=shape, dtype=np.uint64, endpoint=False)
        n = int(np.prod(shape, dtype=np.int64))
        stream = self._enc.update(bytes(8 * n))
        return np.frombuffer(stream, dtype="<u8").reshape(shape).astype(np.uint64, copy=True)


def split_shares(
    secret, *, stream: ShareStream | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split integers into three additive shares ``s0 + s1 + s2 = x (mod 2^64)``.

    Parameters
    ----------
    secret : array_like of int
        The secret: fixed-point integers, 0/1 indicators, counts (negative
        values in two's complement), or ring elements (uint64).
    stream : ShareStream or None, default None
        Source of the two random shares; a fresh CSPRNG stream when ``None``.

    Returns
    -------
    tuple of three ndarrays of uint64
        ``s0`` and ``s1`` uniform, ``s2 = x - s0 - s1``.
    """
    arr = np.asarray(secret)
    if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"Only integer arrays can be shared, got dtype {arr.dtype}; encode to fixed point first.")
    x = arr if arr.dtype == np.uint64 else to_ring(arr.astype(np.int64))
    stream = stream or ShareStream()
    s0 = stream.words(x.shape)
    s1 = stream.words(x.shape)
    s2 = x - s0 - s1  # wraps mod 2**64
    return s0, s1, s2


def replicated_pairs(shares: Sequence[np.ndarray]) -> tuple[Pair, Pair, Pair]:
    """Server ``i``'s pair ``(s_i, s_{(i-1) mod 3})`` for ``i = 0, 1, 2``."""
    s = list(shares)
    if len(s) != N_SERVERS:
        raise InputError(f"Replicated sharing needs three shares, got {len(s)}.")
    return tuple((s[i], s[(i - 1) % N_SERVERS]) for i in range(N_SERVERS))  # type: ignore[return-value]


@dataclass(frozen=True)
class EncodedHolder:
    """One holder's matrix, aligned and encoded (never leaves the holder in clear).

    Attributes
    ----------
    values_fp : ndarray of int64, shape (n_k, d)
        Fixed-point values ``round(x 2^f)``, after clipping to ``clip``.
    onehot : ndarray of int64, shape (n_k, L)
        One-hot labels over the public domain.
    gene_names : tuple of str
        The agreed gene list, in column order.
    label_names : tuple of str
        The public label domain.
    frac_bits : int
    clip : tuple of float or None
        The public value range the values were clipped to.
    source : str
        Where the data came from, for messages.
    """

    values_fp: np.ndarray
    onehot: np.ndarray
    gene_names: tuple[str, ...]
    label_names: tuple[str, ...]
    frac_bits: int
    clip: tuple[float, float] | None
    source: str = "<memory>"

    @property
    def n_samples(self) -> int:
        return int(self.values_fp.shape[0])

    @property
    def labels(self) -> np.ndarray:
        """Integer label codes (argmax of the one-hot rows)."""
        return np.argmax(self.onehot, axis=1).astype(np.int64) if self.n_samples else np.zeros(0, np.int64)

    def rows(self) -> np.ndarray:
        """Per sample the ``d`` values then the ``L`` label indicators (MP-SPDZ's row layout)."""
        return np.concatenate([self.values_fp, self.onehot], axis=1)


@dataclass(frozen=True)
class SharedHolder:
    """The three servers' replicated pairs of one holder's encoded matrix.

    Attributes
    ----------
    encoded_shape : tuple of int
        ``(n_k, d, L)``.
    values : tuple of three pairs
        ``values[i]`` = server ``i``'s ``(s_i, s_{i-1})`` of the fixed-point values, uint64 ``(n_k, d)``.
    labels : tuple of three pairs
        Likewise for the one-hot labels, uint64 ``(n_k, L)``.
    gene_names, label_names, frac_bits, clip
        As in :class:`EncodedHolder` (public).
    sharing_id : str
        Random public tag common to the three servers' pairs of this sharing.
    """

    values: tuple[Pair, Pair, Pair]
    labels: tuple[Pair, Pair, Pair]
    gene_names: tuple[str, ...]
    label_names: tuple[str, ...]
    frac_bits: int
    clip: tuple[float, float] | None
    sharing_id: str

    @property
    def n_samples(self) -> int:
        return int(self.values[0][0].shape[0])

    def rows_pair(self, server: int) -> Pair:
        """Server ``server``'s pair in MP-SPDZ's row layout (values then labels per row).

        Shares are elementwise, so the column-wise concatenation of the value
        and label pairs is a valid sharing of :meth:`EncodedHolder.rows`.
        """
        (va, vb), (ya, yb) = self.values[server], self.labels[server]
        return np.concatenate([va, ya], axis=1), np.concatenate([vb, yb], axis=1)


def align_holders(holders: Sequence[ExpressionData], *, n_labels: int | None = None) -> list[ExpressionData]:
    """Put every holder on the agreed gene order and label domain.

    Every engine calls this, so all of them accept the same inputs: holders
    must have the same *set* of genes (columns in another order are
    reordered) and labels from one domain (codes are remapped by name). The
    reference is the gene set and the label domain that most holders have (on
    a tie, the earlier holder's), so that a refusal names the holder that
    differs, not whichever is listed second.

    Parameters
    ----------
    holders : sequence of ExpressionData
    n_labels : int or None, default None
        Size of the run's label domain; checked against the reference domain.

    Returns
    -------
    list of ExpressionData
        In the given order, every one on the reference's gene order and label
        domain.

    Raises
    ------
    InputError
        Naming the holder that differs, the first missing or extra gene or the
        label outside the domain, and the holders it was compared with.
    ConfigError
        If the label domain does not have ``n_labels`` labels.
    """
    from .metadata import describe_genes, odd_ones

    if not holders:
        raise InputError("At least one data holder is needed.")
    agree, differ = odd_ones(holders, key=lambda h: frozenset(h.gene_names) if len(set(h.gene_names)) ==
                             len(h.gene_names) else tuple(h.gene_names))
    ref = holders[agree[0]]
    if differ:
        h = holders[differ[0]]
        diff = describe_genes(h.gene_names, ref.gene_names, ordered=False)
        raise InputError(_disagreement(holders, agree, differ[0], f"its gene list {diff}",
                                       "holders must share the same genes (an agreed genes.txt)"))
    used = [tuple(h.label_names[c] for c in np.unique(np.asarray(h.labels))) for h in holders]
    lagree, _ = odd_ones(holders, key=lambda h: tuple(h.label_names))
    domain = holders[lagree[0]].label_names
    label_index = {name: code for code, name in enumerate(domain)}
    for k in range(len(holders)):
        outside = [name for name in used[k] if name not in label_index]
        if outside:
            others = [j for j in lagree if j != k] or [j for j in range(len(holders)) if j != k]
            raise InputError(_disagreement(
                holders, others, k, f"its label {outside[0]!r} is outside the label domain {list(domain)}",
                "holders must use one agreed label domain (an agreed labels.txt)"))
    if n_labels is not None and len(domain) != n_labels:
        raise ConfigError(f"{holders[lagree[0]].source}: {len(domain)} labels but the run is set up for {n_labels}.")
    genes = ref.gene_names
    gene_index = {g: j for j, g in enumerate(genes)}
    aligned = []
    for h in holders:
        if h.gene_names != genes:
            order = np.argsort([gene_index[g] for g in h.gene_names])
            h = h.subset(genes=order)
        if h.label_names != domain:
            remap = np.array([label_index.get(name, -1) for name in h.label_names], dtype=np.int64)
            h = replace(h, labels=remap[h.labels], label_names=domain)
        aligned.append(h)
    return aligned


def _disagreement(holders: Sequence[ExpressionData], agree: Sequence[int], bad: int, what: str, rule: str) -> str:
    """One message naming the holder that differs and the ones it was compared with."""
    others = [holders[j].source for j in agree if j != bad]
    if len(holders) == 2:
        return (f"{holders[bad].source}: {what}, compared with {others[0]}; with two holders fedsyn cannot tell "
                f"which one is wrong: {rule}.")
    shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    return f"{holders[bad].source}: {what}, compared with the other holders ({shown}); {rule}."


def encode_holder(
    data: ExpressionData,
    *,
    gene_names: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    frac_bits: int = DEFAULT_FRAC_BITS,
    clip: tuple[float, float] | None = None,
) -> EncodedHolder:
    """Align one holder's data to the agreed gene list and label domain, clip and encode it.

    Parameters
    ----------
    data : ExpressionData
        The holder's preprocessed matrix and labels.
    gene_names : sequence of str or None, default None
        Agreed gene list and column order; ``None`` uses the holder's.
    label_names : sequence of str or None, default None
        Public label domain; ``None`` uses ``data.label_names``. Every label of
        the holder must occur in it.
    frac_bits : int, default 16
    clip : (float, float) or None, default None
        Public value range ``lo < hi`` to clip to before encoding.

    Returns
    -------
    EncodedHolder
    """
    domain = tuple(str(x) for x in (label_names if label_names is not None else data.label_names))
    if len(set(domain)) != len(domain):
        raise InputError("The label domain has duplicate names.")
    if len(domain) < 2:
        raise InputError("The label domain needs at least two labels.")
    genes = tuple(str(g) for g in (gene_names if gene_names is not None else data.gene_names))
    if len(set(genes)) != len(genes):
        raise InputError("The gene list has duplicate names.")
    values = np.asarray(data.values, dtype=np.float64)
    if genes != tuple(data.gene_names):
        pos = {g: j for j, g in enumerate(data.gene_names)}
        missing = [g for g in genes if g not in pos]
        if missing:
            raise InputError(
                f"{data.source}: {len(missing)} gene(s) of the agreed gene list are missing, "
                f"e.g. {', '.join(missing[:5])}."
            )
        values = values[:, [pos[g] for g in genes]]
    index = {name: k for k, name in enumerate(domain)}
    try:
        remap = np.array([index[str(name)] for name in data.label_names], dtype=np.int64)
    except KeyError as exc:
        raise InputError(
            f"{data.source}: label {exc.args[0]!r} is not in the public label domain ({', '.join(domain)})."
        ) from None
    labels = remap[np.asarray(data.labels, dtype=np.int64)] if data.n_samples else np.zeros(0, np.int64)
    if clip is not None:
        lo, hi = float(clip[0]), float(clip[1])
        if not lo < hi:
            raise InputError(f"clip range must satisfy lo < hi, got {clip}.")
        values = np.clip(values, lo, hi)
        clip = (lo, hi)
    values_fp = encode(values, frac_bits, what=f"{data.source}: expression values")
    onehot = np.zeros((data.n_samples, len(domain)), dtype=np.int64)
    onehot[np.arange(data.n_samples), labels] = 1
    return EncodedHolder(values_fp=values_fp, onehot=onehot, gene_names=genes, label_names=domain,
                         frac_bits=int(frac_bits), clip=clip, source=data.source)


def encode_holders(
    holders: Sequence[ExpressionData], *, n_labels: int, frac_bits: int, clip: tuple[float, float] | None
) -> list[EncodedHolder]:
    """:func:`align_holders` then :func:`encode_holder` each: what every engine starts from."""
    aligned = align_holders(holders, n_labels=n_labels)
    genes, domain = aligned[0].gene_names, aligned[0].label_names
    return [encode_holder(h, gene_names=genes, label_names=domain, frac_bits=frac_bits, clip=clip)
            for h in aligned]


def share_holder(encoded: EncodedHolder, *, rng: np.random.Generator | None = None) -> SharedHolder:
    """Secret-share one encoded holder for the three servers.

    Parameters
    ----------
    encoded : EncodedHolder
    rng : numpy.random.Generator or None, default None
        Only for reproducible tests; ``None`` uses a fresh CSPRNG stream.

    Returns
    -------
    SharedHolder
        With a fresh random ``sharing_id``.
    """
    stream = ShareStream(rng)
    v = replicated_pairs(split_shares(encoded.values_fp, stream=stream))
    y = replicated_pairs(split_shares(encoded.onehot, stream=stream))
    return SharedHolder(values=v, labels=y, gene_names=encoded.gene_names, label_names=encoded.label_names,
                        frac_bits=encoded.frac_bits, clip=encoded.clip,
                        sharing_id=secrets.token_hex(16))  # public tag, not share randomness


def share_to_files(
    data: ExpressionData,
    *,
    holder_id: str,
    out_dir,
    fmt: str = "fedsyn",
    security: str = "passive",
    gene_names: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    frac_bits: int = DEFAULT_FRAC_BITS,
    clip: tuple[float, float] | None = None,
    run_id: str | None = None,
    rng: np.random.Generator | None = None,
    overwrite: bool = False,
    protect: Sequence = (),
    allow_counts: bool = False,
) -> list:
    """The whole holder job (``fedsyn share``): encode, share, write one file set per server.

    Parameters
    ----------
    data : ExpressionData
        The holder's preprocessed matrix and labels.
    holder_id : str
        Identifier of the holder (letters, digits, ``_.-``; at most 64).
    out_dir : path-like
        Where the files go.
    fmt : {"fedsyn", "mp-spdz"}, default "fedsyn"
        ``fedsyn``: share bundles ``<holder_id>.server<i>.fsb`` (rep3 servers);
        ``mp-spdz``: ``<holder_id>/Transactions-P<i>.data`` and a manifest.
    security : {"passive", "active"}, default "passive"
        ``mp-spdz`` only: the Persistence header.
    gene_names, label_names, frac_bits, clip
        As :func:`encode_holder`.
    run_id : str or None, default None
        Session tag the servers check.
    rng : numpy.random.Generator or None, default None
        Reproducible tests only; the CSPRNG otherwise.
    overwrite : bool, default False
        Replace the files of an earlier ``share`` of this holder
        (:func:`fedsyn.atomic.check_output_files`: never an input, never a file
        fedsyn did not write). Without it, existing files are refused.
    protect : sequence of path-like, default ()
        The inputs (the matrix, list files), never replaced.
    allow_counts : bool, default False
        Share values that are all non-negative integers. Without it such
        values -- raw counts -- are refused: the consortium bins preprocessed
        values, and the bundles cannot be taken back once sent.

    Returns
    -------
    list of pathlib.Path
        File ``i`` (of the first three) goes to server ``i`` only.

    Raises
    ------
    InputError
        Raw counts without ``allow_counts``; data that does not fit the agreed
        lists.
    ConfigError
        An output file that exists (without ``overwrite``), or is an input or
        was not written by fedsyn.
    """
    if fmt not in ("fedsyn", "mp-spdz"):
        raise ConfigError(f"Unknown share format {fmt!r}; use 'fedsyn' or 'mp-spdz'.")
    from pathlib import Path

    from .atomic import output_files
    from .bundle import BUNDLE_SUFFIX, check_holder_id
    from .errors import hint

    check_holder_id(holder_id)
    if looks_like_counts(data) and not allow_counts:
        raise InputError(
            f"{data.source}: every value is a non-negative integer: these look like raw counts, but the servers "
            "bin preprocessed values (VST or log2) and shared bundles cannot be taken back. Run `fedsyn preprocess` "
            f"first, or pass {hint('allow_counts=True', '--allow-counts')} if the consortium agreed to share counts."
        )
    out = Path(out_dir)
    if fmt == "mp-spdz":
        targets = [out / holder_id / f"Transactions-P{i}.data" for i in range(N_SERVERS)]
        targets.append(out / holder_id / "manifest.json")
    else:
        targets = [out / f"{holder_id}.server{i}{BUNDLE_SUFFIX}" for i in range(N_SERVERS)]
    with output_files(targets, overwrite=overwrite, protect=protect):
        encoded = encode_holder(data, gene_names=gene_names, label_names=label_names, frac_bits=frac_bits,
                                clip=clip)
        shared = share_holder(encoded, rng=rng)
        if fmt == "mp-spdz":
            from .engines.mpspdz.persistence import write_holder_persistence

            if security not in ("passive", "active"):
                raise ConfigError(f"Unknown security {security!r}; use 'passive' or 'active'.")
            return write_holder_persistence(shared, holder_id=holder_id, out_dir=out_dir,  # type: ignore[arg-type]
                                            security=security, run_id=run_id)  # type: ignore[arg-type]
        from .bundle import write_holder_bundles

        return write_holder_bundles(shared, holder_id=holder_id, out_dir=out_dir, run_id=run_id)


def check_value_range(data: ExpressionData, value_range: tuple[float, float]) -> float:
    """Refuse a public value range that excludes every value; warn when many are clipped.

    A check the data's owner can make on its own plaintext (``fedsyn run``,
    a holder before sharing); the servers cannot, they never see values.

    Returns
    -------
    float
        The fraction of values outside ``[lo, hi)`` (clipped inside MPC).

    Raises
    ------
    InputError
        Every value lies outside the range: all would be clipped to its ends.
    """
    lo, hi = value_range
    values = np.asarray(data.values, dtype=float)
    if not values.size:
        return 0.0
    outside = float(np.mean((values < lo) | (values >= hi)))
    if outside == 1.0:
        raise InputError(
            f"{data.source}: every value lies outside the public value range [{lo:g}, {hi:g}) (the data span "
            f"{values.min():.4g} .. {values.max():.4g}): all would be clipped to its ends. Pass a range that fits "
            "the preprocessed scale (--value-range LO HI), chosen without looking at the private data."
        )
    if outside > 0.05:
        logger.warning("%s: %.0f %% of the values lie outside the public value range [%g, %g) and are clipped to "
                       "it inside MPC", data.source, 100 * outside, lo, hi)
    return outside


def looks_like_counts(data: ExpressionData) -> bool:
    """Whether ``data`` holds raw counts: read as counts, or every value a non-negative integer.

    The check ``fedsyn share`` (refusal) and ``fedsyn run`` (warning) make
    before binning: the paper bins preprocessed values (VST).
    """
    values = np.asarray(data.values)
    return data.kind == "counts" or bool(values.size and np.all(values >= 0) and np.all(values == np.round(values)))
