"""Reference semantics of Protocol 1, in plain numpy.

This module is the single source of truth for what every engine computes. Each
secure engine (``rep3``, ``mp-spdz``) is tested to give the same bins, counts and
bin sums on the same input, bit for bit.

All values are fixed-point integers (see :mod:`fedsyn.fixedpoint`); nothing here
uses floating point, so the semantics are exact.

Quantile binning (``Pi_bin``)
-----------------------------
For a gene with pooled values ``v`` sorted ascending (``n`` values) and
``q = j/4`` (``j = 1, 2, 3``)::

    pos = (n - 1) * q,  lo = floor(pos),  k = 4 * (pos - lo)   (k in {0, 1, 2, 3})
    Q_j = v[lo] + (k / 4) * (v[lo + 1] - v[lo])

which is the authors' (and numpy's "linear") quantile. To stay in integers we
compare against ``4 * Q_j``::

    T_j = 4 * v[lo] + k * (v[lo + 1] - v[lo])        (the term vanishes when k = 0)
    b(x) = [4x >= T_1] + [4x >= T_2] + [4x >= T_3]    in {0, 1, 2, 3}

Only three order-statistic pairs per gene are needed. Ties: a value equal to a
boundary goes to the upper bin, so equal values always share a bin. A constant
gene puts every sample in bin 3; a gene that is zero in 60 % of samples puts the
zeros in bin 2 and leaves bins 0 and 1 empty. Bin 3 is never empty (the maximum
is >= Q_3).

Bin statistics
--------------
``count[g, k]`` = number of samples in bin ``k``; ``sum[g, k]`` = sum of their
fixed-point values. ``mean[g, k] = floor(sum / count)`` (floor towards minus
infinity, in fixed point). An **empty bin** takes the mean of the nearest
non-empty bin above it (so a constant gene maps every bin to its value and the
sparse gene above maps bins 0 and 1 to zero).

Marginals (``Pi_marg``)
-----------------------
From the comparison bits ``c_j = [4x >= T_j]`` (monotone: ``c_1 >= c_2 >= c_3``)
the bin indicators are the degree-one indicator polynomials
``I_0 = 1 - c_1``, ``I_1 = c_1 - c_2``, ``I_2 = c_2 - c_3``, ``I_3 = c_3``. Labels
arrive one-hot (``L`` columns of 0/1) from the holders. Then::

    one_way[g, k]    = sum_i I_k(x_ig)
    label[l]         = sum_i y_il
    two_way[g, k, l] = sum_i I_k(x_ig) * y_il      (one matrix product)

Noise (``Pi_noise``) and what is opened
---------------------------------------
Every opened number is an integer on the grid of its sensitivity unit plus
rounded Irwin-Hall noise on that grid (:mod:`fedsyn.noise`):

    count:    c + Z_sigma                       (grid: one count)
    bin sum:  round(S / 2^k) + Z_sum_sigma      (strict, public-edges; grid: 2^k ulps)

with ``Z = floor((R s - c0) / 2^32)`` computed from 12 uniform 16-bit integers
``R = r_1 + ... + r_12`` (:func:`fedsyn.noise.sample_noise`). The secure
engines compute exactly this function of their in-MPC uniforms, so every
engine's opened values have the same distribution, and with the noise off the
same values bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

N_BINS = 4


@dataclass(frozen=True)
class QuartilePlan:
    """Positions of the order statistics that define the quartiles of ``n`` values.

    Attributes
    ----------
    lo : tuple of int
        ``floor((n - 1) * j / 4)`` for ``j = 1, 2, 3``.
    k : tuple of int
        ``4 * frac((n - 1) * j / 4)`` in ``{0, 1, 2, 3}``; the weight of
        ``v[lo + 1] - v[lo]`` in ``T_j``.
    """

    n: int
    lo: tuple[int, int, int]
    k: tuple[int, int, int]

    @classmethod
    def for_n(cls, n: int) -> "QuartilePlan":
        if n < 1:
            raise InputError("Quantile binning needs at least one sample.")
        lo = tuple(((n - 1) * j) // 4 for j in (1, 2, 3))
        k = tuple(((n - 1) * j) % 4 for j in (1, 2, 3))
        return cls(n=n, lo=lo, k=k)  # type: ignore[arg-type]

    @property
    def ranks(self) -> tuple[int, ...]:
        """Sorted distinct 0-based ranks whose order statistics are needed."""
        need = set()
        for lo, k in zip(self.lo, self.k):
            need.add(lo)
            if k:
                need.add(lo + 1)
        return tuple(sorted(need))


@dataclass(frozen=True)
class BinStatistics:
    """Exact (pre-noise) outputs of ``Pi_bin`` and ``Pi_marg`` for ``d`` genes.

    Attributes
    ----------
    thresholds : ndarray of int64, shape (3, d)
        ``T_j = 4 * Q_j`` in fixed point (never revealed by secure engines).
    bins : ndarray of uint8, shape (n, d)
        Bin index of every sample and gene (never revealed by secure engines).
    counts : ndarray of int64, shape (d, 4)
        Samples per bin: the gene 1-way marginals.
    sums : ndarray of int64, shape (d, 4)
        Fixed-point sum of the values in each bin.
    label_counts : ndarray of int64, shape (L,)
        The label 1-way marginal.
    two_way : ndarray of int64, shape (d, 4, L)
        The (gene, label) 2-way marginals.
    """

    thresholds: np.ndarray
    bins: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    label_counts: np.ndarray
    two_way: np.ndarray

    @property
    def means(self) -> np.ndarray:
        """Bin means in fixed point, with the empty-bin rule of the module docstring."""
        return bin_means(self.sums, self.counts)


def quartile_thresholds(values_fp: np.ndarray) -> np.ndarray:
    """``T_j = 4 * Q_j`` for every gene.

    Parameters
    ----------
    values_fp : ndarray of int64, shape (n, d)
        Fixed-point values, samples in rows.

    Returns
    -------
    ndarray of int64, shape (3, d)
    """
    x = _as_matrix(values_fp)
    plan = QuartilePlan.for_n(x.shape[0])
    ranks = plan.ranks
    part = np.partition(x, ranks, axis=0) if x.shape[0] > 1 else x
    out = np.empty((3, x.shape[1]), dtype=np.int64)
    for j, (lo, k) in enumerate(zip(plan.lo, plan.k)):
        v_lo = part[lo]
        out[j] = 4 * v_lo
        if k:
            out[j] += k * (part[lo + 1] - v_lo)
    return out


def comparison_bits(values_fp: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``c[j, i, g] = [4 x_ig >= T_jg]`` as uint8, shape (3, n, d)."""
    x4 = 4 * _as_matrix(values_fp)
    return (x4[None, :, :] >= thresholds[:, None, :]).astype(np.uint8)


def indicators_from_bits(bits: np.ndarray) -> np.ndarray:
    """One-hot bin indicators (n, d, 4) from monotone comparison bits (3, n, d)."""
    c1, c2, c3 = (b.astype(np.int64) for b in bits)
    return np.stack([1 - c1, c1 - c2, c2 - c3, c3], axis=-1)


def bin_means(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``floor(sum / count)`` per bin; an empty bin takes the next non-empty bin above.

    Parameters
    ----------
    sums, counts : ndarray of int64, shape (d, 4)

    Returns
    -------
    ndarray of int64, shape (d, 4)
        Fixed-point bin means.
    """
    sums = np.asarray(sums, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    if np.any(counts[:, N_BINS - 1] <= 0):
        raise InputError("The top bin of every gene must be non-empty.")
    means = np.floor_divide(sums, np.maximum(counts, 1))
    for k in range(N_BINS - 2, -1, -1):
        empty = counts[:, k] == 0
        means[empty, k] = means[empty, k + 1]
    return means


def label_onehot(labels: np.ndarray, n_labels: int) -> np.ndarray:
    """One-hot encoding (n, L) of integer labels in ``0..L-1`` as int64."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise InputError("Labels must be one-dimensional.")
    if y.size and (y.min() < 0 or y.max() >= n_labels):
        raise InputError(f"Labels must lie in 0..{n_labels - 1}.")
    out = np.zeros((y.size, n_labels), dtype=np.int64)
    out[np.arange(y.size), y.astype(np.int64)] = 1
    return out


def bin_statistics(values_fp: np.ndarray, labels: np.ndarray, n_labels: int) -> BinStatistics:
    """Run ``Pi_bin`` and ``Pi_marg`` on pooled fixed-point data (no noise).

    Parameters
    ----------
    values_fp : ndarray of int64, shape (n, d)
        Pooled fixed-point expression values of all holders, samples in rows.
    labels : ndarray of int, shape (n,)
        Integer labels in ``0..n_labels-1``.
    n_labels : int
        Size ``L`` of the public label domain.
    """
    x = _as_matrix(values_fp)
    y = label_onehot(labels, n_labels)
    if y.shape[0] != x.shape[0]:
        raise InputError(f"{x.shape[0]} samples but {y.shape[0]} labels.")
    thresholds = quartile_thresholds(x)
    bits = comparison_bits(x, thresholds)
    ind = indicators_from_bits(bits)  # (n, d, 4)
    counts = ind.sum(axis=0)
    sums = np.einsum("ndk,nd->dk", ind, x)
    two_way = np.einsum("ndk,nl->dkl", ind, y)
    return BinStatistics(
        thresholds=thresholds,
        bins=bits.sum(axis=0).astype(np.uint8),
        counts=counts.astype(np.int64),
        sums=sums.astype(np.int64),
        label_counts=y.sum(axis=0).astype(np.int64),
        two_way=two_way.astype(np.int64),
    )


def _as_matrix(values_fp) -> np.ndarray:
    x = np.asarray(values_fp)
    if x.ndim != 2:
        raise InputError(f"Expected a samples x genes matrix, got {x.ndim} dimensions.")
    if x.dtype != np.int64:
        raise InputError("Reference protocols take fixed-point int64 values (fedsyn.fixedpoint.encode).")
    return x


def round_to_unit(values: np.ndarray, bits) -> np.ndarray:
    """``round(values / 2^bits)`` (halves up), exactly; ``bits`` a scalar or an array of the values' shape.

    ``floor((v + 2^(bits-1)) / 2^bits)``, and ``v`` itself where ``bits = 0``.
    """
    v = np.asarray(values, dtype=np.int64)
    k = np.broadcast_to(np.asarray(bits, dtype=np.int64), v.shape)
    half = np.where(k > 0, np.left_shift(np.int64(1), np.maximum(k - 1, 0)), 0)
    return np.right_shift(v + half, k)


# ---------------------------------------------------------------------------
# The strict and public-edges profiles
# ---------------------------------------------------------------------------


def clip_to_range(values_fp: np.ndarray, params) -> np.ndarray:
    """Values clipped to the public range ``[lo, hi)`` on the fixed-point grid (no-op without a range)."""
    x = _as_matrix(values_fp)
    if params.value_range is None:
        return x
    lo, hi = params.range_fp
    return np.clip(x, lo, hi)


def histograms(values_fp: np.ndarray, params) -> np.ndarray:
    """Phase 1 of ``strict``: every gene's histogram on the public grid, shape (d, 2^hist_bits).

    The cell of a clipped value ``x`` is the top ``hist_bits`` bits of the
    ``grid_bits``-bit integer ``x - lo``.
    """
    x = clip_to_range(values_fp, params)
    lo, _ = params.range_fp
    cell = (x - lo) >> (params.grid_bits - params.hist_bits)
    cells = params.hist_cells
    d = x.shape[1]
    flat = cell + cells * np.arange(d, dtype=np.int64)[None, :]
    return np.bincount(flat.ravel(), minlength=d * cells).reshape(d, cells).astype(np.int64)


@dataclass(frozen=True)
class EdgeStatistics:
    """Exact (pre-noise) phase-2 statistics of ``strict``/``public-edges`` for public edges.

    Attributes
    ----------
    bins : ndarray of uint8, shape (n, d)
    counts : ndarray of int64, shape (d, 4)
        Samples per bin (implied by ``two_way``; not released on its own).
    label_counts : ndarray of int64, shape (L,)
    two_way : ndarray of int64, shape (d, 4, L)
    sums : ndarray of int64, shape (d, 4)
        ``sum over the bin's samples of clip(x, a_0, b_3) - centre``, in ulps.
    """

    bins: np.ndarray
    counts: np.ndarray
    label_counts: np.ndarray
    two_way: np.ndarray
    sums: np.ndarray


def edge_statistics(values_fp: np.ndarray, labels: np.ndarray, n_labels: int, geometry, params) -> EdgeStatistics:
    """Phase 2 of ``strict`` (the whole of ``public-edges``): bins by public edges and their statistics.

    Parameters
    ----------
    values_fp : ndarray of int64, shape (n, d)
        Pooled fixed-point values (clipped to the value range here).
    labels : ndarray of int, shape (n,)
    n_labels : int
    geometry : fedsyn.edges.BinGeometry
        Public edges and bin bounds.
    params : ProtocolParams
    """
    x = clip_to_range(values_fp, params)
    y = label_onehot(labels, n_labels)
    e = geometry.edges
    bits = np.stack([(x >= e[None, :, j]).astype(np.int64) for j in range(3)])  # (3, n, d)
    ind = indicators_from_bits(bits)  # (n, d, 4)
    xs = np.clip(x, geometry.bounds[None, :, 0], geometry.bounds[None, :, 4])
    counts = ind.sum(axis=0)
    sums = np.einsum("ndk,nd->dk", ind, xs) - counts * geometry.centers
    return EdgeStatistics(
        bins=bits.sum(axis=0).astype(np.uint8), counts=counts.astype(np.int64),
        label_counts=y.sum(axis=0).astype(np.int64), two_way=np.einsum("ndk,nl->dkl", ind, y).astype(np.int64),
        sums=sums.astype(np.int64),
    )


def edge_outputs(stats: EdgeStatistics, geometry, params, *, rng) -> dict[str, np.ndarray]:
    """What phase 2 opens: noisy ``label``, ``two_way`` counts and noisy bin ``sums`` on their grids."""
    return {
        "label": _noisy(stats.label_counts, params.sigma, params, rng),
        "two_way": _noisy(stats.two_way, params.sigma, params, rng),
        "sums": _noisy(round_to_unit(stats.sums, geometry.unit_bits), params.sum_sigma, params, rng),
    }


def _noisy(values: np.ndarray, sigma: float, params, rng) -> np.ndarray:
    """``values`` plus grid noise of ``sigma`` (:class:`fedsyn.noise.GridNoise`), or a copy with noise off."""
    from .noise import GridNoise

    v = np.asarray(values, dtype=np.int64)
    return v + GridNoise(sigma).sample(v.shape, rng=rng) if params.noise else v.copy()


def noisy_histograms(values_fp: np.ndarray, params, *, rng) -> np.ndarray:
    """What phase 1 of ``strict`` opens: every histogram cell plus grid noise."""
    return _noisy(histograms(values_fp, params), params.hist_sigma, params, rng)


def protocol1_outputs(stats: BinStatistics, params, *, rng) -> dict[str, np.ndarray]:
    """What the ``paper`` profile opens to the release server, computed in the clear.

    The reference of every engine's opened outputs
    (:class:`fedsyn.measurements.OutputLayout`): noisy integer counts
    ``one_way``, ``label``, ``two_way`` and the exact fixed-point bin ``means``
    (not DP, as the paper).

    Parameters
    ----------
    stats : BinStatistics
        Exact statistics of the pooled (clipped, if there is a value range) data.
    params : fedsyn.params.ProtocolParams
    rng : generator
        Source of the noise uniforms (the OS CSPRNG unless a seed was given).
    """
    return {
        "one_way": _noisy(stats.counts, params.sigma, params, rng),
        "label": _noisy(stats.label_counts, params.sigma, params, rng),
        "two_way": _noisy(stats.two_way, params.sigma, params, rng),
        "means": stats.means,
    }


# ===========================================================================
# Co-expression statistics (fedsyn.structure): pair tables from bin indices
# ===========================================================================
#
# What the servers compute for the co-expression models, as exact integer
# functions of the bin indices ``b`` (n, d) and labels; every secure engine must
# reproduce these. With ``O`` the one-hot bin indicators (n, K*d):
#
#   attr_label_tables : O^T Y                  (d, K, L)   one (Kd x n)(n x L) product
#   pair_tables       : O_a^T O_b per edge     (m, K, K)   only the chosen edges
#   all pair tables   : O^T O                  (Kd x Kd)   one (Kd x n)(n x Kd) product
#   score_gram        : S^T S, S = 2b - 3      (d, d)      one (d x n)(n x d) product
#   factor_bins       : quantile levels of S V (n, k)      S times a public (d x k) matrix


def attr_label_tables(bins: np.ndarray, labels: np.ndarray, n_labels: int, n_bins: int = N_BINS) -> np.ndarray:
    """``T[a, x, l]`` = records with attribute ``a`` in state ``x`` and label ``l``.

    Parameters
    ----------
    bins : ndarray of int (n, A)
    labels : ndarray of int (n,)
    n_labels, n_bins : int

    Returns
    -------
    ndarray of int64 (A, n_bins, n_labels)
    """
    b = np.asarray(bins, dtype=np.int64)
    y = label_onehot(labels, n_labels)
    n, a = b.shape
    out = np.zeros((a, n_bins, n_labels), dtype=np.int64)
    for x in range(n_bins):
        out[:, x, :] = (b == x).astype(np.int64).T @ y
    return out


def pair_tables(
    bins: np.ndarray,
    pairs,
    *,
    labels: np.ndarray | None = None,
    n_labels: int | None = None,
    n_bins: int = N_BINS,
) -> np.ndarray:
    """Contingency tables of chosen attribute pairs (optionally with the label).

    Parameters
    ----------
    bins : ndarray of int (n, A)
        States in ``0..n_bins-1``.
    pairs : sequence of (int, int)
        ``(a, c)``: rows of the table are ``a``'s states, columns ``c``'s.
    labels, n_labels : optional
        With labels, a third axis of size ``L``.

    Returns
    -------
    ndarray of int64 (m, n_bins, n_bins) or (m, n_bins, n_bins, L)
    """
    b = np.asarray(bins, dtype=np.int64)
    if b.ndim != 2:
        raise InputError("bins must be an (n, A) matrix.")
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    m = p.shape[0]
    k = int(n_bins)
    if labels is None:
        cell = b[:, p[:, 0]] * k + b[:, p[:, 1]]  # (n, m)
        flat = cell + (np.arange(m) * k * k)[None, :]
        return np.bincount(flat.ravel(), minlength=m * k * k).reshape(m, k, k).astype(np.int64)
    y = np.asarray(labels, dtype=np.int64)
    if n_labels is None:
        raise InputError("pair_tables with labels needs n_labels.")
    n_l = int(n_labels)
    if y.shape != (b.shape[0],) or (y.size and (y.min() < 0 or y.max() >= n_l)):
        raise InputError(f"labels must be (n,) integers in 0..{n_l - 1}.")
    cell = (b[:, p[:, 0]] * k + b[:, p[:, 1]]) * n_l + y[:, None]
    flat = cell + (np.arange(m) * k * k * n_l)[None, :]
    return np.bincount(flat.ravel(), minlength=m * k * k * n_l).reshape(m, k, k, n_l).astype(np.int64)


def score_gram(bins: np.ndarray) -> np.ndarray:
    """``G = S^T S`` for the integer bin scores ``S = 2 b - 3`` in ``{-3, -1, 1, 3}``.

    One record adds ``s_a s_b`` (at most 9 in absolute value) to ``G[a, b]``.

    Returns
    -------
    ndarray of int64 (d, d)
    """
    s = 2 * np.asarray(bins, dtype=np.int64) - 3
    if 9 * s.shape[0] >= 2**53:
        return s.T @ s
    # float64 products of these small integers are exact below 2^53 and use BLAS
    sf = s.astype(np.float64)
    return np.rint(sf.T @ sf).astype(np.int64)


def quantile_levels(values: np.ndarray, n_levels: int) -> np.ndarray:
    """Quantile levels of every column with the rule of ``Pi_bin``, ``m`` levels.

    For ``j = 1..m-1``: ``pos = (n - 1) j / m``, ``lo = floor(pos)``,
    ``k = (n - 1) j mod m`` and ``T_j = m v[lo] + k (v[lo + 1] - v[lo])``
    (``m`` times numpy's "linear" quantile, in integers); the level of ``x`` is
    ``sum_j [m x >= T_j]``. For ``m = 4`` this is exactly the quartile binning
    of :func:`quartile_thresholds` / :func:`comparison_bits`.

    Parameters
    ----------
    values : ndarray of int64 (n, k)
    n_levels : int

    Returns
    -------
    ndarray of int64 (n, k)
    """
    x = np.asarray(values)
    if x.ndim != 2 or x.dtype != np.int64:
        raise InputError("quantile_levels takes an (n, k) int64 matrix.")
    n = x.shape[0]
    m = int(n_levels)
    if n < 1 or m < 1:
        raise InputError("need at least one record and one level.")
    srt = np.sort(x, axis=0)
    out = np.zeros(x.shape, dtype=np.int64)
    for j in range(1, m):
        lo, k = ((n - 1) * j) // m, ((n - 1) * j) % m
        t = m * srt[lo]
        if k:
            t = t + k * (srt[lo + 1] - srt[lo])
        out += (m * x >= t[None, :]).astype(np.int64)
    return out


#: Fractional bits of the public factor loadings in :func:`factor_bins`.
FACTOR_FRAC_BITS = 12


def factor_bins(bins: np.ndarray, loadings: np.ndarray, n_levels: int) -> np.ndarray:
    """Derived factor attributes: quantile levels of ``z = S V``.

    ``V`` (d, k) is public (released by the selection step) and encoded in
    fixed point, ``round(V * 2^12)``, so ``z = (2 b - 3) V_fp`` is an exact
    integer product; each column of ``z`` is then binned into ``n_levels``
    quantile levels by :func:`quantile_levels`.

    Returns
    -------
    ndarray of int64 (n, k)
    """
    v = np.asarray(loadings, dtype=np.float64)
    b = np.asarray(bins, dtype=np.int64)
    if v.ndim != 2 or v.shape[0] != b.shape[1]:
        raise InputError(f"loadings {v.shape} do not match {b.shape[1]} genes.")
    v_fp = np.round(v * (1 << FACTOR_FRAC_BITS)).astype(np.int64)
    z = (2 * b - 3) @ v_fp
    return quantile_levels(z, n_levels)


def joint_levels(levels: np.ndarray, n_levels: int) -> np.ndarray:
    """One attribute from ``k`` level columns: ``sum_j z_j m^(k-1-j)`` (n, 1)."""
    z = np.asarray(levels, dtype=np.int64)
    out = np.zeros((z.shape[0], 1), dtype=np.int64)
    for j in range(z.shape[1]):
        out[:, 0] = out[:, 0] * int(n_levels) + z[:, j]
    return out


def factor_levels(bins: np.ndarray, loadings_fp: np.ndarray, thresholds_fp: np.ndarray) -> np.ndarray:
    """The factor model's derived attribute: ``level = sum_j [z >= t_j]`` with ``z = (2 b - 3) V`` (integers).

    Parameters
    ----------
    bins : ndarray of int (n, d)
    loadings_fp : ndarray of int64 (d,)
        Public fixed-point loadings (:class:`fedsyn.factor.FactorPlan`).
    thresholds_fp : ndarray of int64 (3,)
        Public increasing thresholds on ``z``.

    Returns
    -------
    ndarray of int64 (n,)
        Levels in ``0..3``.
    """
    b = np.asarray(bins, dtype=np.int64)
    v = np.asarray(loadings_fp, dtype=np.int64)
    t = np.asarray(thresholds_fp, dtype=np.int64)
    if b.ndim != 2 or v.shape != (b.shape[1],) or t.shape != (3,):
        raise InputError(f"factor_levels: bins {b.shape}, loadings {v.shape}, thresholds {t.shape} do not match.")
    z = (2 * b - 3) @ v
    return (z[:, None] >= t[None, :]).sum(axis=1).astype(np.int64)


def factor_tables(bins: np.ndarray, labels: np.ndarray, levels: np.ndarray, n_labels: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Exact phase-B statistics of the factor model.

    Returns
    -------
    factor_label : ndarray of int64 (4, L)
        Records per (factor level, label).
    gene_factor : ndarray of int64 (d, 4, 4)
        Records per (gene bin, factor level), rows the gene's bin.
    """
    lev = np.asarray(levels, dtype=np.int64)
    factor_label = attr_label_tables(lev[:, None], labels, n_labels, N_BINS)[0]
    gene_factor = attr_label_tables(bins, lev, N_BINS, N_BINS)
    return factor_label, gene_factor


def gram_upper(bins: np.ndarray) -> np.ndarray:
    """The released Gram entries of the factor model, exact: :func:`score_gram` above the diagonal, row-major."""
    g = score_gram(bins)
    return g[np.triu_indices(g.shape[0], 1)]



def factor_outputs(bins: np.ndarray, labels: np.ndarray, two_way: np.ndarray, opened: dict, params, *, rng
                   ) -> tuple[np.ndarray, dict, dict]:
    """What the factor model opens beyond the profile's outputs, computed in the clear (:mod:`fedsyn.factor`).

    Parameters
    ----------
    bins : ndarray of int (n, d)
        The profile's bins of the pooled data.
    labels : ndarray of int (n,)
    two_way : ndarray of int64 (d, 4, L)
        The exact (gene, label) tables (for the second measurement if no factor is found).
    opened : dict
        The profile's opened outputs (noisy ``label`` and ``two_way``).
    params : fedsyn.params.ProtocolParams
    rng : generator
        Source of the noise uniforms.

    Returns
    -------
    gram : ndarray of int64 (p (p - 1) / 2,)
        Noisy Gram entries of the anchor genes (phase A).
    plan : dict
        The public factor plan (:meth:`fedsyn.factor.FactorPlan.to_public`).
    extra : dict of str to ndarray of int64
        Phase B: ``factor_label`` and ``gene_factor``, or ``two_way_again``.
    """
    from .factor import anchor_genes, plan_factor

    anchors = anchor_genes(np.shape(bins)[1], params.factor_anchors)
    gram = _noisy(gram_upper(np.asarray(bins)[:, anchors]), params.gram_sigma, params, rng)
    plan = plan_factor(gram, opened["two_way"], opened["label"], gram_sigma=params.gram_sigma if params.noise else 0.0,
                       table_sigma=params.sigma if params.noise else 0.0, n_anchors=params.factor_anchors)
    if plan.found:
        levels = factor_levels(bins, plan.loadings_fp, plan.thresholds_fp)
        factor_label, gene_factor = factor_tables(bins, labels, levels, params.n_labels)
        extra = {"factor_label": _noisy(factor_label, params.sigma, params, rng),
                 "gene_factor": _noisy(gene_factor, params.pair_sigma, params, rng)}
    else:
        extra = {"two_way_again": _noisy(two_way, params.pair_sigma, params, rng)}
    return gram, plan.to_public(), extra
