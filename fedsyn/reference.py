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
    bin sum:  round(S / 2^k) + Z_sum_sigma      (dp mode; grid: 2^k ulps)

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


def round_to_unit(values: np.ndarray, bits: int) -> np.ndarray:
    """``round(values / 2^bits)`` (halves up), exactly: ``floor((v + 2^(bits-1)) / 2^bits)``."""
    v = np.asarray(values, dtype=np.int64)
    if bits == 0:
        return v.copy()
    return np.floor_divide(v + (1 << (bits - 1)), 1 << bits)


def protocol1_outputs(stats: BinStatistics, params, *, rng) -> dict[str, np.ndarray]:
    """What Protocol 1 opens to the release server, computed in the clear.

    The reference of every engine's opened outputs
    (:class:`fedsyn.measurements.OutputLayout`): noisy counts ``one_way``,
    ``label``, ``two_way`` (integers), and either the exact fixed-point bin
    ``means`` (paper mode, not DP) or the noisy bin ``sums`` (dp mode, integers
    in units of ``2^params.sum_bits`` ulps).

    Parameters
    ----------
    stats : BinStatistics
        Exact statistics of the pooled (and, in dp mode, clipped) data.
    params : fedsyn.params.ProtocolParams
    rng : generator
        Source of the noise uniforms (the OS CSPRNG unless a seed was given).
    """
    from .noise import GridNoise

    def noisy(values: np.ndarray, sigma: float) -> np.ndarray:
        v = np.asarray(values, dtype=np.int64)
        return v + GridNoise(sigma).sample(v.shape, rng=rng) if params.noise else v.copy()

    out = {
        "one_way": noisy(stats.counts, params.sigma),
        "label": noisy(stats.label_counts, params.sigma),
        "two_way": noisy(stats.two_way, params.sigma),
    }
    if params.mean_mode == "paper":
        out["means"] = stats.means
    else:
        out["sums"] = noisy(round_to_unit(stats.sums, params.sum_bits), params.sum_sigma)
    return out
